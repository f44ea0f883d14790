"""Plumbing shared by the training recipes (train_vae, encode_corpus, train_base).

Device and precision (CUDA: bf16 autocast over fp32 weights; CPU: fp32), seeding, resumable checkpoints (model +
optimizer + EMA + step + RNG states, written atomically), a JSONL training log, the --max-minutes wall-clock
budget, the learning-rate schedule, an EMA of weights, and the on-the-fly training images (train-split people
only, drawn from the same distribution as corpus.py).

Import this module before torch where it matters: it sets OMP_WAIT_POLICY=PASSIVE, without which OpenMP worker
threads spin-wait and a 2-core CPU shared with other processes runs 5-20x slower (measured: one UNet step 0.2 s
passive vs 1.3-5.9 s spinning).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # only effective before torch (libgomp) is first loaded

import argparse
import contextlib
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"


# ---- device, precision, seeding ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Device:
    device: torch.device
    autocast_dtype: torch.dtype | None   # None: plain fp32

    @property
    def type(self) -> str:
        return self.device.type

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def describe(self) -> str:
        prec = str(self.autocast_dtype).replace("torch.", "") + " autocast" if self.autocast_dtype else "fp32"
        if self.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)}), {prec}"
        return f"{self.type} ({torch.get_num_threads()} threads), {prec}"


def pick_device(name: str = "auto", threads: int | None = None) -> Device:
    """auto: CUDA with bf16 autocast when available (fp32 weights, so optimizer state stays exact), else CPU fp32."""
    if threads:
        torch.set_num_threads(int(threads))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return Device(dev, torch.bfloat16 if torch.cuda.is_bf16_supported() else None)
    return Device(dev, None)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError, ValueError):  # different GPU count: data order does not use it
            torch.cuda.set_rng_state_all(state["cuda"])


def step_generator(*parts) -> torch.Generator:
    """A CPU generator seeded from parts (e.g. seed, "noise", step): per-step randomness that a resumed run
    reproduces exactly without replaying earlier steps."""
    return torch.Generator().manual_seed(stable_seed(*parts))


def stable_seed(*parts) -> int:
    from .corpus import _seed
    return _seed(*parts)


# ---- checkpoints, log, budget ------------------------------------------------------------------------------------

def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """torch.save via a temporary file + rename, so an interrupted save never leaves a truncated checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**state, "rng": rng_state()}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, restore_rng: bool = True) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: holds RNG tuples
    if restore_rng and "rng" in state:
        set_rng_state(state["rng"])
    return state


# what a resumed run must share with the run it continues: the LR warmup and cosine are functions of these, so a
# change would silently re-derive the schedule mid-run (the shipped base was started at 3,500 steps and resumed at
# 2,500 without a word)
SCHEDULE_KEYS = ("steps", "lr", "warmup", "batch")


def schedule_of(args) -> dict[str, Any]:
    """The schedule a run was started with (stored in its checkpoints, compared on resume)."""
    return {"steps": int(args.steps), "lr": float(args.lr), "warmup": default_warmup(args), "batch": int(args.batch)}


def resume_point(state: dict[str, Any], geometry: str, args=None, log: JsonlLog | None = None) -> tuple[int, float]:
    """(step, seconds) to continue from; refuses a checkpoint made for another geometry, and (given args) one made
    with another schedule unless args.schedule_change is set, in which case the change is written to the log."""
    if state.get("geometry") != geometry:
        raise SystemExit(f"checkpoint geometry {state.get('geometry')!r} != --geometry {geometry!r}")
    if args is not None and state.get("schedule") is not None:
        old, new = state["schedule"], schedule_of(args)
        changed = {k: [old.get(k), new[k]] for k in SCHEDULE_KEYS if old.get(k) != new[k]}
        if changed:
            if not getattr(args, "schedule_change", False):
                what = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
                raise SystemExit(f"the checkpoint was made with another schedule ({what}): resume with the same "
                                 "arguments, or pass --schedule-change to continue on the new schedule (recorded in "
                                 "the log)")
            if log is not None:
                log.write(event="schedule_change", step=int(state["step"]), changed=changed)
    return int(state["step"]), float(state["seconds"])


def prepare_out(out: Path, resume: bool) -> dict[str, Any] | None:
    """Create out; with --resume return its checkpoint (None if there is none yet). Without --resume refuse to
    start over an existing run (that would silently mix two runs' logs and files)."""
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT
    if ckpt.exists():
        if not resume:
            raise SystemExit(f"{ckpt} exists: pass --resume to continue that run, or choose another --out")
        return load_checkpoint(ckpt)
    if resume:
        print(f"no checkpoint in {out}: starting a new run", file=sys.stderr)
    return None


def start_run(args) -> tuple[dict[str, Any], Device, Path, dict[str, Any] | None, "JsonlLog"]:
    """A stage's (geometry, device, out, checkpoint to resume or None, log), seeded: the common opening of the
    trainers whose first step after it builds their model."""
    geo = geometry(args.geometry)
    dev = pick_device(args.device, args.threads)
    out: Path = args.out
    state = prepare_out(out, args.resume)
    log = JsonlLog(out / LOG)
    seed_everything(args.seed)
    return geo, dev, out, state, log


