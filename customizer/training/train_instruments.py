"""Train the measuring instruments (likeness/instruments.py) on on-the-fly renders of TRAIN-split identities.

    python -m customizer.training.train_instruments --out DIR [--steps N] [--max-minutes M] [--device auto]

Batches are rendered on the fly (in a worker process): `groups` attribute combinations (render.random_attrs),
each worn by `ids_per_group` different hidden people (render.Identity; corpus.is_held_out False), each photographed
`views` times (the first view is the designer's reference portrait half the time, the others random scene,
expression, framing, lighting; a quarter of the views swap the theme, a few the outfit), plus `singles` one-off
photos of other people with their own attributes (diverse batches for the attribute heads, extra negatives). A step
trains on --per-step batches, the least used of a small replay buffer, fresh ones first (each batch is used at most
--max-uses times, re-augmented each time), so a slow renderer on a busy CPU never idles the trainer. The same
images train both models, which share their trunk during training (one pass through it per image) and are saved
as two standalone models: the identity encoder with a supervised-contrastive loss over people (people with the
same attributes are the hard negatives) and the attribute classifier with one cross-entropy per head.

Afterwards both models are saved (fp16 safetensors + JSON) and measured on held-out identities (never rendered in
training): per-head accuracy on random selfies and on reference portraits, and identity verification
(reference portrait vs selfie of the same person, against other people's references; half of those share every
attribute), threshold at <= 5 % false accepts. Everything goes to DIR/instruments_report.json.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .corpus import PORTRAIT, _seed, is_held_out
from ..likeness.instruments import (AttributeClassifier, IdentityEncoder, Instruments, catalogue_heads, n_params,
                          save_instrument, to_tensor, verification)
from .render import Identity, Variation, random_attrs, render

MAX_FAR = 0.05
THEMES = ("none", "fantasy", "vintage")


# ---- identities and batches ------------------------------------------------------------------------------------

def split_seeds(n: int, held_out: bool, salt: str) -> list[int]:
    """n identity seeds of one split (deterministic in salt)."""
    out, i = [], 0
    while len(out) < n:
        s = _seed("instrument-identity", salt, i)
        i += 1
        if is_held_out(s) == held_out:
            out.append(s)
    return out


def _train_seed(rng: random.Random) -> int:
    while True:
        s = rng.randrange(2**31 - 1)
        if not is_held_out(s):
            return s


def _view_attrs(attrs: dict, rng: random.Random, vary: bool) -> dict:
    a = dict(attrs)
    if vary:
        if rng.random() < 0.25:
            a["theme"] = rng.choice([t for t in THEMES if t != attrs["theme"]])
        if rng.random() < 0.1:
            from ..character import catalogue

            a["outfit"] = rng.choice(list(catalogue()["outfit"].choices))
        a["theme_strength"] = 1.0 if rng.random() < 0.6 else round(rng.uniform(0.5, 1.0), 3)
    return a


def labels_of(attrs: dict, var: Variation, heads: dict[str, list[str]]) -> list[int]:
    values = {**attrs, "scene": var.scene, "expression": var.expression, "framing": var.framing}
    return [heads[k].index(values[k]) for k in heads]


def make_batch(seed: int, groups: int = 4, ids_per_group: int = 2, views: int = 4, singles: int = 32,
               size: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one training batch: (images uint8 N x size x size x 3, labels N x heads, person index N).

    `groups` attribute combinations x `ids_per_group` people sharing it x `views` photos each (the identity
    structure), then `singles` one-off photos of other people with their own random attributes: they keep the
    attribute heads' batches diverse and are extra negatives for the identity loss.
    """
    rng = random.Random(f"instrument-batch:{seed}")
    heads = catalogue_heads()
    images, labels, people = [], [], []

    def shoot(attrs: dict, ident: Identity, portrait: bool, person: int) -> None:
        vseed = rng.randrange(2**31 - 1)
        var = Variation.sample(vseed, **PORTRAIT) if portrait else Variation.sample(vseed)
        a = _view_attrs(attrs, rng, vary=True)
        images.append(np.asarray(render(a, ident, var, size), np.uint8))
        labels.append(labels_of(a, var, heads))
        people.append(person)

    for g in range(groups):
        attrs = random_attrs(rng)
        for p in range(ids_per_group):
            ident = Identity.sample(_train_seed(rng))
            for v in range(views):
                shoot(attrs, ident, v == 0 and rng.random() < 0.5, g * ids_per_group + p)
    for k in range(singles):
        shoot(random_attrs(rng), Identity.sample(_train_seed(rng)), rng.random() < 0.15,
              groups * ids_per_group + k)
    return np.stack(images), np.asarray(labels, np.int64), np.asarray(people, np.int64)


