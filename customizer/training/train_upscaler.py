"""Train the bundled profile's learned 2x upscaler (customizer/engine/sr_net.py) on the procedural renderer.

    python -m customizer.training.train_upscaler --vae assets/bundled/vae --out runs/upscaler --steps N
        [--pairs 2000] [--batch 16] [--crop 48] [--max-minutes M] [--resume]

Pairs: the input is a train-split render at --size (128) through the VAE's round trip (encode, posterior mean,
decode, rounded to uint8), since the model's pictures are VAE decodes; the target is the same picture rendered at
twice the size (the renderer draws any size). They are made once into --out/pairs.pt (reused by a resumed run,
rebuilt when --vae, --size, --pairs, --seed or --eval-images change), with the held-out pairs of the report: the
first --eval-images photos of held-out people (train_vae's eval set), never trained on. Making them is the
expensive part on a CPU (the VAE round trip: about 0.1 s a picture on one core).

Training: random --crop windows of the pairs (input crop, target 2 x crop at the same place, random horizontal
flip), drawn from (seed, step) alone so a resumed run sees the same batches; loss L1 + --edge-weight x L1 between
image gradients (train_vae.edge_l1); AdamW, warmup + cosine (common.lr_at). Every --eval-every steps the held-out
figures are logged (event "eval": PSNR, edge error, sharpness): the learning curve.

Writes into --out: upscaler.json + upscaler.safetensors (the folder a profile's `upscaler:` names; also at every
checkpoint), checkpoint.pt, log.jsonl, report.json (held-out PSNR / gradient error / sharpness of bicubic,
upscale.lanczos2x and the net against the true 2x render, seconds per picture of each, and the curve) and
grid.png (rows: held-out pictures; columns: the input at 2x nearest | lanczos2x | learned | renderer at 2x).
"""
from __future__ import annotations

from . import common  # first: sets OMP_WAIT_POLICY before torch loads

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..bench.vae_roundtrip import roundtrip_tensor
from ..engine import sr_net, upscale
from .train_vae import EVAL_SEED, edge_l1

PAIRS = "pairs.pt"
REPORT = "report.json"
GRID = "grid.png"
PAIRS_FORMAT = 1


# ---- pairs ----------------------------------------------------------------------------------------------------

def _render_pair(job) -> tuple[np.ndarray, np.ndarray]:
    """(HWC uint8 at size, HWC uint8 at 2 x size) of one record (no torch in workers)."""
    from .corpus import render_record

    rec, size = job
    return (np.asarray(render_record(rec, size).convert("RGB")),
            np.asarray(render_record(rec, 2 * size).convert("RGB")))


def make_pairs(vae_dir: Path, records: list, size: int, dev: common.Device, workers: int = 0, batch: int = 16,
               log=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs N x 3 x size x size, targets N x 3 x 2size x 2size), uint8: each record's render through the VAE's
    round trip (posterior mean) and its render at twice the size."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(vae_dir, dtype=torch.float32).to(dev.device).eval()
    lows, highs, buf = [], [], []
    t0 = time.perf_counter()
    with common.mapped(_render_pair, [(r, size) for r in records], workers) as rendered, torch.inference_mode():
        for i, (low, high) in enumerate(rendered, 1):
            buf.append(torch.from_numpy(low.copy()).permute(2, 0, 1))
            highs.append(torch.from_numpy(high.copy()).permute(2, 0, 1))
            if len(buf) == batch or i == len(records):
                with dev.autocast():
                    lows.append(roundtrip_tensor(vae, torch.stack(buf)))
                buf = []
                if log is not None and (len(lows) % 25 == 0 or i == len(records)):
                    log(event="pairs", made=i, of=len(records), seconds=round(time.perf_counter() - t0, 1))
    return torch.cat(lows), torch.stack(highs)


def pairs_meta(args) -> dict[str, Any]:
    from ..engine.fingerprint import local_fingerprint

    return {"format": PAIRS_FORMAT, "vae": str(Path(args.vae).resolve()),
            "vae_fingerprint": local_fingerprint(args.vae), "size": int(args.size), "pairs": int(args.pairs),
            "seed": int(args.seed), "eval_images": int(args.eval_images), "eval_seed": EVAL_SEED}


