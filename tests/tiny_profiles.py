"""Profile dicts (spaces.yaml shape) for the tiny random test models."""
from __future__ import annotations

from pathlib import Path


def tiny_profile_yaml(model_dir: Path, **overrides) -> dict:
    d = str(model_dir)
    profile = {
        "family": "sd15",
        "base_model": d,
        "ip_adapter": {"path": f"{d}/ip_adapter", "subfolder": "", "weight_name": "ip_adapter.safetensors",
                       "image_encoder_folder": "image_encoder"},
        "controlnet": {"model": f"{d}/controlnet", "control": "pose", "scale": 1.0},
        "themes": {t: {"lora": f"{d}/loras/{t}.safetensors", "adapter": t, "triggers": f"{t} style", "weight": 1.0}
                   for t in ("fantasy", "vintage")},
        "scheduler": "euler", "steps": 3, "guidance": 5.0, "width": 32, "height": 32,
        "device": "cpu", "dtype": "float32", "allow_download": False,
    }
    profile.update(overrides)
    return profile
