"""Train a theme LoRA (peft) on the bundled base model + IP-Adapter, from a themed latent corpus.

    python -m customizer.training.train_lora --base runs/base --latents runs/latents_fantasy.pt --theme fantasy \\
        --out runs/lora_fantasy --steps N [--rank 8] [--batch B] [--lr LR] [--max-minutes M] [--resume]

--base is a train_base run folder (its pipeline/ and ip_adapter/ are loaded exactly as the app loads them:
StableDiffusionPipeline.from_pretrained + load_ip_adapter). The latents come from `encode_corpus --theme <theme>`:
the same kind of people and photos as the base corpus, rendered in the theme but captioned WITHOUT theme words, so
the LoRA alone carries the look and its adapter weight is the app's theme strength (0 = the base, 1 = full theme).
Everything but the LoRA is frozen; the loss, caption dropout and the three IP-Adapter conditions are the base
stage's (engine/diffusion_step.py), with the themed person's reconstructed portrait as the reference, so themed selfies
keep their identity. The LoRA covers the UNet's attention projections, transformer in/out projections,
feed-forwards and resnet convolutions (a theme recolours and re-textures the whole picture, not only attention).

Writes --out/<theme>.safetensors (save_lora_weights format, fp16; what load_lora_weights(..., adapter_name=...)
reads), checkpoint.pt, log.jsonl and samples/: sample_<step>.png (the base sample layout with the LoRA at full
strength) and strengths.png (rows: strength 0, 0.5, 1 for the same seeds and references).
"""
from __future__ import annotations

from . import common  # first: sets OMP_WAIT_POLICY before torch loads

import argparse
import sys
import time
from pathlib import Path

import torch

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                "conv1", "conv2"]


def load_base(base: Path, device):
    """The base pipeline with its IP-Adapter, fp32, as the app loads it."""
    from diffusers import StableDiffusionPipeline

    from ..engine import ip_adapter

    pipe = StableDiffusionPipeline.from_pretrained(base / "pipeline", dtype=torch.float32, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.load_ip_adapter(str(base / "ip_adapter"), subfolder="", weight_name=ip_adapter.WEIGHT_NAME,
                         image_encoder_folder=ip_adapter.ENCODER_FOLDER)
    pipe.to(device)
    for m in (pipe.unet, pipe.text_encoder, pipe.vae, pipe.image_encoder):
        m.requires_grad_(False).eval()
    return pipe


def add_lora(unet, theme: str, rank: int, seed: int) -> list[torch.nn.Parameter]:
    from peft import LoraConfig

    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS, init_lora_weights="gaussian"),
                     adapter_name=theme)
    params = [p for n, p in unet.named_parameters() if f".{theme}." in n and "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    return params


def lora_state(unet, theme: str) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(unet, adapter_name=theme).items()}


