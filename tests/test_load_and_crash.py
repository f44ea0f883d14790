"""scripts/load_test.py and scripts/crash_test.py in a small configuration on the tiny random model.

Load: 8 concurrent API users x 1 round (design -> lock -> 2 selfies -> list -> get) plus the queue-overflow burst;
zero errors, a clean store afterwards. Fairness: 4 light users alone, then beside one heavy user held to a compute
budget; their p95 at most 2x, over-budget requests refused in under a second. Crash: 5 x kill -9 at random moments
during API operations; zero violations. The full-size runs (8 x 2 rounds, 20 kills) are run by hand: see the scripts'
docstrings.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LOAD_KEYS = {"users", "requests", "errors", "busy_rejections", "throughput_rps", "latency", "server_peak_rss_mb",
             "integrity", "burst", "ok"}
BURST_KEYS = {"queue_max_size", "render_workers", "submitted", "rejected_busy", "accepted", "client_error_message",
              "server_message_when_full", "rss_before_mb", "rss_after_mb", "ok"}
CRASH_KEYS = {"kills", "violations", "seconds", "unexpected_errors", "kill_during", "checked", "ok"}


def run_script(name: str, args: list[str], out: Path, timeout: float) -> dict:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / name), *args, "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert out.exists(), f"{name} wrote no report (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(out.read_text())
    assert "fatal" not in report, f"{report['fatal']}\n{report.get('server_log_tail', '')}"
    return report | {"_exit": proc.returncode, "_stderr": proc.stderr[-2000:]}


@pytest.mark.slow
def test_load_8_users_one_round_and_queue_burst(tiny_config_path, tmp_path):
    r = run_script("load_test.py", ["--config", str(tiny_config_path), "--users", "8", "--rounds", "1",
                                    "--max-seconds", "360", "--workdir", str(tmp_path / "work")],
                   tmp_path / "load.json", timeout=540)
    assert LOAD_KEYS <= set(r), sorted(LOAD_KEYS - set(r))
    assert r["errors"] == 0, r["error_samples"]
    assert r["rounds_completed"] == 8 and not r["timed_out"]
    assert r["requests"] >= 8 * 6
    assert {"design_candidates", "lock", "selfie", "list_characters", "get_character"} <= set(r["latency"])
    assert all({"p50_s", "p95_s"} <= set(v) for v in r["latency"].values())
    assert r["server_peak_rss_mb"] > 0
    integrity = r["integrity"]
    assert integrity["clean"], integrity["problems"]
    assert integrity["integrity_check"] == "ok" and integrity["n_lost"] == 0
    assert integrity["before_gc"]["counts"]["selfies"] == 8 * 2 + 2  # + the burst's blocking selfie (count 2)
    burst = r["burst"]
    assert BURST_KEYS <= set(burst), sorted(BURST_KEYS - set(burst))
    assert burst["ok"], burst["problems"]
    assert burst["rejected_busy"] > 0 and burst["accepted"] + burst["rejected_busy"] == burst["submitted"]
    if burst["blocker_still_running_after_burst_admission"]:
        # render requests wait at the render gate in up to render_workers threads, the rest in the queue
        assert burst["accepted"] <= burst["queue_max_size"] + burst["render_workers"]
    assert "full" in burst["client_error_message"].lower()
    assert r["ok"] and r["_exit"] == 0


# the tiny model's own price (scripts/measure_budget.py: 10-28 s per megapixel-step on 2 busy cores); a render may
# be a 4-candidate design at the profile's 32x32 x 3 steps, a request about 4 times that
TINY_BUDGET = {"seconds_per_unit": 28.0, "max_render_seconds": 0.35, "max_seconds": 1.5, "max_side": 96}


@pytest.mark.slow
def test_one_heavy_user_keeps_the_others_p95_within_2x(tiny_model_dir, tmp_path):
    import yaml

    from tiny_profiles import tiny_profile_yaml

    config = tmp_path / "spaces.yaml"
    config.write_text(yaml.safe_dump({"default_profile": "tiny",
                                      "profiles": {"tiny": tiny_profile_yaml(tiny_model_dir, budget=TINY_BUDGET)}}))
    r = run_script("load_test.py", ["--config", str(config), "--users", "4", "--rounds", "2", "--burst", "0",
                                    "--fairness", "--max-seconds", "400", "--workdir", str(tmp_path / "work")],
                   tmp_path / "load.json", timeout=900)
    f = r["fairness"]
    assert f["ok"], f["problems"]
    assert f["baseline"]["render_requests"]["n"] == f["with_heavy"]["render_requests"]["n"] == 4 * 2 * 4
    assert f["p95_ratio"] <= 2.0
    assert f["over_budget_refusals"]["n"] >= 1 and f["over_budget_refusals"]["max_s"] < 1.0
    assert sum(v["n"] for v in f["heavy_done"].values()) >= 1  # the heavy user is slowed, not starved
    assert r["errors"] == 0 and r["integrity"]["clean"] and r["ok"]


@pytest.mark.slow
def test_crash_5_kills_lose_nothing(tiny_config_path, tmp_path):
    r = run_script("crash_test.py", ["--config", str(tiny_config_path), "--kills", "5",
                                     "--workdir", str(tmp_path / "work")],
                   tmp_path / "crash.json", timeout=540)
    assert CRASH_KEYS <= set(r), sorted(CRASH_KEYS - set(r))
    assert r["kills"] == 5
    assert r["violations"] == 0, r["violation_samples"]
    assert r["unexpected_errors"] == 0, r["unexpected_samples"]
    assert r["final_restart_ok"]
    assert r["ok"] and r["_exit"] == 0
