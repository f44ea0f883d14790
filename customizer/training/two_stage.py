"""Two-stage training of a classifier of its own: an AttributeClassifier with chosen heads, on fresh renders.

The joint instruments (train_instruments.py) share one trunk between the likeness encoder and every head, and some
heads stay near chance even on renderer ground truth. A classifier trained alone does better, but only with a
warm-up on an easy slice of the renders (the face filling the frame): trained from scratch on the real mix, it
stays at chance too. So stage 1 trains on the easy slice, stage 2 on the distribution the eval scores.

Used by train_expression.py (the expression head) and train_appearance.py (the character attributes). Each gives
a picklable `render_fn(seed, n, kind) -> (uint8 N x 128 x 128 x 3, {head: int64 labels})`, deterministic in seed,
and a `score_fn(model) -> dict` for the held-out check.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

RenderFn = Callable[[int, int, "str | None"], tuple[np.ndarray, dict[str, np.ndarray]]]


@dataclass(frozen=True)
class Stage:
    steps: int
    kind: str | None  # handed to render_fn: which renders this stage trains on
    lr: float


def predict(model, images: np.ndarray, batch: int = 128) -> dict[str, np.ndarray]:
    """{head: predicted class index} for uint8 images, in eval mode (the model is put back in train mode)."""
    import torch

    from ..likeness.instruments import to_tensor

    model.eval()
    with torch.inference_mode():
        outs = [model(to_tensor(images[i:i + batch])) for i in range(0, len(images), batch)]
    model.train()
    return {k: torch.cat([o[k].argmax(1) for o in outs]).numpy() for k in model.heads}


def train(heads: dict[str, list[str]], render_fn: RenderFn, stages: list[Stage], score_fn: Callable[[Any], dict],
          batch: int = 64, seed: int = 0, workers: int = 1, eval_every: int = 200,
          log: Callable[[str], None] = print) -> tuple[Any, dict[str, Any]]:
    """Each stage its own warm-up and cosine schedule (train_instruments.lr_at); the loss is the mean of the heads'
    cross-entropies. Batches render `workers` processes ahead (0: in this process)."""
    import torch
    import torch.nn.functional as F

    from ..likeness.instruments import AttributeClassifier, to_tensor
    from .train_instruments import _param_groups, augment, lr_at

    torch.manual_seed(seed)
    model = AttributeClassifier(heads)
    opt = torch.optim.AdamW(_param_groups(model, 1e-4), lr=stages[0].lr)
    gen = torch.Generator().manual_seed(seed)
    meta: dict[str, Any] = {"batch": batch, "seed": seed, "stages": [], "curve": []}
    pool = ProcessPoolExecutor(workers) if workers > 0 else None
    try:
        for stage, st in enumerate(stages):
            if st.steps <= 0:
                continue
            seeds = [seed * 10_000_000 + stage * 1_000_000 + k for k in range(st.steps)]

            def fetch(k: int, seeds=seeds, st=st):  # this stage's seeds and kind, bound now
                args = (seeds[k], batch, st.kind)
                return pool.submit(render_fn, *args) if pool else args

            ahead = [fetch(k) for k in range(min(2 * max(workers, 1), st.steps))]
            t0, losses = time.perf_counter(), []
            for k in range(st.steps):
                job = ahead.pop(0)
                images, labels = job.result() if pool else render_fn(*job)
                if k + len(ahead) + 1 < st.steps:
                    ahead.append(fetch(k + len(ahead) + 1))
                for group in opt.param_groups:
                    group["lr"] = lr_at(k / st.steps, st.lr)
                logits = model(augment(to_tensor(images), gen))
                loss = torch.stack([F.cross_entropy(logits[h], torch.from_numpy(labels[h]), label_smoothing=0.05)
                                    for h in heads]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
                losses.append(loss.item())
                if (k + 1) % eval_every == 0 or k + 1 == st.steps:
                    rec = {"stage": stage + 1, "step": k + 1, "loss": round(float(np.mean(losses[-eval_every:])), 4),
                           "seconds": round(time.perf_counter() - t0, 1), "held_out": score_fn(model)}
                    meta["curve"].append(rec)
                    log(json.dumps(rec))
            meta["stages"].append({"stage": stage + 1, "kind": st.kind or "all", "steps": st.steps, "lr": st.lr,
                                   "seconds": round(time.perf_counter() - t0, 1)})
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    meta["held_out"] = score_fn(model)
    return model, meta


# ---- the command line both trainers share ------------------------------------------------------------------------

def add_common_args(ap, name: str) -> None:
    ap.add_argument("--out", required=True, help=f"instruments folder ({name}.safetensors + .json go there)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3, help="stage 1 learning rate")
    ap.add_argument("--lr2", type=float, default=1e-3, help="stage 2 learning rate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="render processes (0: render in this process)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training process")


def finish(args, name: str, module: str, argv: list[str] | None,
           run: Callable[[Callable[[str], None]], tuple[Any, dict[str, Any]]]) -> int:
    """Train (run(log)) with args.threads torch threads, save DIR/<name>.* with the wall time and the command in
    its meta, print a JSON summary line."""
    import sys

    import torch

    from ..likeness.instruments import save_instrument

    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    model, meta = run(lambda m: print(m, file=sys.stderr, flush=True))
    meta |= {"seconds": round(time.perf_counter() - t, 1), "threads": args.threads, "workers": args.workers,
             "command": f"python -m customizer.training.{module} " + " ".join(argv or sys.argv[1:])}
    path = save_instrument(model, args.out, meta, name=name)
    print(json.dumps({"out": str(path), "held_out": meta["held_out"], "seconds": meta["seconds"]}))
    return 0
