"""Train the bundled model's UNet, CLIP text encoder and IP-Adapter jointly from scratch on encoded latents.

    python -m customizer.training.train_base --latents runs/latents.pt --vae runs/vae --out runs/base --steps N
        [--batch B] [--lr LR] [--max-minutes M] [--resume]

Epsilon prediction on a DDPM schedule (1000 steps, scaled_linear 0.00085..0.012, as SD 1.x), min-SNR-5 loss
weighting, 10% caption dropout for classifier-free guidance (half of the dropped captions become "" and half the
app's default negative prompt, so CFG with the app's negative behaves like CFG with an empty one), AdamW with
warmup + cosine decay, gradient clipping, EMA of the UNet weights (--ema 0 disables). The text encoder is the
geometry's CLIPTextModel over the real CLIP tokenizer (49408 tokens), trained from scratch with the UNet.

The IP-Adapter (diffusers' ImageProjection + decoupled to_k_ip/to_v_ip cross-attention, and the geometry's
CLIPVisionModelWithProjection as image encoder; see engine/ip_adapter.py) is trained in the same loop on pairs: a photo
of person P as the target, P's reconstructed reference portrait as the image condition. Each sample's image
condition is one of the three states the app produces: the reference at scale 1 (a selfie), no adapter at all
(scale 0: designer portraits, and likeness 0), or the all-zero embedding (the negative half of CFG). Portraits
are never conditioned on themselves (that would teach copying, not identity). --no-ip-adapter trains the base alone.

Every --sample-every steps: samples/sample_<step>.png, the fixed prompts of samples/prompts.txt (held-out people,
portraits and selfies) rendered through a real StableDiffusionPipeline with the app's dpmpp_2m sampler, 12 steps,
guidance 5, the app's negative prompt and CPU generators (as the Engine renders). At the end (or when
--max-minutes is spent) --out/pipeline is a complete StableDiffusionPipeline folder (save_pipeline layout:
unet/ vae/ text_encoder/ tokenizer/ scheduler/ model_index.json) whose scheduler is the DDPM training config
(trailing timestep spacing) from which the app builds each recipe's sampler, and --out/ip_adapter is the folder
load_ip_adapter reads (image_encoder/ + ip_adapter.safetensors). The sample grid then also shows each held-out
person's reference and the prompts rendered with it.
"""
from __future__ import annotations

from . import common  # first: sets OMP_WAIT_POLICY before torch loads

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

SAMPLE_SEED = 777001       # corpus seed of the held-out people in the sample grid
SAMPLE_SAMPLER = "dpmpp_2m"
SAMPLE_STEPS = 12
SAMPLE_GUIDANCE = 5.0


