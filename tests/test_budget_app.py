"""The compute budget, the render gate and cancellation in the running app (app.py on the tiny model, driven over
HTTP by gradio_client and by a client process that is killed): an over-budget request is refused in under a second
with the numbers even while another user's render runs, and a client that goes away stops its render."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing

import pytest
import yaml

from apprunner import App
from tiny_profiles import tiny_profile_yaml

TOKEN = "budget-user-token-0123456789"
OTHER = "other-user-token-0123456789"
# the tiny model at 64x64: 0.004 megapixel-steps per step; 1 s per unit is far from its real speed, but the limits
# are what is tested: a render of 0.25 units (about 60 steps of one image) at most, a request of 1 unit
BUDGET = {"seconds_per_unit": 1.0, "max_render_seconds": 0.25, "max_seconds": 1.0, "max_side": 128}


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("budget-app")
    cfg = {"default_profile": "tiny", "storage": {"db": "characters.db", "data_dir": "data"},
           "profiles": {"tiny": tiny_profile_yaml(tiny_model_dir, controlnet=None, budget=BUDGET)}}
    (root / "spaces.yaml").write_text(yaml.safe_dump(cfg))
    server = App(root / "spaces.yaml")
    try:
        server.wait_ready()
        yield server, root
    finally:
        server.stop()


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False)


def candidates_in_db(root) -> int:
    with closing(sqlite3.connect(f"file:{root / 'characters.db'}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT count(*) FROM candidates").fetchone()[0]


def test_over_budget_refused_at_once_with_numbers_while_another_render_runs(app):
    from gradio_client.exceptions import AppError

    server, root = app
    other = client(server.url)
    # another user's long render (60 steps, just inside the per-render limit) holds the render gate
    busy = other.submit({"token": OTHER, "spec": {}, "seed": 1, "n": 1,
                         "advanced": {"steps": 60, "width": 64, "height": 64}}, api_name="/design_candidates")
    time.sleep(1.0)
    me = client(server.url)
    before = candidates_in_db(root)
    t0 = time.perf_counter()
    with pytest.raises(AppError) as err:
        me.predict({"token": TOKEN, "spec": {}, "seed": 1, "n": 4,
                    "advanced": {"steps": 100, "width": 2048, "height": 2048}}, api_name="/design_candidates")
    refused_in = time.perf_counter() - t0
    msg = str(err.value)
    assert refused_in < 1.0, refused_in
    assert "4 images x 2048x2048 x 100 steps = 1677.72 megapixel-steps" in msg and "at most 128" in msg
    for over in ({"steps": 100, "width": 128, "height": 128},  # one render of 1.6 units: over 0.25 per render
                 {"steps": 30, "width": 64, "height": 64}):    # 4 candidates are one call: 0.49 units
        with pytest.raises(AppError, match="megapixel-steps"):
            me.predict({"token": TOKEN, "spec": {}, "seed": 1, "n": 4, "advanced": over},
                       api_name="/design_candidates")
    busy.result(timeout=300)
    assert candidates_in_db(root) == before + 1  # only the other user's candidate


KILLED_CLIENT = textwrap.dedent("""
    import sys
    from gradio_client import Client
    c = Client(sys.argv[1], verbose=False)
    job = c.submit({"token": sys.argv[2], "spec": {}, "seed": 5, "n": 1,
                    "advanced": {"steps": 60, "width": 64, "height": 64}}, api_name="/design_candidates")
    print("submitted", flush=True)
    job.result(timeout=600)
""")


@pytest.mark.parametrize("how", ["cancel", "kill"])
def test_a_client_that_goes_away_stops_its_render(app, how):
    server, root = app
    log_start = server.log.stat().st_size
    # how long the full render takes here
    t0 = time.perf_counter()
    client(server.url).predict({"token": OTHER, "spec": {}, "seed": 9, "n": 1,
                                "advanced": {"steps": 60, "width": 64, "height": 64}}, api_name="/design_candidates")
    full = time.perf_counter() - t0
    before = candidates_in_db(root)
    if how == "cancel":
        c = client(server.url)
        job = c.submit({"token": TOKEN, "spec": {}, "seed": 5, "n": 1,
                        "advanced": {"steps": 60, "width": 64, "height": 64}}, api_name="/design_candidates")
        time.sleep(min(1.0, full / 4))
        job.cancel()
    else:
        proc = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, server.url, TOKEN], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "submitted"
        time.sleep(min(1.5, full / 4))
        proc.kill()
        proc.wait()
    deadline = time.time() + max(30.0, 3 * full)
    while time.time() < deadline and "the client went away" not in server.log.read_bytes()[log_start:].decode():
        time.sleep(0.2)
    log = server.log.read_bytes()[log_start:].decode()
    assert "the client went away" in log, log[-2000:]
    assert "Traceback" not in log
    # nothing half-made was kept, and the server is free again at once
    assert candidates_in_db(root) == before
    t1 = time.perf_counter()
    client(server.url).predict({"token": OTHER, "spec": {}, "seed": 2, "n": 1}, api_name="/design_candidates")
    assert time.perf_counter() - t1 < full
