"""Character LoRA trainer: a small peft LoRA on the UNet that learns one character's look from its locked reference,
its reference sheet views and the selfies the user accepted.

    python -m customizer.engine.character_lora JOB_DIR               # what the app runs (customizer/lora_jobs.py)
    python -m customizer.engine.character_lora --time MODEL_DIR      # s/step on a model folder, random images

Every training image is seen with the conditioning a selfie gets: the text encoder's embeddings of its own recipe
prompt, and the character's IP-Adapter embeddings (the reference plus the in-band sheet views: the Studio's cached
blob) at the image's own recipe scale. A share of samples gets CFG's unconditional branch instead (the recipe's
negative prompt and the negative half of the image embeddings). Loss: the scheduler's target (epsilon or v) on VAE
latents of the images, min-SNR weighted. Everything random comes from the job's seed, so the same images, prompts,
settings and seed give the same file (on the same device and library versions).

Isolation: a separate process, not a thread training a deep copy of the UNet. Because
- the engine's pipeline is untouched by construction: no copy taken under the render lock (a copy would carry fused
  theme weights and every loaded adapter, to be undone), no VAE / text encoder calls from a second thread;
- a render during training is not slowed by the GIL (a training loop in a thread holds it for every Python-level
  module call, which on 2 cores makes the web server and the render thread crawl), and this process runs at a lower
  nice level, so the render wins the CPU;
- cancel is instant and complete (terminate), even mid-step; a crash or out-of-memory here cannot take the app down;
  the process also stops by itself when the app that started it is gone.
The cost: the process imports torch/diffusers and loads the model once more (about 10 s on 2 busy cores; small next
to a 2-minute training) and holds its own copy of the weights (31 MB for the bundled model).

JOB_DIR holds job.json (written by lora_jobs: model, settings, seed, images with prompt / negative prompt / IP scale,
size) with the image files and conditioning.bin (IP-Adapter embeddings, embeddings.to_bytes layout). Progress goes to
stdout as JSON lines: {"event": "phase", "message"}, {"event": "step", "step", "steps", "loss"}, then
{"event": "done", "file", "seconds", "loss"} or {"event": "error", "message"} (exit code 1). The LoRA is written
with save_lora_weights (what load_lora_weights reads), fp16.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning OpenMP threads starve the app's renders

import argparse
import hashlib
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

JOB_FILE = "job.json"
CONDITIONING_FILE = "conditioning.bin"
OUT_FILE = "character_lora.safetensors"
ADAPTER = "character"  # the name while training; the app loads the file under charlora.adapter_name(sha)
ENCODE_BATCH = 4
Emit = Callable[..., None]


class JobError(Exception):
    """A job that cannot run; the message is for the user."""


def emit_json(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def step_generator(seed: int, step: int) -> torch.Generator:
    digest = hashlib.sha256(f"character-lora:{seed}:{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)


def lr_at(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warmup, then cosine down to a tenth of the base rate."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# ---------------------------------------------------------------- inputs

def load_pipeline(model: dict[str, Any], device: str):
    """The profile's base pipeline with its IP-Adapter (no image encoder: the embeddings come with the job), fp32,
    frozen. One code path with the engine: from_pretrained + load_ip_adapter."""
    from diffusers import StableDiffusionPipeline

    if model.get("family", "sd15") != "sd15":
        raise JobError(f"character LoRA training supports sd15-family models, not {model.get('family')!r}")
    local = bool(model.get("local_only", True))
    pipe = StableDiffusionPipeline.from_pretrained(model["base_model"], dtype=torch.float32, local_files_only=local,
                                                   safety_checker=None, requires_safety_checker=False)
    ipa = model.get("ip_adapter")
    if ipa:
        pipe.load_ip_adapter(ipa["path"], subfolder=ipa.get("subfolder", ""), weight_name=ipa["weight_name"],
                             image_encoder_folder=None, local_files_only=local)
    pipe.to(device)
    for m in (pipe.unet, pipe.text_encoder, pipe.vae):
        m.requires_grad_(False).eval()
    return pipe


@dataclass
class Inputs:
    mean: torch.Tensor           # VAE posterior mean * scaling, (N, C, h, w)
    std: torch.Tensor            # posterior std * scaling
    cond: torch.Tensor           # prompt embeddings (N, L, D)
    uncond: torch.Tensor         # negative prompt embeddings (N, L, D)
    ip_scale: torch.Tensor       # (N,) each image's recipe IP-Adapter scale
    ip_pos: list[torch.Tensor] | None  # per adapter (1, ...): the positive half of the conditioning embeddings
    ip_neg: list[torch.Tensor] | None


@torch.no_grad()
def encode_inputs(pipe, job: dict[str, Any], job_dir: Path, device: str) -> Inputs:
    from PIL import Image

    from . import embeddings

    w, h = int(job["width"]), int(job["height"])
    pixels = []
    for item in job["images"]:
        with Image.open(job_dir / item["file"]) as im:
            im = im.convert("RGB")
            if im.size != (w, h):  # an upscaled or resized selfie: trained at the profile's size
                im = im.resize((w, h), Image.LANCZOS)
            pixels.append(torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(h, w, 3))
    x = torch.stack(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    means, stds = [], []
    for chunk in x.split(ENCODE_BATCH):  # a few at a time: 512 px images at once would need GBs of activations
        dist = pipe.vae.encode(chunk.to(device)).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    scale = float(pipe.vae.config.scaling_factor)
    cond, uncond = [], []
    for item in job["images"]:
        pos, neg = pipe.encode_prompt(prompt=item["prompt"], device=torch.device(device), num_images_per_prompt=1,
                                      do_classifier_free_guidance=True, negative_prompt=item["negative_prompt"])[:2]
        cond.append(pos)
        uncond.append(neg)
    ip_pos = ip_neg = None
    cond_file = job_dir / CONDITIONING_FILE
    if getattr(pipe.unet, "encoder_hid_proj", None) is not None:
        if not cond_file.is_file():
            raise JobError("the job has no IP-Adapter conditioning for this model")
        embeds = embeddings.from_bytes(cond_file.read_bytes(), device, torch.float32)
        ip_neg = [t.chunk(2)[0] for t in embeds]  # negative half first (prepare_ip_adapter_image_embeds layout)
        ip_pos = [t.chunk(2)[1] for t in embeds]
    return Inputs(mean=torch.cat(means) * scale, std=torch.cat(stds) * scale, cond=torch.cat(cond),
                  uncond=torch.cat(uncond), ip_scale=torch.tensor([float(i["ip_scale"]) for i in job["images"]]),
                  ip_pos=ip_pos, ip_neg=ip_neg)


# ---------------------------------------------------------------- training

def add_lora(unet, settings: dict[str, Any], seed: int) -> list[torch.nn.Parameter]:
    from peft import LoraConfig

    rank = int(settings["rank"])
    torch.manual_seed(seed)  # peft's gaussian init of A draws from the global generator
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(settings["targets"]),
                                init_lora_weights="gaussian"), adapter_name=ADAPTER)
    params = [p for n, p in unet.named_parameters() if f".{ADAPTER}." in n and "lora_" in n]
    if not params:
        raise JobError(f"no UNet layer matches the LoRA targets {settings['targets']}")
    for p in params:
        p.requires_grad_(True)
    return params


def train_step(pipe, noise_sched, x: Inputs, settings: dict[str, Any], seed: int, step: int,
               device: str) -> torch.Tensor:
    """The loss of one batch; all randomness from (seed, step) in a fixed order."""
    from .diffusion_step import min_snr_weights
    from .ip_adapter import gated

    g = step_generator(seed, step)
    b = int(settings["batch"])
    idx = torch.randint(len(x.mean), (b,), generator=g)
    eps = torch.randn(x.mean[idx].shape, generator=g).to(device)
    latents = x.mean[idx] + x.std[idx] * eps
    noise = torch.randn(latents.shape, generator=g).to(device)
    t = torch.randint(0, int(noise_sched.config.num_train_timesteps), (b,), generator=g)
    drop = torch.rand(b, generator=g) < float(settings["caption_dropout"])
    t_dev, keep = t.to(device), (~drop).to(device)
    noisy = noise_sched.add_noise(latents, noise, t_dev)
    hidden = torch.where(keep.view(-1, 1, 1), x.cond[idx], x.uncond[idx])
    v_pred = noise_sched.config.prediction_type == "v_prediction"
    target = noise_sched.get_velocity(latents, noise, t_dev) if v_pred else noise
    if x.ip_pos is None:
        pred = pipe.unet(noisy, t_dev, hidden).sample
    else:
        embeds = [torch.where(keep.view(-1, *[1] * (p.dim() - 1)), p.expand(b, *p.shape[1:]),
                              n.expand(b, *n.shape[1:])) for p, n in zip(x.ip_pos, x.ip_neg)]
        gate = x.ip_scale[idx].to(device).view(-1, 1, 1)  # each image at its own recipe scale
        with gated(pipe.unet, gate):
            pred = pipe.unet(noisy, t_dev, hidden, added_cond_kwargs={"image_embeds": embeds}).sample
    per = (pred.float() - target.float()).pow(2).mean(dim=(1, 2, 3))
    gamma = float(settings["snr_gamma"])
    if gamma > 0:
        per = per * min_snr_weights(noise_sched.alphas_cumprod, t, gamma, v_pred).to(device)
    return per.mean()


def save(unet, out: Path) -> Path:
    from diffusers import StableDiffusionPipeline
    from peft.utils import get_peft_model_state_dict

    state = {k: v.detach().to("cpu", torch.float16).contiguous()
             for k, v in get_peft_model_state_dict(unet, adapter_name=ADAPTER).items()}
    StableDiffusionPipeline.save_lora_weights(out.parent, unet_lora_layers=state, weight_name=out.name,
                                              safe_serialization=True)
    return out


def train(job_dir: Path, emit: Emit = emit_json, orphaned: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Run the job in job_dir; returns the facts of the finished training. JobError for a job that cannot run."""
    from diffusers import DDPMScheduler

    t_start = time.perf_counter()
    job = json.loads((job_dir / JOB_FILE).read_text(encoding="utf-8"))
    settings, seed = job["settings"], int(job["seed"])
    if settings.get("nice"):
        try:
            os.nice(int(settings["nice"]))
        except (OSError, AttributeError):  # not permitted / not on this OS: run at normal priority
            pass
    if settings.get("threads"):
        torch.set_num_threads(int(settings["threads"]))
    from .devices import pick

    device, _ = pick(job["model"].get("device", "auto"), "float32")
    emit(event="phase", message="loading the model")
    pipe = load_pipeline(job["model"], device)
    emit(event="phase", message=f"encoding {len(job['images'])} images")
    inputs = encode_inputs(pipe, job, job_dir, device)
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    params = add_lora(pipe.unet, settings, seed)
    opt = torch.optim.AdamW(params, lr=float(settings["lr"]), weight_decay=0.0)
    steps, warmup = int(settings["steps"]), int(settings["warmup"])
    pipe.unet.train()
    t_train, loss_avg = time.perf_counter(), None
    for step in range(steps):
        if orphaned():
            raise JobError("the app that started this training is gone")
        for group in opt.param_groups:
            group["lr"] = lr_at(step, float(settings["lr"]), warmup, steps)
        loss = train_step(pipe, noise_sched, inputs, settings, seed, step, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, float(settings["grad_clip"]))
        opt.step()
        value = float(loss.detach())
        loss_avg = value if loss_avg is None else 0.9 * loss_avg + 0.1 * value
        emit(event="step", step=step + 1, steps=steps, loss=round(loss_avg, 6))
    train_seconds = time.perf_counter() - t_train
    pipe.unet.eval()
    out = save(pipe.unet, job_dir / OUT_FILE)
    facts = {"file": out.name, "seconds": round(time.perf_counter() - t_start, 2),
             "train_seconds": round(train_seconds, 2), "s_per_step": round(train_seconds / steps, 4),
             "loss": None if loss_avg is None else round(loss_avg, 6), "device": device,
             "threads": torch.get_num_threads()}
    emit(event="done", **facts)
    return facts


