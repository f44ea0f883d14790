"""Stop a render between two denoising steps when its client has gone.

The engine has no step callback of its own, but every diffusers pipeline advances a tqdm progress bar once per
step, in the thread that renders. `install()` wraps tqdm's update (before gradio patches it for progress bars, so
gradio's wrapper calls ours); `watching(check)` makes `check()` run at each step of renders in this thread, and
raise Cancelled when it says the client is gone. The pipeline call unwinds through the engine's `with` blocks
(its lock, inference mode), so the engine stays usable. No torch, no gradio.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from .gate import Cancelled

_local = threading.local()
_installed = threading.Lock()
_MARK = "_customizer_cancel_hook"


def install() -> bool:
    """Wrap tqdm's update once (idempotent). False if tqdm is not there (then renders stop only between images)."""
    try:
        import tqdm
    except ImportError:
        return False
    with _installed:
        cls = tqdm.tqdm
        # gradio keeps the original under __update__orig__ and calls it from its own update
        attr = "__update__orig__" if hasattr(cls, "__update__orig__") else "update"
        original = getattr(cls, attr)
        if getattr(original, _MARK, False):
            return True

        def update(self, n=1):
            check = getattr(_local, "check", None)
            if check is not None and check():
                raise Cancelled("the client went away; the render was stopped")
            return original(self, n)

        setattr(update, _MARK, True)
        setattr(cls, attr, update)
    return True


@contextmanager
def watching(check: Callable[[], bool] | None) -> Iterator[None]:
    """Run `check` at every pipeline step in this thread while inside (None: no check)."""
    before = getattr(_local, "check", None)
    _local.check = check
    try:
        yield
    finally:
        _local.check = before
