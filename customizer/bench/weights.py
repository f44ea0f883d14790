"""Which weights a benchmark runs on, and profiles (spaces.yaml shape) that point at them.

The trained bundled model (assets/bundled) when it is there; otherwise a random-weights folder of the same geometry
(speed does not depend on weight values), built once into a cache outside git and keyed by the geometry itself,
so a changed geometry gets a fresh folder. The JSON says which was used.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import yaml

from ..config import REPO_ROOT

CACHE = REPO_ROOT / "bench" / ".cache"
TRAINED = REPO_ROOT / "assets" / "bundled"
THEMES = ("fantasy", "vintage")


def geometry(name: str) -> dict[str, Any]:
    # architectures.geometry would import torch; the parent process stays light
    return yaml.safe_load((REPO_ROOT / "customizer" / "data" / "architectures.yaml").read_text())[name]


def _key(name: str, themes: tuple[str, ...]) -> str:
    blob = json.dumps({"geometry": geometry(name), "themes": themes}, sort_keys=True).encode()
    return f"{name}-{hashlib.sha256(blob).hexdigest()[:12]}"


def random_model(name: str, cache: Path = CACHE, themes: tuple[str, ...] = THEMES,
                 log: Callable[[str], None] = print) -> tuple[Path, dict[str, Any]]:
    out = Path(cache) / _key(name, themes)
    if not (out / "model_index.json").is_file():
        log(f"building random-weights '{name}' folder in {out} (once)")
        from ..engine.architectures import build_random_model_dir

        tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        build_random_model_dir(tmp, name, seed=0, themes=themes, controlnet=False)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)  # complete folders only: an interrupted build never looks cached
    return out, {"source": "random", "geometry": name, "path": str(out),
                 "note": "random weights from config (same geometry as the named model); speed does not depend "
                         "on weight values"}


def bundled_model(geometry: str = "bundled", cache: Path = CACHE, prefer_trained: bool = True,
                  log: Callable[[str], None] = print) -> tuple[Path, dict[str, Any]]:
    if prefer_trained and geometry == "bundled" and (TRAINED / "model_index.json").is_file():
        from ..engine.fingerprint import local_fingerprint

        return TRAINED, {"source": "trained", "geometry": geometry, "path": str(TRAINED),
                         "fingerprint": local_fingerprint(TRAINED)}
    return random_model(geometry, cache, THEMES, log)


def profile_raw(folder: Path, steps: int, guidance: float, size: int, scheduler: str,
                guidance_end: float = 1.0) -> dict[str, Any]:
    """A spaces.yaml profile over a model folder in the bundled layout (themes only where their LoRA exists)."""
    d = str(folder)
    themes = {t: {"lora": f"{d}/loras/{t}.safetensors", "adapter": t, "triggers": "", "weight": 1.0}
              for t in THEMES if (folder / "loras" / f"{t}.safetensors").is_file()}
    return {"family": "sd15", "base_model": d,
            "ip_adapter": {"path": f"{d}/ip_adapter", "subfolder": "", "weight_name": "ip_adapter.safetensors",
                           "image_encoder_folder": "image_encoder"},
            "themes": themes, "scheduler": scheduler, "steps": steps, "guidance": guidance,
            "guidance_end": guidance_end, "width": size,
            "height": size, "device": "auto", "dtype": "auto", "allow_download": False}
