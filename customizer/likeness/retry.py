"""Automatic retries into the target band: render with a deterministic sequence of seeds until a result lands in
the band or the attempts run out, and keep the best one (closest to the band; the earliest on a tie).

Pure logic over callables: the Studio supplies `make(seed) -> Attempt` (render + score), so this is testable
without a model, and every kept image is still an ordinary render of its own recipe with its own seed.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

from .band import Band, worth_retrying
from .result import Likeness

SEED_MODULUS = 2**31 - 1  # the app's seed range (service.SEED_MAX)


@dataclass(eq=False)  # identity: two attempts are never 'equal'
class Attempt:
    seed: int
    image: Any        # PIL image
    recipe: Any       # Recipe of this very render
    likeness: Likeness
    seconds: float

    def summary(self, band: Band | None) -> dict[str, Any]:
        return {"seed": self.seed, "state": self.likeness.state, "score": self.likeness.score,
                "position": band.position(self.likeness) if band else None, "seconds": round(self.seconds, 3)}


def attempt_seeds(seed: int, n: int, modulus: int = SEED_MODULUS) -> list[int]:
    """The requested seed first, then seeds derived from it by hashing (never seed+1, ...: those are the seeds of
    the next selfies of the same request), so the same request always retries the same way."""
    seeds = [int(seed)]
    k = 0
    while len(seeds) < n:
        k += 1
        digest = hashlib.sha256(f"customizer-retry:{int(seed)}:{k}".encode()).digest()
        candidate = int.from_bytes(digest[:8], "big") % modulus
        if candidate not in seeds:
            seeds.append(candidate)
    return seeds


def best_of(seeds: list[int], make: Callable[[int], Attempt], band: Band | None,
            on_attempt: Callable[[Attempt, int], None] | None = None) -> tuple[Attempt, list[Attempt]]:
    """Try seeds in order; stop at the first result inside the band (or one not worth retrying). Returns the kept
    attempt and every attempt made."""
    if not seeds:
        raise ValueError("at least one seed is needed")
    tried: list[Attempt] = []
    for seed in seeds:
        attempt = make(seed)
        tried.append(attempt)
        if on_attempt is not None:
            on_attempt(attempt, len(tried))
        if band is None or not worth_retrying(attempt.likeness) or band.distance(attempt.likeness) == 0.0:
            break
    if band is None:
        return tried[0], tried
    return min(tried, key=lambda a: band.distance(a.likeness)), tried  # min keeps the first of equals
