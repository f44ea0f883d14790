"""The IP-Adapter's own image encoder (a CLIPVisionModelWithProjection, trained contrastively on renders of the
same hidden person by train_image_encoder) as a likeness instrument.

Why the app scores with this one and not the eval's identity encoder: retries keep the best of several seeds by
this score, so a selfie picked by the judge would be graded by the network that picked it. With the adapter's
encoder picking, the eval's identity instrument stays an independent judge of what retries buy.

Score = cosine of the two projected image embeddings (what the adapter conditions on), clipped to [0, 1]. The
same-person threshold calibrated on renderer ground truth (calibrate_likeness.py -> likeness.json beside the
weights) is reported in the detail when present.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .base import InstrumentUnavailable, cosine_score, file_digest, shown_path

WEIGHTS, CONFIG, CALIBRATION = "model.safetensors", "config.json", "likeness.json"


def read_calibration(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CALIBRATION
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


class AdapterInstrument:
    name = "adapter"

    def __init__(self, path: str | Path, device: str = "cpu"):
        folder = Path(path)
        if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
            raise InstrumentUnavailable(
                f"no IP-Adapter image encoder in {shown_path(folder)} (needs {WEIGHTS} + {CONFIG}, made by "
                f"python -m customizer.training.assemble); likeness is unavailable until it is added")
        import torch  # only when a profile really uses it
        from transformers import CLIPVisionModelWithProjection

        self.model = CLIPVisionModelWithProjection.from_pretrained(folder, dtype=torch.float32).to(device).eval()
        self.size = int(self.model.config.image_size)
        self.device = device
        self.threshold = read_calibration(folder).get("threshold")
        self.key = f"adapter:{file_digest(folder / WEIGHTS)}"
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: Any) -> "AdapterInstrument":
        if not cfg.path:
            raise InstrumentUnavailable("the adapter instrument needs a path (likeness.path in spaces.yaml: the "
                                        "IP-Adapter's image_encoder folder)")
        return cls(cfg.path)

    def describe(self, image: Image.Image) -> np.ndarray:
        import torch

        from ..engine.ip_adapter import embed

        rgb = image.convert("RGB")
        if rgb.size != (self.size, self.size):
            rgb = rgb.resize((self.size, self.size), Image.BICUBIC)
        pixels = torch.from_numpy(np.asarray(rgb, np.uint8).copy()).permute(2, 0, 1).unsqueeze(0)
        with self._lock, torch.inference_mode():
            z = embed(self.model, pixels, self.device)[0, 0]   # the embedding the adapter is conditioned on
        return z.float().cpu().numpy().astype(np.float32)

    def compare(self, reference: np.ndarray, other: np.ndarray) -> tuple[float, dict[str, Any]]:
        return cosine_score(reference, other, self.threshold)
