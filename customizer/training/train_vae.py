"""Train the bundled model's VAE (AutoencoderKL of the geometry) from scratch on synthetic renders.

    python -m customizer.training.train_vae --out runs/vae --steps N [--batch B] [--max-minutes M] [--resume]

Images are rendered on the fly (render.py via corpus.identity_records: random train-split people, random photo),
so the VAE never sees a held-out person and no image is seen twice. No flips: marks and the hair parting are
identity cues. Loss = L1 + edge (L1 between image gradients, keeps outlines and eyes crisp) + a small KL
(per latent element). Every --sample-every steps: an eval on fixed held-out renders (logged as eval_l1) and
samples/recon_<step>.png (row pairs: originals, reconstructions). At checkpoints and at the end the VAE is
written with save_pretrained into --out (config.json + diffusion_pytorch_model.safetensors), with
config.scaling_factor = 1 / std of its latents on held-out renders (as SD's 0.18215), so the folder is what
encode_corpus and train_base read with AutoencoderKL.from_pretrained(--out).
"""
from __future__ import annotations

from . import common  # first: sets OMP_WAIT_POLICY before torch loads

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

EVAL_SEED = 424242   # held-out people for the reconstruction grid and the scaling factor


def edge_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences."""
    dxa, dxb = a[..., :, 1:] - a[..., :, :-1], b[..., :, 1:] - b[..., :, :-1]
    dya, dyb = a[..., 1:, :] - a[..., :-1, :], b[..., 1:, :] - b[..., :-1, :]
    return 0.5 * ((dxa - dxb).abs().mean() + (dya - dyb).abs().mean())


def colour_l1(a: torch.Tensor, b: torch.Tensor, cell: int = 8) -> torch.Tensor:
    """L1 between the mean colours of cell x cell blocks (one per latent cell at the VAE's factor 8). A per-pixel
    L1 lets a saturated colour drift (bright green hair came back dark teal, pink came back skin-coloured) while
    the outlines cost more; this prices the colour of each region by itself."""
    return (F.avg_pool2d(a, cell) - F.avg_pool2d(b, cell)).abs().mean()


def region_colour_l1(a: torch.Tensor, b: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """L1 between the mean colours of a and b over each mask (B,K,H,W) of each picture, over the masks that mark
    something. colour_l1 for regions a latent cell cannot hold apart: an iris is 2-3 pixels, and where its place is
    uncertain a per-pixel L1 is cheapest with the surrounding colour (its median), so eye colour went grey; the mean
    over the region prices the colour wherever it lands."""
    m = masks.to(a.dtype).unsqueeze(2)                                   # B,K,1,H,W
    area = m.sum(dim=(-2, -1))                                           # B,K,1
    diff = ((a.unsqueeze(1) - b.unsqueeze(1)) * m).sum(dim=(-2, -1)) / area.clamp(min=1)   # B,K,C
    marked = (area > 0).to(a.dtype).expand_as(diff)
    return (diff.abs() * marked).sum() / marked.sum().clamp(min=1)


def vae_loss(vae, x: torch.Tensor, args, generator: torch.Generator | None = None,
             detail: torch.Tensor | None = None, critic=None) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """(loss, logged parts, reconstruction). detail: (B,2,H,W) masks of the pixels that carry eye colour, then
    expression (detail_mask.detail_masks); their L1 counts 1 + args.detail_weight times (a weighted mean, so the
    loss keeps its scale), and args.region_colour_weight prices each mask's mean colour (region_colour_l1).
    critic (patch_critic.py, with args.adv_weight): its generator loss is added at adv_weight x the ratio of the
    reconstruction loss's gradient to its own at the decoder's last layer (the adaptive weight of the GAN behind
    Stable Diffusion's VAE), so the weight means the same whatever the loss scales."""
    with torch.set_grad_enabled(not args.freeze_encoder):
        post = vae.encode(x).latent_dist
    eps = torch.randn(post.mean.shape, generator=generator).to(x.device, post.mean.dtype)
    z = post.mean + post.std * eps
    rec = vae.decode(z).sample
    rec, xf = rec.float(), x.float()
    err = (rec - xf).abs()
    union = detail.amax(dim=1, keepdim=True) if detail is not None else None
    if union is not None and args.detail_weight:
        w = 1.0 + args.detail_weight * union.to(err.device, err.dtype)
        l1 = (err * w).sum() / (w.sum() * err.shape[1])
    else:
        l1 = err.mean()
    edge = edge_l1(rec, xf)
    kl = post.kl().float().mean() / z[0].numel()
    loss = l1 + args.edge_weight * edge + args.kl_weight * kl
    if args.mse_weight:
        loss = loss + args.mse_weight * F.mse_loss(rec, xf)
    parts = {"l1": l1.item(), "edge": edge.item(), "kl": kl.item()}
    if args.colour_weight:
        colour = colour_l1(rec, xf)
        loss = loss + args.colour_weight * colour
        parts["colour"] = colour.item()
    if union is not None:
        d = union.to(err.device, err.dtype)
        parts["detail_l1"] = ((err * d).sum() / (d.sum() * err.shape[1]).clamp(min=1)).item()
        region = region_colour_l1(rec, xf, detail.to(err.device))
        parts["region_colour"] = region.item()
        if args.region_colour_weight:
            loss = loss + args.region_colour_weight * region
    if critic is not None:
        from .patch_critic import generator_loss

        g_loss = generator_loss(critic, rec)
        last = vae.decoder.conv_out.weight
        rec_grad, = torch.autograd.grad(loss, last, retain_graph=True)
        adv_grad, = torch.autograd.grad(g_loss, last, retain_graph=True)
        weight = (rec_grad.norm() / (adv_grad.norm() + 1e-4)).clamp(max=1e4).detach() * args.adv_weight
        loss = loss + weight * g_loss
        parts |= {"g_loss": g_loss.item(), "adv_lambda": weight.item()}
    return loss, parts, rec


@torch.no_grad()
def evaluate(vae, images: torch.Tensor, dev: common.Device, batch: int = 16) -> dict:
    """Reconstruction L1 (posterior mean) and latent statistics on fixed held-out renders."""
    was = vae.training
    vae.eval()
    recs, lats = [], []
    for i in range(0, len(images), batch):
        x = images[i:i + batch].to(dev.device)
        with dev.autocast():
            post = vae.encode(x).latent_dist
            recs.append(vae.decode(post.mean).sample.float().cpu())
        lats.append(post.sample().float().cpu())
    vae.train(was)
    rec, lat = torch.cat(recs), torch.cat(lats)
    return {"rec": rec, "eval_l1": (rec.clamp(-1, 1) - images).abs().mean().item(),
            "latent_mean": lat.mean().item(), "latent_std": lat.std().item()}


class Curve:
    """The learning curve: the eval's figures on a fixed held-out slice, renderer vs this VAE's round trip."""

    def __init__(self, instruments: Path, characters: int, selfies_per: int = 3):
        from ..bench.vae_roundtrip import planned_characters
        from ..eval import calibrated_threshold, renderer_images, score
        from ..likeness.instruments import Instruments

        self.instr, self.calibrated = Instruments.load(instruments), calibrated_threshold(instruments)
        self.chars = renderer_images(planned_characters(characters, selfies_per, salt="vae-curve"))
        self.renderer = score(self.instr, self.chars, self.calibrated)

    def read(self, vae) -> dict:
        from ..bench.vae_roundtrip import FIGURES, figure, ratios, roundtrip_chars
        from ..eval import score

        was = vae.training
        vae.eval()
        rt = score(self.instr, roundtrip_chars(vae, self.chars), self.calibrated)
        vae.train(was)
        r = ratios(rt, self.renderer)
        return {"roundtrip": {k.split(".")[-1]: figure(rt, k) for k in FIGURES},
                "min_ratio": min(v for v in r.values() if v is not None),
                "ratio": {k.split(".")[-1]: v for k, v in r.items()}}


def recon_grid(images: torch.Tensor, rec: torch.Tensor, cols: int = 8):
    rows = []
    for i in range(0, len(images), cols):
        rows.append([common.to_pil(t) for t in images[i:i + cols]])
        rows.append([common.to_pil(t) for t in rec[i:i + cols]])
    return common.grid(rows)


def save_vae(vae, out: Path, scaling_factor: float) -> None:
    vae.register_to_config(scaling_factor=float(scaling_factor))
    vae.save_pretrained(out, safe_serialization=True)


def warm_start(vae, folder: Path) -> int:
    """Copy every tensor of folder's VAE whose name and shape match vae's; returns how many were copied."""
    from diffusers import AutoencoderKL

    src = AutoencoderKL.from_pretrained(folder, dtype=torch.float32).state_dict()
    own = vae.state_dict()
    same = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    vae.load_state_dict(same, strict=False)
    return len(same)


ENCODER_PREFIXES = ("encoder.", "quant_conv.")  # everything that maps a picture to its latent


def freeze_encoder(vae) -> list:
    """Freeze the picture -> latent half; returns the decoder's parameters. The latents stay bit-for-bit those of
    the VAE it started from, so a UNet trained on them (and precomputed latents) stays valid: only the drawing of
    a latent as a picture learns."""
    for name, p in vae.named_parameters():
        p.requires_grad_(not name.startswith(ENCODER_PREFIXES))
    return [p for p in vae.parameters() if p.requires_grad]


def vae_of_config(folder: Path):
    """An AutoencoderKL of folder's own config (a decoder trained alone keeps its VAE's shape, e.g. a widened one:
    widen_vae.py), not the geometry's."""
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_config(AutoencoderKL.load_config(folder))


def build_vae(geo: dict, seed: int):
    from ..engine.architectures import build_components

    return build_components(geo, seed)["vae"]  # the same builder (and init) as every other model of this geometry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.training.train_vae", description=__doc__.split("\n\n")[0])
    common.add_common_args(ap, default_batch=8)
    common.add_stop_at(ap)
    ap.add_argument("--lr", type=float, default=5e-4, help="peak AdamW learning rate")
    ap.add_argument("--kl-weight", type=float, default=1e-4, help="weight of the KL per latent element")
    ap.add_argument("--edge-weight", type=float, default=0.5, help="weight of the image-gradient L1")
    ap.add_argument("--mse-weight", type=float, default=0.0, help="optional extra MSE weight")
    ap.add_argument("--workers", type=int, default=None,
                    help="render processes (default: 0 on CPU, min(8, cores - 1) on CUDA)")
    ap.add_argument("--eval-images", type=int, default=16, help="held-out renders for eval, grid and scaling factor")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="AutoencoderKL folder to start from: every tensor of the same shape is copied (a wider "
                         "latent keeps the trained blocks; only the latent-side convolutions start new)")
    ap.add_argument("--detail-weight", type=float, default=0.0,
                    help="extra L1 weight on the pixels that carry eye colour and expression (detail_mask.py)")
    ap.add_argument("--crop", type=int, default=None,
                    help="train on CROP x CROP windows (a multiple of the VAE's factor), centred on the eyes, brows "
                         "or mouth for --face-share of them (the eval and the grids stay on whole pictures)")
    ap.add_argument("--face-share", type=float, default=0.5, help="share of --crop windows centred on a detail")
    ap.add_argument("--freeze-encoder", action="store_true",
                    help="train the decoder alone (needs --init-from, whose config it keeps): the latents, their "
                         "scaling factor and every UNet trained on them stay valid")
    ap.add_argument("--colour-weight", type=float, default=0.0,
                    help="extra L1 on 8x8-block mean colours (colour_l1): keeps saturated colours saturated")
    ap.add_argument("--region-colour-weight", type=float, default=0.0,
                    help="extra L1 on the mean colour of the irises and of the expression's pixels of each picture "
                         "(region_colour_l1; needs --detail-weight, which brings the masks)")
    ap.add_argument("--adv-weight", type=float, default=0.0,
                    help="patch critic (patch_critic.py) on the decoder's pictures at this adaptive weight (0: none; "
                         "0.5 as Stable Diffusion's VAE)")
    ap.add_argument("--curve-instruments", type=Path, default=None,
                    help="instruments folder: at every grid, log what they read through this VAE (learning curve; "
                         "read only, never a loss)")
    ap.add_argument("--curve-characters", type=int, default=16, help="held-out characters of the learning curve")
    args = ap.parse_args(argv)
    if args.freeze_encoder and args.init_from is None:   # its config and latents are the ones kept, resumes too
        ap.error("--freeze-encoder needs --init-from (the VAE whose latents to keep)")
    if args.region_colour_weight and not args.detail_weight:
        ap.error("--region-colour-weight needs --detail-weight (the detail masks it reads come with it)")

    geo = common.geometry(args.geometry)
    size = int(geo["resolution"])
    dev = common.pick_device(args.device, args.threads)
    workers = args.workers
    if workers is None:
        workers = 0 if dev.type == "cpu" else min(8, (os.cpu_count() or 2) - 1)
    out: Path = args.out
    state = common.prepare_out(out, args.resume)
    log = common.JsonlLog(out / common.LOG)
    (out / "samples").mkdir(exist_ok=True)

    common.seed_everything(args.seed)
    vae = (vae_of_config(args.init_from) if args.freeze_encoder else build_vae(geo, args.seed)).to(dev.device)
    trained = freeze_encoder(vae) if args.freeze_encoder else list(vae.parameters())
    opt = torch.optim.AdamW(trained, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    critic = critic_opt = None
    if args.adv_weight > 0:
        from .patch_critic import PatchCritic

        critic = PatchCritic().to(dev.device)
        critic_opt = torch.optim.AdamW(critic.parameters(), lr=args.lr, betas=(0.5, 0.9), weight_decay=0.0)
    step, seconds = 0, 0.0
    if state is not None:
        step, seconds = common.resume_point(state, args.geometry, args, log)
        if bool(state["args"].get("freeze_encoder")) != args.freeze_encoder:
            raise SystemExit("the checkpoint was made with" + ("out" if args.freeze_encoder else "")
                             + " --freeze-encoder: resume it the same way")
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if (critic is None) != ("critic" not in state):
            raise SystemExit("the checkpoint was made with another --adv-weight (0 or not): resume it the same way")
        if critic is not None:
            critic.load_state_dict(state["critic"])
            critic_opt.load_state_dict(state["critic_opt"])
    elif args.init_from is not None:
        copied = warm_start(vae, args.init_from)
        log.write(event="init_from", folder=str(args.init_from), copied=copied,
                  tensors=len(vae.state_dict()))
    scaling = float(state["scaling_factor"]) if state else 1.0
    if args.freeze_encoder and state is None:
        scaling = float(vae.config.scaling_factor)   # the init VAE's config, so the latents' own
    warmup = common.default_warmup(args)

    from .corpus import render_record

    eval_recs = common.held_out_records(EVAL_SEED, args.eval_images)
    eval_images = torch.stack([common.to_tensor(render_record(r, size)) for r in eval_recs])
    n_params = common.param_count(vae)
    if step == 0:
        log.write(event="start", geometry=args.geometry, device=dev.describe(), params=n_params,
                  fp16_mb=round(2 * n_params / 1e6, 2), batch=args.batch, steps=args.steps, lr=args.lr,
                  kl_weight=args.kl_weight, edge_weight=args.edge_weight, detail_weight=args.detail_weight,
                  colour_weight=args.colour_weight, region_colour_weight=args.region_colour_weight,
                  adv_weight=args.adv_weight, workers=workers,
                  freeze_encoder=args.freeze_encoder, trained_params=sum(p.numel() for p in trained))
    else:
        log.write(event="resume", step=step, device=dev.describe())

    def checkpoint(final: bool = False) -> None:
        nonlocal scaling
        ev = evaluate(vae, eval_images, dev)
        if not args.freeze_encoder:   # a frozen encoder keeps the scaling its latents were made with
            scaling = 1.0 / max(ev["latent_std"], 1e-6)
        save_vae(vae, out, scaling)
        common.save_checkpoint(out / common.CHECKPOINT, {
            "step": step, "seconds": seconds, "model": vae.state_dict(), "opt": opt.state_dict(),
            "geometry": args.geometry, "schedule": common.schedule_of(args), "crop": args.crop,
            "scaling_factor": scaling, "args": vars(args) | {"out": str(out)},
            **({"critic": critic.state_dict(), "critic_opt": critic_opt.state_dict()} if critic is not None else {})})
        log.write(event="final" if final else "checkpoint", step=step, eval_l1=ev["eval_l1"],
                  latent_mean=ev["latent_mean"], latent_std=ev["latent_std"], scaling_factor=scaling)

    last_grid = -1

    def sample_grid() -> None:
        nonlocal last_grid
        last_grid = step
        ev = evaluate(vae, eval_images, dev)
        img = recon_grid(eval_images, ev["rec"])
        img.save(out / "samples" / f"recon_{step:06d}.png")
        img.save(out / "samples" / "recon_latest.png")
        log.write(event="eval", step=step, eval_l1=ev["eval_l1"], latent_mean=ev["latent_mean"],
                  latent_std=ev["latent_std"])
        if curve is not None:
            log.write(event="curve", step=step, seconds=round(seconds, 1), **curve.read(vae))

    curve = Curve(args.curve_instruments, args.curve_characters) if args.curve_instruments else None
    budget = common.Budget(args.max_minutes)
    vae.train()
    if step == 0:
        sample_grid()
    acc, acc_n, t_last, data_wait = {}, 0, time.perf_counter(), 0.0
    end = common.end_step(args)
    stopped = "steps" if end == args.steps else "stop-at"
    t_data = time.perf_counter()
    detail_on = args.detail_weight > 0
    if step > 0 and (state or {}).get("crop") != args.crop:
        log.write(event="data_change", step=step, crop=[(state or {}).get("crop"), args.crop],
                  face_share=args.face_share)
    for item in common.batches(args.seed, size, args.batch, step, end, workers, detail=detail_on,
                               crop=args.crop, face_share=args.face_share):
        x, detail = item if detail_on else (item, None)
        data_wait += time.perf_counter() - t_data
        t0 = time.perf_counter()
        lr = common.lr_at(step, args.lr, warmup, args.steps)
        for g in opt.param_groups:
            g["lr"] = lr
        x = x.to(dev.device, non_blocking=True)
        if critic is not None:
            for g in critic_opt.param_groups:
                g["lr"] = lr
        with dev.autocast():
            loss, parts, rec = vae_loss(vae, x, args, common.step_generator(args.seed, "vae-noise", step), detail,
                                        critic)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(trained, 1.0)
        opt.step()
        if critic is not None:
            from .patch_critic import critic_loss

            with dev.autocast():
                d_loss = critic_loss(critic, x, rec)
            critic_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            critic_opt.step()
            parts["d_loss"] = d_loss.item()
        step += 1
        seconds += time.perf_counter() - t0
        for k, v in {"loss": loss.item(), **parts, "grad_norm": float(gnorm)}.items():
            acc[k] = acc.get(k, 0.0) + v
        acc_n += 1
        if step % args.log_every == 0 or step == args.steps:
            now = time.perf_counter()
            log.write(step=step, **{k: v / acc_n for k, v in acc.items()}, lr=lr, seconds=round(seconds, 2),
                      s_per_step=round((now - t_last) / acc_n, 4), data_s_per_step=round(data_wait / acc_n, 4))
            acc, acc_n, t_last, data_wait = {}, 0, now, 0.0
        if step % args.sample_every == 0 and step < args.steps:
            sample_grid()
        if step % args.ckpt_every == 0 and step < args.steps:
            checkpoint()
        if budget.expired() and step < args.steps:
            stopped = "max-minutes"
            break
        t_data = time.perf_counter()
    if last_grid != step:
        sample_grid()
    checkpoint(final=True)
    print(f"train_vae: stopped at step {step}/{args.steps} ({stopped}); VAE in {out}, "
          f"grid {out / 'samples' / 'recon_latest.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
