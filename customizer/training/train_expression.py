"""Train the expression instrument: a classifier of its own for the selfie's facial expression.

    python -m customizer.training.train_expression --out DIR [--closeup-steps 800] [--steps 1600] [--threads 2]

Why a separate model: the joint instruments (train_instruments.py) leave the expression head at chance even on
renderer ground truth. Their portraits are all studio / neutral / close-up, so "neutral" is the best guess for any
close-up whose face the trunk does not read; the head's loss is 1/11 of the attribute loss; and the identity loss on
the shared trunk pushes it to ignore expression (same person, any expression). Trained alone from scratch on the
real framing mix, a classifier also stays at chance (5 of 6 framings show a small face). A close-up warm-up unlocks
it: stage 1 trains on close-ups only (the face fills the frame), stage 2 on the real distribution of framings.

Every image is a fresh render of a training-split person (corpus.is_held_out excludes the held-out 10%) with
random attributes, scene, expression and framing (Variation.sample); the held-out check renders held-out people,
the same number per framing and expression. Writes DIR/expression.safetensors + DIR/expression.json (fp16, the
AttributeClassifier architecture with the one head), its meta holding each stage's steps and seconds and the
held-out accuracy per framing. Instruments.load picks it up for the expression head when present.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

import numpy as np

CLOSE_UP = "close-up"


def render_batch(seed: int, n: int, framing: str | None) -> tuple[np.ndarray, np.ndarray]:
    """n training renders (uint8 N x 128 x 128 x 3) and their expression indices; deterministic in seed."""
    from .instruments import catalogue_heads
    from .render import Identity, Variation, random_attrs, render
    from .train_instruments import _train_seed

    expressions = catalogue_heads()["expression"]
    rng = random.Random(f"expression-batch:{seed}")
    images, labels = [], []
    for _ in range(n):
        var = Variation.sample(rng.randrange(2**31 - 1), framing=framing)
        images.append(np.asarray(render(random_attrs(rng), Identity.sample(_train_seed(rng)), var, 128), np.uint8))
        labels.append(expressions.index(var.expression))
    return np.stack(images), np.asarray(labels, np.int64)


def held_out_set(per_framing: int = 105, salt: str = "expression-eval") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out people: per framing `per_framing` renders, the expressions in turn. (images, expression, framing)."""
    from .instruments import catalogue_heads
    from .render import Identity, Variation, random_attrs, render
    from .train_instruments import split_seeds

    heads = catalogue_heads()
    expressions, framings = heads["expression"], heads["framing"]
    seeds = iter(split_seeds(per_framing * len(framings), held_out=True, salt=salt))
    rng = random.Random(salt)
    images, ye, yf = [], [], []
    for fi, framing in enumerate(framings):
        for j in range(per_framing):
            expression = expressions[j % len(expressions)]
            var = Variation.sample(rng.randrange(2**31 - 1), expression=expression, framing=framing)
            images.append(np.asarray(render(random_attrs(rng), Identity.sample(next(seeds)), var, 128), np.uint8))
            ye.append(j % len(expressions))
            yf.append(fi)
    return np.stack(images), np.asarray(ye), np.asarray(yf)


def evaluate(model, images: np.ndarray, ye: np.ndarray, yf: np.ndarray) -> dict[str, float]:
    import torch

    from .instruments import catalogue_heads, to_tensor

    framings = catalogue_heads()["framing"]
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(to_tensor(images[i:i + 128]))["expression"].argmax(1)
                          for i in range(0, len(images), 128)]).numpy()
    model.train()
    out = {"overall": round(float((pred == ye).mean()), 4)}
    out |= {f: round(float((pred[yf == i] == ye[yf == i]).mean()), 4) for i, f in enumerate(framings)}
    return out


