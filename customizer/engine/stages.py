"""Where a render's time goes: text encode, image embed, denoise, decode.

StageClock wraps methods of pipeline parts (e.g. vae.decode) once at load; while a render is being recorded, time
spent inside them is added to that render's stage totals. Outside a recording the wrappers only pass through. The
benchmark uses the same clock on a stock diffusers pipeline, so both paths are split the same way.
"""
from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from typing import Any, Iterator

STAGES = ("text_encode", "image_embed", "denoise", "decode")


class StageClock:
    def __init__(self) -> None:
        self._sink: dict[str, float] | None = None

    def wrap(self, obj: Any, name: str, stage: str) -> None:
        """Time obj.name into `stage`. Wrap only methods that never call each other (no double counting)."""
        inner = getattr(obj, name)
        clock = self

        @functools.wraps(inner)
        def timed(*args, **kwargs):
            sink = clock._sink
            if sink is None:
                return inner(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                sink[stage] = sink.get(stage, 0.0) + time.perf_counter() - t0

        setattr(obj, name, timed)

    @contextmanager
    def recording(self, sink: dict[str, float]) -> Iterator[dict[str, float]]:
        previous, self._sink = self._sink, sink
        try:
            yield sink
        finally:
            self._sink = previous


def split(total: float, measured: dict[str, float]) -> dict[str, float]:
    """Stage totals for one render: the measured stages (and extra ones, e.g. drawing a control image) as
    measured; denoise = the rest of the call (UNet steps, scheduler, pipeline overhead), never negative."""
    out = {s: float(measured.get(s, 0.0)) for s in STAGES if s != "denoise"}
    extra = {k: float(v) for k, v in measured.items() if k not in STAGES}
    out["denoise"] = max(0.0, total - sum(out.values()) - sum(extra.values()))
    return {**{s: out[s] for s in STAGES}, **extra}
