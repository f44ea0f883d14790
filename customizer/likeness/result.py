"""Likeness: the outcome of scoring one image against a reference, in every state a person may need to see."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

SCORED = "scored"                        # score in [0, 1] is set
UNAVAILABLE = "unavailable"              # no instrument for this profile, or its files/packages are missing
NO_FACE = "no_face"                      # the instrument found no face in the new image
NO_FACE_REFERENCE = "no_face_reference"  # ... nor in the reference: nothing to compare with
ERROR = "error"                          # the instrument failed on this image; the image is kept anyway
STATES = (SCORED, UNAVAILABLE, NO_FACE, NO_FACE_REFERENCE, ERROR)


@dataclass(frozen=True)
class Likeness:
    state: str
    instrument: str | None = None
    score: float | None = None     # 1 = the same face, 0 = nothing alike (mapping per instrument, see its module)
    reason: str = ""               # why there is no score, in words
    detail: dict[str, Any] = field(default_factory=dict)  # the instrument's raw numbers (cosine, distance ...)

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown likeness state {self.state!r}")
        if (self.state == SCORED) != (self.score is not None):
            raise ValueError("a score is set exactly when the state is 'scored'")
        if self.score is not None and not (math.isfinite(self.score) and 0.0 <= self.score <= 1.0):
            raise ValueError(f"likeness score must be in [0, 1], got {self.score!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
