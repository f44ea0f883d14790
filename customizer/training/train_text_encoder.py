"""Pre-train the bundled model's CLIP text encoder on captions alone, then freeze it for the UNet stage.

    python -m customizer.training.train_text_encoder --out runs/text_encoder --steps 400 [--batch 64] [--resume]

The first design trained the text encoder, the UNet and the image encoder from scratch all at once, and the UNet
never bound the attribute words (the adherence probe: hair and eye colour at chance). Here the encoder first learns
to state what a caption says: twelve linear heads on its end-of-text state (the pooled output, which is the last
hidden state at the EOS token: the same space the UNet's cross-attention reads) predict every label of the
caption - the seven character attributes, the age words, portrait or photo, and the scene, expression and framing
of a photo ("unstated" for a portrait, whose prompt names none). No image is needed: captions come from the
corpus plan (train-split people only; held-out people's captions measure it), so it costs minutes.

Writes --out/text_encoder (CLIPTextModel.from_pretrained folder, fp32), --out/tokenizer, --out/heads.safetensors,
--out/report.json (held-out accuracy per head), log.jsonl and checkpoint.pt (resumable like every stage).
"""
from __future__ import annotations

from . import common  # first: sets OMP_WAIT_POLICY before torch loads

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

UNSTATED = "unstated"
CHARACTER_HEADS = ("hair_colour", "hair_style", "hair_length", "eye_colour", "skin_tone", "body_type", "outfit")
SHOT_HEADS = ("scene", "expression", "framing")
HELD_OUT_SEED = 515151


def label_space() -> dict[str, list[str]]:
    """head -> classes: the catalogues' choices (shot heads add 'unstated'), the age words, the caption kind."""
    from ..character import catalogue, selfie_catalogue
    from ..prompts import _templates

    cat, scat = catalogue(), selfie_catalogue()
    heads = {k: list(cat[k].choices) for k in CHARACTER_HEADS}
    heads["age_words"] = [a["words"] for a in _templates()["age_words"]]
    heads["kind"] = ["portrait", "selfie"]
    heads |= {k: [*scat[k].choices, UNSTATED] for k in SHOT_HEADS}
    return heads


def age_words(age: int) -> str:
    from ..prompts import _templates

    return next(a["words"] for a in _templates()["age_words"] if int(age) <= int(a["max"]))


def labels_of(rec, heads: dict[str, list[str]]) -> list[int]:
    """Class index per head (label_space order) of what rec's caption states."""
    values = {k: rec.attrs[k] for k in CHARACTER_HEADS}
    values["age_words"] = age_words(rec.attrs["age"])
    values["kind"] = rec.kind
    for k in SHOT_HEADS:
        values[k] = getattr(rec.variation, k) if rec.kind == "selfie" else UNSTATED
    return [heads[k].index(values[k]) for k in heads]


def caption_set(seed: int, n: int, split: str) -> tuple[list[str], torch.Tensor]:
    """The first n captions of split's people in corpus.iter_plan(seed) and their labels (n x heads)."""
    from .corpus import iter_plan

    heads = label_space()
    caps, labels = [], []
    for rec in iter_plan(seed):
        if rec.split != split:
            continue
        caps.append(rec.caption)
        labels.append(labels_of(rec, heads))
        if len(caps) >= n:
            break
    return caps, torch.tensor(labels, dtype=torch.long)


class Heads(torch.nn.Module):
    """One linear classifier per label on the pooled (EOS) state."""

    def __init__(self, hidden: int, heads: dict[str, list[str]]):
        super().__init__()
        self.names = list(heads)
        self.linears = torch.nn.ModuleList(torch.nn.Linear(hidden, len(heads[k])) for k in self.names)

    def forward(self, pooled: torch.Tensor) -> list[torch.Tensor]:
        return [lin(pooled) for lin in self.linears]


