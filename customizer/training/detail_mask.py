"""Where the small things a person (and the eval) reads live in a render: the irises, brows, eyes and mouth.

The renderer is deterministic in (attrs, identity, variation), so drawing the same photo again with only the eye
colour changed, and again with only the expression changed, marks exactly the pixels that carry eye colour and
expression: no hand-kept face geometry. The VAE's loss weights these pixels up (they are 1-3 % of a picture, and
an unweighted L1 lets them go grey: eye colour read 0.85 -> 0.21 through the first VAE). Costs two extra renders
(about 25 ms) per training image.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image, ImageFilter

from .corpus import Record
from .render import Identity, render

CHANGE = 8.0        # a pixel counts as changed when a channel moves by more than this (0-255)
GROW = 3            # max-filter size: a pixel or so of margin around each mark


def _other(choices: list[str], current: str) -> str:
    return next(c for c in choices if c != current)


def detail_masks(rec: Record, size: int, base: np.ndarray | None = None) -> np.ndarray:
    """float32 (2, size, size) in {0, 1}: the pixels that change with the eye colour of rec's photo (the irises),
    then those that change with its expression (brows, eyes, mouth)."""
    from ..character import catalogue, selfie_catalogue

    ident = Identity.sample(rec.identity_seed)
    if base is None:
        base = np.asarray(render(rec.attrs, ident, rec.variation, size), np.float32)
    eye = _other(list(catalogue()["eye_colour"].choices), rec.attrs["eye_colour"])
    expr = _other([c for c in selfie_catalogue()["expression"].choices if c != "custom"], rec.variation.expression)
    out = []
    for img in (render({**rec.attrs, "eye_colour": eye}, ident, rec.variation, size),
                render(rec.attrs, ident, replace(rec.variation, expression=expr), size)):
        mask = np.abs(np.asarray(img, np.float32) - base).max(axis=-1) > CHANGE
        grown = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(GROW))
        out.append(np.asarray(grown) > 0)
    return np.stack(out).astype(np.float32)


def detail_mask(rec: Record, size: int, base: np.ndarray | None = None) -> np.ndarray:
    """float32 (size, size) in {0, 1}: pixels that change with the eye colour or the expression of rec's photo."""
    return detail_masks(rec, size, base).max(axis=0)
