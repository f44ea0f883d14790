"""Colour and 2-D geometry helpers shared by every painter.

Clamped colour maths (mix, mul, jitter, rgba), Catmull-Rom splines, ellipse outlines, a cheap clip for cel
shadows, and `Pen`: PIL's ImageDraw in world (head) units.
"""
from __future__ import annotations

import colorsys
import math
from functools import lru_cache
from typing import Callable

import numpy as np
from PIL import ImageDraw

Colour = tuple[int, int, int]
Pt = tuple[float, float]


def _c(c) -> Colour:
    r, g, b = round(c[0]), round(c[1]), round(c[2])
    return (0 if r < 0 else 255 if r > 255 else int(r), 0 if g < 0 else 255 if g > 255 else int(g),
            0 if b < 0 else 255 if b > 255 else int(b))


def mix(a, b, t: float) -> Colour:
    return _c([a[i] + (b[i] - a[i]) * t for i in range(3)])


def mul(a, k) -> Colour:
    if isinstance(k, (int, float)):
        k = (k, k, k)
    return _c([a[i] * k[i] for i in range(3)])


def jitter(c, amount: float, hue: float = 0.0) -> Colour:
    h, lum, s = colorsys.rgb_to_hls(*(v / 255 for v in c))
    h = (h + hue) % 1.0
    lum = max(0.0, min(1.0, lum * (1 + amount)))
    return _c([v * 255 for v in colorsys.hls_to_rgb(h, lum, s)])


def rgba(c, a: float) -> tuple[int, int, int, int]:
    return (*_c(c), int(max(0, min(255, round(a * 255)))))


# ---- geometry helpers ------------------------------------------------------------------------------------------

@lru_cache(maxsize=16)
def _cr_basis(n: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float64) / n
    t2, t3 = t * t, t * t * t
    return 0.5 * np.stack([-t + 2 * t2 - t3, 2 - 5 * t2 + 3 * t3, t + 4 * t2 - 3 * t3, -t2 + t3], axis=1)


def spline(pts: list[Pt], closed: bool = True, n: int = 4) -> list[Pt]:
    """Catmull-Rom through pts (n samples per segment)."""
    p = np.asarray(pts, np.float64)
    m = len(p)
    if closed:
        idx = np.arange(m)
        quads = np.stack([(idx - 1) % m, idx, (idx + 1) % m, (idx + 2) % m], axis=1)
    else:
        idx = np.arange(m - 1)
        quads = np.stack([np.maximum(idx - 1, 0), idx, idx + 1, np.minimum(idx + 2, m - 1)], axis=1)
    ctrl = p[quads]                                   # segments x 4 x 2
    out = np.einsum("kj,sjd->skd", _cr_basis(n), ctrl).reshape(-1, 2)
    if not closed:
        out = np.vstack([out, p[-1:]])
    return [tuple(q) for q in out.tolist()]


def ellipse_pts(cx, cy, rx, ry, angle=0.0, n=18, a0=0.0, a1=2 * math.pi) -> list[Pt]:
    ca, sa = math.cos(angle), math.sin(angle)
    out = []
    full = abs(a1 - a0 - 2 * math.pi) < 1e-9
    count = n if full else n + 1
    for k in range(count):
        t = a0 + (a1 - a0) * k / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        out.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return out


def clamp_x(pts: list[Pt], t: Callable[[float], float], side: int) -> list[Pt]:
    """The part of a (horizontally convex) shape beyond the curve x = t(y) on `side`: a cheap clip for cel shadows."""
    if side > 0:
        return _squeeze([(max(x, t(y)), y) for x, y in pts], [x < t(y) for x, y in pts])
    return _squeeze([(min(x, t(y)), y) for x, y in pts], [x > t(y) for x, y in pts])


def _squeeze(pts: list[Pt], cut: list[bool]) -> list[Pt]:
    """Keep only the ends of each run of clipped points (PIL would draw a collapsed run as a stray line)."""
    n = len(pts)
    if all(cut):
        return []
    start = next(k for k in range(n) if not cut[k])
    out: list[Pt] = []
    k = 0
    while k < n:
        j = (start + k) % n
        if not cut[j]:
            out.append(pts[j])
            k += 1
            continue
        run = []
        while k < n and cut[(start + k) % n]:
            run.append(pts[(start + k) % n])
            k += 1
        out.append(run[0])
        if len(run) > 1:
            out.append(run[-1])
    return out


def offset(pts: list[Pt], dx: float, dy: float) -> list[Pt]:
    return [(x + dx, y + dy) for x, y in pts]


class Pen:
    """ImageDraw in world units: pixel = origin + world * scale."""

    def __init__(self, draw: ImageDraw.ImageDraw, scale: float, ox: float, oy: float):
        self.d, self.s, self.ox, self.oy = draw, scale, ox, oy

    def px(self, pts):
        s, ox, oy = self.s, self.ox, self.oy
        if isinstance(pts, np.ndarray):
            return (pts * s + (ox, oy)).ravel().tolist()
        return [(ox + x * s, oy + y * s) for x, y in pts]

    def w(self, width: float) -> int:
        return max(1, int(round(width * self.s)))

    def poly(self, pts, fill=None, outline=None, width: float = 0.0):
        if len(pts) < 3:
            return
        if outline is not None:
            self.d.polygon(self.px(pts), fill=fill, outline=outline, width=self.w(width))
        else:
            self.d.polygon(self.px(pts), fill=fill)

    def line(self, pts, fill, width: float):
        if len(pts) >= 2:
            self.d.line(self.px(pts), fill=fill, width=self.w(width), joint="curve")

    def ellipse(self, cx, cy, rx, ry, fill=None, outline=None, width: float = 0.0):
        s = self.s
        box = [self.ox + (cx - rx) * s, self.oy + (cy - ry) * s, self.ox + (cx + rx) * s, self.oy + (cy + ry) * s]
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            return
        self.d.ellipse(box, fill=fill, outline=outline, width=self.w(width) if outline is not None else 0)

    def rect(self, x0, y0, x1, y1, fill=None):
        s = self.s
        self.d.rectangle([self.ox + x0 * s, self.oy + y0 * s, self.ox + x1 * s, self.oy + y1 * s], fill=fill)
