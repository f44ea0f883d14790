"""Does quality hold at fewer steps? The measuring instruments' scores of images made with different samplers,
step counts and guidance intervals on the same prompts and seeds - the check behind the bundled profile's step count and
behind the "default call" baseline of the benchmark (the folder's scheduler at diffusers' default 50 steps).

    python -m customizer.bench.steps_quality --n 40 --json bench/steps-quality.json
    python -m customizer.bench.steps_quality --configs dpmpp_2m:8,dpmpp_2m:8:0.5 --json bench/guidance-quality.json

Held-out characters (eval.held_out_characters), one selfie prompt each (eval.shot_plan), the character's theme
LoRA at full strength, no reference image (the text path alone: what the sampler changes). Every configuration is
the plain diffusers pipeline of the bundled folder with only the scheduler, the step count and (as the engine does it,
engine/guidance.py) the fraction of steps with classifier-free guidance changed. Per
configuration: accuracy of the attribute heads against the design (mean of the seven character attributes),
theme, scene, framing and expression against the request, and seconds per image. The instruments are weak
(README, *The bundled model*): equal scores mean "no difference this instrument can see", not "the same images".
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

ATTRIBUTES = ("hair_colour", "hair_style", "hair_length", "eye_colour", "skin_tone", "body_type", "outfit")
SHOT = ("theme", "scene", "framing", "expression")
DEFAULT_CONFIGS = "default:50,default:12,default:8,dpmpp_2m:12,dpmpp_2m:8,dpmpp_2m:6"


def prompts(n: int, guidance: float, size: int) -> list[dict[str, Any]]:
    from ..character import CharacterSpec, SelfieSpec
    from ..eval import held_out_characters, shot_plan
    from ..prompts import selfie_prompt

    out = []
    for i, c in enumerate(held_out_characters(n, salt="steps-quality")):
        shot = shot_plan(i, c["identity_seed"], 1)[0]
        spec = CharacterSpec.from_dict(c["spec"])
        p = selfie_prompt(spec, SelfieSpec(**shot))
        out.append({"prompt": p.positive, "negative": p.negative, "seed": 1000 + i, "guidance": guidance,
                    "size": size, "theme": spec.theme, "truth": {**c["spec"], **shot}})
    return out


def measure(folder: Path, configs: list[tuple[str, int, float]], n: int, guidance: float, size: int,
            log=lambda m: None) -> dict[str, Any]:
    import numpy as np
    import torch

    from ..engine import schedulers
    from ..engine.guidance import GuidanceCut
    from ..recipe import cfg_steps
    from ..likeness.instruments import Instruments
    from .plain import Plain

    runs = prompts(n, guidance, size)
    themes = sorted({r["theme"] for r in runs} - {"none"})
    plain = Plain(folder, themes, "cpu", torch.float32)
    instr = Instruments.load(folder / "instruments")
    default = plain.pipe.scheduler
    out: dict[str, Any] = {}
    for name, steps, end in configs:
        plain.pipe.scheduler = default if name == "default" else schedulers.make(name, dict(default.config))
        images, t = [], time.perf_counter()
        keep = cfg_steps(steps, end)
        for r in runs:
            if r["theme"] == "none":
                plain.pipe.disable_lora()
            else:
                plain.pipe.enable_lora()
                plain.pipe.set_adapters([r["theme"]], adapter_weights=[1.0])
            cut = GuidanceCut.for_call(plain.pipe, keep, steps)
            extra = cut.call_kwargs if cut else {}
            with cut or nullcontext():
                images.append(plain.pipe(prompt=r["prompt"], negative_prompt=r["negative"], num_inference_steps=steps,
                                         guidance_scale=r["guidance"], width=r["size"], height=r["size"],
                                         generator=torch.Generator("cpu").manual_seed(r["seed"]), **extra).images[0])
        seconds = (time.perf_counter() - t) / len(runs)
        pred = instr.classify(images)
        acc = {k: float(np.mean([p[k] == r["truth"][k] for p, r in zip(pred, runs)])) for k in ATTRIBUTES + SHOT}
        key = f"{type(plain.pipe.scheduler).__name__}@{steps}" + (f" cfg {end:g}" if keep < steps else "")
        out[key] = {"sampler": name, "steps": steps, "guidance_end": end, "cfg_steps": keep,
                    "attribute_mean": round(float(np.mean([acc[k] for k in ATTRIBUTES])), 4),
                    **{k: round(acc[k], 4) for k in SHOT}, "seconds_per_image": round(seconds, 4)}
        log(f"{key}: {out[key]}")
    return {"n": len(runs), "guidance": guidance, "size": size, "folder": str(folder), "configs": out}


def parse_configs(text: str) -> list[tuple[str, int, float]]:
    """sampler:steps[:guidance_end] items, comma-separated (guidance_end: fraction of steps with CFG, default 1)."""
    out = []
    for item in text.split(","):
        parts = item.strip().split(":")
        name, steps, end_text = (parts + ["", ""])[:3]
        try:
            end = float(end_text) if end_text else 1.0
        except ValueError:
            end = -1.0
        if not name or not steps.isdigit() or int(steps) < 1 or len(parts) > 3 or not 0 < end <= 1:
            raise argparse.ArgumentTypeError(f"expected sampler:steps[:guidance_end], got {item!r}")
        out.append((name, int(steps), end))
    return out


def main(argv: list[str] | None = None) -> int:
    from ..config import REPO_ROOT, load_config

    ap = argparse.ArgumentParser(prog="python -m customizer.bench.steps_quality", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=40, help="held-out characters (one image each per configuration)")
    ap.add_argument("--configs", type=parse_configs, default=parse_configs(DEFAULT_CONFIGS),
                    help=f"sampler:steps[:guidance_end] list; 'default' = the folder's scheduler "
                         f"(default {DEFAULT_CONFIGS})")
    ap.add_argument("--folder", type=Path, default=REPO_ROOT / "assets" / "bundled")
    ap.add_argument("--json", type=Path, help="write the result here too")
    args = ap.parse_args(argv)
    profile = load_config().profiles["bundled"]
    result = measure(args.folder, args.configs, args.n, profile.guidance, profile.width,
                     log=lambda m: print(m, file=sys.stderr, flush=True))
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