class BatchStream:
    """Rendered batches with a small replay buffer: renders run ahead in `workers` processes (0: in this process,
    one fresh batch per step) and `take()` returns the least-used buffered batches, so training never idles while
    the renderer is slow (each batch is used at most `max_uses` times, with fresh augmentation every time)."""

    def __init__(self, seed: int, workers: int = 1, prefetch: int = 3, max_uses: int = 4, buffer: int = 16,
                 **batch_kwargs):
        self.seed, self.kw, self.k = seed, batch_kwargs, 0
        self.max_uses, self.buffer_size, self.prefetch = max_uses, buffer, prefetch
        self.buffer: list[list] = []  # [batch, uses, order]
        self.pool = None
        self.pending: list = []
        self.wait_seconds = 0.0
        self.rendered = 0
        if workers > 0:
            import multiprocessing as mp

            self.pool = mp.get_context("spawn" if sys.platform == "darwin" else "fork").Pool(
                workers, initializer=_worker_init)
            for _ in range(prefetch):
                self._submit()

    def _submit(self) -> None:
        self.pending.append(self.pool.apply_async(make_batch, (_seed(self.seed, self.k),), self.kw))
        self.k += 1

    def _add(self, batch) -> None:
        self.rendered += 1
        self.buffer.append([batch, 0, self.rendered])
        if len(self.buffer) > self.buffer_size:  # drop the most used (oldest among equals)
            del self.buffer[max(range(len(self.buffer)), key=lambda i: (self.buffer[i][1], -self.buffer[i][2]))]

    def _collect(self, block: bool) -> None:
        if self.pool is None:
            if block:
                self._add(make_batch(_seed(self.seed, self.k), **self.kw))
                self.k += 1
            return
        t = time.perf_counter()
        while self.pending and (self.pending[0].ready() or block):
            self._add(self.pending.pop(0).get())
            self._submit()
            block = False
        self.wait_seconds += time.perf_counter() - t

    def take(self, n: int = 2) -> list:
        """n distinct batches (fewer while the buffer fills), least used first, newest among equals."""
        self._collect(block=self.pool is None or not self.buffer
                      or min(e[1] for e in self.buffer) >= self.max_uses)
        chosen = sorted(self.buffer, key=lambda e: (e[1], -e[2]))[:n]
        chosen = [e for e in chosen if e[1] < self.max_uses] or chosen[:1]
        for e in chosen:
            e[1] += 1
        return [e[0] for e in chosen]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None


def _worker_init() -> None:
    torch.set_num_threads(1)


