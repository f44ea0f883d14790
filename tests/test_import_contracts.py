"""The import contracts of pyproject.toml ([tool.importlinter]) hold: training, bench and eval are leaves that no
runtime module imports, the engine never imports gradio or the UI, the UI never reaches torch or the engine, and the
service and the store never reach torch, gradio or the engine.
Runs import-linter's own checker - on the repository, and once on a copy with a violation planted, to show that
a broken contract fails."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def lint_imports(cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports missing: pip install -e '.[test]'")
    return subprocess.run([exe], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def test_import_contracts_are_kept():
    run = lint_imports(REPO)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "Contracts: 4 kept, 0 broken" in run.stdout, run.stdout[-2000:]
    assert re.search(r"the UI never reaches torch or the engine.* KEPT", run.stdout)
    assert re.search(r"the service and the store never reach torch, gradio or the engine KEPT", run.stdout)


def test_a_ui_module_that_reaches_the_engine_breaks_the_contract(tmp_path):
    shutil.copytree(REPO / "customizer", tmp_path / "customizer", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    views = tmp_path / "customizer" / "ui" / "views.py"
    views.write_text(views.read_text() + "\nfrom ..engine import pipeline  # planted\n")
    run = lint_imports(tmp_path, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert run.returncode != 0, run.stdout[-3000:]
    assert re.search(r"the UI never reaches torch or the engine.* BROKEN", run.stdout), run.stdout[-3000:]
    assert "customizer.ui.views -> customizer.engine" in run.stdout


def test_importing_the_ui_loads_neither_torch_nor_the_engine():
    code = ("import sys, customizer.ui; bad = [m for m in sys.modules if m == 'torch' or "
            "m.startswith(('torch.', 'customizer.engine', 'diffusers'))]; print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]


def test_a_service_or_store_module_that_reaches_the_engine_or_gradio_breaks_the_contract(tmp_path):
    shutil.copytree(REPO / "customizer", tmp_path / "customizer", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    plan = tmp_path / "customizer" / "selfie_plan.py"
    plan.write_text(plan.read_text() + "\nfrom .engine import pipeline  # planted\n")
    records = tmp_path / "customizer" / "store" / "records.py"
    records.write_text(records.read_text() + "\nimport gradio  # planted\n")
    run = lint_imports(tmp_path, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert run.returncode != 0, run.stdout[-3000:]
    assert re.search(r"the service and the store never reach torch, gradio or the engine BROKEN", run.stdout)
    assert "customizer.selfie_plan -> customizer.engine.pipeline" in run.stdout
    assert "customizer.service -> customizer.selfie_plan" in run.stdout  # the service reaches it through the plan
    assert "customizer.store.records -> gradio" in run.stdout


def test_importing_the_service_and_the_store_loads_neither_torch_nor_gradio():
    code = ("import sys, customizer.service, customizer.store; bad = [m for m in sys.modules if m in ('torch', "
            "'gradio') or m.startswith(('torch.', 'gradio.', 'customizer.engine', 'diffusers'))]; print(bad); "
            "sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
