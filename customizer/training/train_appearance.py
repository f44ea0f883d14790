"""Train the appearance instrument: a classifier of its own for the character attributes (hair ... theme).

    python -m customizer.training.train_appearance --out DIR [--portrait-steps 1000] [--steps 1400] [--threads 1]

Why a separate model: the joint instruments' attribute heads read renderer ground-truth portraits at 0.47 on
average (eye colour 0.17, at chance, though the eyes are ten pixels wide in a 128 px portrait), so the eval's
attribute figures had a ceiling far below the issue's bar. The joint trunk is shared with the likeness encoder and
trained on a batch that is mostly identity groups. Alone, with the recipe of train_expression.py (two_stage.py),
a classifier learns them: stage 1 on close-up studio portraits (what eval scores attribute accuracy on), stage 2 on
half portraits, half selfies of any scene, expression and framing (what eval scores attribute consistency on).

Every image is a fresh render of a training-split person (corpus.is_held_out excludes the held-out 10%) with
random attributes (render.random_attrs: the app catalogue); the held-out check renders held-out people: portraits,
and selfies with the framings in turn. Writes DIR/appearance.safetensors + DIR/appearance.json (fp16, the
AttributeClassifier architecture with the attribute heads), its meta holding each stage's steps and seconds and
the held-out accuracy per attribute on portraits and on selfies. Instruments.load uses it for those heads.
"""
from __future__ import annotations

import argparse
import random
import time
from typing import Any, Callable

import numpy as np

PORTRAITS = "portrait"
# attributes a close-up hides (a collar and shoulders): scored again on the wide framings, where they show
HIDDEN_IN_CLOSE_UP = ("body_type", "outfit")
WIDE_FRAMINGS = ("half body", "full body")


def heads() -> dict[str, list[str]]:
    from ..likeness.instruments import ATTRIBUTE_KEYS, catalogue_heads

    cat = catalogue_heads()
    return {k: cat[k] for k in ATTRIBUTE_KEYS}


def _labels(attrs: list[dict], names: dict[str, list[str]]) -> dict[str, np.ndarray]:
    return {k: np.asarray([v.index(a[k]) for a in attrs], np.int64) for k, v in names.items()}


def render_batch(seed: int, n: int, kind: str | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """n training renders (uint8 N x 128 x 128 x 3) and their attribute indices; deterministic in seed.
    kind "portrait": all close-up studio portraits; None: the first half portraits, the rest any shot."""
    from .corpus import PORTRAIT
    from .render import Identity, Variation, random_attrs, render
    from .train_instruments import _train_seed

    rng = random.Random(f"appearance-batch:{seed}")
    images, attrs = [], []
    for j in range(n):
        a = random_attrs(rng)
        shot = PORTRAIT if kind == PORTRAITS or j < n // 2 else {}
        var = Variation.sample(rng.randrange(2**31 - 1), **shot)
        images.append(np.asarray(render(a, Identity.sample(_train_seed(rng)), var, 128), np.uint8))
        attrs.append(a)
    return np.stack(images), _labels(attrs, heads())


def held_out_set(n: int = 280, salt: str = "appearance-eval") -> dict[str, Any]:
    """Held-out people: n portraits and n selfies (framings in turn, scenes and expressions random)."""
    from .corpus import PORTRAIT
    from ..likeness.instruments import catalogue_heads
    from .render import Identity, Variation, random_attrs, render
    from .train_instruments import split_seeds

    framings = catalogue_heads()["framing"]
    seeds = iter(split_seeds(2 * n, held_out=True, salt=salt))
    rng = random.Random(salt)
    out: dict[str, Any] = {}
    for kind in (PORTRAITS, "selfie"):
        images, attrs, shot_framings = [], [], []
        for j in range(n):
            a = random_attrs(rng)
            shot = PORTRAIT if kind == PORTRAITS else {"framing": framings[j % len(framings)]}
            var = Variation.sample(rng.randrange(2**31 - 1), **shot)
            images.append(np.asarray(render(a, Identity.sample(next(seeds)), var, 128), np.uint8))
            attrs.append(a)
            shot_framings.append(var.framing)
        out[kind] = (np.stack(images), _labels(attrs, heads()), np.asarray(shot_framings))
    return out


def evaluate(model, held: dict[str, Any]) -> dict[str, Any]:
    """Accuracy per attribute (+ mean) on the held-out portraits and selfies, and the attributes a close-up hides
    on the wide framings."""
    from .two_stage import predict

    out: dict[str, Any] = {}
    for kind, (images, labels, framings) in held.items():
        pred = predict(model, images)
        acc = {k: round(float((pred[k] == labels[k]).mean()), 4) for k in labels}
        out[kind] = acc | {"mean": round(float(np.mean(list(acc.values()))), 4), "n": int(len(images))}
        if kind != PORTRAITS:
            wide = np.isin(framings, WIDE_FRAMINGS)
            out[f"{kind}_wide"] = {k: round(float((pred[k][wide] == labels[k][wide]).mean()), 4)
                                   for k in HIDDEN_IN_CLOSE_UP} | {"n": int(wide.sum())}
    return out


def train(portrait_steps: int, steps: int, batch: int = 64, lr: float = 2e-3, lr2: float = 1e-3, seed: int = 0,
          workers: int = 1, eval_n: int = 280, eval_every: int = 200,
          log: Callable[[str], None] = print) -> tuple[Any, dict[str, Any]]:
    """Stage 1: portrait_steps on portraits at lr; stage 2: steps on half portraits, half selfies at lr2."""
    from . import two_stage

    t = time.perf_counter()
    held = held_out_set(eval_n)
    log(f"held-out set: {2 * eval_n} renders in {time.perf_counter() - t:.1f}s")
    stages = [two_stage.Stage(portrait_steps, PORTRAITS, lr), two_stage.Stage(steps, None, lr2)]
    return two_stage.train(heads(), render_batch, stages, lambda model: evaluate(model, held), batch, seed, workers,
                           eval_every, log)


def main(argv: list[str] | None = None) -> int:
    from .two_stage import add_common_args, finish

    ap = argparse.ArgumentParser(prog="python -m customizer.training.train_appearance",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--portrait-steps", type=int, default=1000, help="stage 1 steps: close-up studio portraits")
    ap.add_argument("--steps", type=int, default=1400, help="stage 2 steps: half portraits, half any shot")
    ap.add_argument("--eval-n", type=int, default=280, help="held-out portraits (and as many selfies)")
    add_common_args(ap, "appearance")
    args = ap.parse_args(argv)
    if args.portrait_steps < 0 or args.steps < 0 or args.portrait_steps + args.steps < 1:
        ap.error("--portrait-steps and --steps must be >= 0, together at least 1")
    return finish(args, "appearance", "train_appearance", argv, lambda log: train(
        args.portrait_steps, args.steps, args.batch, args.lr, args.lr2, args.seed, args.workers, args.eval_n,
        log=log))


if __name__ == "__main__":
    raise SystemExit(main())
