"""Each latent's detail map: the share of its pixels that carry eye colour or expression (detail_mask.py), pooled
to the latent grid, so the UNet's loss can weigh those cells up (train_base --detail-weight).

Expression and eye colour are a few pixels of a 128 px photo (1-3 %): an unweighted loss hardly sees them, and the
model read expression at chance (0.19 of 7 choices) where the VAE round trip keeps 0.52. The records are
re-planned from the latent file's own seed and theme (the corpus is deterministic) and checked against its
captions. Renders only (three per record), no torch in the workers; a sidecar file beside the latents:

  python -m customizer.training.latent_masks --latents runs/latents.pt --workers 2   # -> runs/latents.masks.pt
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def masks_path(latents: str | Path) -> Path:
    p = Path(latents)
    return p.with_name(p.stem + ".masks.pt")


def _pooled(job) -> np.ndarray:
    """float16 (h, w): the share of detail pixels in each latent cell of the record's photo."""
    from .detail_mask import detail_mask

    rec, size, grid = job
    mask = detail_mask(rec, size)
    f = size // grid
    return mask.reshape(grid, f, grid, f).mean(axis=(1, 3)).astype(np.float16)


def compute(latents: str | Path, out: str | Path | None = None, workers: int = 0, log=print) -> Path:
    import torch

    from . import common
    from .encode_corpus import train_plan

    data = torch.load(latents, map_location="cpu", weights_only=False)
    n, grid, size = len(data["captions"]), int(data["latents"].shape[-1]), int(data["resolution"])
    records = train_plan(n, int(data["seed"]), data.get("theme", "none"))
    if [r.caption for r in records] != list(data["captions"]):
        raise SystemExit(f"{latents}: its records are not the corpus plan of seed {data['seed']} (captions differ)")
    jobs = [(rec, size, grid) for rec in records]
    t0 = time.perf_counter()
    got = []
    with common.mapped(_pooled, jobs, workers, chunksize=32) as maps:
        for i, m in enumerate(maps, 1):
            got.append(m)
            if i % 2000 == 0 or i == n:
                log(f"detail maps {i}/{n} ({time.perf_counter() - t0:.0f} s)")
    maps_t = torch.from_numpy(np.stack(got))[:, None]            # (N, 1, h, w) fp16
    target = Path(out) if out is not None else masks_path(latents)
    tmp = target.with_name(target.name + ".tmp")
    torch.save({"detail": maps_t, "captions": list(data["captions"])}, tmp)
    tmp.replace(target)
    share, cells = float(maps_t.float().mean()), float((maps_t > 0).float().mean())
    log(f"wrote {target}: mean detail share {share:.4f}, cells with any {cells:.3f}")
    return target


def load(path: str | Path, captions: list[str]):
    """The (N,1,h,w) detail maps of a masks file, checked to belong to these captions."""
    import torch

    got = torch.load(path, map_location="cpu", weights_only=False)
    if list(got["captions"]) != list(captions):
        raise SystemExit(f"{path} was computed for another latent file (its captions differ): re-run latent_masks")
    return got["detail"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", required=True, type=Path, help="an encode_corpus file")
    ap.add_argument("--out", type=Path, default=None, help="default: <latents>.masks.pt beside it")
    ap.add_argument("--workers", type=int, default=0, help="render processes (0/1: in-process)")
    args = ap.parse_args(argv)
    compute(args.latents, args.out, args.workers, log=lambda m: print(m, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
