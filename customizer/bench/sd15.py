"""Stable Diffusion 1.5 geometry at 512x512 (random weights from config): a selfie with IP-Adapter at 4 and at 25
steps with CFG, our engine against plain diffusers, plus FLOPs per image and the floor.

On a CPU one UNet step takes about a minute here, so by default each path renders ONE 1-step selfie (timed per
stage, FLOPs counted on the same call) and the N-step latency is composed as fixed + N x step ("method":
"composed"); --sd15-full (the default on a GPU) times real N-step calls with warm-up and repetitions instead.
"""
from __future__ import annotations

import gc
import time
from typing import Any, Callable

from . import flops, stats, workload


def _prompt() -> tuple[str, str]:
    from ..character import CharacterSpec, SelfieSpec
    from ..prompts import selfie_prompt

    p = selfie_prompt(CharacterSpec.from_dict(workload.spec(0)), SelfieSpec.from_dict(workload.selfies(1)[0]))
    return p.positive, p.negative


def _compose(one_step: dict[str, float], total: float, steps: list[int]) -> dict[str, dict[str, Any]]:
    step = one_step["denoise"]
    return {str(n): {"p50": total - step + n * step, "n": 1, "method": "composed: fixed + steps x step"}
            for n in steps}


def _measure(call: Callable[[int, int], tuple[float, dict[str, float]]], steps: list[int], runs: int,
             warmup: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Real N-step calls: latency summaries and median stages per step count."""
    latency, split = {}, {}
    for n in steps:
        for i in range(warmup):
            call(n, 10_000 + i)
        results = [call(n, i) for i in range(runs)]
        latency[str(n)] = {**stats.summary([t for t, _ in results]), "method": "measured"}
        split[str(n)] = stats.median_stages([st for _, st in results])
    return latency, split


def run(job: dict[str, Any], t0: float, log: Callable[[str], None]) -> dict[str, Any]:
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from ..config import _profile
    from ..engine import devices
    from ..engine.pipeline import Engine
    from ..recipe import Recipe
    from .plain import Plain
    from .weights import profile_raw

    device, dtype = devices.pick("auto", "auto")
    steps, size, guidance, scale = [int(s) for s in job["steps"]], int(job["size"]), float(job["guidance"]), 0.7
    full = bool(job["full"]) or device == "cuda"
    runs, warmup = int(job["runs"]), int(job["warmup"])
    positive, negative = _prompt()
    reference = Image.fromarray((np.random.RandomState(0).rand(size, size, 3) * 255).astype(np.uint8))
    out: dict[str, Any] = {"device": {"device": device, "dtype": str(dtype).replace("torch.", "")},
                           "size": size, "guidance": guidance, "ip_adapter_scale": scale, "full": full}

    # ---- ours ----
    t = time.perf_counter()
    folder = Path(job["folder"])
    engine = Engine(_profile("bench-sd15", profile_raw(folder, 1, guidance, size, "dpmpp_2m"), folder))
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    embeds = engine.encode_reference(reference)
    embed_s = time.perf_counter() - t
    recipe = Recipe(kind="selfie", profile="bench-sd15", model_id=job["folder"], model_revision=engine.weights["base"],
                    prompt=positive, negative_prompt=negative, seed=1, scheduler="dpmpp_2m", steps=1,
                    guidance=guidance, width=size, height=size, ip_adapter_scale=scale)
    log("sd15: ours, one 1-step selfie (timed per stage, FLOPs counted)")
    (_, timings), total_flops, per_module = flops.count(lambda: engine.render(recipe, reference_embeds=embeds))
    stages = {k: v for k, v in timings.items() if k != "generate"}
    ours = {"load_s": load_s, "reference_embed_s": embed_s, "one_step_stages": stages,
            "flops_one_step": total_flops, "per_module_one_step": per_module}
    if full:
        def ours_call(n: int, i: int) -> tuple[float, dict[str, float]]:
            r = recipe.replace(steps=n, seed=i, prompt=f"{positive}, take {i}")  # a new prompt each time
            timings = engine.render(r, reference_embeds=embeds)[1]
            return timings.pop("generate"), timings
        ours["latency"], ours["stages"] = _measure(ours_call, steps, runs, warmup)
    else:
        ours["latency"] = _compose(stages, timings["generate"], steps)
    out["ours"] = ours
    engine = embeds = None  # free the first model before the second loads
    gc.collect()

    # ---- plain diffusers ----
    plain = Plain(job["folder"], [], device, dtype)
    plain.add_ip_adapter(scale)
    run1 = {"prompt": positive, "negative_prompt": negative, "seed": 1, "steps": 1, "guidance": guidance,
            "width": size, "height": size}
    log("sd15: plain diffusers, one 1-step selfie")
    (total, bstages), b_flops, b_modules = flops.count(lambda: plain(run1, ip_image=reference))
    base = {"scheduler": type(plain.pipe.scheduler).__name__, "one_step_stages": bstages,
            "flops_one_step": b_flops, "per_module_one_step": b_modules}
    if full:
        base["latency"], base["stages"] = _measure(
            lambda n, i: plain(dict(run1, seed=i, prompt=f"{positive}, take {i}"), ip_image=reference, steps=n),
            steps, runs, warmup)
    else:
        base["latency"] = _compose(bstages, total, steps)
    out["baseline"] = base
    plain = None
    gc.collect()

    rate = flops.matmul_rate(device=device)
    unet = "UNet2DConditionModel"
    out["floor"] = {"matmul": rate}
    for n in steps:
        key = str(n)
        f = ours["flops_one_step"] + (n - 1) * ours["per_module_one_step"][unet]  # fixed + n UNet steps
        out["floor"][key] = flops.floor(f, rate, ours["latency"][key]["p50"])
    out["ratio"] = {str(n): ours["latency"][str(n)]["p50"] / base["latency"][str(n)]["p50"] for n in steps}
    out["peak_rss_mb"] = stats.peak_rss_mb()
    return out
