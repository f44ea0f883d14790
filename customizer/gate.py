"""The render gate: one pipeline call at a time, handed out fairly between owners, so one heavy user cannot hold
everyone else up; a cap on each owner's requests in flight; a waiting request whose client left is dropped.

Every render the Studio makes (a candidate batch, one selfie attempt, one sheet view) takes a slot. When the slot
frees, the waiting owner who used the least render time recently (seconds, halving every `half_life_s`) goes
next, first come first served among equals. A light user's render therefore waits for at most the one render in
progress plus other light users', never behind a heavy user's backlog; the compute budget (customizer/budget.py)
bounds how long that one render can be. No torch, no gradio.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from .errors import CustomizerError

PER_OWNER = 2          # requests one owner may have in flight (the rest are refused at once)
HALF_LIFE_S = 60.0     # how fast past render time is forgiven
POLL_S = 0.2           # how often a waiting request checks whether its client is still there


class Cancelled(CustomizerError):
    """The client went away (disconnected or cancelled); its render was stopped."""


class Busy(CustomizerError):
    """This owner already has as many requests in flight as allowed."""


@dataclass(eq=False)
class _Ticket:
    owner: str
    seq: int   # arrival order, among owners with the same recent render time


class RenderGate:
    def __init__(self, parallel: int = 1, per_owner: int = PER_OWNER, half_life_s: float = HALF_LIFE_S,
                 poll_s: float = POLL_S, clock: Callable[[], float] = time.monotonic):
        self.parallel, self.per_owner, self.half_life_s, self.poll_s = parallel, per_owner, half_life_s, poll_s
        self._clock = clock
        self._cond = threading.Condition()
        self._running = 0
        self._waiting: list[_Ticket] = []
        self._usage: dict[str, tuple[float, float]] = {}  # owner -> (seconds, when)
        self._in_flight: Counter[str] = Counter()
        self._seq = itertools.count()

    # ---- accounting ------------------------------------------------------------------------------------------
    def usage(self, owner: str) -> float:
        """Render seconds this owner used, decayed to now."""
        seconds, when = self._usage.get(owner, (0.0, 0.0))
        return seconds * 0.5 ** ((self._clock() - when) / self.half_life_s) if seconds else 0.0

    def _charge(self, owner: str, seconds: float) -> None:
        self._usage[owner] = (self.usage(owner) + seconds, self._clock())
        if len(self._usage) > 10_000:  # forget the long idle
            for o in sorted(self._usage, key=self.usage)[:5_000]:
                del self._usage[o]

    def status(self) -> dict:
        with self._cond:
            return {"running": self._running, "waiting": len(self._waiting),
                    "owners_in_flight": sum(1 for v in self._in_flight.values() if v)}

    # ---- requests and slots ----------------------------------------------------------------------------------
    @contextmanager
    def request(self, owner: str) -> Iterator[None]:
        """One request of `owner` (it may take several slots); refused with Busy when they have too many."""
        with self._cond:
            if self._in_flight[owner] >= self.per_owner:
                raise Busy(f"you already have {self._in_flight[owner]} requests running; wait for one to finish "
                           f"(at most {self.per_owner} at a time per user)")
            self._in_flight[owner] += 1
        try:
            yield
        finally:
            with self._cond:
                self._in_flight[owner] -= 1
                if not self._in_flight[owner]:
                    del self._in_flight[owner]

    @contextmanager
    def slot(self, owner: str, cancelled: Callable[[], bool] | None = None) -> Iterator[None]:
        """Wait for this owner's turn, render, charge the time. Cancelled if the client leaves while waiting."""
        with self._cond:
            ticket = _Ticket(owner, next(self._seq))
            self._waiting.append(ticket)
            try:
                while True:
                    if cancelled is not None and cancelled():
                        raise Cancelled("the client went away; the render was cancelled before it started")
                    if self._running < self.parallel and self._first() is ticket:
                        break
                    self._cond.wait(timeout=self.poll_s)
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()
            self._running += 1
        start = self._clock()
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._charge(owner, self._clock() - start)
                self._cond.notify_all()

    def _first(self) -> _Ticket:
        # the owner with the least recent render time first (their usage now, not when they queued)
        return min(self._waiting, key=lambda t: (self.usage(t.owner), t.seq))
