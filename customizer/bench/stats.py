"""Summaries of repeated timings (seconds) and process memory."""
from __future__ import annotations

import math
import resource
import sys
from typing import Iterable


def percentile(values: Iterable[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    xs = sorted(float(v) for v in values)
    if not xs:
        raise ValueError("percentile of no values")
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, float | int]:
    xs = [float(v) for v in values]
    return {"n": len(xs), "p50": percentile(xs, 50), "p95": percentile(xs, 95), "mean": sum(xs) / len(xs),
            "min": min(xs), "max": max(xs)}


def median_stages(per_run: list[dict[str, float]]) -> dict[str, float]:
    """Per-stage median over runs (stages missing from a run count as 0)."""
    names = sorted({k for run in per_run for k in run})
    return {k: percentile([run.get(k, 0.0) for run in per_run], 50) for k in names}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024