def noise_scheduler(prediction_type: str = "epsilon"):
    """The training schedule; saved as the pipeline's scheduler config (the app's samplers are built from it, so they
    read the prediction type from it). Trailing spacing makes few-step samplers start at t=999 (pure noise), which a
    from-scratch model needs."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         prediction_type=prediction_type, clip_sample=False, timestep_spacing="trailing",
                         steps_offset=1)


def app_negative() -> str:
    from ..prompts import default_negative, with_safety

    return with_safety(default_negative())


def sample_records(n: int = 8, theme: str | None = "none") -> list:
    """Records of held-out people (alternating portrait and selfie where possible): what the grid shows."""
    from .corpus import iter_plan

    out, people = [], set()
    for rec in iter_plan(SAMPLE_SEED, theme):
        if rec.split != "held_out" or rec.identity_seed in people:
            continue
        want = "portrait" if len(out) % 2 == 0 else "selfie"
        if rec.kind != want:
            continue
        people.add(rec.identity_seed)
        out.append(rec)
        if len(out) >= n:
            break
    return out


def sample_prompts(n: int = 8, theme: str | None = "none") -> list[str]:
    return [rec.caption for rec in sample_records(n, theme)]


ADAPTER_KEYS = ("encoder_hid_proj.", ".to_k_ip.", ".to_v_ip.")


def param_groups(trained: torch.nn.ModuleDict, adapter_lr_mult: float = 1.0) -> list[dict]:
    """The optimizer's groups: one per trained model; with adapter_lr_mult != 1 the UNet's IP-Adapter parameters
    get a group of their own whose learning rate is that multiple (group["lr_mult"])."""
    if adapter_lr_mult == 1.0:
        return [{"params": list(m.parameters())} for m in trained.values()]
    groups = []
    for name, model in trained.items():
        named = list(model.named_parameters())
        adapter = [p for k, p in named if name == "unet" and any(a in f".{k}" for a in ADAPTER_KEYS)]
        ids = {id(p) for p in adapter}
        groups.append({"params": [p for _, p in named if id(p) not in ids]})
        if adapter:
            groups.append({"params": adapter, "lr_mult": adapter_lr_mult})
    return groups


@torch.no_grad()
def sample_references(records: list, vae, size: int, dev: common.Device) -> torch.Tensor:
    """uint8 (N,3,size,size): each record's person's portrait through the VAE, as encode_corpus stores them."""
    from .corpus import identity_records, render_record

    x = torch.stack([common.to_tensor(render_record(identity_records(r.identity_seed, theme=r.attrs["theme"])[0],
                                                    size)) for r in records]).to(dev.device)
    with dev.autocast():
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample.float()
    return ((rec.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def build_pipeline(unet, vae, text_encoder, tokenizer, scheduler):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   image_encoder=None, requires_safety_checker=False)


@torch.no_grad()
def render_samples(unet, vae, text_encoder, tokenizer, ddpm, prompts: list[str], dev: common.Device, size: int,
                   seeds: tuple[int, ...] = (0, 1), steps: int = SAMPLE_STEPS, image_encoder=None,
                   references: torch.Tensor | None = None):
    """A grid (one row per seed) through a real StableDiffusionPipeline with the app's sampler and settings.

    With an IP-Adapter (unet has one attached, image_encoder and uint8 references given): first a row of the
    references, then the seeds without the adapter (scale 0, as the designer renders portraits), then the seeds
    conditioned on each prompt's reference at scale 1 (as a selfie)."""
    from ..engine import schedulers
    from ..engine import ip_adapter

    pipe = build_pipeline(unet, vae, text_encoder, tokenizer, schedulers.make(SAMPLE_SAMPLER, dict(ddpm.config)))
    pipe.set_progress_bar_config(disable=True)
    models = [m for m in (unet, text_encoder, image_encoder) if m is not None]
    was = [m.training for m in models]
    for m in models:
        m.eval()
    with_ip = image_encoder is not None and references is not None
    rows = []
    if with_ip:
        rows.append([common.to_pil(r.float() / 127.5 - 1) for r in references])
        emb = ip_adapter.embed(image_encoder, references, dev.device)
        conds = [(0.0, torch.zeros_like(emb)), (1.0, emb)]
    else:
        conds = [(None, None)]
    try:
        for scale, cond in conds:
            if scale is not None:
                pipe.set_ip_adapter_scale(scale)
            for seed in seeds:
                gens = [torch.Generator("cpu").manual_seed(seed * 1000 + i) for i in range(len(prompts))]
                # each prompt its own reference (CFG negative: the zero embedding)
                with dev.autocast(), ip_adapter.per_prompt_embeds(pipe, cond) as kwargs:
                    images = pipe(prompt=prompts, negative_prompt=[app_negative()] * len(prompts),
                                  num_inference_steps=steps, guidance_scale=SAMPLE_GUIDANCE, width=size,
                                  height=size, generator=gens, **kwargs).images
                rows.append(images)
    finally:
        for m, w in zip(models, was):
            m.train(w)
        if with_ip:
            pipe.set_ip_adapter_scale(1.0)
    return common.grid(rows)


