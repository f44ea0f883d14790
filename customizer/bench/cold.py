"""Cold start and memory, each path in its own fresh process: how long until it can render, and its peak RSS
after a short session (portrait, lock, selfie, candidates of 4)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from . import stats, workload


def ours(job: dict[str, Any], t0: float, log: Callable[[str], None]) -> dict[str, Any]:
    from .session import open_studio

    t_entry = time.time()
    studio, store = open_studio(Path(job["workdir"]), job["profile"])
    t_studio = time.time()
    engine = studio.engine  # torch + diffusers imports and the model load: the cold part
    t_engine = time.time()
    first = studio.design(workload.spec(0), seed=1000, n=1)
    t_first = time.time()
    cid = first["character"]["id"]
    t = time.perf_counter()
    studio.lock(cid, first["candidates"][0]["id"])  # computes + caches the reference embedding
    lock_s = time.perf_counter() - t
    studio.selfie(cid, workload.selfies(1)[0], seed=1)
    studio.design(workload.spec(1), seed=2, n=4)
    log(f"ours: engine ready {t_engine - t0:.1f} s after the process started")
    out = {"cold_start": {"python_to_entry_s": t_entry - t0, "studio_ready_s": t_studio - t0,
                          "engine_ready_s": t_engine - t0, "engine_load_s": engine.load_seconds,
                          "first_portrait_s": t_first - t0, "lock_s": lock_s},
           "peak_rss_mb": stats.peak_rss_mb(),
           "device": {"device": engine.device, "dtype": str(engine.dtype).replace("torch.", "")}}
    store.close()
    return out


def plain(job: dict[str, Any], t0: float, log: Callable[[str], None]) -> dict[str, Any]:
    from PIL import Image

    from ..engine import devices
    from .plain import Plain

    device, dtype = devices.pick("auto", "auto")
    pipe = Plain(job["folder"], job["themes"], device, dtype)
    t_ready = time.time()
    run = {"prompt": "portrait of an adult", "negative_prompt": "blurry", "seed": 0, "steps": job["steps"],
           "guidance": job["guidance"], "width": job["size"], "height": job["size"], "loras": job["loras"]}
    pipe(run)
    t_first = time.time()
    pipe(run, n=4)
    pipe.add_ip_adapter(0.7)
    pipe(run, ip_image=Image.new("RGB", (job["size"], job["size"]), (90, 60, 40)))
    return {"cold_start": {"pipeline_ready_s": t_ready - t0, "first_portrait_s": t_first - t0},
            "peak_rss_mb": stats.peak_rss_mb(),
            "device": {"device": device, "dtype": str(dtype).replace("torch.", "")}}
