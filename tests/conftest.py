"""Shared fixtures: a tiny random Stable Diffusion model folder (real diffusers formats, built from config once per
session, exactly like diffusers' own tests) and an app config whose default profile uses it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from apprunner import App
from tiers import pytest_collection_modifyitems  # noqa: F401 - the hook that marks every test with its file's tier
from tiny_profiles import tiny_profile_yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the hub
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


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


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny-model tests (restored afterwards): a tiny UNet gains nothing from
    intra-op threads, and on a shared 2-core box two spin-waiting OpenMP threads per process make each step ~10x
    slower. Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

