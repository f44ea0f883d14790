"""Spaces packaging stays true: requirements.txt mirrors pyproject, the README front matter describes a Gradio
Space running app.py with the pinned gradio, and spaces.yaml has a profile per kind of hardware."""
from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from customizer.config import load_config

REPO = Path(__file__).resolve().parent.parent


def test_requirements_txt_mirrors_pyproject_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = [ln.strip() for ln in (REPO / "requirements.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    # a Space gets the `face` extra too: photoreal profiles measure likeness with it
    assert lines == project["dependencies"] + project["optional-dependencies"]["face"]


def test_readme_front_matter_is_a_gradio_space_for_app_py():
    text = (REPO / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and (REPO / meta["app_file"]).is_file()
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"gradio=={meta['sdk_version']}" in deps


def test_spaces_yaml_has_cpu_zerogpu_and_gpu_profiles():
    config = load_config(REPO / "spaces.yaml")
    assert config.default_profile == "bundled" and config.profile("bundled").allow_download is False
    zero = config.profile("sd15-zerogpu")
    assert zero.device == "cuda" and zero.dtype == "float16"
    for name in ("sd15", "sdxl"):
        assert config.profile(name).device == "auto"
