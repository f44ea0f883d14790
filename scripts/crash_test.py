"""Crash test: kill -9 app.py at random moments while clients are designing, locking, taking selfies, renaming and
deleting, then check that nothing the server confirmed was lost and that the files and rows still agree.

    python scripts/crash_test.py --tiny --kills 20 --json crash.json
    python scripts/crash_test.py --config spaces.yaml --profile bundled --kills 20

One database/data folder (fresh, in a work directory; --config only picks the model) lives through all the kills.
Each cycle:
1. start app.py --preload (the model is loaded before the port opens), warm it up with one design -> lock ->
   selfie -> delete of a throw-away character (--no-warmup skips this), then start --workers client threads, each with
   its own token and its own characters, doing random operations through the JSON API: design_candidates (n 1-2), lock,
   selfie (count 1-2), rename, delete, list_characters, get_character. Live answers are checked against what each worker
   knows.
2. after a random 0.05-3 s, SIGKILL the server (never a graceful stop).
3. with the server dead, check the files on disk BEFORE gc (no row without its file, no file whose bytes differ
   from its content address; files without a row are allowed here: crash leftovers), then open the Store (its
   gc() runs) and require a clean integrity_report(): PRAGMA integrity_check ok, no foreign-key violations, no
   row without a file, no file without a row, no unreferenced image rows.
4. every fact confirmed before the kill must hold: each character that was not being deleted exists; each locked
   reference is still the active reference with the same image sha256 and its file still hashes to it; confirmed
   candidates and selfies are there; confirmed renames stuck; confirmed deletes stayed deleted. Each surviving
   character is also exported to a zip in-process (export is a UI-only event, not in the JSON API: see below).
5. the workers' knowledge is re-read from the store: what survived one crash must survive the next.
At the end the app is started once more and must list exactly what the store holds.

Prints a JSON report (also to --json); exit status 0 only with zero violations and zero unexpected errors.
"""
from __future__ import annotations

import argparse
import io
import json
import random
import secrets
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness as h

SCENES = ["studio", "beach", "forest", "city", "cafe", "mountains", "library", "space station"]
FRAMINGS = ["close-up", "half body", "full body", "looking away", "over the shoulder", "profile"]
CALL_TIMEOUT = 120.0
EXPORT_NOTE = ("export is not in the JSON API (the Characters tab's 'Export .zip' is an undocumented UI event whose "
               "Dropdown input rejects ids missing from its server-side choices); export_character() is run "
               "in-process on every surviving character after each kill instead")


@dataclass
class Char:
    cid: str
    status: str = "draft"
    ref_sha: str | None = None  # confirmed active reference
    candidates: dict[str, str] = field(default_factory=dict)  # candidate id -> image sha256 (confirmed)
    selfies: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)  # acceptable names (two while a rename is unconfirmed)
    delete: str | None = None  # None | "sent" | "done"
    lock_sent: bool = False


class Killed(Exception):
    pass


