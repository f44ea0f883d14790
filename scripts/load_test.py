"""Load test: app.py under concurrent gradio_client users, then a queue-overflow burst, then on-disk consistency.

    python scripts/load_test.py --tiny                          # tiny random model built in a temp dir
    python scripts/load_test.py --config spaces.yaml --profile bundled --users 8 --rounds 2 --json load.json

Everything runs on 127.0.0.1 against a FRESH database/data folder in a work directory (--config only picks the
model profile; its storage settings are overridden), so a real characters.db is never touched.

Phases
1. main: --users threads, each its own Client and token, each round: design_candidates (n = 1 or 2) -> lock ->
   2 x selfie -> list_characters -> get_character, checking every response against what it asked for.
   Bounded: --rounds per user and --max-seconds overall (a call still running at the deadline is an error).
   A "queue full" answer is counted as a busy rejection and retried after a pause (up to 8 times).
2. burst: one slow selfie holds the render gate, then --burst design requests (default 2 x queue size), each
   from its own new user, are submitted at once. Render requests run in up to RENDER_WORKERS threads that wait
   at the gate, so the server may admit at most max_size + RENDER_WORKERS of them; it must reject the rest with
   a clear "queue full" error. Server RSS is read before, during and after.
2b. fairness (--fairness): the same light users run one more time alone (baseline) and then beside one heavy
   user who keeps 2 of the heaviest requests the profile's compute budget allows in flight (4-candidate designs
   at the most steps that fit, 4-selfie requests, expression packs) and sends over-budget ones (timing their
   refusal). Reports the light users' p50/p95 in both runs and the ratio (the bar: p95 at most 2x).
3. after stopping the server: every row has its file, every file its row, files match their content address
   (checked on disk BEFORE the Store's gc() could hide anything), then Store(...).integrity_report() (PRAGMA
   integrity_check, foreign keys), and every character/reference/selfie the users were given is in the database.

Prints a JSON report (also written to --json); exit status 0 only when errors == 0 and all checks pass.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import secrets
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import _harness as h

SCENES = ["studio", "beach", "forest", "city", "cafe", "mountains", "library", "space station"]
EXPRESSIONS = ["neutral", "happy", "laughing", "sad", "surprised", "angry", "thinking"]
FRAMINGS = ["close-up", "half body", "full body", "looking away", "over the shoulder", "profile"]
MAX_BUSY_RETRIES = 8


class CheckFailed(Exception):
    pass


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.requests = 0
        self.ok_requests = 0
        self.busy = 0
        self.errors: list[str] = []

    def record(self, api: str, seconds: float | None, error: str | None = None, busy: bool = False) -> None:
        with self.lock:
            if busy:
                self.busy += 1
                return
            self.requests += 1
            if error is None:
                self.ok_requests += 1
                self.latencies[api].append(seconds)
            else:
                self.errors.append(f"{api}: {error}"[:400])


def random_spec(rng: random.Random) -> dict[str, Any]:
    from customizer.character import catalogue

    spec = {key: rng.choice(list(opt.choices)) for key, opt in catalogue().items()}
    spec.update(age=rng.randint(18, 70), theme_strength=round(rng.uniform(0.3, 1.0), 2))
    return spec


class User(threading.Thread):
    def __init__(self, index: int, url: str, rounds: int, deadline: float, stats: Stats, downloads: Path,
                 start: threading.Barrier, seed: int):
        super().__init__(name=f"user-{index}", daemon=True)
        self.index, self.url, self.rounds, self.deadline, self.stats = index, url, rounds, deadline, stats
        self.downloads, self.start_barrier = downloads, start
        self.rng = random.Random(seed * 1000 + index)
        self.token = f"load-user-{index}-{secrets.token_hex(8)}"
        self.made: list[dict[str, Any]] = []  # what the server confirmed: checked against the database later
        self.rounds_done = 0

    # one request; busy -> pause and retry; a deadline bounds the wait
    def call(self, api: str, req: dict) -> tuple[Any, Any]:
        from gradio_client.exceptions import AppError
        from gradio_client.utils import QueueError

        for attempt in range(MAX_BUSY_RETRIES + 1):
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.stats.record(api, None, "deadline (--max-seconds) reached before the call")
                raise CheckFailed("deadline")
            t0 = time.perf_counter()
            try:
                job = self.client.submit(dict(req, token=self.token), api_name=f"/{api}")
                out = job.result(timeout=remaining)
            except QueueError:
                self.stats.record(api, None, busy=True)
                time.sleep(min(5.0, 0.5 * 2**attempt) * (0.5 + self.rng.random()))
                continue
            except AppError as e:
                self.stats.record(api, None, f"AppError: {e}")
                raise CheckFailed(str(e)) from None
            except TimeoutError:
                self.stats.record(api, None, f"no answer before the deadline ({remaining:.0f} s left)")
                raise CheckFailed("timeout") from None
            except Exception as e:  # noqa: BLE001 - connection failures etc. are errors of the run
                self.stats.record(api, None, f"{type(e).__name__}: {e}")
                raise CheckFailed(str(e)) from None
            self.stats.record(api, time.perf_counter() - t0)
            return out
        self.stats.record(api, None, f"still busy after {MAX_BUSY_RETRIES} retries")
        raise CheckFailed("busy")

    def check(self, api: str, condition: bool, message: str) -> None:
        if not condition:
            with self.stats.lock:
                self.stats.errors.append(f"{api} (response check): {message}"[:400])
            raise CheckFailed(message)

    def check_images(self, api: str, images: Any, n: int) -> None:
        self.check(api, isinstance(images, list) and len(images) == n,
                   f"expected {n} images, got {len(images) if isinstance(images, list) else images!r}")
        for item in images:
            path = Path(item["image"] if isinstance(item, dict) else item)
            self.check(api, path.is_file() and path.stat().st_size > 0, f"image not downloaded: {path}")

    def one_round(self, r: int) -> None:
        rng = self.rng
        n = 1 + (self.index + r) % 2
        res, imgs = self.call("design_candidates", {"spec": random_spec(rng), "seed": rng.randrange(10**6),
                                                    "n": n, "name": f"Load user {self.index} round {r}"})
        self.check("design_candidates", len(res["candidates"]) == n, f"asked for {n} candidates")
        self.check_images("design_candidates", imgs, n)
        cid = res["character_id"]
        cand = rng.choice(res["candidates"])
        ref, imgs = self.call("lock", {"character_id": cid, "candidate_id": cand["id"]})
        self.check("lock", ref["image_sha256"] == cand["image_sha256"], "reference is not the chosen candidate")
        self.check_images("lock", imgs, 1 + len(ref.get("sheet") or []))  # the reference, then its sheet views
        selfie_ids = []
        for _k in range(2):
            shot = {"scene": rng.choice(SCENES), "expression": rng.choice(EXPRESSIONS),
                    "framing": rng.choice(FRAMINGS), "likeness": round(rng.uniform(0, 1), 2)}
            made, imgs = self.call("selfie", {"character_id": cid, "selfie": shot, "seed": rng.randrange(10**6),
                                              "count": 1})
            self.check("selfie", len(made) == 1, "asked for one selfie")
            self.check("selfie", made[0]["recipe"]["reference_sha256"] == ref["image_sha256"],
                       "selfie not conditioned on the locked reference")
            self.check_images("selfie", imgs, 1)
            selfie_ids.append(made[0]["id"])
        listed, _ = self.call("list_characters", {})
        mine = {c["id"]: c for c in listed}
        self.check("list_characters", len(listed) == r + 1, f"expected {r + 1} characters, listed {len(listed)}")
        self.check("list_characters", cid in mine and mine[cid]["status"] == "locked"
                   and mine[cid]["n_selfies"] == 2, "new character missing, not locked or wrong selfie count")
        character, imgs = self.call("get_character", {"character_id": cid})
        self.check("get_character", (character["reference"] or {}).get("image_sha256") == ref["image_sha256"],
                   "reference changed")
        self.check("get_character", sorted(s["id"] for s in character["selfies"]) == sorted(selfie_ids),
                   "selfies differ from those taken")
        self.check_images("get_character", imgs, 3 + len(character.get("sheet") or []))
        self.made.append({"character_id": cid, "reference_sha256": ref["image_sha256"], "selfies": selfie_ids,
                          "candidates": [c["id"] for c in res["candidates"]]})

    def run(self) -> None:
        from gradio_client import Client

        try:
            self.client = Client(self.url, verbose=False, download_files=str(self.downloads / self.name))
        except Exception as e:  # noqa: BLE001
            self.stats.record("connect", None, f"{type(e).__name__}: {e}")
            self.start_barrier.abort()
            return
        try:
            self.start_barrier.wait(timeout=120)
        except threading.BrokenBarrierError:
            return
        for r in range(self.rounds):
            if time.monotonic() >= self.deadline:
                self.stats.record("round", None, f"round {r} not started: --max-seconds reached")
                return
            try:
                self.one_round(r)
            except CheckFailed:
                return  # recorded; this user stops (its later steps depend on the failed one)
            except Exception as e:  # noqa: BLE001 - malformed response shapes etc.
                self.stats.record("round", None, f"{type(e).__name__}: {e}")
                return
            self.rounds_done += 1


# --------------------------------------------------------------------------------------------------- burst

def burst_phase(url: str, server: h.Server, owner_token: str, character_id: str, queue_size: int, n_burst: int,
                block_steps: int, downloads: Path, timeout: float, workers: int) -> dict[str, Any]:
    import httpx
    from gradio_client import Client
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError, Status

    out: dict[str, Any] = {"queue_max_size": queue_size, "render_workers": workers, "submitted": n_burst}
    blocker_client = Client(url, verbose=False, download_files=str(downloads / "burst-blocker"))
    dep = next(d for d in blocker_client.config["dependencies"] if d.get("api_name") == "selfie")
    time.sleep(1.0)
    out["rss_before_mb"] = h.mb(h.rss_bytes(server.pid))
    sampler = h.RssSampler(server.pid, interval=0.1)
    sampler.start()
    t0 = time.perf_counter()
    blocker = blocker_client.submit(
        {"token": owner_token, "character_id": character_id, "selfie": {"scene": "beach"}, "seed": 11, "count": 2,
         "advanced": {"steps": block_steps}}, api_name="/selfie")
    running = {Status.PROCESSING, Status.PROGRESS, Status.ITERATING, Status.LOG}
    while blocker.status().code not in running and not blocker.done():
        if time.perf_counter() - t0 > 120:
            break
        time.sleep(0.05)
    out["blocker_started_processing"] = blocker.status().code in running

    burst_client = Client(url, verbose=False, max_workers=n_burst + 8, download_files=False)
    bad = {"token": f"burst-{secrets.token_hex(8)}", "character_id": "0" * 32, "selfie": {}}
    t_burst = time.perf_counter()
    # each burst request a real design of a new user: it runs, then waits at the render gate behind the blocker
    jobs = [burst_client.submit({"token": f"burst-{i}-{secrets.token_hex(6)}", "spec": {}, "seed": i, "n": 1},
                                api_name="/design_candidates") for i in range(n_burst)]
    # wait until every burst request has been admitted or refused (status leaves STARTING/JOINING_QUEUE)
    while time.perf_counter() - t_burst < 60:
        codes = [j.status().code for j in jobs]
        if all(c not in (Status.STARTING, Status.JOINING_QUEUE) for c in codes):
            break
        time.sleep(0.05)
    out["blocker_still_running_after_burst_admission"] = not blocker.done()
    # what the server itself says to a request that finds the queue full (a raw POST, as a browser makes it)
    probe = httpx.post(blocker_client.sse_data_url, timeout=30, json={
        "data": [bad], "event_data": None, "fn_index": dep["id"], "trigger_id": dep["targets"][0][0],
        "session_hash": f"probe-{uuid.uuid4().hex[:12]}"})
    out["server_http_status_when_full"] = probe.status_code
    try:
        out["server_message_when_full"] = probe.json().get("detail", probe.text[:300])
    except ValueError:
        out["server_message_when_full"] = probe.text[:300]
    out["probe_admitted"] = probe.status_code == 200

    rejected = accepted = 0
    client_message = None
    other: list[str] = []
    for job in jobs:
        try:
            job.result(timeout=timeout)
            accepted += 1  # admitted, waited its turn at the render gate, rendered
        except QueueError as e:
            rejected += 1
            client_message = client_message or str(e)
        except AppError as e:
            other.append(f"AppError: {e}"[:300])
        except Exception as e:  # noqa: BLE001
            other.append(f"{type(e).__name__}: {e}"[:300])
    try:
        blocker.result(timeout=timeout)
        out["blocker_ok"] = True
    except Exception as e:  # noqa: BLE001
        out["blocker_ok"] = False
        other.append(f"blocker selfie failed: {type(e).__name__}: {e}"[:300])
    out["seconds"] = round(time.perf_counter() - t0, 2)
    sampler.stop()
    time.sleep(1.0)
    out.update(rejected_busy=rejected, accepted=accepted, other_errors=other,
               client_error_message=client_message,
               rss_peak_during_mb=h.mb(sampler.peak), rss_after_mb=h.mb(h.rss_bytes(server.pid)))
    out["rss_growth_mb"] = (round(out["rss_after_mb"] - out["rss_before_mb"], 1)
                            if out["rss_after_mb"] is not None and out["rss_before_mb"] is not None else None)
    m = re.search(r"Max size is (\d+)", str(out["server_message_when_full"]))
    if m:
        out["queue_max_size"] = int(m.group(1))
    # still serving afterwards?
    try:
        listed, _ = Client(url, verbose=False, download_files=False).predict(
            {"token": owner_token}, api_name="/list_characters")
        out["server_responsive_after"] = isinstance(listed, list)
    except Exception as e:  # noqa: BLE001
        out["server_responsive_after"] = False
        other.append(f"list after burst: {type(e).__name__}: {e}"[:300])
    problems = []
    if rejected == 0:
        problems.append("no request was rejected although more than max_size were submitted")
    if rejected + accepted != n_burst:
        problems.append(f"{n_burst - rejected - accepted} burst requests neither admitted nor rejected cleanly")
    if out["blocker_still_running_after_burst_admission"] and accepted > out["queue_max_size"] + workers:
        problems.append(f"{accepted} admitted while the gate was busy: more than max_size + render workers")
    if other or not out["server_responsive_after"]:
        problems.append("errors during the burst")
    out["problems"] = problems
    out["ok"] = not problems
    return out


# --------------------------------------------------------------------------------------------------- fairness

OVER_BUDGET = {"spec": {}, "seed": 1, "n": 4, "advanced": {"width": 2048, "height": 2048, "steps": 100}}


def allowed_steps(config: Path, profile_name: str | None, kind: str, images: int) -> int:
    """The most steps the profile's compute budget allows a `kind` request of `images` at the default size
    (100 without a budget)."""
    from customizer import budget as budgets
    from customizer.config import load_config
    from customizer.settings import SIZE, STEPS

    profile = load_config(config).profile(profile_name)
    attempts = profile.likeness.max_attempts if profile.likeness and profile.likeness.band else 1
    per_image = 1 if kind == "design" else attempts
    return budgets.fit(profile.budget, profile.width, profile.height, profile.steps, images, STEPS[1], SIZE[1], 4,
                       per_image=per_image, batched=kind == "design").steps_max


def heavy_requests(config: Path, profile_name: str | None) -> tuple[list[tuple[str, dict]], dict[str, Any]]:
    """The heaviest requests the profile's compute budget allows, one of each kind (character_id filled later)."""
    from customizer import budget as budgets
    from customizer.config import load_config
    from customizer.settings import SIZE, STEPS

    profile = load_config(config).profile(profile_name)
    cfg = profile.budget
    attempts = profile.likeness.max_attempts if profile.likeness and profile.likeness.band else 1
    w, h = profile.width, profile.height

    def steps(kind_images: int, per_image: int, batched: bool) -> int:
        f = budgets.fit(cfg, w, h, profile.steps, kind_images, STEPS[1], SIZE[1], 4, per_image=per_image,
                        batched=batched)
        return f.steps_max if cfg else 40  # no budget: 40 steps, a heavy request as before budgets
    design = {"spec": {}, "n": 4, "advanced": {"steps": steps(4, 1, True)}}
    selfie = {"selfie": {"scene": "beach"}, "count": 4, "advanced": {"steps": steps(4, attempts, False)}}
    pack = {"advanced": {"steps": steps(7, attempts, False)}}
    plan = [("design_candidates", design), ("selfie", selfie), ("expression_pack", pack)]
    info = {"budget": None if cfg is None else {"seconds_per_unit": cfg.seconds_per_unit,
                                                 "max_render_seconds": cfg.max_render_seconds,
                                                 "max_seconds": cfg.max_seconds, "max_side": cfg.max_side},
            "requests": {api: req.get("advanced") | {k: v for k, v in req.items() if k in ("n", "count")}
                         for api, req in plan}}
    return plan, info


