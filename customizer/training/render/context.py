"""Styles and the per-image render context.

`styles()` loads render_styles.yaml (it stays at customizer/training/render_styles.yaml); `Ctx` carries the resolved
colours, geometry and camera of one image to every painter; `cel` draws the cel shadow they all use.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from .geometry import Colour, Pen, Pt

if TYPE_CHECKING:
    from .people import Identity, Variation

STYLES_PATH = Path(__file__).resolve().parent.parent / "render_styles.yaml"
CUSTOM_SCENE = "custom"


@lru_cache(maxsize=1)
def styles() -> dict:
    """render_styles.yaml, parsed once (treat as read-only); [r, g, b] lists become tuples (PIL wants tuples)."""
    return _tuples(yaml.safe_load(STYLES_PATH.read_text(encoding="utf-8")))


def _tuples(node):
    if isinstance(node, dict):
        return {k: _tuples(v) for k, v in node.items()}
    if isinstance(node, list):
        items = [_tuples(v) for v in node]
        if len(items) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            return tuple(items)
        return items
    return node


@dataclass
class Ctx:
    """Everything the painters need for one image (resolved colours, geometry, camera)."""
    attrs: dict
    ident: Identity
    var: Variation
    pen: Pen
    rng: random.Random
    skin: Colour
    skin_sh: Colour
    skin_line: Colour
    lip: Colour
    hair: Colour
    hair_sh: Colour
    hair_hi: Colour
    hair_line: Colour
    grey: float          # 0..1 greying from age
    eye: Colour
    expr: dict
    frame: dict
    body: dict
    outfit: dict         # palette colours
    outfit_painter: str
    hair_style: dict
    hair_len: dict
    fantasy: float       # fantasy theme strength (0 when not fantasy)
    jewel: Colour
    light_side: int      # +1: shadow on the right (light from the left)
    light_amt: float     # 0..1 shadow size
    yaw: float           # head turn in radians (profile: +-pi/2)
    turn: int            # +1 faces viewer's right
    hx: float            # head centre x (world)
    body_phi: float      # torso yaw (radians)
    view_bottom: float   # world y at the bottom of the frame
    fw: float            # face half width
    detail: float = 100.0  # output pixels per head unit: small heads skip sub-pixel detail

    # head-surface projection: local (x, y) on the front of the head -> world
    def hp(self, x: float, y: float, depth: float = 0.95) -> Pt:
        r = self.fw * 1.03
        z = depth * math.sqrt(max(0.0, r * r - x * x))
        return (self.hx + x * math.cos(self.yaw) + z * math.sin(self.yaw), y)

    def hps(self, pts, depth: float = 0.95) -> list[Pt]:
        return [self.hp(x, y, depth) for x, y in pts]


def cel(ctx: Ctx, pts: list[Pt], colour, cx: float | None = None, band: float = 0.07):
    """Cel shadow: a band of `colour` along the shadow-side contour of a shape (width grows with the light)."""
    if ctx.light_amt <= 0.05 or len(pts) < 3:
        return
    side = ctx.light_side
    arr = np.asarray(pts, np.float64)
    if cx is None:
        cx = float(arr[:, 0].mean())
    sel = arr[(arr[:, 0] - cx) * side >= 0]
    if len(sel) < 2:
        return
    order = np.argsort(sel[:, 1], kind="stable")
    ys, xs = sel[order, 1], sel[order, 0]
    bw = band * (0.45 + 0.55 * ctx.light_amt)
    edge = np.interp(arr[:, 1], ys, xs)
    t = edge - side * np.minimum(bw, 0.5 * np.abs(edge - cx))  # the band tapers where the shape narrows
    new = np.maximum(arr[:, 0], t) if side > 0 else np.minimum(arr[:, 0], t)
    shadow = list(zip(new.tolist(), arr[:, 1].tolist()))
    if len(shadow) >= 3:
        ctx.pen.poly(shadow, fill=colour)
