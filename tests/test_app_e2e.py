"""End to end: launch the real app.py as a server on the tiny model, drive it with gradio_client through the
documented API (design -> lock -> selfie -> list), restart it, and find the history still there."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """app.py in a subprocess; stops it on exit and shows its log when it fails to start."""

    def __init__(self, config: Path, port: int):
        self.port, self.log = port, config.parent / f"app-{port}.log"
        env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
        self.proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--config", str(config),
                                      "--port", str(port)], cwd=config.parent, env=env,
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120) -> str:
        url = f"http://127.0.0.1:{self.port}/"
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return url
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(self.log.read_text()[-3000:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def app_factory(tiny_config_path, tiny_model_dir):
    apps: list[App] = []

    def start() -> tuple[App, str]:
        app = App(tiny_config_path, free_port())
        apps.append(app)
        return app, app.wait_ready()

    yield start
    for app in apps:
        app.stop()


def test_design_lock_selfie_list_survives_restart(app_factory, tiny_config_path):
    from gradio_client import Client

    app, url = app_factory()
    client = Client(url, verbose=False)
    spec = {"hair_colour": "blonde", "eye_colour": "blue", "age": 41, "theme": "vintage", "theme_strength": 1.0}
    result, images = client.predict({"spec": spec, "seed": 21, "n": 2, "name": "Ada"},
                                     api_name="/design_candidates")
    assert len(result["candidates"]) == 2 and len(images) == 2
    assert all(Path(i["image"]).stat().st_size > 0 for i in images)
    assert [c["seed"] for c in result["candidates"]] == [21, 22]
    assert "path" not in result["candidates"][0]  # server paths never leave the server
    cid = result["character_id"]

    ref, _ = client.predict({"character_id": cid, "candidate_id": result["candidates"][0]["id"]}, api_name="/lock")
    selfies, selfie_images = client.predict(
        {"character_id": cid, "selfie": {"scene": "library", "expression": "surprised", "framing": "half body"},
         "seed": 5, "count": 1}, api_name="/selfie")
    assert len(selfies) == 1 and len(selfie_images) == 1
    assert selfies[0]["recipe"]["reference_sha256"] == ref["image_sha256"]
    listed, _ = client.predict({}, api_name="/list_characters")
    assert [(c["name"], c["status"], c["n_selfies"]) for c in listed] == [("Ada", "locked", 1)]

    # bad input: a clear message, the server stays up, nothing written
    for bad in ({"spec": dict(spec, age=15)}, {"spec": dict(spec, extra="explicit nude")}, "not a dict"):
        with pytest.raises(Exception) as err:
            client.predict(bad, api_name="/design_candidates")
        assert "Traceback" not in str(err.value)
    assert len(client.predict({}, api_name="/list_characters")[0]) == 1

    app.stop()
    _, url2 = app_factory()
    again = Client(url2, verbose=False)
    character, imgs = again.predict({"character_id": cid}, api_name="/get_character")
    assert character["status"] == "locked" and character["reference"]["image_sha256"] == ref["image_sha256"]
    assert [s["id"] for s in character["selfies"]] == [selfies[0]["id"]]
    assert len(imgs) == 2  # reference + the selfie
    # the restarted app keeps working on the same character
    more, _ = again.predict({"character_id": cid, "selfie": {"scene": "beach"}, "seed": 6}, api_name="/selfie")
    assert more[0]["reference_id"] == character["reference"]["id"]
    assert (tiny_config_path.parent / "characters.db").exists()
