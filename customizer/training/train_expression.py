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
import random
import time
from typing import Any, Callable

import numpy as np

CLOSE_UP = "close-up"


def render_batch(seed: int, n: int, framing: str | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """n training renders (uint8 N x 128 x 128 x 3) and {"expression": indices}; deterministic in seed."""
    from ..likeness.instruments import catalogue_heads
    from .render import Identity, Variation, random_attrs, render
    from .train_instruments import _train_seed

    expressions = catalogue_heads()["expression"]
    rng = random.Random(f"expression-batch:{seed}")
    images, labels = [], []
    for _ in range(n):
        var = Variation.sample(rng.randrange(2**31 - 1), framing=framing)
        images.append(np.asarray(render(random_attrs(rng), Identity.sample(_train_seed(rng)), var, 128), np.uint8))
        labels.append(expressions.index(var.expression))
    return np.stack(images), {"expression": np.asarray(labels, np.int64)}


def held_out_set(per_framing: int = 105, salt: str = "expression-eval") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out people: per framing `per_framing` renders, the expressions in turn. (images, expression, framing)."""
    from ..likeness.instruments import catalogue_heads
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
    from ..likeness.instruments import catalogue_heads
    from .two_stage import predict

    framings = catalogue_heads()["framing"]
    pred = predict(model, images)["expression"]
    out = {"overall": round(float((pred == ye).mean()), 4)}
    out |= {f: round(float((pred[yf == i] == ye[yf == i]).mean()), 4) for i, f in enumerate(framings)}
    return out | {"n": int(len(images))}


def train(closeup_steps: int, steps: int, batch: int = 64, lr: float = 2e-3, lr2: float = 1e-3, seed: int = 0,
          workers: int = 1, eval_per_framing: int = 105, eval_every: int = 200,
          log: Callable[[str], None] = print) -> tuple[Any, dict[str, Any]]:
    """Stage 1: closeup_steps on close-ups at lr; stage 2: steps on every framing at lr2 (two_stage.train)."""
    from . import two_stage
    from ..likeness.instruments import catalogue_heads

    t = time.perf_counter()
    held = held_out_set(eval_per_framing)
    log(f"held-out set: {len(held[0])} renders in {time.perf_counter() - t:.1f}s")
    stages = [two_stage.Stage(closeup_steps, CLOSE_UP, lr), two_stage.Stage(steps, None, lr2)]
    return two_stage.train({"expression": catalogue_heads()["expression"]}, render_batch, stages,
                           lambda model: evaluate(model, *held), batch, seed, workers, eval_every, log)


def main(argv: list[str] | None = None) -> int:
    from .two_stage import add_common_args, finish

    ap = argparse.ArgumentParser(prog="python -m customizer.training.train_expression",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--closeup-steps", type=int, default=800, help="stage 1 steps: close-ups only")
    ap.add_argument("--steps", type=int, default=1600, help="stage 2 steps: every framing")
    ap.add_argument("--eval-per-framing", type=int, default=105)
    add_common_args(ap, "expression")
    args = ap.parse_args(argv)
    if args.closeup_steps < 0 or args.steps < 0 or args.closeup_steps + args.steps < 1:
        ap.error("--closeup-steps and --steps must be >= 0, together at least 1")
    return finish(args, "expression", "train_expression", argv, lambda log: train(
        args.closeup_steps, args.steps, args.batch, args.lr, args.lr2, args.seed, args.workers,
        args.eval_per_framing, log=log))


if __name__ == "__main__":
    raise SystemExit(main())