class JsonlLog:
    """One JSON object per line, flushed as written (tail -f friendly); appends across resumed runs."""

    def __init__(self, path: str | Path, echo: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.echo = echo

    def write(self, **record: Any) -> None:
        record = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in record.items()}
        line = json.dumps(record)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        if self.echo:
            print(line, file=sys.stderr, flush=True)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


class Budget:
    """--max-minutes: wall-clock budget of this invocation (0 or None: unlimited)."""

    def __init__(self, max_minutes: float | None):
        self.start = time.monotonic()
        self.limit = float(max_minutes) * 60 if max_minutes else None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def expired(self) -> bool:
        return self.limit is not None and self.elapsed >= self.limit


def lr_at(step: int, base: float, warmup: int, total: int, final_ratio: float = 0.1) -> float:
    """Linear warmup to `base`, then cosine down to base * final_ratio at `total` (a function of step only, so a
    resumed run continues the same curve)."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(1.0, max(0.0, (step - warmup) / span))
    return base * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


# ---- EMA --------------------------------------------------------------------------------------------------------

class EMA:
    """Exponential moving average of a model's floating-point parameters, with the usual warmup
    (decay_t = min(decay, (1 + t) / (10 + t))) so short runs are not dominated by the random init."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.shadow = {k: p.detach().clone().float() for k, p in model.named_parameters()}
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, p in model.named_parameters():
            self.shadow[k].lerp_(p.detach().float(), 1 - d)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module):
        """Temporarily load the EMA weights into model (for sampling / saving); restores the training weights."""
        backup = {k: p.detach().clone() for k, p in model.named_parameters()}
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(self.shadow[k].to(p.device, p.dtype))
        try:
            yield model
        finally:
            with torch.no_grad():
                for k, p in model.named_parameters():
                    p.copy_(backup[k])

    def to(self, device) -> EMA:
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": {k: v.cpu() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        dev = next(iter(self.shadow.values())).device
        self.shadow = {k: v.to(dev) for k, v in state["shadow"].items()}


# ---- images -----------------------------------------------------------------------------------------------------

