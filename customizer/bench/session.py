"""A Studio over a throw-away store, for benchmark processes (the app's own code path, nothing mocked)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def open_studio(workdir: Path, profile_raw: dict[str, Any]):
    from ..config import AppConfig, _profile
    from ..engine.pipeline import Engine
    from ..service import Studio
    from ..store import Store

    workdir.mkdir(parents=True, exist_ok=True)
    profile = _profile("bench", profile_raw, workdir)
    config = AppConfig(path=workdir / "spaces.yaml", default_profile="bench", profiles={"bench": profile},
                       db_path=workdir / "characters.db", data_dir=workdir / "data")
    store = Store(config.db_path, config.data_dir)
    return Studio(config, profile, store, engine_factory=Engine), store
