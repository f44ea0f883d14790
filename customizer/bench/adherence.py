"""Does the model follow the attribute words? One portrait prompt at a time with a single attribute changed.

    python -m customizer.bench.adherence --seeds 4 --json bench/adherence.json
    python -m customizer.bench.adherence --lora runs/x/none.safetensors   # the same with a UNet LoRA at weight 1

For each character attribute (hair colour ... body type; theme is a LoRA, not a word), a fixed design with only
that attribute set to each of its choices in turn, rendered as the designer does it (the app's portrait prompt
and negative, the profile's sampler, steps and guidance; plain diffusers pipeline of the folder, no reference) with
the same seeds. Per attribute:
- accuracy: the appearance instrument reads the requested value back (it reads renderer portraits at 0.91);
- prompt_vs_seed: mean pixel change between two choices at one seed, over the mean change between two seeds at
  one choice - near 0 when the seed decides the picture and the attribute word changes nothing;
- unet_response: how far the UNet's noise prediction moves between two choices (one latent, t = 400, no CFG), as
  a fraction of how far it moves between the prompt and the negative prompt.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

ATTRIBUTES = ("hair_colour", "hair_style", "hair_length", "eye_colour", "skin_tone", "outfit", "body_type")
BASE = {"hair_colour": "brown", "hair_style": "straight", "hair_length": "medium", "eye_colour": "brown",
        "skin_tone": "light", "outfit": "casual", "body_type": "average", "age": 30}
PROBE_T = 400


def _mean_abs(a, b) -> float:
    import numpy as np

    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


def measure(folder: Path, seeds: int, sampler: str, steps: int, guidance: float, size: int,
            attributes: tuple[str, ...] = ATTRIBUTES, lora: Path | None = None, log=lambda m: None) -> dict[str, Any]:
    import numpy as np
    import torch

    from ..character import CharacterSpec, catalogue
    from ..engine import schedulers
    from ..prompts import portrait_prompt
    from ..likeness.instruments import Instruments
    from .plain import Plain

    plain = Plain(folder, [], "cpu", torch.float32)
    pipe = plain.pipe
    pipe.scheduler = schedulers.make(sampler, dict(pipe.scheduler.config))
    if lora is not None:  # e.g. a LoRA trained to follow the attribute words: active at full weight
        pipe.load_lora_weights(lora.parent, weight_name=lora.name, adapter_name="probe")
        pipe.set_adapters(["probe"], adapter_weights=[1.0])
    instr = Instruments.load(folder / "instruments")

    def eps(text: str) -> torch.Tensor:
        """The UNet's noise prediction for the probe latent under `text` alone (no CFG)."""
        with torch.inference_mode():
            embeds = pipe.encode_prompt(text, "cpu", 1, False)[0]
            return pipe.unet(latent, torch.tensor(PROBE_T), encoder_hidden_states=embeds).sample

    side = size // pipe.vae_scale_factor
    latent = torch.randn(1, pipe.unet.config.in_channels, side, side, generator=torch.Generator().manual_seed(0))
    out: dict[str, Any] = {}
    for key in attributes:
        choices = list(catalogue()[key].choices)
        images, by_choice, truth = {}, {}, []
        for c in choices:
            p = portrait_prompt(CharacterSpec.from_dict({**BASE, key: c}))
            images[c] = pipe([p.positive] * seeds, negative_prompt=[p.negative] * seeds, num_inference_steps=steps,
                             guidance_scale=guidance, width=size, height=size,
                             generator=[torch.Generator("cpu").manual_seed(s) for s in range(seeds)]).images
            truth += [c] * seeds
            by_choice[c] = eps(p.positive)
        # the negative prompt is the same for every choice: one prediction, against the first choice's
        negative_move = (by_choice[choices[0]] - eps(p.negative)).norm().item()
        pred = [x[key] for x in instr.classify([im for c in choices for im in images[c]])]
        across_prompts = [_mean_abs(images[a][s], images[b][s]) for a, b in itertools.combinations(choices, 2)
                          for s in range(seeds)]
        across_seeds = [_mean_abs(images[c][s], images[c][t]) for c in choices
                        for s, t in itertools.combinations(range(seeds), 2)]
        prompt_move = np.mean([(by_choice[a] - by_choice[b]).norm().item()
                               for a, b in itertools.combinations(choices, 2)])
        out[key] = {
            "accuracy": round(float(np.mean([p == t for p, t in zip(pred, truth)])), 4),
            "chance": round(1 / len(choices), 4),
            "distinct_readings_per_seed": round(float(np.mean([len({pred[i * seeds + s] for i in range(len(choices))})
                                                               for s in range(seeds)])), 2),
            "prompt_vs_seed": round(float(np.mean(across_prompts) / max(np.mean(across_seeds), 1e-9)), 4)
            if across_seeds else None,
            "unet_response": round(float(prompt_move / max(negative_move, 1e-9)), 4),
        }
        log(f"{key}: {out[key]}")
    return {"folder": str(folder), "lora": str(lora) if lora else None, "seeds": seeds, "sampler": sampler,
            "steps": steps, "guidance": guidance, "size": size, "base": BASE, "probe_t": PROBE_T, "attributes": out,
            "mean_accuracy": round(float(np.mean([v["accuracy"] for v in out.values()])), 4)}


def main(argv: list[str] | None = None) -> int:
    from ..config import REPO_ROOT, load_config

    ap = argparse.ArgumentParser(prog="python -m customizer.bench.adherence", description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=4, help="seeds per choice (at least 2)")
    ap.add_argument("--folder", type=Path, default=REPO_ROOT / "assets" / "bundled")
    ap.add_argument("--profile", default="bundled", help="sampler, steps, guidance and size from this profile")
    ap.add_argument("--attributes", default=",".join(ATTRIBUTES), help="comma-separated subset")
    ap.add_argument("--lora", type=Path, default=None, help="a UNet LoRA (save_lora_weights file) active at weight 1")
    ap.add_argument("--json", type=Path, help="write the result here too")
    args = ap.parse_args(argv)
    if args.lora is not None and not args.lora.is_file():
        ap.error(f"--lora: no such file {args.lora}")
    attributes = tuple(a.strip() for a in args.attributes.split(",") if a.strip())
    if args.seeds < 2:
        ap.error("--seeds must be at least 2 (prompt_vs_seed compares seeds)")
    if not attributes or not set(attributes) <= set(ATTRIBUTES):
        ap.error(f"--attributes: choose from {', '.join(ATTRIBUTES)}")
    profile = load_config().profiles[args.profile]
    result = measure(args.folder, args.seeds, profile.scheduler, profile.steps, profile.guidance, profile.width,
                     attributes, args.lora, log=lambda m: print(m, file=sys.stderr, flush=True))
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
