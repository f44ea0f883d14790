"""Render the base model's training set and store its VAE latents, captions and metadata in one torch file.

    python -m customizer.training.encode_corpus --vae runs/vae --n N --out runs/latents.pt [--seed S]

Records come from corpus.iter_plan(seed) with held-out people skipped: several photos per train-split person (the
first a studio portrait captioned with the designer's portrait prompt, the rest selfies captioned with the selfie
prompt), exactly the corpus distribution. No horizontal flips: moles, scars and the hair parting are identity cues.

--theme (default none) renders every photo in one theme and captions it without theme words: the base model
never sees a theme (each theme is a LoRA trained on a --theme fantasy / vintage file). Each person's portrait is
also stored as the VAE's reconstruction (uint8): the IP-Adapter's reference for that person's other photos.

The file holds: latents (N x C x h x w, float16, posterior mean x scaling_factor), latent_std (same shape, posterior
std x scaling_factor, for sampling the posterior during training), captions, records (identity_seed, attrs,
variation, kind, index), references / ref_of / is_portrait, theme, scaling_factor, resolution, seed and the VAE folder
it was made with.
"""
from __future__ import annotations

from . import common  # first: sets OMP_WAIT_POLICY before torch loads

import argparse
import json
import sys
import time
from pathlib import Path

import torch

FORMAT = 2


def train_plan(n: int, seed: int, theme: str | None = "none") -> list:
    """The first n train-split records of corpus.iter_plan(seed, theme)."""
    from .corpus import iter_plan

    out = []
    for rec in iter_plan(seed, theme):
        if rec.split != "train":
            continue
        out.append(rec)
        if len(out) >= n:
            break
    return out


def _render(job):
    """uint8 HWC array (no torch in workers: forked OpenMP state is not safe to use)."""
    import numpy as np

    from .corpus import render_record

    rec, size = job
    return np.asarray(render_record(rec, size).convert("RGB"))


def encode(vae_dir: str | Path, n: int, out: str | Path, seed: int = 0, batch: int = 16, workers: int = 0,
           device: str = "auto", threads: int | None = None, size: int | None = None, log=print,
           theme: str | None = "none", references: bool = True) -> dict:
    from diffusers import AutoencoderKL

    dev = common.pick_device(device, threads)
    vae = AutoencoderKL.from_pretrained(vae_dir).to(dev.device).eval()
    sf = float(vae.config.scaling_factor)
    size = int(size or vae.config.sample_size)  # train_vae's geometry resolution
    records = train_plan(n, seed, theme)
    jobs = [(rec, size) for rec in records]
    means, stds, refs = [], [], []
    ref_of: list[int] = []
    person_ref: dict[int, int] = {}
    t0 = time.perf_counter()
    with common.mapped(_render, jobs, workers) as images, torch.inference_mode():
        buf: list[torch.Tensor] = []
        kinds: list[str] = []
        for i, (rec, img) in enumerate(zip(records, images), 1):
            buf.append(torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 127.5 - 1.0)
            kinds.append(rec.kind)
            if rec.kind == "portrait" and rec.identity_seed not in person_ref:
                person_ref[rec.identity_seed] = len(person_ref)
            ref_of.append(person_ref.get(rec.identity_seed, -1))
            if len(buf) == batch or i == len(jobs):
                x = torch.stack(buf).to(dev.device)
                with dev.autocast():
                    post = vae.encode(x).latent_dist
                    portraits = [j for j, k in enumerate(kinds) if k == "portrait"]
                    if portraits and references:
                        # the IP-Adapter's reference is what the app locks: a generated portrait, so train on
                        # the VAE's reconstruction of the rendered one (closer to a model output than the render)
                        rec_img = vae.decode(post.mean[portraits]).sample.float()
                        refs.append(((rec_img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
                means.append((post.mean.float() * sf).half().cpu())
                stds.append((post.std.float() * sf).half().cpu())
                buf, kinds = [], []
                if len(means) % 20 == 0 or i == len(jobs):
                    log(f"encoded {i}/{len(jobs)} ({time.perf_counter() - t0:.0f} s)")
    latents = torch.cat(means)
    data = {
        "format": FORMAT,
        "latents": latents,
        "latent_std": torch.cat(stds),
        "captions": [r.caption for r in records],
        "theme": theme,
        # references[ref_of[i]] = the (reconstructed) portrait of record i's person; portraits are their own
        "references": torch.cat(refs) if refs else None,
        "ref_of": torch.tensor(ref_of, dtype=torch.long) if references else None,
        "is_portrait": torch.tensor([r.kind == "portrait" for r in records]),
        "records": [{k: v for k, v in r.to_json().items() if k != "file"} for r in records],
        "scaling_factor": sf,
        "resolution": size,
        "seed": seed,
        "vae": str(Path(vae_dir).resolve()),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(data, tmp)
    tmp.replace(out)
    # a small sidecar, so a pipeline runner can tell which VAE a (large) latent file belongs to without loading it
    meta = ({k: data[k] for k in ("format", "scaling_factor", "resolution", "seed", "vae", "theme")}
            | {"n": len(records)})
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    people = len({r.identity_seed for r in records})
    portraits = sum(r.kind == "portrait" for r in records)
    log(f"wrote {len(records)} latents {tuple(latents.shape[1:])} of {people} people ({portraits} portraits) to "
        f"{out}; latent std {latents.float().std():.3f} (scaled), {time.perf_counter() - t0:.0f} s")
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.training.encode_corpus",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--vae", required=True, type=Path, help="VAE folder written by train_vae")
    ap.add_argument("--n", required=True, type=int, help="number of training images")
    ap.add_argument("--out", required=True, type=Path, help="output .pt file")
    ap.add_argument("--seed", type=int, default=0, help="corpus master seed (same seed -> same people and photos)")
    ap.add_argument("--batch", type=int, default=16,
                    help="VAE encode batch (16 is fastest per image on a CPU; use 256 on a GPU)")
    ap.add_argument("--workers", type=int, default=0, help="render processes (0/1: in-process)")
    ap.add_argument("--size", type=int, default=None, help="image size (default: the VAE's sample_size)")
    ap.add_argument("--theme", default="none",
                    help="render every photo in this theme, captioned without theme words (none: the base model's "
                         "corpus; fantasy/vintage: a theme LoRA's); 'drawn' keeps each person's drawn theme + words")
    ap.add_argument("--no-references", action="store_true",
                    help="skip the reconstructed reference portraits (the IP-Adapter's training pairs)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be at least 1")
    encode(args.vae, args.n, args.out, args.seed, args.batch, args.workers, args.device, args.threads,
           args.size, log=lambda msg: print(msg, file=sys.stderr, flush=True),
           theme=None if args.theme == "drawn" else args.theme, references=not args.no_references)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
