"""Sampler names (data/schedulers.yaml) -> diffusers scheduler instances."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

DATA = Path(__file__).resolve().parent.parent / "data" / "schedulers.yaml"


@lru_cache(maxsize=None)
def catalogue() -> dict[str, dict]:
    return yaml.safe_load(DATA.read_text())


def make(name: str, base_config: dict):
    import diffusers

    table = catalogue()
    if name not in table:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(table)}")
    entry = table[name]
    return getattr(diffusers, entry["class"]).from_config(base_config, **entry.get("config", {}))
