"""`@spaces.GPU` on Hugging Face ZeroGPU Spaces, a no-op everywhere else (the package is only there on Spaces)."""
from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


def gpu(duration: int = 60) -> Callable[[F], F]:
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=duration)
