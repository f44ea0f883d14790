"""The VAE's ceiling: what the instruments still read after the renderer's images go through encode -> decode.

    python -m customizer.bench.vae_roundtrip --vae assets/bundled/vae [--vae runs/vae ...] [--characters 60]
                                             [--selfies-per 4] [--json bench/vae-roundtrip.json]

No UNet can put back what the VAE drops, so this is the second column of the per-stage ceiling table (renderer ->
VAE round trip -> model). The images are the eval's own (held-out characters, its shot plan, the renderer's
drawing of them: eval.renderer_images), scored by eval.score with the shipped instruments; each VAE folder gets a
`vae_roundtrip` block beside the shared `renderer` block, and `ratio` = round trip / renderer per figure (the
issue's bar: >= 0.95 for every attribute and for expression, identity verification >= 0.90).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

# the figures of the ceiling table (dotted paths into eval.score's result)
FIGURES = ("attribute_accuracy.hair_colour", "attribute_accuracy.hair_style", "attribute_accuracy.hair_length",
           "attribute_accuracy.eye_colour", "attribute_accuracy.skin_tone", "attribute_accuracy.body_type",
           "attribute_accuracy.outfit", "attribute_accuracy.mean", "theme_accuracy", "scene_accuracy",
           "expression_accuracy", "framing_accuracy", "identity.verification_accuracy")


def figure(block: dict[str, Any], path: str) -> float | None:
    for key in path.split("."):
        if not isinstance(block, dict) or key not in block:
            return None
        block = block[key]
    return block if isinstance(block, (int, float)) else None


def roundtrip_tensor(vae, x):
    """uint8 (B, 3, H, W) -> uint8 (B, 3, H, W) on the CPU: encode (posterior mean) -> decode, clamped and rounded.
    The one round trip of the ceiling table and of the upscaler's training pairs (train_upscaler.make_pairs)."""
    import torch

    p = next(vae.parameters())
    x = x.to(p.device, p.dtype) / 127.5 - 1.0
    rec = vae.decode(vae.encode(x).latent_dist.mean).sample.float().clamp(-1, 1)
    return ((rec + 1) * 127.5).round().to(torch.uint8).cpu()


def roundtrip(vae, images: list[Image.Image], batch: int = 16) -> list[Image.Image]:
    """encode (posterior mean) -> decode, as a picture: what a latent model of this VAE can at best draw."""
    import numpy as np
    import torch

    out: list[Image.Image] = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            arr = np.stack([np.asarray(im.convert("RGB"), np.uint8) for im in images[i:i + batch]])
            rec = roundtrip_tensor(vae, torch.from_numpy(arr).permute(0, 3, 1, 2))
            out += [Image.fromarray(a, "RGB") for a in rec.permute(0, 2, 3, 1).numpy()]
    return out


def roundtrip_chars(vae, chars: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same characters (eval.score's layout) with every image through the VAE."""
    flat = [im for c in chars for im in (*c["portraits"], c["reference"], *(im for im, _ in c["selfies"]))]
    rec = iter(roundtrip(vae, flat))
    out = []
    for c in chars:
        portraits = [next(rec) for _ in c["portraits"]]
        reference = next(rec)
        selfies = [(next(rec), shot) for _, shot in c["selfies"]]
        out.append({**c, "portraits": portraits, "reference": reference, "selfies": selfies})
    return out


def ratios(model: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, float | None]:
    """model / ceiling per figure (None where either is missing or the ceiling is 0)."""
    out = {}
    for path in FIGURES:
        a, b = figure(model, path), figure(ceiling, path)
        out[path] = round(a / b, 4) if a is not None and b else None
    return out


def planned_characters(n: int, selfies_per: int, salt: str = "eval") -> list[dict[str, Any]]:
    """The eval's held-out characters and shot plan, without running any model."""
    from ..eval import held_out_characters, shot_plan

    return [{**c, "shots": shot_plan(i, c["identity_seed"], selfies_per)}
            for i, c in enumerate(held_out_characters(n, salt))]


def grid_images(chars: list[dict[str, Any]], n: int = 8) -> list[Image.Image]:
    """n pictures for the before/after grid: alternately a character's reference and one of its selfies."""
    out = []
    for c in chars:
        out += [c["reference"], c["selfies"][0][0]] if c["selfies"] else [c["reference"]]
        if len(out) >= n:
            break
    return out[:n]


def measure(vae_dirs: list[Path], instruments: Path, characters: int, selfies_per: int,
            log=lambda m: None, grid: Path | None = None) -> dict[str, Any]:
    """grid: also write a PNG, first row the renderer's pictures, then one row per VAE's round trip of them."""
    import torch
    from diffusers import AutoencoderKL

    from ..eval import calibrated_threshold, renderer_images, score
    from ..likeness.instruments import Instruments

    t0 = time.perf_counter()
    instr = Instruments.load(instruments)
    calibrated = calibrated_threshold(instruments)
    chars = renderer_images(planned_characters(characters, selfies_per))
    renderer = score(instr, chars, calibrated)
    log(f"renderer: attributes {renderer['attribute_accuracy']['mean']} expression "
        f"{renderer.get('expression_accuracy')} verification {renderer['identity']['verification_accuracy']}")
    report: dict[str, Any] = {"characters": characters, "selfies_per": selfies_per, "instruments": str(instruments),
                              "renderer": renderer, "vaes": {}}
    shown = grid_images(chars)
    rows = [shown]
    for d in vae_dirs:
        vae = AutoencoderKL.from_pretrained(d, dtype=torch.float32).eval()
        rows.append(roundtrip(vae, shown))
        rt = score(instr, roundtrip_chars(vae, chars), calibrated)
        report["vaes"][str(d)] = {"latent_channels": int(vae.config.latent_channels), "vae_roundtrip": rt,
                                  "ratio": ratios(rt, renderer)}
        log(f"{d}: attributes {rt['attribute_accuracy']['mean']} expression {rt.get('expression_accuracy')} "
            f"verification {rt['identity']['verification_accuracy']}")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    if grid is not None:
        from ..training.common import grid as sheet

        grid.parent.mkdir(parents=True, exist_ok=True)
        sheet(rows).save(grid)
        report["grid"] = {"path": str(grid), "rows": ["renderer", *map(str, vae_dirs)]}
    return report


def main(argv: list[str] | None = None) -> int:
    from ..eval import DEFAULT_INSTRUMENTS

    ap = argparse.ArgumentParser(prog="python -m customizer.bench.vae_roundtrip", description=__doc__.split("\n\n")[0])
    ap.add_argument("--vae", type=Path, action="append", required=True, help="AutoencoderKL folder (repeatable)")
    ap.add_argument("--instruments", type=Path, default=DEFAULT_INSTRUMENTS)
    ap.add_argument("--characters", type=int, default=60, help="held-out characters (eval's)")
    ap.add_argument("--selfies-per", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    ap.add_argument("--grid", type=Path, default=None,
                    help="write a before/after PNG: the renderer's pictures, then each VAE's round trip")
    args = ap.parse_args(argv)
    report = measure(args.vae, args.instruments, args.characters, args.selfies_per,
                     log=lambda m: print(m, file=sys.stderr, flush=True), grid=args.grid)
    text = json.dumps(report, indent=2) + "\n"
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text, encoding="utf-8")
    for d, v in report["vaes"].items():
        low = {k: r for k, r in v["ratio"].items() if r is not None and r < 0.95}
        print(f"{d}: ratios below 0.95: {low or 'none'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
