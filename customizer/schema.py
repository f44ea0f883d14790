"""Typed, closed checks for the keys of spaces.yaml (customizer/config.py): each value is checked for its type and
range when the config loads, and a mapping refuses keys it does not know, with the key in the message. No torch."""
from __future__ import annotations

import math
from typing import Any, Iterable


def closed(where: str, raw: Any, keys: Iterable[str], required: Iterable[str] = ()) -> dict[str, Any]:
    """raw as a mapping whose keys are all in `keys` and include `required`; ValueError otherwise."""
    keys = set(keys)
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping with keys {', '.join(sorted(keys))}; got {type(raw).__name__}")
    unknown = sorted(set(raw) - keys, key=str)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known keys: {', '.join(sorted(keys))}")
    missing = sorted(set(required) - set(raw))
    if missing:
        raise ValueError(f"{where}: missing key {missing[0]!r}")
    return raw


def text(where: str, value: Any, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where} must be a non-empty string, got {value!r}")
    return value


def flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where} must be true or false, got {value!r}")
    return value


def whole(where: str, value: Any, lo: int, hi: int, multiple: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi or value % multiple:
        what = f"a multiple of {multiple} " if multiple > 1 else "a whole number "
        raise ValueError(f"{where} must be {what}from {lo} to {hi}, got {value!r}")
    return value


def number(where: str, value: Any, lo: float, hi: float, open_lo: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (lo < value if open_lo else lo <= value) or value > hi:
        span = f"({lo:g}, {hi:g}]" if open_lo else f"[{lo:g}, {hi:g}]"
        raise ValueError(f"{where} must be a number in {span}, got {value!r}")
    return float(value)


def choice(where: str, value: Any, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{where} must be one of {', '.join(choices)}; got {value!r}")
    return value


def span(where: str, value: Any, lo: float = 0.0, hi: float = 1.0) -> tuple[float, float]:
    """[a, b] with lo <= a <= b <= hi."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{where} must be [low, high], got {value!r}")
    a, b = (number(where, x, lo, hi) for x in value)
    if a > b:
        raise ValueError(f"{where} must be [low, high] with low <= high, got {value!r}")
    return a, b
