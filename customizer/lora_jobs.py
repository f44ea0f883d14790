"""Background character-LoRA trainings: one process each (customizer/engine/character_lora.py), watched by a thread.

No torch, no gradio. A job is queued, then running (a `python -m customizer.engine.character_lora JOB_DIR` process
whose JSON-line progress updates the job), then done / cancelled / failed. At most `parallel` trainings run at a
time (2 CPU cores have no room for more); the rest wait queued. One job per character at a time. Cancel terminates
the process (kill after a grace period). Jobs live in memory: a restart forgets them, and their processes stop by
themselves when the app is gone. Every lookup is scoped by owner: another owner's job reads as missing.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import CustomizerError, NotFound, StateError

log = logging.getLogger(__name__)
ACTIVE = ("queued", "running")
FINISHED = ("done", "cancelled", "failed")
KEEP_FINISHED = 200   # finished jobs remembered for status queries
KILL_GRACE_S = 5.0
JOB_FILE = "job.json"
OUT_FILE = "character_lora.safetensors"  # = engine.character_lora.OUT_FILE (not imported: that module loads torch)
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# finish(job, lora file bytes, training facts) -> the stored LoRA record
Finish = Callable[["Job", bytes, dict], dict]


@dataclass
class Job:
    id: str
    character_id: str
    owner: str
    images: int
    steps: int
    state: str = "queued"
    step: int = 0
    loss: float | None = None
    message: str = "waiting for a free trainer"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    lora: dict | None = None
    cancel_requested: bool = False
    timed_out: bool = False
    proc: subprocess.Popen | None = None

    def public(self) -> dict[str, Any]:
        end = self.finished or time.time()
        return {"id": self.id, "character_id": self.character_id, "state": self.state,
                "progress": 1.0 if self.state == "done" else round(self.step / self.steps, 4) if self.steps else 0.0,
                "step": self.step, "steps": self.steps, "loss": self.loss, "message": self.message,
                "images": self.images, "seconds": round(end - self.started, 1) if self.started else 0.0,
                "lora": self.lora}


class LoraJobs:
    def __init__(self, parallel: int = 1, timeout_s: float = 3600.0, python: str = sys.executable):
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._slots = threading.Semaphore(parallel)
        self.timeout_s = timeout_s
        self.python = python
        ref = weakref.ref(self)
        atexit.register(lambda: (jobs := ref()) is not None and jobs.shutdown())

    # ---- what the Studio calls --------------------------------------------------------------------------------
    def submit(self, character_id: str, owner: str, job: dict, files: dict[str, bytes], finish: Finish) -> Job:
        """Queue a training: `job` is job.json's content, `files` the other files of the job folder (images,
        conditioning). `finish` stores the result; it runs in the job's thread."""
        steps = int(job["settings"]["steps"])
        with self._lock:
            busy = self._active_for(character_id, owner)
            if busy is not None:
                raise StateError(f"this character is already training a LoRA (job {busy.id}, {busy.state}); "
                                 "wait for it or cancel it first")
            j = Job(uuid.uuid4().hex, character_id, owner, len(job["images"]), steps)
            self._jobs[j.id] = j
            self._forget_old()
        threading.Thread(target=self._run, args=(j, job, files, finish), name=f"lora-job-{j.id[:8]}",
                         daemon=True).start()
        return j

    def status(self, job_id: Any, owner: str) -> dict[str, Any]:
        with self._lock:
            return self._get(job_id, owner).public()

    def latest_for(self, character_id: str, owner: str) -> dict[str, Any] | None:
        """The character's running job, else its newest finished one (None: none since the app started)."""
        with self._lock:
            mine = [j for j in self._jobs.values() if j.character_id == character_id and j.owner == owner]
            busy = [j for j in mine if j.state in ACTIVE]
            pick = busy[-1] if busy else (mine[-1] if mine else None)
            return pick.public() if pick else None

    def cancel(self, job_id: Any, owner: str) -> dict[str, Any]:
        """Stop a queued or running job (no LoRA is stored); a finished job is left as it is."""
        with self._lock:
            j = self._get(job_id, owner)
            active = j.state in ACTIVE
            if active:
                j.cancel_requested = True
                j.message = "cancelling"
            proc = j.proc
        if active and proc is not None:
            _terminate(proc)
        return self.wait(job_id, owner, timeout=KILL_GRACE_S + 5) if active else self.status(job_id, owner)

    def cancel_character(self, character_id: str, owner: str) -> None:
        """Cancel the character's active job, if any (it is being deleted)."""
        with self._lock:
            busy = self._active_for(character_id, owner)
        if busy is not None:
            self.cancel(busy.id, owner)

    def wait(self, job_id: Any, owner: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job is finished (or the timeout passes); its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.status(job_id, owner)
            if st["state"] in FINISHED or (deadline is not None and time.monotonic() > deadline):
                return st
            time.sleep(0.05)

    def shutdown(self) -> None:
        """Cancel everything (the app is stopping)."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.state in ACTIVE]
            for j in jobs:
                j.cancel_requested = True
        for j in jobs:
            if j.proc is not None:
                _terminate(j.proc)

    # ---- inside ------------------------------------------------------------------------------------------------
    def _get(self, job_id: Any, owner: str) -> Job:
        j = self._jobs.get(job_id) if isinstance(job_id, str) else None
        if j is None or j.owner != owner:
            raise NotFound(f"training job {str(job_id)[:64]} not found")
        return j

    def _active_for(self, character_id: str, owner: str) -> Job | None:
        return next((j for j in self._jobs.values()
                     if j.character_id == character_id and j.owner == owner and j.state in ACTIVE), None)

    def _forget_old(self) -> None:
        done = [k for k, j in self._jobs.items() if j.state in FINISHED]
        for k in done[:max(0, len(done) - KEEP_FINISHED)]:
            del self._jobs[k]

    def _update(self, j: Job, **changes: Any) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(j, k, v)

    def _end(self, j: Job, state: str, message: str, **changes: Any) -> None:
        self._update(j, state=state, message=message, finished=time.time(), proc=None, **changes)

    def _run(self, j: Job, job: dict, files: dict[str, bytes], finish: Finish) -> None:
        while not self._slots.acquire(timeout=0.2):  # queued: cancellable while waiting for a slot
            if j.cancel_requested:
                self._end(j, "cancelled", "cancelled before it started")
                return
        job_dir = Path(tempfile.mkdtemp(prefix="customizer-lora-"))
        try:
            self._train(j, job, files, finish, job_dir)
        except CustomizerError as e:  # e.g. the character was deleted while it trained
            self._end(j, "failed", str(e))
        except Exception as e:  # a job thread must always end in a state the user can read
            log.exception("character LoRA job %s failed", j.id)
            self._end(j, "failed", f"training failed ({type(e).__name__})")
        finally:
            self._slots.release()
            shutil.rmtree(job_dir, ignore_errors=True)

    def _train(self, j: Job, job: dict, files: dict[str, bytes], finish: Finish, job_dir: Path) -> None:
        for name, data in files.items():
            (job_dir / name).write_bytes(data)
        (job_dir / JOB_FILE).write_text(json.dumps(job), encoding="utf-8")
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
        with self._lock:  # started under the lock: a cancel either sees the process or stops it from starting
            if j.cancel_requested:
                proc = None
            else:
                stderr = open(job_dir / "stderr.log", "wb")
                try:
                    proc = subprocess.Popen([self.python, "-m", "customizer.engine.character_lora", str(job_dir)],
                                            stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                                            env=env, cwd=str(job_dir))
                finally:
                    stderr.close()
                j.proc, j.state, j.started, j.message = proc, "running", time.time(), "starting the trainer"
        if proc is None:
            self._end(j, "cancelled", "cancelled before it started")
            return
        timer = threading.Timer(self.timeout_s, lambda: self._time_out(j, proc))
        timer.daemon = True
        timer.start()
        done = error = None
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                event = _parse(line)
                kind = event.get("event")
                if kind == "step":
                    self._update(j, step=int(event.get("step", 0)), loss=event.get("loss"),
                                 message=f"step {event.get('step')} of {j.steps}")
                elif kind == "phase":
                    self._update(j, message=str(event.get("message", ""))[:200])
                elif kind == "done":
                    done = event
                elif kind == "error":
                    error = str(event.get("message", ""))[:300]
            rc = proc.wait()
        finally:
            timer.cancel()
            proc.stdout.close()  # type: ignore[union-attr]
        if j.cancel_requested:
            self._end(j, "cancelled", "cancelled")
            return
        out = job_dir / OUT_FILE
        if j.timed_out:
            self._end(j, "failed", f"stopped: it ran past the time limit ({self.timeout_s / 60:g} minutes)")
            return
        if rc != 0 or done is None or not out.is_file():
            if error is None:
                log.warning("character LoRA job %s: trainer exited with %s: %s", j.id, rc,
                            _tail(job_dir / "stderr.log"))
            self._end(j, "failed", error or f"the trainer stopped unexpectedly (exit code {rc})")
            return
        self._update(j, message="saving the LoRA")
        facts = {k: done[k] for k in ("seconds", "train_seconds", "s_per_step", "loss", "device", "threads")
                 if k in done}
        lora = finish(j, out.read_bytes(), facts)
        self._end(j, "done", "done", step=j.steps, lora=lora)

    def _time_out(self, j: Job, proc: subprocess.Popen) -> None:
        self._update(j, timed_out=True, message="stopping: it ran past the time limit")
        _terminate(proc)


def _parse(line: bytes) -> dict:
    try:
        event = json.loads(line.decode("utf-8", "replace"))
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_bytes()[-n:].decode("utf-8", "replace")
    except OSError:
        return ""


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