class Worker:
    """One API user (its own token) that runs in a fresh thread each cycle. Its `chars` are changed by itself while
    the server runs and by the checker (resync) while it does not."""

    def __init__(self, index: int, seed: int):
        self.index = index
        self.token = f"crash-worker-{index}-{secrets.token_hex(8)}"
        self.rng = random.Random(seed * 7919 + index)
        self.chars: dict[str, Char] = {}
        self.lock = threading.Lock()
        self.confirmed: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.live_violations: list[str] = []
        self.current: str | None = None
        self.killed = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, client) -> None:
        self.client, self.current, self.killed = client, None, threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"worker-{self.index}", daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> bool:
        """True when the thread has ended."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    # ---------------------------------------------------------------------------------------------- calls
    def call(self, api: str, req: dict) -> Any:
        if self.killed.is_set():
            raise Killed
        self.current = api
        try:
            job = self.client.submit(dict(req, token=self.token), api_name=f"/{api}")
            return job.result(timeout=CALL_TIMEOUT)
        except Exception:
            if self.killed.is_set():
                raise Killed from None  # the server died under this call: its outcome is unknown
            raise
        finally:
            self.current = None

    def live(self, ok: bool, message: str) -> None:
        if not ok:
            self.live_violations.append(f"worker {self.index}: {message}"[:300])

    # ---------------------------------------------------------------------------------------------- ops
    def alive(self) -> list[Char]:
        return [c for c in self.chars.values() if c.delete is None]

    def op_design(self) -> None:
        from customizer.character import catalogue

        rng = self.rng
        spec = {k: rng.choice(list(o.choices)) for k, o in catalogue().items()}
        spec["age"] = rng.randint(18, 70)
        n = rng.randint(1, 2)
        name = f"crash {self.index}-{rng.randrange(10**6)}"
        res, _ = self.call("design_candidates", {"spec": spec, "seed": rng.randrange(10**6), "n": n, "name": name})
        c = Char(res["character_id"], names={name})
        c.candidates = {k["id"]: k["image_sha256"] for k in res["candidates"]}
        self.live(len(c.candidates) == n, f"design gave {len(c.candidates)} candidates, asked {n}")
        with self.lock:
            self.chars[c.cid] = c
        self.confirmed["design"] += 1

    def op_lock(self, c: Char) -> None:
        cand = self.rng.choice(sorted(c.candidates))
        c.lock_sent = True
        ref, _ = self.call("lock", {"character_id": c.cid, "candidate_id": cand})
        self.live(ref["image_sha256"] == c.candidates[cand], "locked reference is not the chosen candidate")
        with self.lock:
            c.status, c.ref_sha, c.lock_sent = "locked", ref["image_sha256"], False
        self.confirmed["lock"] += 1

    def op_selfie(self, c: Char) -> None:
        rng = self.rng
        made, _ = self.call("selfie", {"character_id": c.cid, "seed": rng.randrange(10**6),
                                       "count": rng.randint(1, 2),
                                       "selfie": {"scene": rng.choice(SCENES), "framing": rng.choice(FRAMINGS),
                                                  "likeness": round(rng.random(), 2)}})
        self.live(all(s["recipe"]["reference_sha256"] == c.ref_sha for s in made), "selfie of another reference")
        with self.lock:
            c.selfies.update(s["id"] for s in made)
        self.confirmed["selfie"] += 1

    def op_rename(self, c: Char) -> None:
        new = f"renamed {self.index}-{self.rng.randrange(10**6)}"
        with self.lock:
            c.names.add(new)  # unknown which name wins until the answer comes
        self.call("rename", {"character_id": c.cid, "name": new})
        with self.lock:
            c.names = {new}
        self.confirmed["rename"] += 1

    def op_delete(self, c: Char) -> None:
        with self.lock:
            c.delete = "sent"
        out, _ = self.call("delete", {"character_id": c.cid})
        with self.lock:
            c.delete = "done"
        self.confirmed["delete"] += 1

    def op_read(self) -> None:
        listed, _ = self.call("list_characters", {})
        ids = {x["id"] for x in listed}
        with self.lock:
            known = [c for c in self.chars.values() if c.delete is None]
        self.live(all(c.cid in ids for c in known), "list_characters misses a character this worker made")
        locked = [c for c in known if c.status == "locked"]
        if locked:
            c = self.rng.choice(locked)
            got, _ = self.call("get_character", {"character_id": c.cid})
            self.live((got.get("reference") or {}).get("image_sha256") == c.ref_sha,
                      f"get_character: reference of {c.cid} changed")
            self.live(c.selfies <= {s["id"] for s in got["selfies"]}, f"get_character: selfies of {c.cid} missing")
        self.confirmed["read"] += 1

    def run(self) -> None:
        rng = self.rng
        while not self.killed.is_set():
            with self.lock:
                alive = self.alive()
            drafts = [c for c in alive if c.status == "draft" and c.candidates and not c.lock_sent]
            locked = [c for c in alive if c.status == "locked"]
            choices: list[tuple[str, float]] = [("design", 2.0), ("read", 1.0)]
            if drafts:
                choices.append(("lock", 3.0))
            if locked:
                choices.append(("selfie", 4.0))
            if alive:
                choices.append(("rename", 1.0))
            if len(alive) >= 3:
                choices.append(("delete", 1.5))
            op = rng.choices([c for c, _ in choices], [w for _, w in choices])[0]
            try:
                if op == "design":
                    self.op_design()
                elif op == "lock":
                    self.op_lock(rng.choice(drafts))
                elif op == "selfie":
                    self.op_selfie(rng.choice(locked))
                elif op == "rename":
                    self.op_rename(rng.choice(alive))
                elif op == "delete":
                    self.op_delete(rng.choice(alive))
                else:
                    self.op_read()
            except Killed:
                return
            except Exception as e:  # noqa: BLE001 - the server was alive: this answer was wrong
                self.unexpected.append(f"worker {self.index} {op}: {type(e).__name__}: {e}"[:300])
                time.sleep(0.2)


# -------------------------------------------------------------------------------------------------- checks

def check_after_kill(db_path: Path, data_dir: Path, workers: list[Worker]) -> dict[str, Any]:
    """The server is dead. Disk check before gc, Store integrity after gc, confirmed facts, export, resync."""
    from customizer import archive
    from customizer.errors import NotFound
    from customizer.owners import owner_from
    from customizer.store import Store

    violations: list[str] = []
    raw = h.raw_disk_check(db_path, data_dir)
    for key in ("rows_without_file", "content_mismatch"):
        if raw[key]:
            violations.append(f"before gc, {key}: {raw[key][:3]} ({len(raw[key])})")
    sc = h.store_check(db_path, data_dir)
    violations += [f"after gc: {p}" for p in sc["problems"]]
    checked = Counter()
    empty_drafts = 0
    with Store(db_path, data_dir) as store:
        for w in workers:
            owner = owner_from(w.token)
            for c in list(w.chars.values()):
                try:
                    got = store.get_character(c.cid, owner=owner)
                except NotFound:
                    if c.delete is None:
                        violations.append(f"character {c.cid} lost (no delete was sent)")
                    continue
                if c.delete == "done":
                    violations.append(f"character {c.cid} is back after a confirmed delete")
                if c.status == "locked":
                    checked["locked_refs"] += 1
                    ref = got["reference"] or {}
                    if got["status"] != "locked" or ref.get("image_sha256") != c.ref_sha:
                        violations.append(f"{c.cid}: locked reference {c.ref_sha} became {ref.get('image_sha256')}")
                    elif h.sha256_file(store.image_path(c.ref_sha)) != c.ref_sha:
                        violations.append(f"{c.cid}: reference file no longer hashes to {c.ref_sha}")
                missing = set(c.candidates) - {k["id"] for k in got["candidates"]}
                missing_s = c.selfies - {s["id"] for s in got["selfies"]}
                checked["candidates"] += len(c.candidates)
                checked["selfies"] += len(c.selfies)
                if missing or missing_s:
                    violations.append(f"{c.cid}: {len(missing)} candidates, {len(missing_s)} selfies lost")
                if c.names and got["name"] not in c.names:
                    violations.append(f"{c.cid}: name {got['name']!r} not one of {sorted(c.names)}")
            # resync: what the store holds now is the baseline the next crash must keep
            fresh: dict[str, Char] = {}
            for s in store.list_characters(owner=owner):
                full = store.get_character(s["id"], owner=owner)
                if not full["candidates"] and not full["references"]:
                    # a kill between create_character and the first candidate: not user data, and the app
                    # prunes such drafts when it starts, so it is no baseline for the next kill
                    empty_drafts += 1
                    continue
                fresh[s["id"]] = Char(
                    s["id"], status=full["status"],
                    ref_sha=(full["reference"] or {}).get("image_sha256"),
                    candidates={k["id"]: k["image_sha256"] for k in full["candidates"]},
                    selfies={x["id"] for x in full["selfies"]}, names={full["name"]})
                try:
                    data = archive.export_character(store, s["id"], owner=owner)
                    with zipfile.ZipFile(io.BytesIO(data)) as zf:
                        bad = zf.testzip()
                        n_images = sum(1 for n in zf.namelist() if n.startswith("images/"))
                    # every image of the character: candidates, selfies, references and the sheets of all references
                    shas = ({k["image_sha256"] for k in full["candidates"]}
                            | {x["image_sha256"] for x in full["selfies"]}
                            | {r["image_sha256"] for r in full["references"]}
                            | {v["image_sha256"] for v in store.sheet_views(s["id"], owner=owner)})
                    if bad or n_images != len(shas):
                        violations.append(f"export of {s['id']}: bad member {bad} or {n_images} != {len(shas)}")
                    checked["exports"] += 1
                except Exception as e:  # noqa: BLE001
                    violations.append(f"export of {s['id']} failed: {type(e).__name__}: {e}"[:300])
            w.chars = fresh
    return {"violations": violations, "orphans_before_gc": len(raw["files_without_row"]),
            "counts": raw["counts"], "checked": checked, "empty_drafts": empty_drafts}


def warm_up(client) -> float:
    """design -> lock -> selfie -> delete with a throw-away token, so that the kill lands among real writes
    rather than in first-call warm-up (cold ControlNet path, first gradio events). Returns seconds."""
    t0 = time.perf_counter()
    me = {"token": f"crash-warmup-{secrets.token_hex(8)}"}
    res, _ = client.predict({**me, "spec": {"age": 30}, "seed": 1, "n": 1}, api_name="/design_candidates")
    cid = res["character_id"]
    client.predict({**me, "character_id": cid, "candidate_id": res["candidates"][0]["id"]}, api_name="/lock")
    client.predict({**me, "character_id": cid, "selfie": {"scene": "beach"}, "seed": 1}, api_name="/selfie")
    client.predict({**me, "character_id": cid}, api_name="/delete")
    return time.perf_counter() - t0


def final_restart(config: Path, state: Path, profile: str | None, workers: list[Worker]) -> list[str]:
    """Start the app once more (gracefully stopped this time): it must serve exactly what the store holds."""
    from gradio_client import Client

    problems = []
    server = h.Server(config, state, profile=profile, preload=False, log_name="app-final.log")
    try:
        url = server.wait_ready()
        client = Client(url, verbose=False, download_files=False)
        for w in workers:
            listed, _ = client.predict({"token": w.token}, api_name="/list_characters")
            if {x["id"] for x in listed} != set(w.chars):
                problems.append(f"worker {w.index}: app lists {len(listed)} characters, store holds {len(w.chars)}")
            for c in w.chars.values():
                if c.status == "locked":
                    got, _ = client.predict({"token": w.token, "character_id": c.cid}, api_name="/get_character")
                    if got["reference"]["image_sha256"] != c.ref_sha:
                        problems.append(f"{c.cid}: app shows another reference")
    except Exception as e:  # noqa: BLE001
        problems.append(f"final restart: {type(e).__name__}: {e}"[:500])
    finally:
        server.stop()
    sc = h.store_check(server.db_path, server.data_dir)
    return problems + sc["problems"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--config", type=Path, help="spaces.yaml whose profile to serve")
    src.add_argument("--tiny", action="store_true", help="build a tiny random model + config in a temp dir (default)")
    ap.add_argument("--profile")
    ap.add_argument("--workers", type=int, default=3, help="concurrent API clients (own tokens)")
    ap.add_argument("--min-delay", type=float, default=0.05)
    ap.add_argument("--max-delay", type=float, default=3.0)
    ap.add_argument("--max-seconds", type=float, default=3000, help="stop starting new cycles after this")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed in the report)")
    ap.add_argument("--no-warmup", action="store_true",
                    help="start the kill timer right after startup (kills then mostly land in first-call warm-up)")
    ap.add_argument("--no-final-restart", action="store_true")
    ap.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir, removed afterwards)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    rng = random.Random(seed)

    t_all = time.perf_counter()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="customizer-crash-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"kills": 0, "kills_requested": args.kills, "violations": None, "seed": seed,
                              "workers": args.workers, "export_via_api": EXPORT_NOTE, "ok": False}
    violations: list[str] = []
    unexpected: list[str] = []
    kill_during: Counter[str] = Counter()
    checked: Counter[str] = Counter()
    orphans: list[int] = []
    startups: list[float] = []
    delays: list[float] = []
    warmups: list[float] = []
    server = None
    try:
        if args.config:
            config = args.config.resolve()
        else:
            t0 = time.perf_counter()
            config = h.build_tiny_config(workdir)
            report["tiny_model_build_seconds"] = round(time.perf_counter() - t0, 1)
        state = workdir / "state"
        workers = [Worker(i, seed) for i in range(args.workers)]
        from gradio_client import Client

        for k in range(args.kills):
            if time.perf_counter() - t_all > args.max_seconds:
                report["stopped_early"] = f"--max-seconds reached after {k} kills"
                break
            server = h.Server(config, state, profile=args.profile, preload=True, log_name=f"app-{k:02d}.log")
            try:
                url = server.wait_ready()
            except Exception as e:  # noqa: BLE001 - a restart that fails after a crash is a violation
                violations.append(f"cycle {k}: app did not start after the previous kill: {e}"[:600])
                break
            startups.append(server.ready_seconds)
            clients = [Client(url, verbose=False, download_files=False) for _ in workers]
            if not args.no_warmup:
                try:
                    warmups.append(warm_up(clients[0]))
                except Exception as e:  # noqa: BLE001
                    unexpected.append(f"cycle {k}: warm-up failed: {type(e).__name__}: {e}"[:300])
            delay = rng.uniform(args.min_delay, args.max_delay)
            delays.append(delay)
            for w, client in zip(workers, clients):
                w.start(client)
            time.sleep(delay)
            for w in workers:
                w.killed.set()  # first: whatever fails from now on failed because of the kill
            in_flight = [w.current for w in workers]
            server.kill()  # SIGKILL
            report["kills"] = k + 1
            kill_during.update(op or "idle" for op in in_flight)
            for w in workers:
                if not w.join(timeout=60):
                    unexpected.append(f"cycle {k}: worker {w.index} did not notice the dead server in 60 s")
            result = check_after_kill(server.db_path, server.data_dir, workers)
            violations += [f"kill {k + 1} (after {delay:.2f} s, during {in_flight}): {v}" for v in result["violations"]]
            for w in workers:
                violations += w.live_violations
                unexpected += w.unexpected
                w.live_violations, w.unexpected = [], []
            orphans.append(result["orphans_before_gc"])
            checked.update(result["checked"])
            report["db_counts"] = result["counts"]
            report["empty_draft_characters"] = result["empty_drafts"]
            print(f"kill {k + 1}/{args.kills}: after {delay:.2f} s during {in_flight}; "
                  f"{result['orphans_before_gc']} orphan file(s) before gc; {len(result['violations'])} violation(s);"
                  f" {dict(result['counts'])}", file=sys.stderr, flush=True)
        if not args.no_final_restart and report["kills"]:
            final = final_restart(config, state, args.profile, workers)
            report["final_restart_ok"] = not final
            violations += final
        confirmed: Counter[str] = Counter()
        for w in workers:
            confirmed.update(w.confirmed)
        report.update(
            violations=len(violations), violation_samples=violations[:20], unexpected_errors=len(unexpected),
            unexpected_samples=unexpected[:10], kill_during=dict(kill_during), ops_confirmed=dict(confirmed),
            checked=dict(checked), orphan_files_before_gc={"total": sum(orphans), "max": max(orphans, default=0),
                                                           "kills_with_orphans": sum(1 for o in orphans if o)},
            kill_delay_s={"min": round(min(delays), 2), "max": round(max(delays), 2)} if delays else None,
            restart_seconds={"p50": round(h.percentile(startups, 50), 1), "max": round(max(startups), 1)}
            if startups else None,
            warmup_seconds={"p50": round(h.percentile(warmups, 50), 1), "max": round(max(warmups), 1)}
            if warmups else None,
        )
        report["ok"] = (not violations and not unexpected and report["kills"] == args.kills)
    except Exception as e:  # noqa: BLE001 - the report says what broke
        h.record_fatal(report, e, server)
    finally:
        h.close_run(report, server, t_all, "seconds", workdir, keep_workdir=bool(args.workdir))
    if report["violations"] is None:
        report["violations"] = len(violations)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
