"""Synthetic training corpus: several photos of each of many random people, with captions from the app's prompts.

    python -m customizer.training.corpus --out DIR --n N --seed S [--size 128] [--sheet] [--workers W]

writes DIR/images/NNNNNN.png, DIR/metadata.jsonl (one record per image: file, identity_seed, split, attrs,
variation, kind, caption) and with --sheet DIR/contact_sheet.png (rows = identities, columns = their photos).

Each identity gets `per_identity` images (4-8, drawn per identity): the first is the designer's reference portrait
(studio, neutral, close-up, captioned with the portrait prompt), the rest are selfies with random scene,
expression, framing and lighting. Identities are split into train / held-out by a hash of their seed
(`is_held_out`), so a held-out person never appears in training under any variation.

For on-the-fly training, `plan()` lists records without drawing anything and `render_record()` draws one.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .render import Identity, Variation, caption, random_attrs, render

HELD_OUT_PERCENT = 10
MIN_PER_IDENTITY, MAX_PER_IDENTITY = 4, 8
PORTRAIT = {"scene": "studio", "expression": "neutral", "framing": "close-up"}


def is_held_out(identity_seed: int) -> bool:
    """Deterministic identity split: about HELD_OUT_PERCENT % of identities are held out of training."""
    digest = hashlib.sha256(f"identity-split:{int(identity_seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < HELD_OUT_PERCENT


def _seed(*parts) -> int:
    """A stable 31-bit seed from any parts (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass
class Record:
    index: int
    identity_seed: int
    attrs: dict
    variation: Variation
    kind: str                  # "portrait" or "selfie"
    caption: str
    split: str = field(default="train")

    @property
    def file(self) -> str:
        return f"images/{self.index:06d}.png"

    def to_json(self) -> dict:
        return {"file": self.file, "index": self.index, "identity_seed": self.identity_seed, "split": self.split,
                "attrs": self.attrs, "variation": self.variation.to_dict(), "kind": self.kind,
                "caption": self.caption}


def identity_records(identity_seed: int, start_index: int = 0, count: int | None = None,
                     theme: str | None = None) -> list[Record]:
    """All photos of one person: the portrait first, then selfies.

    theme: None keeps the drawn theme and captions it with the catalogue's theme words (the instruments' corpus);
    a theme name renders every photo in that theme and captions it WITHOUT theme words - the bundled model's
    base is trained on theme "none" and each theme is a LoRA whose strength, not a prompt word, sets the look.
    """
    rng = random.Random(_seed("attrs", identity_seed))
    attrs = random_attrs(rng)
    if count is None:
        count = rng.randint(MIN_PER_IDENTITY, MAX_PER_IDENTITY)
    caption_attrs = attrs
    if theme is not None:
        attrs = {**attrs, "theme": theme}
        caption_attrs = {**attrs, "theme": "none"}
    split = "held_out" if is_held_out(identity_seed) else "train"
    out = []
    for m in range(count):
        vseed = _seed("variation", identity_seed, m)
        if m == 0:
            var, kind = Variation.sample(vseed, **PORTRAIT), "portrait"
        else:
            var, kind = Variation.sample(vseed), "selfie"
        cap = caption(caption_attrs, var, random.Random(_seed("caption", identity_seed, m)), kind=kind)
        out.append(Record(start_index + m, identity_seed, attrs, var, kind, cap, split))
    return out


def reference_captions(records: list[dict], themed: bool) -> list[str]:
    """Each stored record's caption without the look (the app's selfie_from_reference prompt), for the samples a
    base run conditions on the person's reference (train_base --appearance-drop). A portrait keeps its caption (it
    is never conditioned on a reference); a selfie keeps its quality words exactly when its caption does.
    themed: the records were rendered in one theme and captioned without theme words (encode_corpus --theme)."""
    from .render.people import without_quality

    out = []
    for rec in records:
        if rec["kind"] != "selfie":
            out.append(rec["caption"])
            continue
        attrs = {**rec["attrs"], "theme": "none"} if themed else rec["attrs"]
        text = caption(attrs, Variation(**rec["variation"]), random.Random(0), kind="selfie_from_reference")
        out.append(text if without_quality(rec["caption"]) != rec["caption"] else without_quality(text))
    return out


def iter_plan(seed: int, theme: str | None = None) -> Iterator[Record]:
    """An endless, deterministic stream of records for master seed `seed`, person by person (theme: see
    identity_records)."""
    index = 0
    person = 0
    while True:
        recs = identity_records(_seed("identity", seed, person), index, theme=theme)
        yield from recs
        index += len(recs)
        person += 1


def plan(n: int, seed: int) -> list[Record]:
    """The first n records of iter_plan(seed) (the last person may get fewer photos)."""
    out = []
    for rec in iter_plan(seed):
        if len(out) >= n:
            break
        out.append(rec)
    return out


def render_record(rec: Record, size: int = 128) -> Image.Image:
    return render(rec.attrs, Identity.sample(rec.identity_seed), rec.variation, size)


def _render_job(job: tuple[Record, int, str]) -> str:
    rec, size, out = job
    render_record(rec, size).save(Path(out) / rec.file, optimize=False, compress_level=1)
    return rec.file


def contact_sheet(records: list[Record], size: int = 128, max_rows: int = 8, max_cols: int = 8,
                  images: dict[int, Image.Image] | None = None) -> Image.Image:
    """Rows = identities (in order of appearance), columns = their photos."""
    rows: dict[int, list[Record]] = {}
    for rec in records:
        if rec.identity_seed not in rows and len(rows) >= max_rows:
            continue
        rows.setdefault(rec.identity_seed, []).append(rec)
    ncols = min(max_cols, max((len(v) for v in rows.values()), default=1))
    pad = 2
    sheet = Image.new("RGB", (ncols * (size + pad) + pad, max(1, len(rows)) * (size + pad) + pad), (24, 24, 28))
    for r, recs in enumerate(rows.values()):
        for c, rec in enumerate(recs[:ncols]):
            img = images.get(rec.index) if images else None
            if img is None:
                img = render_record(rec, size)
            sheet.paste(img, (pad + c * (size + pad), pad + r * (size + pad)))
    return sheet


def write_corpus(out: Path, n: int, seed: int, size: int = 128, sheet: bool = False, workers: int = 1) -> list[Record]:
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records = plan(n, seed)
    jobs = [(rec, size, str(out)) for rec in records]
    if workers > 1:
        from multiprocessing import Pool
        with Pool(workers) as pool:
            for _ in pool.imap_unordered(_render_job, jobs, chunksize=16):
                pass
    else:
        for job in jobs:
            _render_job(job)
    with open(out / "metadata.jsonl", "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec.to_json(), ensure_ascii=False) + "\n")
    if sheet:
        images = {}
        for rec in records:
            path = out / rec.file
            images[rec.index] = Image.open(path).convert("RGB")
        contact_sheet(records, size, images=images).save(out / "contact_sheet.png")
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.training.corpus", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--n", required=True, type=int, help="number of images")
    ap.add_argument("--seed", type=int, default=0, help="master seed (same seed -> same corpus)")
    ap.add_argument("--size", type=int, default=128, help="image size in pixels")
    ap.add_argument("--sheet", action="store_true", help="also write contact_sheet.png")
    ap.add_argument("--workers", type=int, default=1, help="render processes")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be at least 1")
    if args.size < 16:
        ap.error("--size must be at least 16")
    records = write_corpus(args.out, args.n, args.seed, args.size, args.sheet, args.workers)
    held = sum(r.split == "held_out" for r in records)
    people = len({r.identity_seed for r in records})
    print(f"wrote {len(records)} images of {people} identities ({held} held-out images) to {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