class HeavyUser(threading.Thread):
    """Keeps `parallel` of the heaviest allowed requests in flight until stopped; every 4th request (the first
    included) is an over-budget one, whose refusal time is recorded (it must come back in under a second)."""

    def __init__(self, url: str, plan: list[tuple[str, dict]], parallel: int, downloads: Path, over_budget: bool):
        super().__init__(name="heavy", daemon=True)
        self.url, self.plan, self.parallel, self.downloads = url, plan, parallel, downloads
        self.over_budget = over_budget
        self.token = f"heavy-user-{secrets.token_hex(8)}"
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.done: dict[str, list[float]] = defaultdict(list)
        self.refusals: list[float] = []
        self.errors: list[str] = []
        self.character_id: str | None = None

    def setup(self) -> None:
        from gradio_client import Client

        c = Client(self.url, verbose=False, download_files=str(self.downloads / "heavy"))
        res, _ = c.predict({"token": self.token, "spec": {}, "seed": 1, "n": 1}, api_name="/design_candidates")
        c.predict({"token": self.token, "character_id": res["character_id"],
                   "candidate_id": res["candidates"][0]["id"]}, api_name="/lock")
        self.character_id = res["character_id"]

    def worker(self, k: int) -> None:
        from gradio_client import Client
        from gradio_client.exceptions import AppError

        client = Client(self.url, verbose=False, download_files=str(self.downloads / f"heavy-{k}"))
        i = k
        while not self.stop_event.is_set():
            i += 1
            if self.over_budget and i % 4 == 1:  # the first request of the first worker, then every 4th
                api, req = "design_candidates", OVER_BUDGET
            else:
                api, req = self.plan[i % len(self.plan)]
                if api != "design_candidates":
                    req = {**req, "character_id": self.character_id}
            t0 = time.perf_counter()
            try:
                client.predict({**req, "token": self.token, "seed": i}, api_name=f"/{api}")
                with self.lock:
                    self.done[api].append(time.perf_counter() - t0)
            except AppError as e:
                with self.lock:
                    if req is OVER_BUDGET and "megapixel-steps" in str(e):
                        self.refusals.append(time.perf_counter() - t0)
                    else:
                        self.errors.append(f"{api}: {e}"[:300])
            except Exception as e:  # noqa: BLE001
                with self.lock:
                    self.errors.append(f"{api}: {type(e).__name__}: {e}"[:300])

    def run(self) -> None:
        threads = [threading.Thread(target=self.worker, args=(k,), daemon=True) for k in range(self.parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def light_run(url: str, n_users: int, rounds: int, first_index: int, workdir: Path, seed: int,
              max_seconds: float) -> tuple[Stats, list[User], float]:
    stats = Stats()
    barrier = threading.Barrier(n_users + 1)
    deadline = time.monotonic() + max_seconds
    users = [User(first_index + i, url, rounds, deadline, stats, workdir / "downloads", barrier, seed)
             for i in range(n_users)]
    for u in users:
        u.start()
    try:
        barrier.wait(timeout=180)
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for u in users:
        u.join(timeout=max(1.0, deadline - time.monotonic() + 30))
    return stats, users, time.perf_counter() - t0


def pooled(stats: Stats, apis: tuple[str, ...] = ("design_candidates", "lock", "selfie")) -> dict[str, Any]:
    values = [v for api in apis for v in stats.latencies.get(api, [])]
    return {"n": len(values), "p50_s": h.percentile(values, 50) and round(h.percentile(values, 50), 3),
            "p95_s": h.percentile(values, 95) and round(h.percentile(values, 95), 3)}


def fairness_phase(url: str, config: Path, profile: str | None, n_users: int, rounds: int, workdir: Path,
                   seed: int, max_seconds: float) -> dict[str, Any]:
    plan, info = heavy_requests(config, profile)
    out: dict[str, Any] = {"light_users": n_users, "rounds": rounds, "heavy": info}
    base_stats, base_users, base_s = light_run(url, n_users, rounds, 100, workdir, seed, max_seconds)
    heavy = HeavyUser(url, plan, parallel=2, downloads=workdir / "downloads", over_budget=info["budget"] is not None)
    heavy.setup()
    heavy.start()
    time.sleep(2.0)  # the heavy user's requests are in flight before the light users start
    with_stats, with_users, with_s = light_run(url, n_users, rounds, 200, workdir, seed + 1, max_seconds)
    heavy.stop_event.set()
    heavy.join(timeout=600)
    base, contended = pooled(base_stats), pooled(with_stats)
    ratio = (contended["p95_s"] / base["p95_s"]) if base["p95_s"] and contended["p95_s"] else None
    refusals = sorted(heavy.refusals)
    out.update(
        baseline={"render_requests": base, "latency": h.latency_table(base_stats.latencies),
                  "errors": base_stats.errors[:5], "seconds": round(base_s, 1)},
        with_heavy={"render_requests": contended, "latency": h.latency_table(with_stats.latencies),
                    "errors": with_stats.errors[:5], "seconds": round(with_s, 1)},
        p95_ratio=round(ratio, 2) if ratio else None,
        heavy_done={api: {"n": len(v), "p50_s": round(h.percentile(v, 50), 2)} for api, v in heavy.done.items()},
        heavy_errors=heavy.errors[:5],
        over_budget_refusals={"n": len(refusals), "max_s": round(max(refusals), 3) if refusals else None,
                              "p95_s": round(h.percentile(refusals, 95), 3) if refusals else None},
    )
    problems = []
    if base_stats.errors or with_stats.errors or heavy.errors:
        problems.append("errors")
    if ratio is None or ratio > 2.0:
        problems.append(f"light users' p95 with the heavy user is {ratio}x the baseline (bar: 2x)")
    if info["budget"] is not None and (not refusals or max(refusals) >= 1.0):
        problems.append("over-budget requests were not all refused in under 1 s")
    if sum(len(v) for v in heavy.done.values()) == 0:
        problems.append("the heavy user completed nothing (was it starved?)")
    out["problems"], out["ok"] = problems, not problems
    return out, base_users + with_users


# --------------------------------------------------------------------------------------------------- checks

def data_check(db_path: Path, data_dir: Path, users: list[User]) -> list[str]:
    """Every character, reference and selfie the server confirmed is in the database with its exact image."""
    from customizer.errors import NotFound
    from customizer.owners import owner_from
    from customizer.store import Store

    lost = []
    with Store(db_path, data_dir) as store:
        for u in users:
            owner = owner_from(u.token)
            for m in u.made:
                try:
                    c = store.get_character(m["character_id"], owner=owner)
                except NotFound:
                    lost.append(f"character {m['character_id']} of {u.name} missing")
                    continue
                ref = c["reference"] or {}
                if ref.get("image_sha256") != m["reference_sha256"]:
                    lost.append(f"{m['character_id']}: reference {ref.get('image_sha256')} != locked one")
                elif h.sha256_file(store.image_path(ref["image_sha256"])) != m["reference_sha256"]:
                    lost.append(f"{m['character_id']}: reference file content differs")
                missing = set(m["selfies"]) - {s["id"] for s in c["selfies"]}
                missing |= set(m["candidates"]) - {k["id"] for k in c["candidates"]}
                if missing:
                    lost.append(f"{m['character_id']}: {len(missing)} selfie/candidate rows missing")
    return lost


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--config", type=Path, help="spaces.yaml whose profile to serve (e.g. the repo's, for bundled)")
    src.add_argument("--tiny", action="store_true", help="build a tiny random model + config in a temp dir (default)")
    ap.add_argument("--profile", help="profile name in --config (default: its default_profile)")
    ap.add_argument("--max-seconds", type=float, default=600, help="bound on the main phase")
    ap.add_argument("--queue-size", type=int, default=32, help="max_size app.py gives demo.queue (for the report)")
    ap.add_argument("--burst", type=int, default=None, help="burst size (default 2 x queue size; 0 skips the burst)")
    ap.add_argument("--burst-block-steps", type=int, default=40,
                    help="steps of the slow selfie that holds the endpoint during the burst")
    ap.add_argument("--fairness", action="store_true",
                    help="also run the light users alone and beside one heavy user (phase 2b)")
    ap.add_argument("--light-users", type=int, default=None, help="light users in the fairness phase "
                                                                    "(default: --users)")
    ap.add_argument("--render-workers", type=int, default=16,
                    help="RENDER_WORKERS of customizer/ui/common.py (report)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir, removed afterwards)")
    ap.add_argument("--json", type=Path, help="write the report here too")
    args = ap.parse_args(argv)
    if args.users < 1 or args.rounds < 1:
        ap.error("--users and --rounds must be at least 1")
    n_burst = 2 * args.queue_size if args.burst is None else args.burst

    t_all = time.perf_counter()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="customizer-load-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"users": args.users, "rounds": args.rounds, "ok": False}
    server = None
    try:
        if args.config:
            config = args.config.resolve()
            report["model"] = f"{config} (profile {args.profile or 'default'})"
        else:
            t0 = time.perf_counter()
            config = h.build_tiny_config(workdir)
            report["model"] = "tiny random model (--tiny)"
            report["tiny_model_build_seconds"] = round(time.perf_counter() - t0, 1)
        state = workdir / "state"
        server = h.Server(config, state, profile=args.profile, preload=True)
        url = server.wait_ready()
        report["server_startup_seconds"] = round(server.ready_seconds, 1)
        sampler = h.RssSampler(server.pid)
        sampler.start()
        rss_idle = h.rss_bytes(server.pid)

        # ---- main phase
        deadline = time.monotonic() + args.max_seconds     # light_run's own deadline, to the microsecond
        stats, users, main_seconds = light_run(url, args.users, args.rounds, 0, workdir, args.seed, args.max_seconds)
        timed_out = any(u.is_alive() for u in users) or (
            any(u.rounds_done < args.rounds for u in users) and time.monotonic() >= deadline)
        report.update(
            requests=stats.requests, errors=len(stats.errors), error_samples=stats.errors[:10],
            busy_rejections=stats.busy, seconds=round(main_seconds, 1),
            throughput_rps=round(stats.ok_requests / main_seconds, 3) if main_seconds else None,
            rounds_completed=sum(u.rounds_done for u in users), timed_out=timed_out,
            latency=h.latency_table(stats.latencies),
        )
        report["server_rss_idle_mb"] = h.mb(rss_idle)
        report["server_rss_after_main_mb"] = h.mb(h.rss_bytes(server.pid))

        # ---- burst phase
        owner = next((u for u in users if u.made), None)
        if n_burst > 0 and owner is not None:
            # the blocking selfie (count 2) is the slowest the compute budget allows, at most --burst-block-steps
            block_steps = min(args.burst_block_steps, allowed_steps(config, args.profile, "selfie", 2))
            report["burst"] = burst_phase(url, server, owner.token, owner.made[0]["character_id"], args.queue_size,
                                          n_burst, block_steps, workdir / "downloads", timeout=300,
                                          workers=args.render_workers)
        elif n_burst > 0:
            report["burst"] = {"ok": False, "problems": ["no locked character to hold the endpoint (main failed)"]}
        if args.fairness:
            report["fairness"], more_users = fairness_phase(url, config, args.profile, args.light_users or args.users,
                                                            args.rounds, workdir, args.seed, args.max_seconds)
            users = users + more_users

        sampler.stop()
        hwm = h.peak_rss_bytes(server.pid)
        report["server_peak_rss_mb"] = h.mb(max(hwm or 0, sampler.peak))
        report["server_peak_rss_source"] = ("VmHWM (/proc)" if hwm else "") + (
            " + psutil samples" if h.psutil and sampler.samples else " + /proc VmRSS samples")
        server.stop()
        gtmp = state / "gradio-tmp"
        report["gradio_temp_mb"] = h.mb(sum(f.stat().st_size for f in gtmp.rglob("*") if f.is_file()))

        # ---- consistency after the run (server stopped)
        before = h.raw_disk_check(server.db_path, server.data_dir)
        store = h.store_check(server.db_path, server.data_dir)
        lost = data_check(server.db_path, server.data_dir, users)
        problems = list(store["problems"])
        for key in ("rows_without_file", "files_without_row", "content_mismatch"):
            if before[key]:
                problems.append(f"before gc, {key}: {before[key][:5]} ({len(before[key])})")
        report["integrity"] = {
            "before_gc": {k: (v if k == "counts" else len(v)) for k, v in before.items()},
            "integrity_check": store["report"]["integrity_check"],
            "foreign_key_violations": len(store["report"]["foreign_key_violations"]),
            "rows_without_file": len(store["report"]["rows_without_file"]),
            "files_without_row": len(store["report"]["files_without_row"]),
            "unreferenced_image_rows": len(store["report"]["unreferenced_image_rows"]),
            "lost_records": lost[:10], "n_lost": len(lost),
            "problems": problems + lost[:10], "clean": not problems and not lost,
        }
        report["ok"] = (report["errors"] == 0 and not timed_out and report["integrity"]["clean"]
                        and report.get("burst", {"ok": True})["ok"] and report.get("fairness", {"ok": True})["ok"])
    except Exception as e:  # noqa: BLE001 - the report says what broke
        h.record_fatal(report, e, server)
    finally:
        h.close_run(report, server, t_all, "total_seconds", workdir, keep_workdir=bool(args.workdir))
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
