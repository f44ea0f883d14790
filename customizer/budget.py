"""A compute budget per request: one cost figure, megapixel-steps = width x height / 10^6 x steps x images, with
the profile's measured seconds per megapixel-step (spaces.yaml `budget:`; scripts/measure_budget.py measures it).

Two limits in seconds of rendering, turned into megapixel-steps by that figure: `max_seconds` for a whole request
(every render it may take: the candidates, count x likeness attempts for selfies, slots x attempts for a pack,
x the upscale factor) and `max_render_seconds` for one pipeline call (the candidates of a design are one batched
call; each selfie attempt is one) - the longest anyone else can have to wait behind this request at the render
gate (customizer/gate.py). `max_side` caps width and height (cost grows faster than the pixels beyond the sizes
measured). A request over any of them is refused before anything loads, renders or is stored, with the estimate and
the limit in the message; the Advanced controls offer only settings that fit (`fit`). No torch, no gradio.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import CustomizerError

MEGA = 1_000_000


class BudgetError(CustomizerError):
    """A request would cost more than the profile's compute budget allows."""


@dataclass(frozen=True)
class BudgetConfig:
    seconds_per_unit: float   # measured seconds of rendering per megapixel-step on the profile's hardware
    max_seconds: float        # the most one request may cost
    max_render_seconds: float  # the most one pipeline call may cost (what others may wait behind)
    max_side: int = 2048      # largest width or height
    upscale_factor: float = 1.0  # cost multiplier of the 2x upscale (1.0: Lanczos is free; a learned one costs)
    measured: str = ""        # where seconds_per_unit comes from

    @property
    def max_units(self) -> float:
        return self.max_seconds / self.seconds_per_unit

    @property
    def max_render_units(self) -> float:
        return self.max_render_seconds / self.seconds_per_unit


def parse(raw: Any) -> BudgetConfig | None:
    """spaces.yaml `budget: {seconds_per_unit, max_seconds, max_render_seconds, max_side?, upscale_factor?,
    measured?}`; None when absent (no limit)."""
    keys = {"seconds_per_unit", "max_seconds", "max_render_seconds", "max_side", "upscale_factor", "measured"}
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"budget must be a mapping with keys {sorted(keys)}")
    unknown = set(raw) - keys
    if unknown:
        raise ValueError(f"budget: unknown keys {sorted(unknown)}")

    def positive(key: str, default: float | None = None) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"budget.{key} must be a positive number, got {value!r}")
        return float(value)

    factor = positive("upscale_factor", 1.0)
    if factor < 1:
        raise ValueError(f"budget.upscale_factor must be at least 1, got {factor}")
    side = raw.get("max_side", 2048)
    if isinstance(side, bool) or not isinstance(side, int) or not 8 <= side <= 8192 or side % 8:
        raise ValueError(f"budget.max_side must be a multiple of 8 from 8 to 8192, got {side!r}")
    cfg = BudgetConfig(seconds_per_unit=positive("seconds_per_unit"), max_seconds=positive("max_seconds"),
                       max_render_seconds=positive("max_render_seconds"), max_side=side, upscale_factor=factor,
                       measured=str(raw.get("measured", "")))
    if cfg.max_render_seconds > cfg.max_seconds:
        raise ValueError("budget.max_render_seconds must not be more than budget.max_seconds")
    return cfg


@dataclass(frozen=True)
class Estimate:
    images: int
    width: int
    height: int
    steps: int
    upscale: float
    units: float              # megapixel-steps
    seconds: float | None     # units x seconds_per_unit (None without a budget)

    def describe(self) -> str:
        up = f" x {self.upscale:g} (upscale)" if self.upscale != 1 else ""
        return (f"{self.images} image{'s' if self.images != 1 else ''} x {self.width}x{self.height} x "
                f"{self.steps} steps{up} = {self.units:.2f} megapixel-steps")


def units(width: int, height: int, steps: int, images: int, upscale: float = 1.0) -> float:
    return width * height / MEGA * steps * images * upscale


def estimate(cfg: BudgetConfig | None, width: int, height: int, steps: int, images: int,
             upscale: bool = False) -> Estimate:
    factor = cfg.upscale_factor if (cfg and upscale) else 1.0
    u = units(width, height, steps, images, factor)
    return Estimate(images, width, height, steps, factor, u, u * cfg.seconds_per_unit if cfg else None)


def check(cfg: BudgetConfig | None, what: str, width: int, height: int, steps: int, images: int,
          upscale: bool = False, per_render: int = 1) -> Estimate:
    """The request's estimate; BudgetError (with the estimate and the limit) when it is over the budget.
    images: every render the request may take; per_render: images in one pipeline call (a design's batch)."""
    est = estimate(cfg, width, height, steps, images, upscale)
    if cfg is None:
        return est
    advice = "Use fewer steps, a smaller size or fewer images."
    if max(width, height) > cfg.max_side:
        raise BudgetError(
            f"{what}: over this server's compute budget - {est.describe()}, about {est.seconds:.0f} s of rendering "
            f"here; width and height are at most {cfg.max_side} and a request at most {cfg.max_units:.2f} "
            f"megapixel-steps (about {cfg.max_seconds:g} s). {advice}")
    one = estimate(cfg, width, height, steps, per_render, upscale)
    if one.units > cfg.max_render_units * (1 + 1e-9):
        raise BudgetError(
            f"{what}: over this server's compute budget - one render of {one.describe()} takes about "
            f"{one.seconds:.1f} s here; the limit per render is {cfg.max_render_units:.2f} megapixel-steps (about "
            f"{cfg.max_render_seconds:g} s). {advice}")
    if est.units > cfg.max_units * (1 + 1e-9):
        raise BudgetError(
            f"{what}: over this server's compute budget - {est.describe()} (every render it may take), about "
            f"{est.seconds:.1f} s of rendering here; the limit per request is {cfg.max_units:.2f} megapixel-steps "
            f"(about {cfg.max_seconds:g} s). {advice}")
    return est


@dataclass(frozen=True)
class Fit:
    steps_max: int
    size_max: int             # largest square side (multiple of 8) that fits at the current steps
    images_max: int


def fit(cfg: BudgetConfig | None, width: int, height: int, steps: int, images: int, steps_cap: int,
        size_cap: int, images_cap: int, per_image: int = 1, batched: bool = False, upscale: bool = False) -> Fit:
    """What the Advanced controls may offer with the other settings as they are: the most steps at this size and
    count, the largest side (either one, the other as it is) at these steps, and the most images. per_image: renders
    one requested image may take (likeness attempts); batched: the images are one pipeline call (candidates)."""
    if cfg is None:
        return Fit(steps_cap, size_cap, images_cap)
    factor = cfg.upscale_factor if upscale else 1.0
    request, render = cfg.max_units * MEGA / factor, cfg.max_render_units * MEGA / factor
    images = max(1, images)
    per_call = images if batched else 1

    def most(limit_request: float, limit_render: float) -> float:
        return min(limit_request, limit_render)

    pixels, steps = max(1, width * height), max(1, steps)
    steps_max = most(request / (pixels * images * per_image), render / (pixels * per_call))
    other = max(width, height, 8)
    side = most(request / (other * steps * images * per_image), render / (other * steps * per_call))
    images_max = request / (pixels * steps * per_image)
    if batched:
        images_max = min(images_max, render / (pixels * steps))
    return Fit(steps_max=max(1, min(steps_cap, int(steps_max))),
               size_max=max(8, min(size_cap, cfg.max_side, int(side) // 8 * 8)),
               images_max=max(1, min(images_cap, int(images_max))))