def load_or_make_pairs(args, dev: common.Device, log: common.JsonlLog) -> dict[str, Any]:
    """--out/pairs.pt when it was made with the same meta, else made now (and saved atomically)."""
    path = args.out / PAIRS
    meta = pairs_meta(args)
    if path.exists():
        data = torch.load(path, map_location="cpu", weights_only=False)
        if data.get("meta") == meta:
            return data
        log.write(event="pairs_stale", path=str(path), was=data.get("meta"))
    t0 = time.perf_counter()
    train_recs = [common.train_record(args.seed, "upscaler", i) for i in range(args.pairs)]
    eval_recs = common.held_out_records(EVAL_SEED, args.eval_images)
    train_x, train_y = make_pairs(args.vae, train_recs, args.size, dev, args.workers, log=log.write)
    eval_x, eval_y = make_pairs(args.vae, eval_recs, args.size, dev, args.workers)
    data = {"meta": meta, "train_x": train_x, "train_y": train_y, "eval_x": eval_x, "eval_y": eval_y,
            "eval_records": [{k: v for k, v in r.to_json().items() if k != "file"} for r in eval_recs]}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(data, tmp)
    tmp.replace(path)
    seconds = time.perf_counter() - t0
    log.write(event="pairs_made", train=len(train_recs), eval=len(eval_recs), seconds=round(seconds, 1),
              seconds_per_pair=round(seconds / max(1, len(train_recs) + len(eval_recs)), 4),
              mb=round(path.stat().st_size / 1e6, 1))
    return data


