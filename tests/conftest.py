"""Shared fixtures: a tiny random Stable Diffusion model folder (real diffusers formats, built from config once per
session, exactly like diffusers' own tests) and an app config whose default profile uses it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from apprunner import App

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the hub
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from customizer.engine.architectures import build_random_model_dir

    return build_random_model_dir(tmp_path_factory.mktemp("tiny-model") / "model", "tiny", seed=0)


@pytest.fixture
def tiny_config_path(tmp_path, tiny_model_dir) -> Path:
    cfg = {"default_profile": "tiny", "storage": {"db": "characters.db", "data_dir": "data"},
           "profiles": {"tiny": tiny_profile_yaml(tiny_model_dir),
                        "tiny-nocn": tiny_profile_yaml(tiny_model_dir, controlnet=None)}}
    path = tmp_path / "spaces.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir):
    """One loaded engine for the session (loading costs seconds; rendering is what tests vary)."""
    from customizer.config import _profile
    from customizer.engine.pipeline import Engine

    return Engine(_profile("tiny", tiny_profile_yaml(tiny_model_dir), tiny_model_dir))


@pytest.fixture
def studio(tmp_path, tiny_config_path, tiny_engine):
    from customizer.config import load_config
    from customizer.service import Studio
    from customizer.store import Store

    config = load_config(tiny_config_path)
    store = Store(config.db_path, config.data_dir)
    yield Studio(config, config.profile("tiny"), store, engine_factory=lambda profile: tiny_engine)
    store.close()


@pytest.fixture
def app_factory(tiny_config_path, tiny_model_dir):
    apps: list[App] = []

    def start() -> tuple[App, str]:
        app = App(tiny_config_path)
        apps.append(app)
        return app, app.wait_ready()

    yield start
    for app in apps:
        app.stop()
