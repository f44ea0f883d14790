"""Character LoRA settings (data/character_lora.yaml, overridable per profile) and the names shared by the Studio
and the engine. No torch, no gradio: the trainer is customizer/engine/character_lora.py, the background jobs
customizer/lora_jobs.py.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import yaml

from .character import DATA_DIR
from .errors import ConfigError

PROFILE_KEY = "character_lora"  # spaces.yaml: a profile's overrides of the data file
ADAPTER_PREFIX = "character_"
# training keys a profile may override; the serving keys (strength, loaded_max, parallel, timeout) are the app's
TRAINING = {"steps": int, "batch": int, "rank": int, "lr": float, "warmup": int, "grad_clip": float,
            "targets": list, "caption_dropout": float, "snr_gamma": float, "seed": int, "threads": (int, type(None)),
            "nice": int}
SERVING = {"strength": float, "loaded_max": int, "parallel": int, "timeout_minutes": float}


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    return yaml.safe_load((DATA_DIR / "character_lora.yaml").read_text(encoding="utf-8"))


def _check(name: str, value: Any, kind: Any, where: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise ConfigError(f"{where}: {name} must be {names}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {name} must be finite")
    if name == "targets" and not (value and all(isinstance(t, str) and t for t in value)):
        raise ConfigError(f"{where}: targets must be a list of UNet module names")
    if name in ("steps", "batch", "rank", "loaded_max", "parallel") and value < 1:
        raise ConfigError(f"{where}: {name} must be at least 1")
    if name in ("lr", "timeout_minutes") and value <= 0:
        raise ConfigError(f"{where}: {name} must be above 0")
    return value


def check_overrides(overrides: Any, where: str) -> dict[str, Any]:
    """A profile's `character_lora:` overrides (training keys only), each checked for its type and range."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where} must be a mapping of settings")
    unknown = set(overrides) - set(TRAINING)
    if unknown:
        raise ConfigError(f"{where}: unknown or fixed keys {sorted(unknown)}; it may set {sorted(TRAINING)}")
    return {k: _check(k, v, TRAINING[k], where) for k, v in overrides.items()}


def settings(profile: Any = None) -> dict[str, Any]:
    """The data file's settings with the profile's overrides (its typed `character_lora` field), checked."""
    base = dict(_data())
    overrides = (profile.character_lora if profile is not None else None) or {}
    where = f"profile '{profile.name}': {PROFILE_KEY}" if overrides else "character_lora.yaml"
    base.update(check_overrides(overrides, where))
    return {k: _check(k, base.get(k), kind, where) for k, kind in {**TRAINING, **SERVING}.items()}


def adapter_name(sha256: str) -> str:
    """The peft adapter name of a character LoRA file: derived from its content, so a recipe names exactly the
    weights it used and two characters never collide."""
    return f"{ADAPTER_PREFIX}{sha256[:16]}"


def is_character_adapter(name: str) -> bool:
    return name.startswith(ADAPTER_PREFIX)
