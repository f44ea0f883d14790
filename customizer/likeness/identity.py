"""The bundled-domain identity encoder (customizer/likeness/instruments.py, trained on renderer ground truth only)
as a likeness instrument.

Score = cosine similarity of the two 128-D unit embeddings, clipped to [0, 1] (a negative cosine means "nothing
alike" as much as 0 does). The trained encoder's calibrated same-person threshold (identity.json
meta.verification.threshold, from train_instruments) is reported in the detail when present.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .base import InstrumentUnavailable, cosine_score, file_digest, shown_path

WEIGHTS, CONFIG = "identity.safetensors", "identity.json"


class IdentityInstrument:
    name = "identity"

    def __init__(self, path: str | Path, device: str = "cpu"):
        folder = Path(path)
        if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
            raise InstrumentUnavailable(
                f"no trained identity encoder in {shown_path(folder)} (needs {WEIGHTS} + {CONFIG}, made by "
                f"python -m customizer.training.train_instruments); likeness is unavailable until it is added")
        from .instruments import load_identity  # torch: only when a profile really uses it

        self.model = load_identity(folder, device)
        self.device = device
        meta = json.loads((folder / CONFIG).read_text(encoding="utf-8")).get("meta") or {}
        self.threshold = (meta.get("verification") or {}).get("threshold")
        self.key = f"identity:{file_digest(folder / WEIGHTS)}"
        self._lock = threading.Lock()  # BatchNorm modules are shared state; one forward at a time

    @classmethod
    def from_config(cls, cfg: Any) -> "IdentityInstrument":
        if not cfg.path:
            raise InstrumentUnavailable("the identity instrument needs a path (likeness.path in spaces.yaml)")
        return cls(cfg.path)

    def describe(self, image: Image.Image) -> np.ndarray:
        import torch

        from .instruments import to_tensor

        with self._lock, torch.inference_mode():
            z = self.model.eval()(to_tensor([image.convert("RGB")]).to(self.device))
        return z[0].float().cpu().numpy().astype(np.float32)

    def compare(self, reference: np.ndarray, other: np.ndarray) -> tuple[float, dict[str, Any]]:
        return cosine_score(reference, other, self.threshold)
