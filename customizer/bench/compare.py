"""Ours against plain diffusers in ONE process, run by run: each timed Studio call is followed at once by the plain
pipeline call on the very same inputs (prompt, negative, seed, steps, guidance, size, theme LoRA, IP-Adapter
scale), so a neighbour's load on a shared CPU hits both sides alike. Every timed portrait and selfie has a new
prompt; the candidates of one design share theirs (that is where the prompt cache helps).

Ours is the whole Studio call (render + PNG + SQLite row); its stage split comes from the recipe each image stores.
The plain side is conservative: it runs our step count (a default diffusers call runs 50), portraits and candidates
run before its IP-Adapter is loaded, candidates-of-4 are one batched call, and its theme LoRA is set only when it
changes. Each timed portrait and selfie is also run as the default call (`default_call`: the pipeline's default
step count, everything else the same), the baseline as the issue defines it; the report gives both ratios. What it keeps
is the plain-diffusers cost under test: prompts re-encoded on every call, the reference image re-embedded on every
selfie, the LoRA as peft's unfused branch.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from . import flops, stats, workload

RECIPE_INPUTS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height", "loras",
                 "ip_adapter_scale")


def _inputs(recipe: dict[str, Any]) -> dict[str, Any]:
    return {k: recipe[k] for k in RECIPE_INPUTS}


def _ours_stages(latency: float, timings: dict[str, float]) -> dict[str, float]:
    return {**{k: v for k, v in timings.items() if k != "generate"}, "store": max(0.0, latency - timings["generate"])}


def _default_steps() -> int:
    """num_inference_steps of a StableDiffusionPipeline call that does not pass it (diffusers' own default)."""
    import inspect

    from diffusers import StableDiffusionPipeline

    return int(inspect.signature(StableDiffusionPipeline.__call__).parameters["num_inference_steps"].default)


INTERVAL_PROBE = 0.5  # the guidance interval timed beside the profile's render: CFG on the first half of the steps


def engine_before_after(engine, recipe, embeds, rounds: int) -> dict[str, Any]:
    """This change's engine optimisations off and on, interleaved, on one themed selfie recipe.

    before = the engine as it was: LoRA as peft's unfused branch, set_adapters and the IP-Adapter scale re-applied
    on every render, CFG on every step. after = the engine now, in the state of a user's next selfie: theme already
    fused, state already applied, the recipe as the profile makes it. interval = after with CFG on the first
    INTERVAL_PROBE of the steps only (a setting the bundled profile does not use: BENCHMARKS.md, *Guidance
    interval*). All encode the prompt (a new selfie has a new prompt: the cache does not help here).
    """
    import numpy as np

    fuser = engine._fuser
    probe = recipe.replace(guidance_end=INTERVAL_PROBE)

    def before():
        engine.prompts.clear()
        if fuser is not None:
            fuser.restore()
        engine._fuser, engine._lora_state, engine._ip_scale = None, None, None
        try:
            return engine.render(recipe.replace(guidance_end=None), reference_embeds=embeds)
        finally:
            engine._fuser, engine._lora_state = fuser, None

    def after_setup():
        engine.prompts.clear()
        engine._apply_loras(recipe.loras)  # the theme as the previous selfie left it

    times: dict[str, list[float]] = {"before": [], "after": [], "interval": []}
    images = {}
    for _ in range(rounds):
        for name, setup, fn in (("before", lambda: None, before),
                                ("after", after_setup, lambda: engine.render(recipe, reference_embeds=embeds)),
                                ("interval", after_setup, lambda: engine.render(probe, reference_embeds=embeds))):
            setup()
            t = time.perf_counter()
            images[name] = fn()[0]
            times[name].append(time.perf_counter() - t)
    again = engine.render(recipe, reference_embeds=embeds)[0]
    b, a, iv = (stats.summary(times[k]) for k in ("before", "after", "interval"))

    def diff(x: str, y: str) -> np.ndarray:
        return np.abs(np.asarray(images[x], dtype=np.int16) - np.asarray(images[y], dtype=np.int16))

    vs_before = int(diff("before", "after").max())
    return {"before": b, "after": a, "after_over_before": a["p50"] / b["p50"], "fused_lora": fuser is not None,
            "same_pixels_as_before": vs_before == 0, "max_pixel_diff_vs_before": vs_before,
            "reproducible": again.tobytes() == images["after"].tobytes(),
            "interval": iv | {"guidance_end": INTERVAL_PROBE, "cfg_steps": probe.cfg_steps(),
                              "steps": int(recipe.steps), "over_after": iv["p50"] / a["p50"],
                              "mean_pixel_diff_vs_after": float(diff("interval", "after").mean())}}


def run(job: dict[str, Any], t0: float, log: Callable[[str], None]) -> dict[str, Any]:
    import torch
    from PIL import Image

    from ..recipe import Recipe
    from .plain import Plain
    from .session import open_studio

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    studio, store = open_studio(Path(job["workdir"]), job["profile"])
    engine = studio.engine
    plain = Plain(job["folder"], job["themes"], engine.device, engine.dtype)
    runs, warmup = int(job["runs"]), int(job["warmup"])
    shots = workload.selfies(runs + warmup)
    first = studio.design(workload.spec(0), seed=1000, n=1)
    cid = first["character"]["id"]
    reference = studio.lock(cid, first["candidates"][0]["id"])
    with Image.open(reference["path"]) as im:
        ref_image = im.convert("RGB")

    ours_t: dict[str, list[float]] = {"portrait": [], "selfie": [], "candidates4": []}
    plain_t: dict[str, list[float]] = {k: [] for k in ours_t}
    ours_st: dict[str, list[dict]] = {"portrait": [], "selfie": []}
    plain_st: dict[str, list[dict]] = {"portrait": [], "selfie": []}
    last: dict[str, dict[str, Any]] = {}

    default_steps = _default_steps()
    default_t: dict[str, list[float]] = {"portrait": [], "selfie": []}

    def pair(kind: str, ours_call: Callable[[], list[dict]], timed: bool, **plain_kw) -> None:
        t = time.perf_counter()
        made = ours_call()
        latency = time.perf_counter() - t
        p_latency, p_stages = plain(_inputs(made[0]["recipe"]), n=len(made), **plain_kw)
        if not timed:
            return
        ours_t[kind].append(latency)
        plain_t[kind].append(p_latency)
        if kind in default_t:
            default_t[kind].append(plain(_inputs(made[0]["recipe"]), steps=default_steps, **plain_kw)[0])
        if kind in ours_st:
            ours_st[kind].append(_ours_stages(latency, made[0]["recipe"]["extra"]["timings"]))
            plain_st[kind].append(p_stages)
            last[kind] = made[0]["recipe"]

    log(f"compare: {runs} portraits, {int(job['candidate_reps'])} candidates-of-4, {runs} selfies, "
        "each ours then plain")
    for i in range(warmup + runs):
        pair("portrait", lambda i=i: studio.design(workload.spec(i + 1), seed=i, n=1)["candidates"], i >= warmup)
    for k in range(int(job["candidate_reps"])):
        pair("candidates4", lambda k=k: studio.design(workload.spec(50 + k), seed=5000 + 10 * k, n=4)["candidates"],
             True)
    plain.add_ip_adapter(float(studio.likeness_to_scale(shots[0]["likeness"])))
    for i in range(warmup + runs):
        shot = shots[(i - warmup) % len(shots)]
        pair("selfie", lambda i=i, shot=shot: studio.selfie(cid, shot, seed=i), i >= warmup, ip_image=ref_image)

    out: dict[str, Any] = {
        "ours": {"latency": {k: stats.summary(v) for k, v in ours_t.items()},
                 "stages": {k: stats.median_stages(v) for k, v in ours_st.items()},
                 "prompt_cache": engine.prompts.info()},
        "baseline": {"latency": {k: stats.summary(v) for k, v in plain_t.items()},
                     "stages": {k: stats.median_stages(v) for k, v in plain_st.items()},
                     "scheduler": type(plain.pipe.scheduler).__name__},
        "default_call": {"latency": {k: stats.summary(v) for k, v in default_t.items()}, "steps": default_steps,
                         "scheduler": type(plain.pipe.scheduler).__name__},
    }
    embeds = store.get_reference_embedding(reference["id"], engine.embedding_key)
    log("compare: engine before/after")
    out["engine_before_after"] = engine_before_after(engine, Recipe.from_dict(last["selfie"]), embeds, runs)

    # FLOPs of one portrait and one selfie as we render them (prompt cache cleared: the text encoder counts)
    rate = flops.matmul_rate(device=engine.device)
    out["floor"] = {"matmul": rate}
    for kind in ("portrait", "selfie"):
        recipe = Recipe.from_dict(last[kind])
        engine.prompts.clear()
        ref = embeds if kind == "selfie" else None
        _, total, per_module = flops.count(lambda r=recipe, e=ref: engine.render(r, reference_embeds=e))
        out["floor"][kind] = flops.floor(total, rate, out["ours"]["latency"][kind]["p50"]) | {"per_module": per_module}
    if job.get("ablations"):
        from .ablations import measure

        log("compare: ablations (one UNet step per variant, interleaved)")
        out["ablations"] = measure(plain, job["folder"], int(job["size"]), int(job["ablation_rounds"]),
                                   int(job["steps_per_round"]), log)
    store.close()
    return out