def save_base_pipeline(unet, vae, text_encoder, ddpm, out: Path, dtype: str, geo: dict | None = None) -> Path:
    """architectures.save_pipeline of copies (optionally fp16; the training models stay fp32). A UNet with the
    IP-Adapter attached is saved as the plain UNet of geo (the adapter goes to its own folder)."""
    from ..engine.architectures import save_pipeline
    from ..engine import ip_adapter

    cast = torch.float16 if dtype == "fp16" else torch.float32
    plain = ip_adapter.plain_unet(unet, geo) if unet.encoder_hid_proj is not None else copy.deepcopy(unet)
    comps = {"unet": plain.to("cpu", cast), "vae": copy.deepcopy(vae).to("cpu", cast),
             "text_encoder": copy.deepcopy(text_encoder).to("cpu", cast), "scheduler": ddpm}
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        import shutil
        shutil.rmtree(tmp)
    save_pipeline(comps, tmp)
    if cast == torch.float16:
        # fp16 on disk (half the size) but a plain from_pretrained(dir) must still compute in fp32 on a CPU:
        # diffusers models load as fp32 by default, transformers' dtype "auto" follows config.dtype, so declare
        # float32 there (an explicit dtype=..., as the Engine passes, still wins).
        import json
        cfg_path = tmp / "text_encoder" / "config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg["dtype"] = "float32"
        cfg.pop("torch_dtype", None)
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if out.exists():
        import shutil
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.training.train_base", description=__doc__.split("\n\n")[0])
    ap.add_argument("--latents", required=True, type=Path, help="file written by encode_corpus")
    ap.add_argument("--vae", required=True, type=Path, help="VAE folder the latents were encoded with (train_vae)")
    common.add_common_args(ap, default_batch=32)
    ap.add_argument("--lr", type=float, default=3e-4, help="peak AdamW learning rate (UNet and text encoder)")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--caption-dropout", type=float, default=0.1, help="fraction of captions replaced for CFG")
    ap.add_argument("--negative-dropout-share", type=float, default=0.5,
                    help="share of dropped captions that become the app's negative prompt instead of \"\"")
    ap.add_argument("--snr-gamma", type=float, default=5.0, help="min-SNR weighting gamma (0: plain MSE)")
    ap.add_argument("--prediction-type", choices=("epsilon", "v_prediction"), default="epsilon",
                    help="what the UNet predicts (diffusion_step.target); saved in the pipeline's scheduler config")
    ap.add_argument("--ema", type=float, default=0.999, help="EMA decay of the UNet weights (0: no EMA)")
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--sample-prompts", type=int, default=8, help="prompts in the sample grid")
    ap.add_argument("--no-ip-adapter", action="store_true", help="train the base alone (no image conditioning)")
    ap.add_argument("--ip-states", default="0.7,0.2,0.1",
                    help="shares of reference / no adapter / zero embedding as the image condition of a selfie "
                         "whose caption is kept (portraits: never their own reference; dropped captions: no "
                         "adapter or zero embedding, half each)")
    ap.add_argument("--appearance-drop", type=float, default=0.0,
                    help="share of the reference-conditioned selfies captioned without hair, eyes and skin (the "
                         "app's selfie_from_reference prompt), so the UNet learns to take the look from the reference")
    ap.add_argument("--detail-weight", type=float, default=0.0,
                    help="extra loss weight on the latent cells that carry eye colour and expression (x their share "
                         "of detail pixels; needs the latents' detail maps: training/latent_masks.py); 0: plain MSE")
    ap.add_argument("--detail-masks", type=Path, default=None,
                    help="the latents' detail maps (default: <latents>.masks.pt beside them)")
    ap.add_argument("--adapter-lr-mult", type=float, default=1.0,
                    help="learning rate of the IP-Adapter's own parameters (image projection, to_k_ip, to_v_ip) as "
                         "a multiple of --lr: the reference path starts far behind the text path it must catch up "
                         "with; 1 keeps one optimizer group per trained model (as before)")
    ap.add_argument("--save-dtype", choices=("fp16", "fp32"), default="fp16",
                    help="weights dtype of the pipeline folder (the app casts to its device dtype on load)")
    ap.add_argument("--text-encoder", type=Path, default=None,
                    help="train_text_encoder run folder: its encoder and tokenizer, frozen, with every caption's "
                         "states computed once (a step runs the UNet alone)")
    ap.add_argument("--image-encoder", type=Path, default=None,
                    help="train_image_encoder run folder: its encoder, frozen, with every reference embedded once")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="start from this assembled model's UNet + IP-Adapter (e.g. assets/bundled; warm_start.py)")
    ap.add_argument("--global-text", action="store_true",
                    help="UNet addition_embed_type 'text': the pooled prompt is added to the time embedding, so every "
                         "resnet sees it (diffusers' TextTimeEmbedding)")
    ap.add_argument("--curve-every", type=int, default=0,
                    help="steps between learning-curve points (curve.py: adherence probe + eval slice; 0: none)")
    ap.add_argument("--curve-instruments", type=Path, default=None, help="the eval's instruments (read only)")
    ap.add_argument("--curve-characters", type=int, default=64, help="held-out characters of the eval slice")
    common.add_stop_at(ap)
    args = ap.parse_args(argv)

    from diffusers import AutoencoderKL
    from transformers import CLIPTokenizer

    from ..engine.architectures import build_components, write_clip_tokenizer
    from ..engine import diffusion_step, ip_adapter

    geo = common.geometry(args.geometry)
    size = int(geo["resolution"])
    dev = common.pick_device(args.device, args.threads)
    out: Path = args.out
    state = common.prepare_out(out, args.resume)
    log = common.JsonlLog(out / common.LOG)
    (out / "samples").mkdir(exist_ok=True)

    data = torch.load(args.latents, map_location="cpu", weights_only=False)
    vae = AutoencoderKL.from_pretrained(args.vae).to(dev.device).eval().requires_grad_(False)
    sf = float(vae.config.scaling_factor)
    if abs(sf - float(data["scaling_factor"])) > 1e-6 * max(1.0, sf):
        raise SystemExit(f"{args.latents} was encoded with scaling_factor {data['scaling_factor']} but {args.vae} has "
                         f"{sf}: re-run encode_corpus with this VAE")
    lat_shape = tuple(data["latents"].shape[1:])
    want = (geo["vae"]["latent_channels"], size // common.latent_factor(geo), size // common.latent_factor(geo))
    if lat_shape != want:
        raise SystemExit(f"latents are {lat_shape}, geometry {args.geometry!r} needs {want}")

    use_ip = not args.no_ip_adapter
    if use_ip and data.get("references") is None:
        raise SystemExit(f"{args.latents} has no reference portraits: re-run encode_corpus (without "
                         "--no-references) or pass --no-ip-adapter")
    try:
        ip_shares = diffusion_step.parse_shares(args.ip_states)
    except ValueError as e:
        raise SystemExit(f"--ip-states: {e}") from e

    if args.global_text:
        geo = {**geo, "unet": {**geo["unet"], "addition_embed_type": "text", "addition_embed_type_num_heads": 4}}
    common.seed_everything(args.seed)
    comps = build_components(geo, args.seed)
    unet, text_encoder = comps["unet"], comps["text_encoder"]
    del comps
    if args.text_encoder is not None:   # pre-trained on captions (train_text_encoder), frozen
        from transformers import CLIPTextModel

        text_encoder = CLIPTextModel.from_pretrained(args.text_encoder / "text_encoder", dtype=torch.float32)
        text_encoder.requires_grad_(False).eval()
    image_encoder = None
    if use_ip:
        ip_adapter.attach(unet, geo, args.seed + 1)
        if args.image_encoder is not None:   # pre-trained on identity (train_image_encoder), frozen
            from transformers import CLIPVisionModelWithProjection

            image_encoder = CLIPVisionModelWithProjection.from_pretrained(args.image_encoder / "image_encoder",
                                                                          dtype=torch.float32)
            image_encoder.requires_grad_(False).eval()
        else:
            image_encoder = ip_adapter.build_image_encoder(geo, args.seed + 2)
        image_encoder = image_encoder.to(dev.device)
    warm = None
    if args.init_from is not None and state is None:   # a resumed run loads its own checkpoint below instead
        from .warm_start import load_into

        warm = {"init_from": str(args.init_from), **load_into(unet, args.init_from, use_ip)}
    unet, text_encoder = unet.to(dev.device), text_encoder.to(dev.device)
    # one EMA over everything that is trained together (a UNet average paired with a live encoder would mismatch)
    trained = torch.nn.ModuleDict({"unet": unet}
                                  | ({"text_encoder": text_encoder} if args.text_encoder is None else {})
                                  | ({"image_encoder": image_encoder} if use_ip and args.image_encoder is None
                                     else {}))
    tokenizer = CLIPTokenizer.from_pretrained(args.text_encoder / "tokenizer" if args.text_encoder is not None
                                              else write_clip_tokenizer(out / "tokenizer"))
    ddpm = noise_scheduler(args.prediction_type)

    def tokenize(texts: list[str]) -> torch.Tensor:
        return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids

    ref_captions = None
    if use_ip and args.appearance_drop > 0:
        from .corpus import reference_captions

        ref_captions = reference_captions(data["records"], themed=data.get("theme") is not None)
    corpus = diffusion_step.Corpus.from_file_data(data, tokenize, app_negative(), ref_captions)
    if args.detail_weight > 0:
        from . import latent_masks

        masks = args.detail_masks or latent_masks.masks_path(args.latents)
        if not Path(masks).is_file():
            raise SystemExit(f"--detail-weight needs the latents' detail maps: {masks} not found (python -m "
                             f"customizer.training.latent_masks --latents {args.latents})")
        corpus.detail = latent_masks.load(masks, list(data["captions"]))
    t_pre = time.perf_counter()
    corpus.precompute(text_encoder if args.text_encoder is not None else None,
                      image_encoder if use_ip and args.image_encoder is not None else None, dev.device)
    precompute_seconds = round(time.perf_counter() - t_pre, 1)
    conditioning = diffusion_step.Conditioning(args.caption_dropout, args.negative_dropout_share,
                                               ip_shares if use_ip else None, args.appearance_drop)
    n_data = len(corpus)

    params = param_groups(trained, args.adapter_lr_mult if use_ip else 1.0)
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), weight_decay=args.weight_decay)
    ema = common.EMA(trained, args.ema).to(dev.device) if args.ema > 0 else None
    step, seconds = 0, 0.0
    if state is not None:
        step, seconds = common.resume_point(state, args.geometry, args, log)
        made_with = state.get("args", {}).get("prediction_type", "epsilon")
        if made_with != args.prediction_type:
            raise SystemExit(f"{out} was trained with --prediction-type {made_with}: resume it the same way")
        if bool(state.get("ip_adapter", False)) != use_ip:
            raise SystemExit(f"{out} was trained {'with' if state.get('ip_adapter') else 'without'} the IP-Adapter: "
                             "resume it the same way")
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        if use_ip:
            image_encoder.load_state_dict(state["image_encoder"])
        if len(state["opt"]["param_groups"]) != len(opt.param_groups):
            made = state.get("args", {}).get("adapter_lr_mult", "1.0")
            raise SystemExit(f"{out} was trained with --adapter-lr-mult {made}: resume it the same way")
        opt.load_state_dict(state["opt"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
    warmup = common.default_warmup(args)
    sample_recs = sample_records(args.sample_prompts, data.get("theme", "none"))
    prompts = [r.caption for r in sample_recs]
    sample_refs = sample_references(sample_recs, vae, size, dev) if use_ip else None
    (out / "samples" / "prompts.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")

    n_unet, n_te, n_vae = (common.param_count(m) for m in (unet, text_encoder, vae))
    n_img = common.param_count(image_encoder) if use_ip else 0
    if step == 0:
        log.write(event="start", geometry=args.geometry, device=dev.describe(), images=n_data,
                  latent_shape=list(lat_shape), people=len(corpus.references) if use_ip else None,
                  params={"unet (with IP-Adapter)" if use_ip else "unet": n_unet, "text_encoder": n_te, "vae": n_vae,
                          "image_encoder": n_img},
                  fp16_mb=round(2 * (n_unet + n_te + n_vae + n_img) / 1e6, 2), batch=args.batch, steps=args.steps,
                  lr=args.lr, warmup=warmup, ema=args.ema, snr_gamma=args.snr_gamma,
                  prediction_type=args.prediction_type,
                  caption_dropout=args.caption_dropout, ip_states=list(ip_shares) if use_ip else None,
                  appearance_drop=args.appearance_drop, adapter_lr_mult=args.adapter_lr_mult,
                  detail_weight=args.detail_weight,
                  frozen_text_encoder=str(args.text_encoder) if args.text_encoder else None,
                  frozen_image_encoder=str(args.image_encoder) if args.image_encoder else None,
                  global_text=args.global_text, precompute_seconds=precompute_seconds, warm_start=warm,
                  trained_params=sum(p.numel() for p in trained.parameters()))
    else:
        log.write(event="resume", step=step, device=dev.describe())

    def ema_ctx():
        return ema.applied(trained) if ema is not None else _null()

    def sample_grid() -> None:
        t = time.perf_counter()
        with ema_ctx():
            img = render_samples(unet, vae, text_encoder, tokenizer, ddpm, prompts, dev, size,
                                 image_encoder=image_encoder, references=sample_refs)
        img.save(out / "samples" / f"sample_{step:06d}.png")
        img.save(out / "samples" / "sample_latest.png")
        log.write(event="samples", step=step, seconds=round(time.perf_counter() - t, 2))

    def curve_point() -> None:
        from . import curve

        folder = out / "curve"
        with ema_ctx():
            save_base_pipeline(unet, vae, text_encoder, ddpm, folder / "pipeline", "fp32", geo)
            ipa = ip_adapter.save(unet, image_encoder, folder / "ip_adapter", torch.float32) if use_ip else None
        (folder / "sheets").mkdir(parents=True, exist_ok=True)
        threads = torch.get_num_threads()
        try:
            point = curve.point(folder / "pipeline", ipa, args.curve_instruments, args.curve_characters,
                                sheet=folder / "sheets" / f"curve_{step:06d}.png")
        finally:
            torch.set_num_threads(threads)
            trained.train()
        log.write(event="curve", step=step, seconds=round(seconds, 1), **point)

    def checkpoint() -> None:
        common.save_checkpoint(out / common.CHECKPOINT, {
            "step": step, "seconds": seconds, "unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(),
            "image_encoder": image_encoder.state_dict() if use_ip else None, "ip_adapter": use_ip,
            "opt": opt.state_dict(), "ema": ema.state_dict() if ema is not None else None,
            "geometry": args.geometry, "schedule": common.schedule_of(args),
            "args": {k: str(v) for k, v in vars(args).items()}})
        log.write(event="checkpoint", step=step)

    budget = common.Budget(args.max_minutes)
    trained.train()
    acc_loss, acc_n, t_last, last_grid, stopped = 0.0, 0, time.perf_counter(), -1, "steps"
    alphas = ddpm.alphas_cumprod
    end = common.end_step(args)
    if end < args.steps:
        stopped = "stop-at"
    while step < end:
        t0 = time.perf_counter()
        g = common.step_generator(args.seed, "base-step", step)   # data, noise, timesteps, dropout: f(seed, step)
        b = diffusion_step.draw(corpus, g, args.batch, conditioning, alphas, dev.device)

        lr = common.lr_at(step, args.lr, warmup, args.steps)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        with dev.autocast():
            pred = diffusion_step.predict(unet, text_encoder, image_encoder, b, dev.device)
        loss = diffusion_step.loss(pred, b, alphas, args.snr_gamma, args.prediction_type, args.detail_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_([p for grp in params for p in grp["params"]], args.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(trained)
        step += 1
        seconds += time.perf_counter() - t0
        acc_loss += loss.item()
        acc_n += 1
        if step % args.log_every == 0 or step == args.steps:
            now = time.perf_counter()
            log.write(step=step, loss=acc_loss / acc_n, lr=lr, grad_norm=float(gnorm), seconds=round(seconds, 2),
                      s_per_step=round((now - t_last) / acc_n, 4))
            acc_loss, acc_n, t_last = 0.0, 0, now
        if step % args.sample_every == 0:
            sample_grid()
            last_grid = step
        if args.curve_every and args.curve_instruments and step % args.curve_every == 0:
            curve_point()
        if step % args.ckpt_every == 0 and step < args.steps:
            checkpoint()
        if budget.expired() and step < end:
            stopped = "max-minutes"
            break
    if last_grid != step:
        sample_grid()
    checkpoint()
    with ema_ctx():
        pipe_dir = save_base_pipeline(unet, vae, text_encoder, ddpm, out / "pipeline", args.save_dtype, geo)
        ipa_dir = None
        if use_ip:
            ipa_dir = ip_adapter.save(unet, image_encoder, out / "ip_adapter",
                                      torch.float16 if args.save_dtype == "fp16" else torch.float32)
    log.write(event="final", step=step, pipeline=str(pipe_dir), ip_adapter=str(ipa_dir) if ipa_dir else None,
              ema=ema is not None, dtype=args.save_dtype)
    print(f"train_base: stopped at step {step}/{args.steps} ({stopped}); pipeline in {pipe_dir}, "
          f"samples {out / 'samples' / 'sample_latest.png'}", file=sys.stderr)
    return 0


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    raise SystemExit(main())
