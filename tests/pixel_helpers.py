"""Shared bits of the pixel-comparison tests: an image as signed integer RGB pixels, so differences of two images
do not wrap around as uint8 would."""
from __future__ import annotations

import numpy as np
from PIL import Image


def px(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)
