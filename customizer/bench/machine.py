"""The machine a run measured (without importing torch: the parent process stays light)."""
from __future__ import annotations

import os
import platform
from importlib import metadata


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def info() -> dict:
    versions = {}
    for lib in ("torch", "diffusers", "transformers", "peft"):
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_average_start": list(os.getloadavg()), **versions,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
