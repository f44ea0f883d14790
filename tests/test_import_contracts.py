"""The import contracts of pyproject.toml ([tool.importlinter]) hold: training, bench and eval are leaves that no
runtime module imports, and the engine never imports gradio or the UI. Runs import-linter's own checker."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports missing: pip install -e '.[test]'")
    run = subprocess.run([exe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 kept, 0 broken" in run.stdout
