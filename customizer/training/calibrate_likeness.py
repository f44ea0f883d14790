"""Calibrate the IP-Adapter's image encoder as the app's likeness instrument, on renderer ground truth.

    python -m customizer.training.calibrate_likeness --encoder assets/bundled/ip_adapter/image_encoder \
        [--people 200] [--selfies 4] [--instruments assets/bundled/instruments]

Held-out people (their own salt: not the eval's characters, not the encoder's training or evaluation people) each
get a reference portrait and `selfies` photos from the renderer. The encoder's cosine of a photo with its own
reference (same) and with a random other person's (different) gives the same-person threshold at <= 5 % false
accepts, written to <encoder>/likeness.json, which likeness/adapter.py reports with every score; a profile's
likeness band starts there (spaces.yaml). With --instruments, the eval's identity instrument is measured on the
same pairs, for comparison only: nothing here trains or tunes either network.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..likeness.adapter import CALIBRATION
from ..likeness.instruments import verification

SALT = "likeness-calibration"
MAX_FAR = 0.05


def _quantiles(values: list[float]) -> dict[str, float]:
    q = np.quantile(np.asarray(values, np.float64), [0.05, 0.1, 0.5])
    return {"p05": round(float(q[0]), 4), "p10": round(float(q[1]), 4), "median": round(float(q[2]), 4)}


def measure(probe, people: int, selfies: int) -> dict:
    """Same-person and random-other cosines of renderer photos against renderer references, and the threshold."""
    from .train_instruments import identity_scores

    sc = identity_scores(probe, people, selfies, salt=SALT)
    v = verification(sc["same"], sc["different_other"], MAX_FAR)
    return {"threshold": v["threshold"], "tar": round(v["tar"], 4), "far": round(v["far"], 4),
            "accuracy": round(v["accuracy"], 4), "max_far": MAX_FAR,
            "same_mean": round(float(np.mean(sc["same"])), 4), "same_quantiles": _quantiles(sc["same"]),
            "different_mean": round(float(np.mean(sc["different_other"])), 4),
            "people": people, "selfies_per_person": selfies, "salt": SALT}


def calibrate(encoder_dir: Path, people: int = 200, selfies: int = 4, instruments: Path | None = None) -> dict:
    import torch
    from transformers import CLIPVisionModelWithProjection

    from .train_image_encoder import EncoderProbe

    encoder = CLIPVisionModelWithProjection.from_pretrained(encoder_dir, dtype=torch.float32).eval()
    out = measure(EncoderProbe(encoder), people, selfies)
    if instruments is not None:
        from ..likeness.instruments import Instruments

        out["eval_instrument_same_pairs"] = {k: v for k, v in measure(Instruments.load(instruments), people,
                                                                        selfies).items() if k not in ("salt",)}
    (Path(encoder_dir) / CALIBRATION).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.training.calibrate_likeness",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", required=True, type=Path, help="the IP-Adapter's image_encoder folder")
    ap.add_argument("--people", type=int, default=200, help="held-out people")
    ap.add_argument("--selfies", type=int, default=4, help="photos per person")
    ap.add_argument("--instruments", type=Path, default=None,
                    help="the eval's instruments, measured on the same pairs for comparison")
    args = ap.parse_args(argv)
    out = calibrate(args.encoder, args.people, args.selfies, args.instruments)
    print(json.dumps(out, indent=2))
    print(f"wrote {args.encoder / CALIBRATION}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
