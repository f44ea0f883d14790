"""Scene painters: one `bg_*` per background style, drawn in frame units (0..1) on the supersampled canvas."""
from __future__ import annotations

import random
from functools import lru_cache
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from .context import Ctx
from .geometry import Colour, _c, jitter, mix, mul, rgba


@lru_cache(maxsize=64)
def _gradient(top: Colour, bottom: Colour, size: int, curve: float = 1.0) -> Image.Image:
    t = (np.linspace(0.0, 1.0, size, dtype=np.float32) ** curve)[:, None, None]
    a, b = np.array(top, np.float32), np.array(bottom, np.float32)
    col = (a + (b - a) * t).astype(np.uint8)
    return Image.fromarray(np.broadcast_to(col, (size, size, 3)).copy(), "RGB")


@lru_cache(maxsize=64)
def _band(top: Colour, bottom: Colour, width: int, height: int) -> Image.Image:
    return _gradient(top, bottom, max(2, height)).resize((width, height))


class BG:
    """Background drawing in unit coordinates (0..1 of the frame)."""

    def __init__(self, img: Image.Image, rng: random.Random):
        self.img, self.rng = img, rng
        self.S = img.size[0]
        self.d = ImageDraw.Draw(img, "RGBA")

    def p(self, pts):
        S = self.S
        return [(x * S, y * S) for x, y in pts]

    def poly(self, pts, fill):
        self.d.polygon(self.p(pts), fill=fill)

    def rect(self, x0, y0, x1, y1, fill):
        S = self.S
        self.d.rectangle([x0 * S, y0 * S, x1 * S, y1 * S], fill=fill)

    def ellipse(self, cx, cy, rx, ry, fill):
        S = self.S
        self.d.ellipse([(cx - rx) * S, (cy - ry) * S, (cx + rx) * S, (cy + ry) * S], fill=fill)

    def line(self, pts, fill, w):
        self.d.line(self.p(pts), fill=fill, width=max(1, int(w * self.S)))

    def band(self, y0, y1, top, bottom):
        """A vertical gradient band from y0 to y1."""
        S = self.S
        a, b = int(y0 * S), int(y1 * S)
        if b <= a:
            return
        self.img.paste(_band(_c(top), _c(bottom), S, b - a), (0, a))


def bg_studio(b: BG, p: dict, ctx: Ctx):
    b.img.paste(_gradient(_c(p["top"]), _c(p["bottom"]), b.S, 1.3))
    for k, a in ((0.42, 0.18), (0.33, 0.22), (0.24, 0.26)):
        b.ellipse(0.5, 0.36, k * 1.25, k, rgba(p["spot"], a))
    b.rect(0, 0.9, 1, 1, rgba(mul(p["bottom"], 0.85), 0.5))


def _clouds(b: BG, y0: float, y1: float, colour, n: int):
    r = b.rng
    for _ in range(n):
        cx, cy, w = r.uniform(-0.1, 1.1), r.uniform(y0, y1), r.uniform(0.08, 0.18)
        for k in range(4):
            b.ellipse(cx + (k - 1.5) * w * 0.45, cy - (0.3 if k in (1, 2) else 0) * w * 0.5, w * 0.42,
                      w * 0.3, rgba(colour, 0.75))


