"""Cold start of the real app: `python app.py` in a fresh process until its Gradio page answers HTTP 200."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from ..config import REPO_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def page_ready(profile: dict[str, Any], workdir: Path, preload: bool, timeout: float = 180) -> dict[str, Any]:
    """Seconds from spawning app.py to the page answering (preload: the model is loaded before serving)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / f"spaces-{'preload' if preload else 'lazy'}.yaml"
    config.write_text(yaml.safe_dump({"default_profile": "bench", "profiles": {"bench": profile},
                                      "storage": {"db": str(workdir / "app.db"), "data_dir": str(workdir / "app")}}))
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "CUSTOMIZER_PRELOAD": "1" if preload else "0"}
    url = f"http://127.0.0.1:{port}/"
    logfile = config.with_suffix(".log")
    with open(logfile, "wb") as err:  # a file, not a pipe: a chatty start can never block on a full pipe
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "app.py"), "--config", str(config), "--host",
                                 "127.0.0.1", "--port", str(port)], env=env, cwd=REPO_ROOT,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        while not _answers(url):
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}: {logfile.read_text()[-2000:]}")
            if time.time() - t0 > timeout:
                raise RuntimeError(f"app.py did not answer within {timeout:.0f} s")
            time.sleep(0.05)
        return {"page_ready_s": time.time() - t0, "preload": preload}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
