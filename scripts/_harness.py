"""Shared pieces of scripts/load_test.py and scripts/crash_test.py: a tiny random model + config, app.py as a
subprocess on loopback with its own database, server memory readings, and the on-disk consistency checks.

The app under test always gets a FRESH database and data folder (CUSTOMIZER_DB / CUSTOMIZER_DATA_DIR in a work
folder), whatever --config says, so a load or crash run never touches a real characters.db.
"""
from __future__ import annotations

import hashlib
import shutil
import math
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

try:
    import psutil  # type: ignore[import-untyped]
except ImportError:  # optional: /proc is read instead
    psutil = None


def build_tiny_config(workdir: Path) -> Path:
    """A tiny random model (real diffusers formats, as the tests use) and a spaces.yaml whose default profile is it."""
    import yaml

    sys.path.insert(0, str(REPO / "tests"))
    from tiny_profiles import tiny_profile_yaml

    from customizer.engine.architectures import build_random_model_dir

    model = build_random_model_dir(workdir / "tiny-model", "tiny", seed=0)
    cfg = {"default_profile": "tiny", "storage": {"db": "characters.db", "data_dir": "data"},
           "profiles": {"tiny": tiny_profile_yaml(model)}}
    path = workdir / "spaces.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """app.py on 127.0.0.1 with the database and images under `state_dir`."""

    def __init__(self, config: Path, state_dir: Path, profile: str | None = None, preload: bool = False,
                 log_name: str = "app.log"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.db_path = state_dir / "characters.db"
        self.data_dir = state_dir / "data"
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "gradio-tmp").mkdir(exist_ok=True)
        self.log = state_dir / log_name
        env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
                   CUSTOMIZER_DB=str(self.db_path), CUSTOMIZER_DATA_DIR=str(self.data_dir),
                   GRADIO_TEMP_DIR=str(state_dir / "gradio-tmp"))
        args = [sys.executable, str(REPO / "app.py"), "--config", str(config), "--host", "127.0.0.1",
                "--port", str(self.port)]
        if profile:
            args += ["--profile", profile]
        if preload:
            args.append("--preload")
        self.t_start = time.perf_counter()
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(args, cwd=state_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.ready_seconds: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 240) -> str:
        """Until the HTTP port answers (with --preload the model is loaded by then)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    self.ready_seconds = time.perf_counter() - self.t_start
                    return self.url
            except OSError:
                time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"app not ready after {timeout:.0f} s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL (kill -9) this server process only."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# ------------------------------------------------------------------------------------------ memory

def rss_bytes(pid: int) -> int | None:
    if psutil is not None:
        try:
            return psutil.Process(pid).memory_info().rss
        except psutil.Error:
            return None
    return _proc_status_kb(pid, "VmRSS")


def peak_rss_bytes(pid: int) -> int | None:
    """Kernel high-water mark (VmHWM) where /proc has it; psutil keeps no peak on Linux."""
    return _proc_status_kb(pid, "VmHWM")


def _proc_status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class RssSampler(threading.Thread):
    """Samples a process' RSS every `interval` seconds; .peak is the largest sample."""

    def __init__(self, pid: int, interval: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            rss = rss_bytes(self.pid)
            if rss:
                self.peak = max(self.peak, rss)
                self.samples += 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def mb(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


# ------------------------------------------------------------------------------------------ statistics

def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency_table(latencies: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    return {name: {"n": len(v), "p50_s": round(percentile(v, 50), 3), "p95_s": round(percentile(v, 95), 3),
                   "max_s": round(max(v), 3)} for name, v in sorted(latencies.items()) if v}


# ------------------------------------------------------------------------------------------ consistency

def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def raw_disk_check(db_path: Path, data_dir: Path) -> dict[str, Any]:
    """What is on disk BEFORE the Store's gc() runs at open: rows whose file is missing (never allowed), files whose
    content does not match their content address (never allowed), and files without a row (crash leftovers that
    gc() removes at the next open). Plain sqlite3, no writes."""
    con = sqlite3.connect(str(db_path), timeout=30)
    try:
        rows: dict[str, str] = {}  # relative path -> what points at it
        for table in ("candidates", "refs", "selfies"):
            for (sha,) in con.execute(f"SELECT image_sha256 FROM {table}"):
                rows[f"images/{sha[:2]}/{sha}.png"] = table
        for _sha, path in con.execute("SELECT sha256, path FROM images"):
            rows.setdefault(path, "images")
        for _sha, path in con.execute("SELECT sha256, path FROM reference_embeddings"):
            rows.setdefault(path, "reference_embeddings")
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("characters", "candidates", "refs", "selfies", "images", "reference_embeddings")}
    finally:
        con.close()
    files = {}
    for kind in ("images", "embeddings"):
        root = data_dir / kind
        if root.exists():
            for f in root.rglob("*"):
                if f.is_file():
                    files[f.relative_to(data_dir).as_posix()] = f
    mismatched = []
    for rel, f in files.items():
        name = f.name
        if name.endswith((".png", ".bin")) and not name.startswith("."):
            if sha256_file(f) != name.split(".")[0]:
                mismatched.append(rel)
    return {
        "rows_without_file": sorted(f"{table}:{p}" for p, table in rows.items() if not (data_dir / p).is_file()),
        "files_without_row": sorted(set(files) - set(rows)),
        "content_mismatch": sorted(mismatched),
        "counts": counts,
    }


def store_check(db_path: Path, data_dir: Path) -> dict[str, Any]:
    """Open the Store (which runs gc()), then its integrity_report(); `clean` is True when nothing is wrong."""
    from customizer.store import Store

    with Store(db_path, data_dir) as store:
        report = store.integrity_report()
    problems = []
    if report["integrity_check"] != "ok":
        problems.append(f"PRAGMA integrity_check: {report['integrity_check']}")
    for key in ("foreign_key_violations", "rows_without_file", "files_without_row", "unreferenced_image_rows"):
        if report[key]:
            problems.append(f"{key}: {report[key][:5]} ({len(report[key])})")
    return {"report": report, "clean": not problems, "problems": problems}


def record_fatal(report: dict[str, Any], error: Exception, server) -> None:
    """The report says what broke (and what the server printed last) instead of a bare traceback."""
    report["fatal"] = f"{type(error).__name__}: {error}"
    if server is not None:
        report["server_log_tail"] = server.tail(2000)


def close_run(report: dict[str, Any], server, t_start: float, seconds_key: str, workdir: Path,
              keep_workdir: bool) -> None:
    """Shared end of a script run: stop the server, record time and machine, remove a temporary workdir."""
    if server is not None:
        server.kill()
    report[seconds_key] = round(time.perf_counter() - t_start, 1)
    report["machine"] = {"cpus": os.cpu_count(), "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
                         "note": "shared 2-core machine: timings are noisy"}
    if not keep_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
