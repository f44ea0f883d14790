"""What the IP-Adapter's reference embedding carries of the look: a linear probe per attribute.

    python -m customizer.bench.reference_look --latents RUNS/latents.pt --encoder assets/bundled/ip_adapter \
        [--encoder RUNS/image_encoder ...] [--json bench/reference-look.json]

A selfie prompted without hair, eyes and skin (selfie_prompt: from_reference) can show only what the UNet gets
from the reference's embedding, so this is that path's ceiling. Each encoder folder (holding image_encoder/) embeds
the reference portraits of a latents file (the very images train_base conditions on: VAE reconstructions of the
renders); a multinomial logistic regression per attribute is fitted on three quarters of the people and scored on
the rest, beside the majority class of those people (what an embedding that carries nothing reads). The labels are
the renderer's; nothing here is trained on model outputs, and the probe is not a training loss.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

ATTRIBUTES = ("hair_colour", "hair_style", "hair_length", "eye_colour", "skin_tone", "body_type", "outfit")
TRAIN_SHARE = 0.75


def people_of(data: dict) -> tuple[torch.Tensor, list[dict]]:
    """(reference pixels uint8 (P, 3, H, W), each person's attrs) of a latents file."""
    attrs: dict[int, dict] = {}
    for rec, row in zip(data["records"], data["ref_of"].tolist()):
        if row >= 0:
            attrs.setdefault(row, rec["attrs"])
    rows = sorted(attrs)
    return data["references"][rows], [attrs[r] for r in rows]


@torch.no_grad()
def embed(encoder_dir: Path, pixels: torch.Tensor, batch: int = 256) -> torch.Tensor:
    from transformers import CLIPVisionModelWithProjection

    from ..engine import ip_adapter

    enc = CLIPVisionModelWithProjection.from_pretrained(Path(encoder_dir) / ip_adapter.ENCODER_FOLDER,
                                                        dtype=torch.float32).eval()
    return torch.cat([ip_adapter.embed(enc, pixels[i:i + batch], "cpu")[:, 0] for i in range(0, len(pixels), batch)])


def probe(x: torch.Tensor, labels: list[str], l2: float = 1e-3) -> dict[str, float]:
    """Held-out accuracy of a linear read-out of labels from x (first TRAIN_SHARE of rows fit, the rest scored)."""
    names = sorted(set(labels))
    y = torch.tensor([names.index(v) for v in labels])
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    n = int(len(x) * TRAIN_SHARE)
    w = torch.zeros(x.shape[1], len(names), requires_grad=True)
    b = torch.zeros(len(names), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x[:n] @ w + b, y[:n]) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)   # zero start and full-batch L-BFGS: deterministic, no seed needed
    with torch.no_grad():
        acc = ((x[n:] @ w + b).argmax(1) == y[n:]).float().mean().item()
    majority = max((y[n:] == k).float().mean().item() for k in range(len(names)))
    return {"probe": round(acc, 4), "majority": round(majority, 4)}


def measure(latents: Path, encoders: list[Path]) -> dict[str, Any]:
    data = torch.load(latents, map_location="cpu", weights_only=False)
    pixels, attrs = people_of(data)
    out: dict[str, Any] = {"latents": str(latents), "people": len(attrs), "held_out_people": len(attrs) -
                           int(len(attrs) * TRAIN_SHARE), "encoders": {}}
    for enc in encoders:
        x = embed(enc, pixels)
        out["encoders"][str(enc)] = {"dim": int(x.shape[1]),
                                     **{k: probe(x, [a[k] for a in attrs]) for k in ATTRIBUTES}}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.bench.reference_look", description=__doc__.split("\n\n")[0])
    ap.add_argument("--latents", required=True, type=Path, help="an encode_corpus file (with reference portraits)")
    ap.add_argument("--encoder", action="append", type=Path, required=True,
                    help="a folder holding image_encoder/ (repeat to compare)")
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    args = ap.parse_args(argv)
    report = measure(args.latents, args.encoder)
    text = json.dumps(report, indent=2)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    for name, block in report["encoders"].items():
        print(name + ": " + ", ".join(f"{k} {v['probe']:.2f} (majority {v['majority']:.2f})"
                                      for k, v in block.items() if k != "dim"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
