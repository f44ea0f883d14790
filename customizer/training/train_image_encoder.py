"""Pre-train the IP-Adapter's image encoder on identity alone, contrastively, then freeze it for the UNet stage.

    python -m customizer.training.train_image_encoder --out runs/image_encoder --steps 1500 [--workers 1]

The first design trained the image encoder from scratch inside the diffusion loss, and selfies came out no more
like their reference with the adapter than without it (verification 0.51 both ways). Here the geometry's
CLIPVisionModelWithProjection first learns who is in a picture: renders of the same hidden person across scenes,
expressions, framings and themes are pulled together and other people pushed apart (supervised contrastive loss),
with people who share every attribute in each batch, so that hair colour and outfit are not enough to tell two
people apart (train_instruments.make_batch: groups of look-alikes, each photographed several times, plus others).

It must not be the eval's judge: the identity instrument is another network (a small CNN, likeness/instruments.py),
other weights, another seed and another stream of people (this stage's own batch seed), and is never trained here.
Both are measured on the same held-out pairs (report.json: `encoder` and `instrument`), so one can see how close
the conditioning and the judge are.

--look-heads: identity alone left the look out of the embedding (a linear probe on the shipped encoder's reference
embeddings read eye colour at chance and hair colour at 0.65, where skin tone read 0.89), and a selfie prompted
without the look (selfie_prompt: from_reference) can only show what the embedding carries. With --look-heads, a
linear head per named attribute reads it from the embedding too (cross-entropy on the renderer's labels of the same
batch, --look-weight), so the embedding keeps both who the person is and how they look. --init-from DIR starts from
an encoder folder's weights (DIR/image_encoder, e.g. assets/bundled/ip_adapter).

Writes --out/image_encoder (CLIPVisionModelWithProjection folder, what load_ip_adapter reads), report.json, log.jsonl.
"""
from __future__ import annotations

from . import common  # first: sets OMP_WAIT_POLICY before torch loads

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

BATCH_SEED_SALT = "image-encoder"    # not the instruments' batch stream: other people
EVAL_SALT = "image-encoder-eval"


class EncoderProbe:
    """The image encoder behind the instruments' embed() interface, so train_instruments.identity_scores reads it."""

    def __init__(self, encoder, batch: int = 64):
        self.encoder, self.batch = encoder, batch

    @torch.inference_mode()
    def embed(self, images) -> np.ndarray:
        from ..engine import ip_adapter

        was = self.encoder.training
        self.encoder.eval()
        out = []
        for i in range(0, len(images), self.batch):
            size = int(self.encoder.config.image_size)
            px = torch.from_numpy(np.stack([np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC))
                                            for im in images[i:i + self.batch]]))
            e = ip_adapter.embed(self.encoder, px.permute(0, 3, 1, 2), "cpu")[:, 0]
            out.append(F.normalize(e.float(), dim=-1))
        self.encoder.train(was)
        return torch.cat(out).numpy()