# ---------------------------------------------------------------- timing (sizing the data file)

def time_steps(model_dir: Path, steps: int, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train `steps` steps on random images with a model folder (the bundled layout: pipeline + ip_adapter/): what
    the data file's step count is sized from."""
    import numpy as np
    from PIL import Image

    from .. import charlora
    from . import embeddings

    s = {**charlora.settings(), **(settings or {}), "steps": steps, "nice": 0}
    with tempfile.TemporaryDirectory() as tmp:
        job_dir = Path(tmp)
        pipe_cfg = json.loads((model_dir / "unet" / "config.json").read_text())
        size = int(pipe_cfg["sample_size"]) * 8
        rng = np.random.default_rng(0)
        images = []
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(job_dir / f"{i}.png")
            images.append({"file": f"{i}.png", "prompt": "portrait photo of a person, studio", "ip_scale": 0.7,
                           "negative_prompt": "blurry, lowres"})
        ipa = model_dir / "ip_adapter"
        model = {"family": "sd15", "base_model": str(model_dir), "device": "cpu", "local_only": True,
                 "ip_adapter": {"path": str(ipa), "subfolder": "", "weight_name": "ip_adapter.safetensors"}
                 if ipa.is_dir() else None}
        if ipa.is_dir():
            enc = json.loads((ipa / "image_encoder" / "config.json").read_text())
            dim = int(enc.get("projection_dim") or enc["vision_config"]["projection_dim"])
            (job_dir / CONDITIONING_FILE).write_bytes(embeddings.to_bytes([torch.randn(2, 5, dim)]))
        (job_dir / JOB_FILE).write_text(json.dumps({"model": model, "settings": s, "seed": 0, "width": size,
                                                    "height": size, "images": images}))
        return train(job_dir, emit=lambda **e: None)


# ---------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.engine.character_lora",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("job_dir", nargs="?", type=Path, help="a job folder written by the app")
    ap.add_argument("--time", type=Path, metavar="MODEL_DIR", help="time training steps on this model folder")
    ap.add_argument("--steps", type=int, default=20, help="with --time: steps to time")
    args = ap.parse_args(argv)
    if args.time:
        facts = time_steps(args.time, args.steps)
        print(json.dumps({k: facts[k] for k in ("s_per_step", "train_seconds", "seconds", "threads")}))
        return 0
    if args.job_dir is None:
        ap.error("give a job folder or --time MODEL_DIR")
    parent = os.getppid()
    try:
        train(args.job_dir, orphaned=lambda: os.getppid() != parent)
    except JobError as e:
        emit_json(event="error", message=str(e))
        return 1
    except Exception as e:  # noqa: BLE001 - the app shows a short reason; the traceback goes to stderr (its log)
        import traceback

        traceback.print_exc()
        emit_json(event="error", message=f"training failed ({type(e).__name__})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