def bg_beach(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    hz = r.uniform(0.52, 0.6)
    b.img.paste(_gradient(_c(p["sky_top"]), _c(p["sky_low"]), b.S, 0.8))
    sx = r.choice((0.18, 0.82))
    for k, a in ((0.16, 0.15), (0.11, 0.25), (0.065, 1.0)):
        b.ellipse(sx, hz - 0.2, k, k, rgba(p["sun"], a))
    _clouds(b, 0.08, hz - 0.12, (255, 255, 255), 3)
    b.band(hz, 0.8, p["sea_far"], p["sea"])
    for _ in range(9):
        y = r.uniform(hz + 0.02, 0.78)
        x = r.uniform(0, 1)
        b.line([(x, y), (x + r.uniform(0.05, 0.15), y)], rgba((255, 255, 255), 0.55), 0.006)
    sand = p["sand"]
    b.poly([(0, 0.8), (0.3, 0.77), (0.7, 0.79), (1, 0.76), (1, 1), (0, 1)], sand)
    b.poly([(0, 0.8), (0.3, 0.77), (0.7, 0.79), (1, 0.76), (1, 0.78), (0.7, 0.81), (0.3, 0.79), (0, 0.82)],
           rgba((255, 255, 255), 0.7))


def _tree(b: BG, x, base, h, w, colour, trunk):
    b.rect(x - w * 0.08, base - h * 0.45, x + w * 0.08, base, trunk)
    for k in range(3):
        y = base - h * (0.35 + 0.22 * k)
        ww = w * (1 - 0.25 * k)
        b.poly([(x - ww, y), (x, y - h * 0.42), (x + ww, y)], colour)


def bg_forest(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    b.img.paste(_gradient(mix(p["sky"], (255, 255, 255), 0.3), _c(p["sky"]), b.S))
    for layer, (key, base, hmin, hmax, n) in enumerate((("far", 0.62, 0.25, 0.4, 9), ("mid", 0.8, 0.35, 0.55, 6))):
        col = p[key]
        for _ in range(n):
            _tree(b, r.uniform(-0.05, 1.05), base + r.uniform(0, 0.05), r.uniform(hmin, hmax),
                  r.uniform(0.07, 0.12) * (1 + layer * 0.4), col, mul(p["trunk"], 0.8 + 0.2 * layer))
        b.rect(0, base, 1, 1, mix(col, p["ground"], 0.6))
    for _ in range(3):  # light shafts
        x = r.uniform(0, 1)
        b.poly([(x, 0), (x + 0.06, 0), (x + 0.26, 1), (x + 0.14, 1)], rgba((255, 255, 230), 0.12))
    for x in (r.uniform(-0.05, 0.12), r.uniform(0.88, 1.05)):  # near trunks framing the shot
        w = r.uniform(0.05, 0.08)
        b.rect(x - w, 0, x + w, 1, mul(p["trunk"], 0.7))
        b.ellipse(x, r.uniform(0.0, 0.15), w * 3.5, 0.14, p["near"])
    b.rect(0, 0.88, 1, 1, p["ground"])


def bg_city(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    b.img.paste(_gradient(_c(p["sky_top"]), _c(p["sky_low"]), b.S))
    b.ellipse(r.uniform(0.1, 0.9), r.uniform(0.07, 0.16), 0.045, 0.045, (250, 246, 220))
    for _ in range(14):
        b.ellipse(r.uniform(0, 1), r.uniform(0, 0.3), 0.003, 0.003, (255, 255, 255))
    for layer, key in enumerate(("building2", "building")):
        x = -0.05
        while x < 1.05:
            w = r.uniform(0.1, 0.2)
            top = r.uniform(0.12, 0.45) + 0.15 * layer
            b.rect(x, top, x + w - 0.01, 0.9, p[key])
            cols = max(2, int(w / 0.035))
            rows = int((0.85 - top) / 0.05)
            for i in range(rows):
                for j in range(cols):
                    if r.random() < 0.45:
                        wc = p["window"] if r.random() < 0.75 else p["window2"]
                        wx = x + 0.012 + j * (w - 0.03) / cols
                        wy = top + 0.02 + i * 0.05
                        b.rect(wx, wy, wx + 0.014, wy + 0.022, rgba(wc, 0.85 - 0.25 * (1 - layer)))
            x += w
    b.rect(0, 0.88, 1, 1, p["street"])
    for _ in range(7):  # bokeh
        c = p["window"] if r.random() < 0.6 else p["window2"]
        rr = r.uniform(0.02, 0.05)
        b.ellipse(r.uniform(0, 1), r.uniform(0.55, 0.95), rr, rr, rgba(c, 0.35))


def bg_cafe(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    b.img.paste(_gradient(_c(p["wall"]), _c(p["wall_low"]), b.S))
    wx = r.uniform(0.05, 0.55)
    b.rect(wx, 0.12, wx + 0.4, 0.6, mul(p["wood"], 0.9))
    b.rect(wx + 0.02, 0.14, wx + 0.38, 0.58, p["window"])
    b.rect(wx + 0.195, 0.14, wx + 0.205, 0.58, mul(p["wood"], 0.9))
    b.rect(wx + 0.02, 0.355, wx + 0.38, 0.365, mul(p["wood"], 0.9))
    bx = 0.72 if wx < 0.3 else 0.04
    b.rect(bx, 0.18, bx + 0.24, 0.42, mul(p["wood"], 0.8))
    b.rect(bx + 0.015, 0.195, bx + 0.225, 0.405, p["board"])
    for i in range(4):
        yy = 0.24 + i * 0.045
        b.line([(bx + 0.04, yy), (bx + r.uniform(0.12, 0.2), yy)], rgba((240, 240, 230), 0.7), 0.004)
    for lx in (r.uniform(0.1, 0.3), r.uniform(0.7, 0.9)):
        b.line([(lx, 0), (lx, 0.1)], (40, 30, 24), 0.004)
        b.poly([(lx - 0.05, 0.15), (lx, 0.09), (lx + 0.05, 0.15)], mul(p["wood"], 0.6))
        b.ellipse(lx, 0.16, 0.06, 0.05, rgba(p["lamp"], 0.35))
        b.ellipse(lx, 0.155, 0.02, 0.015, p["lamp"])
    b.rect(0, 0.66, 1, 0.69, mul(p["wood"], 1.2))
    b.rect(0, 0.69, 1, 1, p["wood"])
    for i in range(12):
        x = i / 11
        b.line([(x, 0.69), (x, 1)], mul(p["wood"], 0.8), 0.003)
    for _ in range(3):  # cups on the counter
        cx = r.uniform(0.05, 0.95)
        b.rect(cx - 0.02, 0.62, cx + 0.02, 0.66, (246, 242, 236))
    for _ in range(5):
        rr = r.uniform(0.02, 0.04)
        b.ellipse(r.uniform(0, 1), r.uniform(0.05, 0.5), rr, rr, rgba(p["lamp"], 0.25))


def bg_mountains(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    b.img.paste(_gradient(_c(p["sky_top"]), _c(p["sky_low"]), b.S, 0.9))
    _clouds(b, 0.06, 0.25, (255, 255, 255), 2)
    for key, base, hmin, hmax, _n in (("far", 0.62, 0.18, 0.32, 4), ("near", 0.72, 0.14, 0.26, 5)):
        pts = [(-0.1, base + 0.1)]
        x = -0.1
        peaks = []
        while x < 1.1:
            w = r.uniform(0.2, 0.38) if key == "far" else r.uniform(0.15, 0.3)
            h = r.uniform(hmin, hmax)
            peaks.append((x + w / 2, base - h, w))
            pts += [(x + w / 2, base - h), (x + w, base - r.uniform(0, 0.05))]
            x += w
        pts += [(1.2, base + 0.1), (1.2, 1), (-0.1, 1)]
        b.poly(pts, p[key])
        for px_, py, w in peaks:  # snow caps
            s = 0.28
            lx, rx_ = px_ - w / 2 * s, px_ + w / 2 * s
            cap = [(px_, py), (rx_, py + (base - py) * s), (px_ + w * 0.05, py + (base - py) * s * 0.75),
                   (px_ - w * 0.03, py + (base - py) * s * 1.05), (lx, py + (base - py) * s)]
            b.poly(cap, p["snow"])
    b.rect(0, 0.82, 1, 1, p["ground"])
    for _ in range(8):
        x = r.uniform(0, 1)
        h = r.uniform(0.08, 0.14)
        b.poly([(x - 0.025, 0.84), (x, 0.84 - h), (x + 0.025, 0.84)], p["pine"])


def bg_library(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    b.img.paste(_gradient(_c(p["wall"]), mul(p["wall"], 0.6), b.S))
    books = p["books"]
    for col in range(3):
        x0 = col / 3 + 0.01
        x1 = (col + 1) / 3 - 0.01
        b.rect(x0 - 0.01, 0, x1 + 0.01, 1, p["dark"])
        for row in range(5):
            y1 = 0.18 + row * 0.2
            x = x0
            while x < x1 - 0.02:
                w = r.uniform(0.018, 0.035)
                h = r.uniform(0.11, 0.16)
                c = jitter(r.choice(books), r.uniform(-0.15, 0.15))
                if r.random() < 0.1:  # leaning book
                    b.poly([(x, y1), (x + w, y1), (x + w + 0.04, y1 - h), (x + 0.04, y1 - h)], c)
                    x += 0.04
                else:
                    b.rect(x, y1 - h, x + w - 0.003, y1, c)
                    b.rect(x, y1 - h + 0.02, x + w - 0.003, y1 - h + 0.028, rgba((240, 210, 140), 0.5))
                x += w
            b.rect(x0 - 0.01, y1, x1 + 0.01, y1 + 0.02, p["shelf"])
    b.ellipse(r.uniform(0.2, 0.8), 0.25, 0.35, 0.3, rgba(p["lamp"], 0.12))


def bg_space(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    b.img.paste(_gradient(_c(p["panel"]), _c(p["panel_dark"]), b.S))
    wx0, wx1 = r.uniform(0.05, 0.2), r.uniform(0.8, 0.95)
    wy0, wy1 = 0.08, 0.62
    b.d.rounded_rectangle(b.p([(wx0 - 0.02, wy0 - 0.02), (wx1 + 0.02, wy1 + 0.02)]), radius=int(0.06 * b.S),
                          fill=mul(p["panel_dark"], 0.7))
    b.d.rounded_rectangle(b.p([(wx0, wy0), (wx1, wy1)]), radius=int(0.05 * b.S), fill=p["space"])
    for _ in range(40):
        x, y = r.uniform(wx0 + 0.02, wx1 - 0.02), r.uniform(wy0 + 0.02, wy1 - 0.02)
        rr = r.choice((0.002, 0.002, 0.003, 0.005))
        b.ellipse(x, y, rr, rr, (255, 255, 255))
    px_, py, pr = r.uniform(wx0 + 0.12, wx1 - 0.12), r.uniform(wy0 + 0.12, wy1 - 0.1), r.uniform(0.07, 0.12)
    b.ellipse(px_, py, pr, pr, p["planet"])
    b.ellipse(px_ + pr * 0.25, py + pr * 0.2, pr * 0.8, pr * 0.8, rgba(mul(p["planet"], 0.6), 0.6))
    b.line([(px_ - pr * 1.6, py + pr * 0.3), (px_ + pr * 1.6, py - pr * 0.3)], rgba(p["planet2"], 0.8), 0.008)
    b.line([(wx0 + (wx1 - wx0) / 2, wy0), (wx0 + (wx1 - wx0) / 2, wy1)], mul(p["panel_dark"], 0.7), 0.012)
    for y in (0.72, 0.86):
        b.rect(0, y, 1, y + 0.006, mul(p["panel_dark"], 0.8))
    for i in range(6):
        x = (i + 0.5) / 6
        b.rect(x, 0.62, x + 0.004, 1, mul(p["panel_dark"], 0.85))
        b.ellipse(x + 0.04, 0.68, 0.008, 0.008, p["light"] if i % 2 else p["accent"])
    b.rect(0, 0.0, 1, 0.03, rgba(p["light"], 0.6))


def bg_abstract(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    b.img.paste(_gradient(_c(p["top"]), _c(p["bottom"]), b.S))
    for _ in range(7):
        rr = r.uniform(0.06, 0.2)
        b.ellipse(r.uniform(0, 1), r.uniform(0, 1), rr, rr, rgba(r.choice(p["shapes"]), 0.35))


BACKGROUNDS: dict[str, Callable] = {"studio": bg_studio, "beach": bg_beach, "forest": bg_forest, "city": bg_city,
                                    "cafe": bg_cafe, "mountains": bg_mountains, "library": bg_library,
                                    "space": bg_space, "abstract": bg_abstract}
