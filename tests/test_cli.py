"""`python app.py` refuses to start with a one-line reason (exit 2, no traceback) when the model or profile is wrong."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def run_app(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOMIZER_")}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "app.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_missing_model_exits_2_with_reason(tmp_path):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    cfg = tmp_path / "spaces.yaml"
    cfg.write_text(yaml.safe_dump({"default_profile": "hollow",
                                   "profiles": {"hollow": {"family": "sd15", "base_model": str(empty)}}}))
    proc = run_app("--config", str(cfg), "--port", "7999")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Model profile 'hollow' is not available" in proc.stderr
    assert str(empty / "model_index.json") in proc.stderr
    assert proc.stderr.startswith("error: ")
    assert "Traceback" not in out


def test_unknown_profile_exits_2_with_known_names():
    proc = run_app("--profile", "nope", "--port", "7999")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "unknown profile 'nope'" in proc.stderr
    assert "known profiles: bundled, sd15, sd15-zerogpu, sdxl" in proc.stderr
    assert "Traceback" not in out


def test_unknown_profile_key_stops_the_start_with_the_profile_and_the_key(tmp_path):
    cfg = tmp_path / "spaces.yaml"
    cfg.write_text(yaml.safe_dump({"profiles": {"mine": {"base_model": str(tmp_path), "reference_shet": False}}}))
    proc = run_app("--config", str(cfg), "--port", "7999")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert proc.stderr.startswith("error: profile 'mine': unknown key 'reference_shet'")
    assert "Traceback" not in out