@torch.no_grad()
def accuracy(text_encoder, heads: Heads, ids: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> dict:
    was = text_encoder.training
    text_encoder.eval()
    hits = torch.zeros(len(heads.names))
    for i in range(0, len(ids), batch):
        logits = heads(text_encoder(ids[i:i + batch]).pooler_output)
        hits += torch.stack([(lg.argmax(1) == labels[i:i + batch, j]).float().sum() for j, lg in enumerate(logits)])
    text_encoder.train(was)
    acc = (hits / len(ids)).tolist()
    return {**{k: round(a, 4) for k, a in zip(heads.names, acc)}, "min": round(min(acc), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.training.train_text_encoder",
                                 description=__doc__.split("\n\n")[0])
    common.add_common_args(ap, default_batch=64)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--captions", type=int, default=20000, help="train-split captions to draw batches from")
    ap.add_argument("--held-out", type=int, default=1024, help="held-out captions for the accuracy")
    args = ap.parse_args(argv)

    from safetensors.torch import save_file
    from transformers import CLIPTokenizer

    from ..engine.architectures import build_components, write_clip_tokenizer

    geo, dev, out, state, log = common.start_run(args)
    text_encoder = build_components(geo, args.seed)["text_encoder"].to(dev.device)
    space = label_space()
    heads = Heads(text_encoder.config.hidden_size, space).to(dev.device)
    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(out / "tokenizer"))

    def tokenize(texts: list[str]) -> torch.Tensor:
        return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids

    t0 = time.perf_counter()
    train_caps, train_labels = caption_set(args.seed, args.captions, "train")
    held_caps, held_labels = caption_set(HELD_OUT_SEED, args.held_out, "held_out")
    train_ids, held_ids = tokenize(train_caps), tokenize(held_caps)
    params = [*text_encoder.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    step, seconds = 0, 0.0
    if state is not None:
        step, seconds = common.resume_point(state, args.geometry, args, log)
        text_encoder.load_state_dict(state["text_encoder"])
        heads.load_state_dict(state["heads"])
        opt.load_state_dict(state["opt"])
    warmup = common.default_warmup(args)
    if step == 0:
        log.write(event="start", geometry=args.geometry, device=dev.describe(), params=common.param_count(text_encoder),
                  heads={k: len(v) for k, v in space.items()}, captions=len(train_caps), held_out=len(held_caps),
                  batch=args.batch, steps=args.steps, lr=args.lr, warmup=warmup,
                  data_seconds=round(time.perf_counter() - t0, 1))
    else:
        log.write(event="resume", step=step, device=dev.describe())

    def checkpoint(event: str = "checkpoint") -> dict:
        acc = accuracy(text_encoder, heads, held_ids, held_labels)
        common.save_checkpoint(out / common.CHECKPOINT, {
            "step": step, "seconds": seconds, "text_encoder": text_encoder.state_dict(), "heads": heads.state_dict(),
            "opt": opt.state_dict(), "geometry": args.geometry, "schedule": common.schedule_of(args)})
        log.write(event=event, step=step, seconds=round(seconds, 1), held_out_accuracy=acc)
        return acc

    budget = common.Budget(args.max_minutes)
    text_encoder.train()
    acc_loss, acc_n, stopped = 0.0, 0, "steps"
    while step < args.steps:
        t = time.perf_counter()
        g = common.step_generator(args.seed, "text-step", step)
        idx = torch.randint(len(train_ids), (args.batch,), generator=g)
        lr = common.lr_at(step, args.lr, warmup, args.steps)
        for group in opt.param_groups:
            group["lr"] = lr
        logits = heads(text_encoder(train_ids[idx].to(dev.device)).pooler_output)
        y = train_labels[idx].to(dev.device)
        loss = sum(F.cross_entropy(lg, y[:, j]) for j, lg in enumerate(logits)) / len(logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        seconds += time.perf_counter() - t
        acc_loss, acc_n = acc_loss + loss.item(), acc_n + 1
        if step % args.log_every == 0:
            log.write(step=step, loss=acc_loss / acc_n, lr=lr, seconds=round(seconds, 1))
            acc_loss, acc_n = 0.0, 0
        if step % args.ckpt_every == 0 and step < args.steps:
            checkpoint()
        if budget.expired() and step < args.steps:
            stopped = "max-minutes"
            break
    acc = checkpoint("final")
    text_encoder.save_pretrained(out / "text_encoder", safe_serialization=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}, out / "heads.safetensors")
    (out / "report.json").write_text(json.dumps({"steps": step, "target_steps": args.steps,
                                                 "seconds": round(seconds, 1), "heads": space,
                                                 "held_out_accuracy": acc}, indent=2) + "\n")
    print(f"train_text_encoder: stopped at step {step}/{args.steps} ({stopped}); held-out accuracy min "
          f"{acc['min']}; encoder in {out / 'text_encoder'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
