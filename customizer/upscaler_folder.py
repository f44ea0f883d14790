"""The files of the project's own learned upscaler folder (engine/sr_net.py). Torch-free, outside the engine, so
that availability (reached by the service, which never reaches the engine) and the engine tell an sr_net folder
from a diffusers upscaler by the same rule."""
from __future__ import annotations

from pathlib import Path

CONFIG = "upscaler.json"
WEIGHTS = "upscaler.safetensors"


def is_sr_folder(ref: str | Path | None) -> bool:
    """A local folder holding an SRNet (its upscaler.json), as opposed to a diffusers upscaler id or folder."""
    return bool(ref) and (Path(ref) / CONFIG).is_file()