def evaluate(encoder, instruments: Path | None, n_people: int) -> dict:
    """Verification on held-out look-alike pairs, for the encoder and (same pairs) the eval's identity instrument."""
    from .train_instruments import evaluate_identity

    out = {"encoder": evaluate_identity(EncoderProbe(encoder), n_people, salt=EVAL_SALT)}
    if instruments is not None:
        from ..likeness.instruments import Instruments

        out["instrument"] = evaluate_identity(Instruments.load(instruments), n_people, salt=EVAL_SALT)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.training.train_image_encoder",
                                 description=__doc__.split("\n\n")[0])
    common.add_common_args(ap, default_batch=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--temperature", type=float, default=0.1)
    ap.add_argument("--workers", type=int, default=1, help="render processes")
    ap.add_argument("--eval-people", type=int, default=100, help="held-out people (in look-alike pairs)")
    ap.add_argument("--instruments", type=Path, default=None,
                    help="the eval's instruments: measured on the same pairs for comparison (never trained)")
    ap.add_argument("--look-heads", default="",
                    help="comma-separated attributes the embedding must also predict (linear heads), e.g. "
                         "hair_colour,hair_style,hair_length,eye_colour,skin_tone; empty: identity alone")
    ap.add_argument("--look-weight", type=float, default=1.0, help="weight of the look heads' mean cross-entropy")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="folder holding image_encoder/ to start from (a fresh run only)")
    args = ap.parse_args(argv)

    from ..engine import ip_adapter
    from .train_instruments import BatchStream, augment, catalogue_heads, concat, supcon_loss

    geo, dev, out, state, log = common.start_run(args)
    encoder = ip_adapter.build_image_encoder(geo, args.seed + 2)
    if args.init_from is not None and state is None:
        from transformers import CLIPVisionModelWithProjection

        encoder.load_state_dict(CLIPVisionModelWithProjection.from_pretrained(
            args.init_from / "image_encoder", dtype=torch.float32).state_dict())
    encoder = encoder.to(dev.device)
    size = int(geo["image_encoder"]["image_size"])
    all_heads = catalogue_heads()
    look = [k.strip() for k in args.look_heads.split(",") if k.strip()]
    unknown = [k for k in look if k not in all_heads]
    if unknown:
        raise SystemExit(f"--look-heads: unknown {unknown}; known: {', '.join(all_heads)}")
    column = {k: list(all_heads).index(k) for k in look}
    dim = int(encoder.config.projection_dim)
    heads = torch.nn.ModuleDict({k: torch.nn.Linear(dim, len(all_heads[k])) for k in look}).to(dev.device)
    opt = torch.optim.AdamW([*encoder.parameters(), *heads.parameters()], lr=args.lr, weight_decay=0.05)
    step, seconds = 0, 0.0
    if state is not None:
        step, seconds = common.resume_point(state, args.geometry, args, log)
        encoder.load_state_dict(state["encoder"])
        heads.load_state_dict(state.get("heads") or {})
        opt.load_state_dict(state["opt"])
    warmup = common.default_warmup(args)
    stream = BatchStream(common.stable_seed(BATCH_SEED_SALT, args.seed, step), workers=args.workers, size=size)
    gen = torch.Generator().manual_seed(common.stable_seed("image-encoder-augment", args.seed, step))
    if step == 0:
        log.write(event="start", geometry=args.geometry, device=dev.describe(), params=common.param_count(encoder),
                  batches_per_step=args.batch, steps=args.steps, lr=args.lr, warmup=warmup,
                  temperature=args.temperature, look_heads=look, look_weight=args.look_weight,
                  init_from=str(args.init_from) if args.init_from else None)
    else:
        log.write(event="resume", step=step, device=dev.describe())

    def checkpoint(event: str = "checkpoint") -> None:
        common.save_checkpoint(out / common.CHECKPOINT, {
            "step": step, "seconds": seconds, "encoder": encoder.state_dict(), "heads": heads.state_dict(),
            "opt": opt.state_dict(),
            "geometry": args.geometry, "schedule": common.schedule_of(args)})
        log.write(event=event, step=step, seconds=round(seconds, 1))

    budget = common.Budget(args.max_minutes)
    encoder.train()
    acc, acc_n, stopped = {"loss": 0.0, "top1": 0.0, **{f"{k}_accuracy": 0.0 for k in look}}, 0, "steps"
    try:
        while step < args.steps:
            images, labels, people = concat(stream.take(args.batch))
            t = time.perf_counter()
            lr = common.lr_at(step, args.lr, warmup, args.steps)
            for group in opt.param_groups:
                group["lr"] = lr
            x = augment(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0, gen)
            x = (x - torch.tensor(ip_adapter.CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(ip_adapter.CLIP_STD).view(
                1, 3, 1, 1)
            emb = encoder(x.to(dev.device)).image_embeds
            z = F.normalize(emb, dim=-1)
            who = torch.from_numpy(people).to(dev.device)
            loss = supcon_loss(z, who, args.temperature)
            if look:
                y = torch.from_numpy(labels).to(dev.device)
                logits = {k: heads[k](emb) for k in look}
                loss = loss + args.look_weight * torch.stack([F.cross_entropy(logits[k], y[:, column[k]])
                                                              for k in look]).mean()
                with torch.no_grad():
                    for k in look:
                        acc[f"{k}_accuracy"] += (logits[k].argmax(1) == y[:, column[k]]).float().mean().item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
            opt.step()
            step += 1
            seconds += time.perf_counter() - t
            with torch.no_grad():
                sim = (z @ z.T).fill_diagonal_(-2)
                has_pos = (who[:, None] == who[None, :]).sum(1) > 1
                acc["top1"] += (who[sim.argmax(1)] == who)[has_pos].float().mean().item()
            acc["loss"] += loss.item()
            acc_n += 1
            if step % args.log_every == 0:
                log.write(step=step, **{k: v / acc_n for k, v in acc.items()}, lr=lr, seconds=round(seconds, 1),
                          render_wait=round(stream.wait_seconds, 1))
                acc, acc_n = {k: 0.0 for k in acc}, 0
            if step % args.ckpt_every == 0 and step < args.steps:
                checkpoint()
            if budget.expired() and step < args.steps:
                stopped = "max-minutes"
                break
    finally:
        stream.close()
    checkpoint("final")
    encoder.save_pretrained(out / "image_encoder", safe_serialization=True)
    report = {"steps": step, "target_steps": args.steps, "seconds": round(seconds, 1),
              "held_out": evaluate(encoder, args.instruments, args.eval_people)}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    enc = report["held_out"]["encoder"]
    log.write(event="report", step=step, encoder_verification=enc["verification"]["accuracy"],
              instrument_verification=(report["held_out"].get("instrument") or {}).get("verification", {})
              .get("accuracy"))
    print(f"train_image_encoder: stopped at step {step}/{args.steps} ({stopped}); held-out verification "
          f"{enc['verification']['accuracy']}; encoder in {out / 'image_encoder'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