def save_lora(unet, theme: str, out: Path, dtype=torch.float16) -> Path:
    from diffusers import StableDiffusionPipeline

    state = {k: v.to(dtype) for k, v in lora_state(unet, theme).items()}
    StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=state, weight_name=f"{theme}.safetensors",
                                              safe_serialization=True)
    return out / f"{theme}.safetensors"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.training.train_lora", description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, type=Path, help="train_base run folder (pipeline/ + ip_adapter/)")
    ap.add_argument("--latents", required=True, type=Path, help="encode_corpus --theme <theme> file")
    ap.add_argument("--theme", required=True, help="adapter name and file name (fantasy, vintage, ...)")
    common.add_common_args(ap, default_batch=16)
    ap.add_argument("--rank", type=int, default=None, help="LoRA rank (default: the geometry's lora_rank)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--caption-dropout", type=float, default=0.1)
    ap.add_argument("--snr-gamma", type=float, default=5.0)
    ap.add_argument("--ip-states", default="0.6,0.3,0.1", help="as train_base --ip-states")
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--sample-prompts", type=int, default=6)
    args = ap.parse_args(argv)

    from ..engine.diffusion_step import Conditioning, Corpus, draw, loss, parse_shares, predict
    from .train_base import app_negative, render_samples, sample_records, sample_references

    geo = common.geometry(args.geometry)
    size = int(geo["resolution"])
    rank = int(args.rank or geo.get("lora_rank", 8))
    dev = common.pick_device(args.device, args.threads)
    out: Path = args.out
    state = common.prepare_out(out, args.resume)
    log = common.JsonlLog(out / common.LOG)
    (out / "samples").mkdir(exist_ok=True)

    data = torch.load(args.latents, map_location="cpu", weights_only=False)
    if data.get("theme") != args.theme:
        raise SystemExit(f"{args.latents} holds theme {data.get('theme')!r}, not {args.theme!r}: "
                         f"encode_corpus --theme {args.theme}")
    if data.get("references") is None:
        raise SystemExit(f"{args.latents} has no reference portraits: re-run encode_corpus without --no-references")
    pipe = load_base(args.base, dev.device)
    if abs(float(pipe.vae.config.scaling_factor) - float(data["scaling_factor"])) > 1e-6:
        raise SystemExit(f"{args.latents} was encoded with another VAE than {args.base}/pipeline")
    unet, text_encoder, image_encoder, tok = pipe.unet, pipe.text_encoder, pipe.image_encoder, pipe.tokenizer
    ddpm = pipe.scheduler
    alphas = ddpm.alphas_cumprod

    def tokenize(texts: list[str]) -> torch.Tensor:
        return tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                   return_tensors="pt").input_ids

    corpus = Corpus.from_file_data(data, tokenize, app_negative())
    conditioning = Conditioning(args.caption_dropout, 0.5, parse_shares(args.ip_states))
    common.seed_everything(args.seed)
    params = add_lora(unet, args.theme, rank, args.seed)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    step, seconds = 0, 0.0
    if state is not None:
        step, seconds = common.resume_point(state, args.geometry, args, log)
        from peft.utils import set_peft_model_state_dict
        set_peft_model_state_dict(unet, state["lora"], adapter_name=args.theme)
        opt.load_state_dict(state["opt"])
    warmup = common.default_warmup(args)
    recs = sample_records(args.sample_prompts, args.theme)
    prompts = [r.caption for r in recs]
    refs = sample_references(recs, pipe.vae, size, dev)
    (out / "samples" / "prompts.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    if step == 0:
        log.write(event="start", theme=args.theme, base=str(args.base), device=dev.describe(), images=len(corpus),
                  rank=rank, targets=LORA_TARGETS, lora_params=sum(p.numel() for p in params),
                  batch=args.batch, steps=args.steps, lr=args.lr, warmup=warmup)
    else:
        log.write(event="resume", step=step, device=dev.describe())

    def grid(strength: float, seeds=(0, 1)):
        unet.set_adapters([args.theme], weights=[strength])
        try:
            return render_samples(unet, pipe.vae, text_encoder, tok, ddpm, prompts, dev, size, seeds=seeds,
                                  image_encoder=image_encoder, references=refs)
        finally:
            unet.set_adapters([args.theme], weights=[1.0])

    def sample_grid() -> None:
        t = time.perf_counter()
        img = grid(1.0)
        img.save(out / "samples" / f"sample_{step:06d}.png")
        img.save(out / "samples" / "sample_latest.png")
        log.write(event="samples", step=step, seconds=round(time.perf_counter() - t, 2))

    def checkpoint() -> None:
        common.save_checkpoint(out / common.CHECKPOINT, {
            "step": step, "seconds": seconds, "lora": lora_state(unet, args.theme), "opt": opt.state_dict(),
            "geometry": args.geometry, "schedule": common.schedule_of(args),
            "args": {k: str(v) for k, v in vars(args).items()}})
        log.write(event="checkpoint", step=step)

    budget = common.Budget(args.max_minutes)
    unet.train()
    acc_loss, acc_n, t_last, last_grid, stopped = 0.0, 0, time.perf_counter(), -1, "steps"
    while step < args.steps:
        t0 = time.perf_counter()
        b = draw(corpus, common.step_generator(args.seed, "lora-step", args.theme, step), args.batch, conditioning,
                 alphas, dev.device)
        lr = common.lr_at(step, args.lr, warmup, args.steps)
        for group in opt.param_groups:
            group["lr"] = lr
        with dev.autocast():
            value = loss(predict(unet, text_encoder, image_encoder, b, dev.device), b, alphas, args.snr_gamma,
                         ddpm.config.prediction_type)   # the base's (its scheduler config)
        opt.zero_grad(set_to_none=True)
        value.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
        opt.step()
        step += 1
        seconds += time.perf_counter() - t0
        acc_loss += value.item()
        acc_n += 1
        if step % args.log_every == 0 or step == args.steps:
            now = time.perf_counter()
            log.write(step=step, loss=acc_loss / acc_n, lr=lr, grad_norm=float(gnorm), seconds=round(seconds, 2),
                      s_per_step=round((now - t_last) / acc_n, 4))
            acc_loss, acc_n, t_last = 0.0, 0, now
        if step % args.sample_every == 0:
            sample_grid()
            last_grid = step
        if step % args.ckpt_every == 0 and step < args.steps:
            checkpoint()
        if budget.expired() and step < args.steps:
            stopped = "max-minutes"
            break
    unet.eval()
    if last_grid != step:
        sample_grid()
    checkpoint()
    rows = []
    for strength in (0.0, 0.5, 1.0):
        rows.append(grid(strength, seeds=(0,)))
    _stack(rows).save(out / "samples" / "strengths.png")
    path = save_lora(unet, args.theme, out)
    log.write(event="final", step=step, lora=str(path))
    print(f"train_lora: stopped at step {step}/{args.steps} ({stopped}); LoRA {path}, "
          f"samples {out / 'samples'}", file=sys.stderr)
    return 0


def _stack(images):
    from PIL import Image

    w = max(i.width for i in images)
    canvas = Image.new("RGB", (w, sum(i.height for i in images)), (24, 24, 28))
    y = 0
    for img in images:
        canvas.paste(img, (0, y))
        y += img.height
    return canvas


if __name__ == "__main__":
    raise SystemExit(main())