def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> float CHW in [-1, 1] (the VAE's convention)."""
    arr = np.asarray(img.convert("RGB"), np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def to_pil(t: torch.Tensor) -> Image.Image:
    arr = ((t.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def grid(rows: list[list[Image.Image]], pad: int = 2, bg=(24, 24, 28)) -> Image.Image:
    w, h = rows[0][0].size
    ncols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (ncols * (w + pad) + pad, len(rows) * (h + pad) + pad), bg)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            sheet.paste(img, (pad + c * (w + pad), pad + r * (h + pad)))
    return sheet


# ---- training images --------------------------------------------------------------------------------------------

def train_record(seed: int, *key):
    """One random photo of a random train-split person (same distribution as the corpus: 4-8 photos per person,
    the first a studio portrait), deterministic in (seed, key)."""
    from . import corpus

    k = 0
    while True:
        ident = corpus._seed("train-identity", seed, *key, k)
        if not corpus.is_held_out(ident):
            break
        k += 1
    recs = corpus.identity_records(ident)
    return recs[random.Random(corpus._seed("pick", seed, *key)).randrange(len(recs))]


def held_out_records(seed: int, n: int, per_identity: int = 2) -> list:
    """The first n photos of held-out people in corpus order (iter_plan(seed)), at most per_identity each:
    fixed evaluation images that training never sees."""
    from . import corpus

    out, count = [], {}
    for rec in corpus.iter_plan(seed):
        if rec.split != "held_out" or count.get(rec.identity_seed, 0) >= per_identity:
            continue
        count[rec.identity_seed] = count.get(rec.identity_seed, 0) + 1
        out.append(rec)
        if len(out) >= n:
            return out
    return out


class RenderStream(torch.utils.data.Dataset):
    """Global sample index -> rendered training image (CHW, [-1, 1]). Index = step * batch + b, so the data a
    step sees depends only on (seed, step): resuming needs no data-loader state, and workers need no sharding.
    detail=True adds each image's detail masks (2HW: irises, then expression; detail_mask.detail_masks): (image,
    masks) pairs. crop=C returns a CxC
    window instead of the whole picture, centred on a random detail pixel (eyes, brows, mouth) with probability
    face_share, anywhere otherwise: a convolutional VAE learns the same mapping from windows, and the compute
    goes where the small things are. Consecutive indices share one picture (crops_per_image windows of it), so
    a window costs a fraction of a render: drawing a picture and its mask (three renders) costs more than the
    VAE's step on a 64 px window."""

    def __init__(self, seed: int, size: int, length: int, detail: bool = False, crop: int | None = None,
                 face_share: float = 0.5, crops_per_image: int = 4):
        self.seed, self.size, self.length, self.detail = seed, size, length, detail
        self.crop, self.face_share = crop, face_share
        self.per_image = max(1, int(crops_per_image)) if crop else 1
        self._last: tuple[int, tuple] | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        from .corpus import render_record

        picture = int(i) // self.per_image
        if self._last is not None and self._last[0] == picture:
            x, mask = self._last[1]
        else:
            rec = train_record(self.seed, picture)
            img = render_record(rec, self.size)
            if not self.detail and not self.crop:
                return to_tensor(img)
            from .detail_mask import detail_masks

            mask = torch.from_numpy(detail_masks(rec, self.size, np.asarray(img, np.float32)))
            x = to_tensor(img)
            self._last = (picture, (x, mask))
        if self.crop:
            x, mask = self._window(x, mask, random.Random(stable_seed("crop", self.seed, int(i))))
        return (x, mask) if self.detail else x

    def _window(self, x: torch.Tensor, mask: torch.Tensor, rng: random.Random):
        c, side = int(self.crop), x.shape[-1]
        ys, xs = torch.nonzero(mask.amax(0) > 0, as_tuple=True)
        if len(ys) and rng.random() < self.face_share:
            k = rng.randrange(len(ys))
            cy, cx = int(ys[k]) + rng.randint(-c // 4, c // 4), int(xs[k]) + rng.randint(-c // 4, c // 4)
        else:
            cy, cx = rng.randrange(side), rng.randrange(side)
        top = min(max(cy - c // 2, 0), side - c)
        left = min(max(cx - c // 2, 0), side - c)
        return x[:, top:top + c, left:left + c], mask[:, top:top + c, left:left + c]


def batches(seed: int, size: int, batch: int, start_step: int, end_step: int, workers: int,
            detail: bool = False, crop: int | None = None, face_share: float = 0.5) -> Iterator:
    """Training batches for steps start_step .. end_step-1 (rendered on the fly, `workers` processes)."""
    ds = RenderStream(seed, size, end_step * batch, detail, crop, face_share)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=range(start_step * batch, end_step * batch),
                                         num_workers=workers, persistent_workers=False,
                                         prefetch_factor=4 if workers else None, pin_memory=False)
    yield from loader


# ---- CLI -------------------------------------------------------------------------------------------------------

def add_common_args(ap: argparse.ArgumentParser, default_batch: int) -> None:
    ap.add_argument("--out", required=True, type=Path, help="run directory (checkpoint, log, samples, weights)")
    ap.add_argument("--steps", required=True, type=int, help="total optimizer steps (a resumed run continues to it)")
    ap.add_argument("--batch", type=int, default=default_batch, help=f"batch size (default {default_batch})")
    ap.add_argument("--geometry", default="bundled", help="architectures.yaml entry (default bundled; tests: tiny)")
    ap.add_argument("--seed", type=int, default=0, help="master seed (model init, data, noise)")
    ap.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1 ...")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="wall-clock budget of this invocation: stop cleanly (checkpoint + weights) when spent")
    ap.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    ap.add_argument("--schedule-change", action="store_true",
                    help="resume a checkpoint made with other --steps/--lr/--warmup/--batch (recorded in the log)")
    ap.add_argument("--warmup", type=int, default=None, help="LR warmup steps (default: min(500, steps // 10))")
    ap.add_argument("--log-every", type=int, default=10, help="steps between log lines")
    ap.add_argument("--ckpt-every", type=int, default=500, help="steps between checkpoints")
    ap.add_argument("--sample-every", type=int, default=500, help="steps between sample/reconstruction grids")


def add_stop_at(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--stop-at", type=int, default=None,
                    help="stop cleanly at this step, on the schedule of --steps (a short comparison of two variants, "
                         "or a stage whose learning curve stopped buying: the rest of the schedule stays resumable)")


def end_step(args) -> int:
    """The step this invocation trains to: --steps, or --stop-at when it comes first (the LR schedule stays
    --steps')."""
    return args.steps if getattr(args, "stop_at", None) is None else min(args.steps, args.stop_at)


def default_warmup(args) -> int:
    return args.warmup if args.warmup is not None else min(500, args.steps // 10)


def geometry(name: str) -> dict[str, Any]:
    from ..engine.architectures import geometry as _geometry

    try:
        return _geometry(name)
    except KeyError:
        raise SystemExit(f"unknown --geometry {name!r} (see customizer/data/architectures.yaml)") from None


def latent_factor(geo: dict[str, Any]) -> int:
    """Image side / latent side of a geometry's VAE (as StableDiffusionPipeline computes vae_scale_factor)."""
    return 2 ** (len(geo["vae"]["block_out_channels"]) - 1)


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@contextlib.contextmanager
def mapped(fn, jobs: list, workers: int = 0, chunksize: int = 16):
    """fn over jobs, in order: in `workers` spawned processes when more than one (no torch in them: forked OpenMP
    state is not safe to use), else in this one. The pool is closed on leaving."""
    if workers <= 1:
        yield map(fn, jobs)
        return
    import multiprocessing as mp

    pool = mp.get_context("spawn").Pool(workers)
    try:
        yield pool.imap(fn, jobs, chunksize=chunksize)
    finally:
        pool.close()
        pool.join()
