"""A real face descriptor for photoreal profiles: dlib's HOG face detector, 5-point landmarks and its ResNet 128-D
face descriptor (weights from the face-recognition-models package; `pip install -e ".[face]"`).

Face detection comes first: an image without a detectable face gives None ("no face found"). With several faces the
largest one counts. Score mapping (documented for the UI and the API):

    score = clip(1 - distance / 1.2, 0, 1)

so distance 0 -> 1.0, dlib's same-person threshold 0.6 -> 0.5, and 1.2 or more -> 0. A score >= 0.5 therefore
reads "same person" by dlib's own rule (distance < 0.6); the detail carries the raw distance.
"""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .base import InstrumentUnavailable, file_digest

SAME_PERSON_DISTANCE = 0.6
ZERO_SCORE_DISTANCE = 2 * SAME_PERSON_DISTANCE
SMALL_SIDE = 256  # below this the HOG detector misses faces unless the image is upsampled twice
INSTALL = 'pip install -e ".[face]"  (dlib-bin, face-recognition-models)'


def models_dir() -> Path:
    """face_recognition_models' own __init__ imports pkg_resources (gone from new setuptools): find its folder
    without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise InstrumentUnavailable(f"the face descriptor needs the 'face' extra: {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def distance_to_score(distance: float) -> float:
    return float(min(max(1.0 - distance / ZERO_SCORE_DISTANCE, 0.0), 1.0))


class FaceInstrument:
    name = "face"

    def __init__(self, models: Path | None = None):
        try:
            import dlib
        except ImportError:
            raise InstrumentUnavailable(f"the face descriptor needs the 'face' extra: {INSTALL}") from None
        folder = models or models_dir()
        landmarks, resnet = folder / "shape_predictor_5_face_landmarks.dat", \
            folder / "dlib_face_recognition_resnet_model_v1.dat"
        for f in (landmarks, resnet):
            if not f.is_file():
                raise InstrumentUnavailable(f"face model file missing: {f.name} (reinstall: {INSTALL})")
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(str(landmarks))
        self.encoder = dlib.face_recognition_model_v1(str(resnet))
        self.key = f"face:dlib-{dlib.__version__}:{file_digest(resnet)}"
        self._lock = threading.Lock()  # dlib objects are not documented as thread-safe

    @classmethod
    def from_config(cls, cfg: Any) -> "FaceInstrument":
        return cls(Path(cfg.path) if cfg.path else None)

    def describe(self, image: Image.Image) -> np.ndarray | None:
        arr = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
        upsample = 2 if min(arr.shape[:2]) < SMALL_SIDE else 1
        with self._lock:
            faces = self.detector(arr, upsample)
            if len(faces) == 0:
                return None
            face = max(faces, key=lambda r: r.area())
            shape = self.landmarks(arr, face)
            return np.asarray(self.encoder.compute_face_descriptor(arr, shape), dtype=np.float32)

    def compare(self, reference: np.ndarray, other: np.ndarray) -> tuple[float, dict[str, Any]]:
        distance = float(np.linalg.norm(reference.astype(np.float64) - other.astype(np.float64)))
        return distance_to_score(distance), {"distance": round(distance, 6),
                                             "same_person": distance < SAME_PERSON_DISTANCE}
