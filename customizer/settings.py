"""Advanced generation settings (sampler, steps, guidance, size, negative prompt, upscale), validated against
limits with clear messages. Defaults come from the profile; the sampler list from data/schedulers.yaml."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .character import clean_text
from .config import Profile
from .errors import SpecError, shown

SCHEDULERS = Path(__file__).resolve().parent / "data" / "schedulers.yaml"
STEPS = (1, 100)
GUIDANCE = (0.0, 20.0)
GUIDANCE_END = (0.1, 1.0)  # fraction of the steps (the first ones) that run classifier-free guidance
SIZE = (32, 2048)
MAX_NEGATIVE = 600


def override_error(flag: str, value: float | None, bounds: tuple[float, float]) -> str | None:
    """The message for a command-line sampler override outside the app's bounds (None when inside or not given):
    the eval and the bench render through Settings.resolve, so they refuse up front what every render would."""
    lo, hi = bounds
    return None if value is None or lo <= value <= hi else f"{flag} must be {lo:g} to {hi:g}"


@lru_cache(maxsize=1)
def samplers() -> dict[str, str]:
    """name -> label, in file order."""
    return {k: v["label"] for k, v in yaml.safe_load(SCHEDULERS.read_text()).items()}


def _number(field: str, value: Any, lo: float, hi: float, integer: bool) -> float | int:
    if isinstance(value, bool) or value is None:
        raise SpecError(field, f"must be a number, got {shown(value)}")
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise SpecError(field, f"must be a number, got {shown(value)}") from None
    except OverflowError:  # an int too large for a float
        num = math.inf
    if not math.isfinite(num) or not lo <= num <= hi:
        raise SpecError(field, f"must be between {lo:g} and {hi:g}, got {shown(value)}")
    if integer:
        if num != int(num):
            raise SpecError(field, f"must be a whole number, got {shown(value)}")
        return int(num)
    return num


@dataclass(frozen=True)
class Settings:
    sampler: str
    steps: int
    guidance: float
    width: int
    height: int
    negative: str | None  # None = the default negative prompt
    upscale: bool = False
    guidance_end: float = 1.0  # CFG on this fraction of the steps, 1.0 = all (engine/guidance.py)

    @classmethod
    def resolve(cls, profile: Profile, raw: dict[str, Any] | None) -> "Settings":
        """Fill unset values from the profile and validate. Unknown keys are refused."""
        if raw is not None and not isinstance(raw, Mapping):
            raise SpecError("advanced", f"must be an object of settings (sampler, steps, guidance, guidance_end, "
                                        f"width, height, negative, upscale), got {type(raw).__name__}")
        raw = dict(raw or {})
        unknown = set(raw) - {"sampler", "steps", "guidance", "guidance_end", "width", "height", "negative",
                            "upscale"}
        if unknown:
            raise SpecError(sorted(unknown)[0], "unknown advanced setting; valid: sampler, steps, guidance, "
                                                "guidance_end, width, height, negative, upscale")

        def pick(key: str, default: Any) -> Any:
            value = raw.get(key)
            return default if value is None or value == "" else value

        sampler = str(pick("sampler", profile.scheduler))
        if sampler not in samplers():
            raise SpecError("sampler", f"{shown(sampler)} is not a sampler; choose one of: {', '.join(samplers())}")
        size = {}
        for key, default in (("width", profile.width), ("height", profile.height)):
            size[key] = _number(key, pick(key, default), *SIZE, integer=True)
            if size[key] % 8:
                raise SpecError(key, f"must be a multiple of 8, got {size[key]}")
        negative = raw.get("negative")
        if negative is not None:
            if not isinstance(negative, str):
                raise SpecError("negative", "must be text")
            negative = clean_text(negative)
            if len(negative) > MAX_NEGATIVE:
                raise SpecError("negative", f"is too long ({len(negative)} > {MAX_NEGATIVE} characters)")
            negative = negative or None
        upscale = raw.get("upscale", False)
        if not isinstance(upscale, bool):
            raise SpecError("upscale", f"must be true or false, got {shown(upscale)}")
        return cls(sampler=sampler,
                   steps=_number("steps", pick("steps", profile.steps), *STEPS, integer=True),
                   guidance=_number("guidance", pick("guidance", profile.guidance), *GUIDANCE, integer=False),
                   width=size["width"], height=size["height"], negative=negative, upscale=upscale,
                   guidance_end=_number("guidance_end", pick("guidance_end", profile.guidance_end), *GUIDANCE_END,
                                        integer=False))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

