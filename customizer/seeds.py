"""Seeds as a request gives them: None / -1 / '' for a random one, else a whole number in the app's range."""
from __future__ import annotations

import secrets
from typing import Any

from .errors import SpecError, shown

SEED_MAX = 2**31 - 1


def resolve_seed(seed: Any) -> int:
    """None / -1 / '' -> a fresh random seed; otherwise a whole number 0..2^31-1."""
    if seed is None or seed == "" or seed == -1:
        return secrets.randbelow(SEED_MAX)
    if isinstance(seed, bool):
        raise SpecError("seed", "must be a whole number")
    try:
        number = float(seed)
        value = int(number)
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf, or an int too large for a float
        raise SpecError("seed", f"must be a whole number from 0 to {SEED_MAX} (or -1 for random), "
                                f"got {shown(seed)}") from None
    if value != number or not 0 <= value <= SEED_MAX:
        raise SpecError("seed", f"must be a whole number from 0 to {SEED_MAX} (or -1 for random), got {shown(seed)}")
    return value
