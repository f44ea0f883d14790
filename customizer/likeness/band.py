"""The target band of a likeness score, and how far a result is from it.

Below the band the selfie drifted away from the character; above it, it is a near copy of the reference (the new
scene / expression did not take). A result without a score (no face found) is infinitely far: any scored attempt
beats it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .result import NO_FACE, SCORED, Likeness

BELOW, INSIDE, ABOVE = "below", "in", "above"


@dataclass(frozen=True)
class Band:
    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not (0.0 <= self.lo <= self.hi <= 1.0):
            raise ValueError(f"likeness band must satisfy 0 <= lo <= hi <= 1, got [{self.lo}, {self.hi}]")

    def position(self, likeness: Likeness) -> str | None:
        if likeness.state != SCORED:
            return None
        return BELOW if likeness.score < self.lo else ABOVE if likeness.score > self.hi else INSIDE

    def distance(self, likeness: Likeness) -> float:
        if likeness.state != SCORED:
            return math.inf
        return max(self.lo - likeness.score, likeness.score - self.hi, 0.0)

    def to_list(self) -> list[float]:
        return [self.lo, self.hi]


def worth_retrying(likeness: Likeness) -> bool:
    """Only a scored result or a missing face says something about the seed; an unavailable instrument, a reference
    without a face or an instrument error would say the same for every seed."""
    return likeness.state in (SCORED, NO_FACE)