def concat(batches: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join batches; person indices are offset so people of different batches stay different."""
    images, labels, people, offset = [], [], [], 0
    for im, lab, who in batches:
        images.append(im)
        labels.append(lab)
        people.append(who + offset)
        offset += int(who.max()) + 1
    return np.concatenate(images), np.concatenate(labels), np.concatenate(people)


# ---- losses and augmentation -------------------------------------------------------------------------------------

def supcon_loss(z: torch.Tensor, people: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) over unit embeddings z with person labels."""
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(eye, float("-inf"))
    logprob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (people[:, None] == people[None, :]) & ~eye
    per = -logprob.masked_fill(~pos, 0.0).sum(1) / pos.sum(1).clamp(min=1)
    return per[pos.any(1)].mean()


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Mild, label-preserving: +-8 % scale, +-5 % shift, some blur, +-4 % brightness/contrast, a little noise.

    No flips (the parting side and mark side are identity traits) and no hue changes (colours are labels).
    """
    n = x.shape[0]

    def u(lo, hi, *shape):
        return torch.rand(*(shape or (n,)), generator=g) * (hi - lo) + lo

    s = u(0.92, 1.08)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
    theta[:, 0, 2], theta[:, 1, 2] = u(-0.05, 0.05), u(-0.05, 0.05)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    blur = u(0, 1) < 0.3
    if blur.any():
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :] / 16).expand(3, 1, 3, 3)
        x = torch.where(blur[:, None, None, None], F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=3), x)
    x = (x - 0.5) * u(0.96, 1.04)[:, None, None, None] + 0.5 + u(-0.04, 0.04)[:, None, None, None]
    x = x + torch.randn(x.shape, generator=g) * u(0.0, 0.02)[:, None, None, None]
    return x.clamp_(0, 1)


# ---- training ----------------------------------------------------------------------------------------------------

@dataclass
class StepResult:
    identity_loss: float
    attribute_loss: float
    attribute_batch_acc: float
    identity_batch_top1: float


class Trainer:
    """Both instruments and one optimisation step on a rendered batch.

    The two models share one trunk while training (one forward and backward through it per image, half the CPU
    cost; the attribute labels also teach the trunk what to look at) and are saved as two standalone models.
    """

    def __init__(self, device: str = "cpu", lr: float = 2e-3, weight_decay: float = 1e-4,
                 temperature: float = 0.1, augment: bool = True, seed: int = 0, attribute_weight: float = 2.0):
        torch.manual_seed(seed)
        self.device = device
        self.heads = catalogue_heads()
        self.identity = IdentityEncoder().to(device)
        self.attributes = AttributeClassifier(self.heads).to(device)
        self.attributes.trunk = self.identity.trunk
        self.temperature, self.augment, self.lr = temperature, augment, lr
        self.attribute_weight = attribute_weight  # the mean over 11 heads; weighted up so the trunk serves both
        self.gen = torch.Generator().manual_seed(seed)
        self.opt = torch.optim.AdamW(_param_groups(torch.nn.ModuleList([self.identity, self.attributes]),
                                                   weight_decay), lr=lr)

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def step(self, batch: tuple[np.ndarray, np.ndarray, np.ndarray]) -> StepResult:
        images, labels, people = batch
        x = to_tensor(images)
        if self.augment:
            x = augment(x, self.gen)
        x = x.to(self.device)
        y = torch.from_numpy(labels).to(self.device)
        who = torch.from_numpy(people).to(self.device)
        self.identity.train()
        self.attributes.train()
        self.opt.zero_grad(set_to_none=True)
        f = self.identity.trunk(x)
        z = self.identity.from_features(f)
        id_loss = supcon_loss(z, who, self.temperature)
        logits = self.attributes.from_features(f)
        at_losses = [F.cross_entropy(logits[k], y[:, h], label_smoothing=0.05) for h, k in enumerate(self.heads)]
        at_loss = torch.stack(at_losses).mean()
        (id_loss + self.attribute_weight * at_loss).backward()
        torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], 5.0)
        self.opt.step()
        with torch.no_grad():
            acc = torch.stack([(logits[k].argmax(1) == y[:, h]).float().mean()
                               for h, k in enumerate(self.heads)]).mean()
            sim = (z @ z.T).fill_diagonal_(-2)
            has_pos = (who[:, None] == who[None, :]).sum(1) > 1
            top1 = (who[sim.argmax(1)] == who)[has_pos].float().mean()
        return StepResult(id_loss.item(), at_loss.item(), acc.item(), top1.item())


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    params = list(model.parameters())  # deduplicated: the shared trunk once
    decay = [p for p in params if p.ndim > 1]
    rest = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def lr_at(progress: float, base: float, warmup: float = 0.03) -> float:
    """Linear warm-up, then cosine to 2 % of base; progress in [0, 1]."""
    if progress < warmup:
        return base * max(progress / warmup, 0.02)
    t = min(1.0, (progress - warmup) / (1 - warmup))
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def train(steps: int, max_seconds: float | None = None, device: str = "cpu", workers: int = 1, seed: int = 0,
          groups: int = 4, ids_per_group: int = 2, views: int = 4, singles: int = 32, per_step: int = 1,
          max_uses: int = 4,
          lr: float = 2e-3, log: Callable[[str], None] = print,
          log_every: int = 25) -> tuple[Trainer, dict[str, Any]]:
    """Train for `steps` steps or `max_seconds`, whichever ends first (the LR schedule follows the nearer end).

    A step trains on `per_step` rendered batches of groups x ids_per_group x views + singles images."""
    trainer = Trainer(device=device, lr=lr, seed=seed)
    stream = BatchStream(seed, workers=workers, max_uses=max_uses, groups=groups, ids_per_group=ids_per_group,
                         views=views, singles=singles)
    t0 = time.perf_counter()
    history: list[dict[str, Any]] = []
    window: list[StepResult] = []
    step = n_images = 0
    try:
        while step < steps:
            elapsed = time.perf_counter() - t0
            progress = max(step / steps, elapsed / max_seconds if max_seconds else 0.0)
            if progress >= 1.0:
                break
            trainer.set_lr(lr_at(progress, lr))
            batch = concat(stream.take(per_step))
            window.append(trainer.step(batch))
            n_images += len(batch[0])
            step += 1
            if step % log_every == 0 or step == steps:
                mean = {f: float(np.mean([getattr(r, f) for r in window])) for f in StepResult.__dataclass_fields__}
                rec = {"step": step, "seconds": round(time.perf_counter() - t0, 1),
                       "lr": round(lr_at(progress, lr), 6), **{k: round(v, 4) for k, v in mean.items()}}
                history.append(rec)
                window = []
                log(f"step {step:5d}  {rec['seconds']:7.1f}s  id {rec['identity_loss']:.3f} "
                    f"(top1 {rec['identity_batch_top1']:.2f})  attr {rec['attribute_loss']:.3f} "
                    f"(acc {rec['attribute_batch_acc']:.3f})  lr {rec['lr']:.5f}  rendered {stream.rendered} batches, "
                    f"data-wait {stream.wait_seconds:.0f}s")
    finally:
        stream.close()
    seconds = time.perf_counter() - t0
    per_batch = groups * ids_per_group * views + singles
    return trainer, {"steps": step, "images_trained": n_images, "images_rendered": stream.rendered * per_batch,
                     "seconds": round(seconds, 1), "images_per_second": round(n_images / max(seconds, 1e-9), 1),
                     "data_wait_seconds": round(stream.wait_seconds, 1),
                     "batch": {"groups": groups, "ids_per_group": ids_per_group, "views": views, "singles": singles,
                               "batches_per_step": per_step, "max_uses": max_uses},
                     "lr": lr, "seed": seed, "history": history}


# ---- held-out measurement ----------------------------------------------------------------------------------------

def _acc(pairs: list[tuple[str, str]]) -> float | None:
    return round(sum(p == t for p, t in pairs) / len(pairs), 4) if pairs else None


def evaluate_attributes(instr: Instruments, n_selfies: int = 1200, n_portraits: int = 400,
                        salt: str = "eval") -> dict[str, Any]:
    """Per-head accuracy on renders of held-out identities: random selfies, and reference portraits."""
    heads = instr.attributes.heads
    out: dict[str, Any] = {}
    for kind, n in (("selfies", n_selfies), ("portraits", n_portraits)):
        rng = random.Random(f"instrument-eval-attrs:{salt}:{kind}")
        seeds = split_seeds(n, held_out=True, salt=f"{salt}-attrs-{kind}")
        truth, images = [], []
        for s in seeds:
            attrs = random_attrs(rng)
            vseed = rng.randrange(2**31 - 1)
            var = Variation.sample(vseed, **PORTRAIT) if kind == "portraits" else Variation.sample(vseed)
            images.append(render(attrs, Identity.sample(s), var))
            truth.append({**attrs, "scene": var.scene, "expression": var.expression, "framing": var.framing})
        preds = instr.classify(images)
        per_head = {k: _acc([(p[k], t[k]) for p, t in zip(preds, truth)]) for k in heads}
        block: dict[str, Any] = {"n": n, "accuracy": per_head,
                                 "mean_attributes": round(float(np.mean([per_head[k] for k in heads
                                                                         if k not in ("scene", "expression",
                                                                                      "framing")])), 4)}
        if kind == "selfies":
            for by in ("framing", "theme"):
                groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
                for p, t in zip(preds, truth):
                    for k in heads:
                        groups[k][t[by]].append((p[k], t[k]))
                block[f"by_{by}"] = {k: {g: _acc(v) for g, v in sorted(d.items())} for k, d in groups.items()}
            conf: dict[str, dict[str, dict[str, int]]] = {}
            for k in heads:
                c: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
                for p, t in zip(preds, truth):
                    if p[k] != t[k]:
                        c[t[k]][p[k]] += 1
                conf[k] = {t: dict(sorted(v.items(), key=lambda kv: -kv[1])) for t, v in c.items()}
            block["confusions"] = conf
        out[kind] = block
    return out


def identity_scores(instr: Instruments, n_people: int = 200, selfies: int = 4,
                    salt: str = "eval") -> dict[str, list[float]]:
    """Held-out people in pairs that share every attribute; each gets a reference portrait and `selfies` photos.

    Returns cosine scores: same (selfie vs own reference), different_same_attrs (vs the twin's reference) and
    different_other (vs a random other person's reference, usually other attributes).
    """
    rng = random.Random(f"instrument-eval-identity:{salt}")
    seeds = split_seeds(n_people + n_people % 2, held_out=True, salt=f"{salt}-identity")
    refs, shots, owner = [], [], []
    attrs = None
    for i, s in enumerate(seeds):
        if i % 2 == 0:
            attrs = random_attrs(rng)
        ident = Identity.sample(s)
        refs.append(render(attrs, ident, Variation.sample(rng.randrange(2**31 - 1), **PORTRAIT)))
        for _ in range(selfies):
            shots.append(render(attrs, ident, Variation.sample(rng.randrange(2**31 - 1))))
            owner.append(i)
    r, q = instr.embed(refs), instr.embed(shots)
    sim = q @ r.T
    n = len(refs)
    same, twin, other = [], [], []
    for j, i in enumerate(owner):
        same.append(float(sim[j, i]))
        twin.append(float(sim[j, i ^ 1]))
        k = rng.randrange(n - 1)
        other.append(float(sim[j, k if k < i else k + 1]))
    return {"same": same, "different_same_attrs": twin, "different_other": other}


def evaluate_identity(instr: Instruments, n_people: int = 200, selfies: int = 4, salt: str = "eval") -> dict:
    sc = identity_scores(instr, n_people, selfies, salt)
    diff = sc["different_same_attrs"] + sc["different_other"]
    return {"n_people": n_people, "selfies_per_person": selfies,
            "same_mean": round(float(np.mean(sc["same"])), 4),
            "different_mean": round(float(np.mean(diff)), 4),
            "different_same_attrs_mean": round(float(np.mean(sc["different_same_attrs"])), 4),
            "different_other_mean": round(float(np.mean(sc["different_other"])), 4),
            "verification": _rounded(verification(sc["same"], diff, MAX_FAR)),
            "verification_same_attrs_only": _rounded(verification(sc["same"], sc["different_same_attrs"], MAX_FAR))}


def _rounded(d: dict) -> dict:
    """Rates to 4 decimals for reading; the threshold stays exact (rounding it would move the operating point)."""
    return {k: (round(v, 4) if isinstance(v, float) and k != "threshold" else v) for k, v in d.items()}


def speed_ms_per_image(instr: Instruments, batch: int = 64, repeats: int = 3) -> dict[str, float]:
    x = torch.rand(batch, 3, 128, 128).to(instr.device)
    out = {}
    with torch.inference_mode():
        for name, model in (("identity", instr.identity), ("attributes", instr.attributes)):
            model(x)
            best = min(_timed(model, x) for _ in range(repeats))
            out[name] = round(best / batch * 1000, 2)
    return out


def _timed(model, x) -> float:
    t = time.perf_counter()
    model(x)
    return time.perf_counter() - t


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.training.train_instruments",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--steps", type=int, default=3000, help="training steps (batches)")
    ap.add_argument("--max-minutes", type=float, default=None, help="stop training after this many minutes")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--workers", type=int, default=1, help="render processes (0: render in this process)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--groups", type=int, default=4, help="attribute combinations per batch")
    ap.add_argument("--ids-per-group", type=int, default=2, help="people sharing each combination")
    ap.add_argument("--views", type=int, default=4, help="photos per person per batch")
    ap.add_argument("--singles", type=int, default=32, help="one-off photos of other people per batch")
    ap.add_argument("--per-step", type=int, default=1, help="rendered batches per training step")
    ap.add_argument("--max-uses", type=int, default=4, help="times a rendered batch may be trained on")
    ap.add_argument("--eval-people", type=int, default=160, help="held-out people for verification")
    ap.add_argument("--eval-images", type=int, default=900, help="held-out selfies for attribute accuracy")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be at least 1")
    torch.set_num_threads(max(1, args.threads))
    device = pick_device(args.device)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    trainer, training = train(args.steps, args.max_minutes * 60 if args.max_minutes else None, device=device,
                              workers=args.workers, seed=args.seed, groups=args.groups,
                              ids_per_group=args.ids_per_group, views=args.views, singles=args.singles,
                              per_step=args.per_step,
                              max_uses=args.max_uses, lr=args.lr, log=log)
    meta = {"training": {k: v for k, v in training.items() if k != "history"}}
    save_instrument(trainer.identity, args.out, meta)
    save_instrument(trainer.attributes, args.out, meta)
    log("saved; measuring on held-out identities")
    instr = Instruments.load(args.out, device)
    attributes = evaluate_attributes(instr, n_selfies=args.eval_images, n_portraits=max(1, args.eval_images // 3))
    identity = evaluate_identity(instr, n_people=args.eval_people)
    # the calibrated threshold travels with the encoder (eval.py applies it to model outputs too)
    save_instrument(instr.identity, args.out, meta | {"verification": identity["verification"]})
    report = {
        "attributes": attributes, "identity": identity, "training": training,
        "models": {"identity_params": n_params(instr.identity), "attributes_params": n_params(instr.attributes),
                   "identity_bytes": (args.out / "identity.safetensors").stat().st_size,
                   "attributes_bytes": (args.out / "attributes.safetensors").stat().st_size,
                   "ms_per_image_batched": speed_ms_per_image(instr), "torch_threads": torch.get_num_threads(),
                   "device": device},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (args.out / "instruments_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    acc = attributes["selfies"]["accuracy"]
    pacc = attributes["portraits"]["accuracy"]
    log("held-out accuracy (selfies / portraits):")
    for k in acc:
        log(f"  {k:12s} {acc[k]:.3f} / {pacc[k]:.3f}")
    v = identity["verification"]
    log(f"identity: same {identity['same_mean']:.3f}  different {identity['different_mean']:.3f}  "
        f"verification acc {v['accuracy']:.3f} (tar {v['tar']:.3f} at far {v['far']:.3f}, thr {v['threshold']:.3f})")
    log(f"wrote {args.out / 'instruments_report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