def train(closeup_steps: int, steps: int, batch: int = 64, lr: float = 2e-3, lr2: float = 1e-3, seed: int = 0,
          workers: int = 1, eval_per_framing: int = 105, eval_every: int = 200,
          log: Callable[[str], None] = print) -> tuple[Any, dict[str, Any]]:
    """Stage 1: closeup_steps on close-ups at lr; stage 2: steps on every framing at lr2 (each its own warm-up and
    cosine schedule, train_instruments.lr_at). Batches render `workers` processes ahead (0: in this process)."""
    import torch
    import torch.nn.functional as F

    from .instruments import AttributeClassifier, catalogue_heads, to_tensor
    from .train_instruments import _param_groups, augment, lr_at

    torch.manual_seed(seed)
    model = AttributeClassifier({"expression": catalogue_heads()["expression"]})
    opt = torch.optim.AdamW(_param_groups(model, 1e-4), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    t = time.perf_counter()
    held = held_out_set(eval_per_framing)
    log(f"held-out set: {len(held[0])} renders in {time.perf_counter() - t:.1f}s")
    meta: dict[str, Any] = {"batch": batch, "seed": seed, "stages": [], "curve": []}
    pool = ProcessPoolExecutor(workers) if workers > 0 else None
    try:
        for stage, (n_steps, framing, base_lr) in enumerate(((closeup_steps, CLOSE_UP, lr), (steps, None, lr2))):
            if n_steps <= 0:
                continue
            seeds = [seed * 10_000_000 + stage * 1_000_000 + k for k in range(n_steps)]

            def fetch(k: int):
                args = (seeds[k], batch, framing)
                return pool.submit(render_batch, *args) if pool else args

            ahead = [fetch(k) for k in range(min(2 * max(workers, 1), n_steps))]
            t0, losses = time.perf_counter(), []
            for k in range(n_steps):
                job = ahead.pop(0)
                images, labels = job.result() if pool else render_batch(*job)
                if k + len(ahead) + 1 < n_steps:
                    ahead.append(fetch(k + len(ahead) + 1))
                for group in opt.param_groups:
                    group["lr"] = lr_at(k / n_steps, base_lr)
                logits = model(augment(to_tensor(images), gen))["expression"]
                loss = F.cross_entropy(logits, torch.from_numpy(labels), label_smoothing=0.05)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
                losses.append(loss.item())
                if (k + 1) % eval_every == 0 or k + 1 == n_steps:
                    acc = evaluate(model, *held)
                    rec = {"stage": stage + 1, "step": k + 1, "loss": round(float(np.mean(losses[-eval_every:])), 4),
                           "seconds": round(time.perf_counter() - t0, 1), "held_out": acc}
                    meta["curve"].append(rec)
                    log(json.dumps(rec))
            meta["stages"].append({"stage": stage + 1, "framing": framing or "all", "steps": n_steps, "lr": base_lr,
                                   "seconds": round(time.perf_counter() - t0, 1)})
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    meta["held_out"] = evaluate(model, *held) | {"n": int(len(held[0]))}
    return model, meta


def main(argv: list[str] | None = None) -> int:
    import torch

    from .instruments import save_instrument

    ap = argparse.ArgumentParser(prog="python -m customizer.training.train_expression", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="instruments folder (expression.safetensors + .json go there)")
    ap.add_argument("--closeup-steps", type=int, default=800, help="stage 1 steps: close-ups only")
    ap.add_argument("--steps", type=int, default=1600, help="stage 2 steps: every framing")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3, help="stage 1 learning rate")
    ap.add_argument("--lr2", type=float, default=1e-3, help="stage 2 learning rate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="render processes (0: render in this process)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    ap.add_argument("--eval-per-framing", type=int, default=105)
    args = ap.parse_args(argv)
    if args.closeup_steps < 0 or args.steps < 0 or args.closeup_steps + args.steps < 1:
        ap.error("--closeup-steps and --steps must be >= 0, together at least 1")
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    model, meta = train(args.closeup_steps, args.steps, args.batch, args.lr, args.lr2, args.seed, args.workers,
                        args.eval_per_framing, log=lambda m: print(m, file=sys.stderr, flush=True))
    meta |= {"seconds": round(time.perf_counter() - t, 1), "threads": args.threads, "workers": args.workers,
             "command": "python -m customizer.training.train_expression " + " ".join(argv or sys.argv[1:])}
    path = save_instrument(model, args.out, meta, name="expression")
    print(json.dumps({"out": str(path), "held_out": meta["held_out"], "seconds": meta["seconds"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