def crops(data: dict[str, Any], seed: int, step: int, batch: int, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of step: (B,3,crop,crop) inputs and (B,3,2crop,2crop) targets in [0, 1], from (seed, step) alone."""
    x_all, y_all = data["train_x"], data["train_y"]
    side = x_all.shape[-1]
    crop = min(int(crop), side)
    g = common.step_generator(seed, "upscaler-batch", step)
    pick = torch.randint(len(x_all), (batch,), generator=g).tolist()
    tops = torch.randint(side - crop + 1, (batch,), generator=g).tolist()
    lefts = torch.randint(side - crop + 1, (batch,), generator=g).tolist()
    flips = torch.rand(batch, generator=g).lt(0.5).tolist()
    xs, ys = [], []
    for i, t, left, flip in zip(pick, tops, lefts, flips):
        x = x_all[i, :, t:t + crop, left:left + crop]
        y = y_all[i, :, 2 * t:2 * (t + crop), 2 * left:2 * (left + crop)]
        if flip:
            x, y = x.flip(-1), y.flip(-1)
        xs.append(x)
        ys.append(y)
    return torch.stack(xs).float() / 255.0, torch.stack(ys).float() / 255.0


# ---- figures ---------------------------------------------------------------------------------------------------

def figures(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Held-out figures of 2x pictures against the renderer's (both (N,3,H,W) in [0, 1], pred rounded to uint8
    levels as shipped): psnr (dB, mean over pictures), edge_l1 (L1 between image gradients, as train_vae; lower
    is better: blur and ringing both cost), sharpness (mean gradient magnitude / the renderer's; 1 = as sharp)."""
    pred = (pred.float().clamp(0, 1) * 255).round() / 255
    target = target.float()
    mse = ((pred - target) ** 2).flatten(1).mean(1).clamp(min=1e-10)

    def grad(t: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((t[..., :, 1:] - t[..., :, :-1]).abs().mean() + (t[..., 1:, :] - t[..., :-1, :]).abs().mean())

    return {"psnr": float((10 * torch.log10(1 / mse)).mean()), "edge_l1": float(edge_l1(pred, target)),
            "sharpness": float(grad(pred) / grad(target).clamp(min=1e-8))}


def pil_batch(images: list[Image.Image]) -> torch.Tensor:
    return torch.cat([sr_net.to_tensor(im) for im in images])


def pictures(t: torch.Tensor) -> list[Image.Image]:
    """uint8 (N,3,H,W) -> PIL pictures."""
    return [Image.fromarray(x.permute(1, 2, 0).numpy(), "RGB") for x in t]


@torch.no_grad()
def run_net(net: sr_net.SRNet, x_uint8: torch.Tensor, device: torch.device, batch: int = 8) -> torch.Tensor:
    was = net.training
    net.eval()
    out = [net(x_uint8[i:i + batch].to(device).float() / 255.0).float().cpu() for i in range(0, len(x_uint8), batch)]
    net.train(was)
    return torch.cat(out)


def classical(data: dict[str, Any]) -> dict[str, Any]:
    """The baselines on the held-out pairs: bicubic (the net's starting point) and upscale.lanczos2x."""
    x, y = data["eval_x"].float() / 255.0, data["eval_y"].float() / 255.0
    lanczos = pil_batch([upscale.lanczos2x(im) for im in pictures(data["eval_x"])])
    return {"bicubic": figures(sr_net.SRNet.base(x).clamp(0, 1), y), "lanczos2x": figures(lanczos, y)}


def seconds_per_image(fn, images: list[Image.Image], repeats: int = 3) -> float:
    """Median seconds of fn(image) (after one warm-up call)."""
    fn(images[0])
    times = []
    for _ in range(repeats):
        for im in images:
            t = time.perf_counter()
            fn(im)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def report(out: Path, data: dict[str, Any], step: int, steps: int, seconds: float, log: common.JsonlLog,
           grid_rows: int) -> dict[str, Any]:
    """report.json and grid.png from the saved folder (the fp16 weights a profile loads), on the held-out pairs."""
    up = sr_net.SRUpscaler(out)
    inputs = pictures(data["eval_x"])
    learned = pil_batch([up.upscale(im) for im in inputs])
    y = data["eval_y"].float() / 255.0
    base = classical(data)
    timing = inputs[:8]
    rep = {
        "step": step, "steps": steps, "train_seconds": round(seconds, 1), "held_out_pictures": len(inputs),
        "size": [inputs[0].width, 2 * inputs[0].width], "against": "the renderer's picture at 2x",
        "input": "the renderer's picture through the VAE round trip (posterior mean), uint8",
        "figures": {**base, "learned": figures(learned, y)},
        "seconds_per_image": {
            "lanczos2x": round(seconds_per_image(upscale.lanczos2x, timing), 5),
            "learned": round(seconds_per_image(up.upscale, timing), 5),
            "torch_threads": torch.get_num_threads()},
        "curve": [{k: r[k] for k in ("step", "seconds", "psnr", "edge_l1", "sharpness")}
                  for r in log.read() if r.get("event") == "eval"],
        "net": json.loads((out / sr_net.CONFIG).read_text(encoding="utf-8")),
    }
    (out / REPORT).write_text(json.dumps(rep, indent=2) + "\n", encoding="utf-8")
    rows = []
    for i, im in enumerate(inputs[:grid_rows]):
        big = (im.width * 2, im.height * 2)
        rows.append([im.resize(big, Image.NEAREST), upscale.lanczos2x(im), sr_net.to_image(learned[i]),
                     pictures(data["eval_y"][i:i + 1])[0]])
    if rows:
        common.grid(rows).save(out / GRID)
    return rep


# ---- training ----------------------------------------------------------------------------------------------------

def net_geometry(args) -> str:
    """What a checkpoint must match to be resumed (common.resume_point's geometry)."""
    return f"{sr_net.KIND}:c{args.channels}:l{args.layers}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.training.train_upscaler",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="run directory: the upscaler folder, pairs, checkpoint")
    ap.add_argument("--vae", required=True, type=Path, help="AutoencoderKL folder whose round trip makes the inputs")
    ap.add_argument("--steps", required=True, type=int, help="total optimizer steps (a resumed run continues to it)")
    ap.add_argument("--batch", type=int, default=16, help="crops per step (default 16)")
    ap.add_argument("--crop", type=int, default=48, help="input crop side in pixels (the target's is twice)")
    ap.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    ap.add_argument("--warmup", type=int, default=None, help="LR warmup steps (default: min(500, steps // 10))")
    ap.add_argument("--edge-weight", type=float, default=0.5, help="weight of the image-gradient L1")
    ap.add_argument("--channels", type=int, default=48, help="channels of the net's convolutions")
    ap.add_argument("--layers", type=int, default=5, help="3x3 convolutions at the low resolution (with the last)")
    ap.add_argument("--size", type=int, default=128, help="input side of the pairs (the target's is twice)")
    ap.add_argument("--pairs", type=int, default=2000, help="training pairs to make (train-split people)")
    ap.add_argument("--eval-images", type=int, default=64, help="held-out pairs of the curve and the report")
    ap.add_argument("--grid", type=int, default=8, help="held-out pictures in grid.png")
    ap.add_argument("--workers", type=int, default=1, help="render processes while making pairs (0/1: in-process)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    ap.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda ...")
    ap.add_argument("--seed", type=int, default=0, help="master seed (init, pairs, batches)")
    ap.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    ap.add_argument("--schedule-change", action="store_true",
                    help="resume a checkpoint made with other --steps/--lr/--warmup/--batch (recorded in the log)")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="wall-clock budget of this invocation, pairs included: stop cleanly when spent")
    common.add_stop_at(ap)
    ap.add_argument("--log-every", type=int, default=50, help="steps between log lines")
    ap.add_argument("--eval-every", type=int, default=500, help="steps between held-out evaluations (the curve)")
    ap.add_argument("--ckpt-every", type=int, default=500, help="steps between checkpoints (+ the upscaler folder)")
    args = ap.parse_args(argv)
    for name in ("steps", "batch", "crop", "pairs", "eval_images", "channels"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.layers < 2:
        ap.error("--layers must be at least 2")
    if args.size < 16 or args.size % 8:
        ap.error("--size must be a multiple of 8, at least 16")
    if not (args.vae / "config.json").is_file():
        ap.error(f"--vae {args.vae}: no AutoencoderKL folder (config.json) there")

    budget = common.Budget(args.max_minutes)
    dev = common.pick_device(args.device, args.threads)
    out: Path = args.out
    state = common.prepare_out(out, args.resume)
    log = common.JsonlLog(out / common.LOG)
    common.seed_everything(args.seed)
    data = load_or_make_pairs(args, dev, log)

    net = sr_net.SRNet(args.channels, args.layers).to(dev.device)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    step, seconds = 0, 0.0
    if state is not None:
        step, seconds = common.resume_point(state, net_geometry(args), args, log)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if state.get("pairs") != data["meta"]:
            log.write(event="data_change", step=step, was=state.get("pairs"), now=data["meta"])
        log.write(event="resume", step=step, device=dev.describe())
    else:
        log.write(event="start", device=dev.describe(), params=common.param_count(net), geometry=net_geometry(args),
                  steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr, edge_weight=args.edge_weight,
                  pairs=len(data["train_x"]), eval_images=len(data["eval_x"]), **classical(data))
    warmup = common.default_warmup(args)
    trained_on = {"renderer": "customizer/training/render", "input": "VAE round trip (posterior mean), uint8",
                  "vae": data["meta"]["vae"], "vae_fingerprint": data["meta"]["vae_fingerprint"],
                  "size": [args.size, 2 * args.size], "pairs": len(data["train_x"]), "seed": args.seed,
                  "crop": args.crop, "batch": args.batch, "lr": args.lr, "edge_weight": args.edge_weight}
    eval_y = data["eval_y"].float() / 255.0

    def evaluate() -> None:
        fig = figures(run_net(net, data["eval_x"], dev.device), eval_y)
        log.write(event="eval", step=step, seconds=round(seconds, 1), **fig)

    def checkpoint(final: bool = False) -> None:
        sr_net.save(net, out, trained_on | {"steps": step})
        common.save_checkpoint(out / common.CHECKPOINT, {
            "step": step, "seconds": seconds, "model": net.state_dict(), "opt": opt.state_dict(),
            "geometry": net_geometry(args), "schedule": common.schedule_of(args), "pairs": data["meta"],
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}})
        log.write(event="final" if final else "checkpoint", step=step, seconds=round(seconds, 1))

    if step == 0:
        evaluate()
    net.train()
    acc, acc_n, t_last = {}, 0, time.perf_counter()
    end = common.end_step(args)
    stopped = "steps" if end == args.steps else "stop-at"
    while step < end:
        if budget.expired():
            stopped = "max-minutes"
            break
        t0 = time.perf_counter()
        x, y = crops(data, args.seed, step, args.batch, args.crop)
        x, y = x.to(dev.device), y.to(dev.device)
        lr = common.lr_at(step, args.lr, warmup, args.steps)
        for g in opt.param_groups:
            g["lr"] = lr
        with dev.autocast():
            pred = net(x)
        pred = pred.float()
        l1 = F.l1_loss(pred, y)
        edge = edge_l1(pred, y)
        loss = l1 + args.edge_weight * edge
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        seconds += time.perf_counter() - t0
        for k, v in {"loss": loss.item(), "l1": l1.item(), "edge": edge.item(), "grad_norm": float(gnorm)}.items():
            acc[k] = acc.get(k, 0.0) + v
        acc_n += 1
        if step % args.log_every == 0 or step == args.steps:
            now = time.perf_counter()
            log.write(step=step, **{k: v / acc_n for k, v in acc.items()}, lr=lr, seconds=round(seconds, 2),
                      s_per_step=round((now - t_last) / acc_n, 4))
            acc, acc_n, t_last = {}, 0, now
        if step % args.eval_every == 0 and step < args.steps:
            evaluate()
        if step % args.ckpt_every == 0 and step < args.steps:
            checkpoint()
    log_steps = [r for r in log.read() if r.get("event") == "eval"]
    if not log_steps or log_steps[-1]["step"] != step:
        evaluate()
    checkpoint(final=True)
    rep = report(out, data, step, args.steps, seconds, log, args.grid)
    log.write(event="report", step=step, **{f"{k}_psnr": v["psnr"] for k, v in rep["figures"].items()},
              seconds_per_image=rep["seconds_per_image"])
    print(f"train_upscaler: stopped at step {step}/{args.steps} ({stopped}); upscaler in {out}, report "
          f"{out / REPORT}, grid {out / GRID}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
