"""What an instrument is: describe an image (a vector, or None when it finds no face) and compare two vectors."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image


class InstrumentUnavailable(Exception):
    """The instrument cannot run here (files not trained yet, optional package missing); the message says why.
    Never fatal: the app then shows likeness as 'unavailable'."""


class Instrument(Protocol):
    name: str   # registry name, stored with every score
    key: str    # changes whenever the weights change: reference descriptors are cached under it

    def describe(self, image: Image.Image) -> np.ndarray | None:
        """A float32 descriptor of the face in the image, or None when there is no face."""

    def compare(self, reference: np.ndarray, other: np.ndarray) -> tuple[float, dict[str, Any]]:
        """Score in [0, 1] (1 = same) and the raw numbers behind it."""


def cosine_score(reference: np.ndarray, other: np.ndarray, threshold: float | None) -> tuple[float, dict[str, Any]]:
    """An embedding instrument's comparison: the cosine clipped to [0, 1] (a negative cosine means "nothing alike" as
    much as 0 does), with the raw cosine and, where the instrument is calibrated, its same-person verdict."""
    cosine = float(np.dot(reference, other) / max(np.linalg.norm(reference) * np.linalg.norm(other), 1e-12))
    detail: dict[str, Any] = {"cosine": round(cosine, 6)}
    if threshold is not None:
        detail["threshold"] = threshold
        detail["same_person"] = cosine >= threshold
    return min(max(cosine, 0.0), 1.0), detail


def file_digest(path: str | Path, n: int = 16) -> str:
    """Short sha256 of a weights file, for cache keys."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:n]


def shown_path(path: str | Path) -> str:
    """The tail of a server path, for messages people see (the full path stays in the server log)."""
    return "/".join(Path(path).parts[-3:])
