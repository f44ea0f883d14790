"""Candidate optimisations, each measured alone on one UNet step of the bundled model (CFG batch of 2, IP-Adapter
on, the theme LoRA active, as in a themed selfie). Variants are interleaved round by round so that a neighbour's
load on a shared CPU hits all of them alike, and each is timed twice: wall clock (what a user waits) and this
process's CPU time (all its threads; waiting for a busy core does not count, so it is the steadier figure when the
CPU is shared). Each also reports how far its output moves from the default's (0.0 = bit-identical)."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable



def _swap_to_classic(unet) -> dict:
    """Pre-SDPA attention processors (explicit baddbmm + softmax), keeping the IP-Adapter weights."""
    from diffusers.models.attention_processor import AttnProcessor, IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0

    saved, new = dict(unet.attn_processors), {}
    for name, proc in saved.items():
        if isinstance(proc, IPAdapterAttnProcessor2_0):
            classic = IPAdapterAttnProcessor(proc.hidden_size, proc.cross_attention_dim, proc.num_tokens, proc.scale)
            classic.load_state_dict(proc.state_dict())
            new[name] = classic.to(next(proc.parameters()).device, next(proc.parameters()).dtype)
        else:
            new[name] = AttnProcessor()
    unet.set_attn_processor(new)
    return saved


def measure(plain, folder: str, size: int, rounds: int, k: int, log: Callable[[str], None]) -> dict[str, Any]:
    """On a Plain pipeline with its IP-Adapter (and theme LoRAs, if any) loaded."""
    import torch
    from PIL import Image

    pipe, unet = plain.pipe, plain.pipe.unet
    device, dtype = unet.device, unet.dtype
    adapters = pipe.get_list_adapters().get("unet", [])
    theme = "fantasy" if "fantasy" in adapters else (adapters[0] if adapters else None)
    side = size // pipe.vae_scale_factor
    gen = torch.Generator("cpu").manual_seed(0)
    lat = torch.randn(2, unet.config.in_channels, side, side, generator=gen).to(device, dtype)
    enc = torch.randn(2, 77, unet.config.cross_attention_dim, generator=gen).to(device, dtype)
    timestep = torch.tensor(500, device=device)
    with torch.inference_mode():
        emb = pipe.prepare_ip_adapter_image_embeds([Image.new("RGB", (64, 64))], None, device, 1, True)

    def step(x=lat, e=enc, im=emb, u=unet):
        with torch.inference_mode():
            return u(x, timestep, encoder_hidden_states=e,
                     added_cond_kwargs={"image_embeds": im} if im is not None else None).sample

    def clock(fn: Callable[[], Any], k: int) -> tuple[float, float]:
        """(wall, CPU) seconds per call."""
        fn()  # a variant's first call may build kernels / caches
        plain.sync()
        t, c = time.perf_counter(), time.process_time()
        for _ in range(k):
            fn()
        plain.sync()
        return (time.perf_counter() - t) / k, (time.process_time() - c) / k

    def theme_on():
        if theme:
            pipe.enable_lora()
            pipe.set_adapters([theme], adapter_weights=[0.6])

    threads = torch.get_num_threads()
    saved: dict[str, Any] = {}
    cl = torch.channels_last
    # name -> (setup, teardown, step input); lora_fused last: unfusing leaves rounding residue in the weights
    variants: dict[str, tuple[Callable, Callable, Any]] = {
        "default": (theme_on, lambda: None, lat),
        "channels_last": (lambda: unet.to(memory_format=cl), lambda: unet.to(memory_format=torch.contiguous_format),
                          lat.to(memory_format=cl)),
        "classic_attention": (lambda: saved.update(p=_swap_to_classic(unet)),
                              lambda: unet.set_attn_processor(saved["p"]), lat),
    }
    if device.type == "cpu" and threads > 1:
        variants["threads_1"] = (lambda: torch.set_num_threads(1), lambda: torch.set_num_threads(threads), lat)
    if theme:
        variants["lora_off"] = (pipe.disable_lora, theme_on, lat)
        variants["lora_fused"] = (lambda: pipe.fuse_lora(components=["unet"], adapter_names=[theme]),
                                  lambda: pipe.unfuse_lora(components=["unet"]), lat)
    theme_on()
    reference = step()
    times: dict[str, list[tuple[float, float]]] = {n: [] for n in variants}
    diffs: dict[str, float] = {}
    for r in range(rounds):
        for name, (setup, teardown, x) in variants.items():
            setup()
            if r == 0:
                diffs[name] = float((step(x) - reference).abs().max())
            times[name].append(clock(lambda x=x: step(x), k))
            teardown()
    def summary(v: list[tuple[float, float]]) -> dict[str, float]:
        wall, cpu = [w for w, _ in v], [c for _, c in v]
        return {"p50_s": statistics.median(wall), "min_s": min(wall), "cpu_p50_s": statistics.median(cpu)}

    out: dict[str, Any] = {
        "unit": "seconds per UNet step (batch 2 = one CFG step)", "rounds": rounds, "steps_per_round": k,
        "threads": threads, "variants": {n: summary(v) | {"max_abs_diff": diffs[n]} for n, v in times.items()}}
    base = out["variants"]["default"]
    for v in out["variants"].values():
        v["vs_default"] = v["p50_s"] / base["p50_s"]
        v["cpu_vs_default"] = v["cpu_p50_s"] / base["cpu_p50_s"]
    log("ablations: batching, fused QKV")

    # Candidates in one batch (4 images x CFG = 8) vs one image at a time: speed, and whether image 0 is the same
    big = lambda t: torch.cat([t] * 4)  # noqa: E731
    emb4 = [big(e) for e in emb]
    batched = step(big(lat), big(enc), emb4)[:2]
    per_batch, per_single = [], []
    for _ in range(rounds):
        per_batch.append(clock(lambda: step(big(lat), big(enc), emb4), k)[1])
        per_single.append(clock(step, k)[1])
    out["batch4"] = {"per_image_batched_cpu_s": statistics.median(per_batch) / 4,
                     "per_image_single_cpu_s": statistics.median(per_single),
                     "bit_identical": bool(torch.equal(batched, step())),
                     "max_abs_diff": float((batched - step()).abs().max())}
    out["batch4"]["vs_single"] = out["batch4"]["per_image_batched_cpu_s"] / out["batch4"]["per_image_single_cpu_s"]

    # Fused QKV needs a UNet without IP-Adapter processors (diffusers replaces every processor when fusing)
    from diffusers import UNet2DConditionModel

    bare = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", dtype=dtype).to(device)
    fused = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", dtype=dtype).to(device)
    fused.fuse_qkv_projections()
    plain_out, fused_out = step(u=bare, im=None), step(u=fused, im=None)
    unfused_t, fused_t = [], []
    for _ in range(rounds):  # interleaved, CPU time
        unfused_t.append(clock(lambda: step(u=bare, im=None), k)[1])
        fused_t.append(clock(lambda: step(u=fused, im=None), k)[1])
    out["fused_qkv"] = {"unfused_cpu_s": statistics.median(unfused_t), "fused_cpu_s": statistics.median(fused_t),
                        "vs_unfused": statistics.median(fused_t) / statistics.median(unfused_t),
                        "max_abs_diff": float((fused_out - plain_out).abs().max()),
                        "note": "measured without IP-Adapter/LoRA: fuse_qkv_projections() swaps out the IP-Adapter "
                                "attention processors and bypasses peft LoRA layers"}
    theme_on()  # leave the pipeline as it was handed over
    return out
