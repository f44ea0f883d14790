"""Eyes and brows of the front / three-quarter head: lid curves, iris, highlights, lashes, brow shape."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .context import Ctx
from .geometry import mix, mul


def _eye_geom(ctx: Ctx, side: int):
    """Eye centre, half width, height and the lid curves upper(x) / lower(x) (numpy-vectorised)."""
    i, e = ctx.ident, ctx.expr
    ex0 = side * 0.158 * i.eye_spacing
    ey = 0.05
    cx, cy = ctx.hp(ex0, ey)
    # foreshortening of a surface point at angle alpha
    alpha = math.atan2(ex0, 0.3)
    fs = max(0.3, min(1.12, math.cos(alpha + ctx.yaw) / math.cos(alpha)))
    hw = 0.092 * i.eye_size * fs
    eh = (0.052 + 0.014 * i.eye_round) * i.eye_size
    up = eh * (1 - e.get("lid_upper", 0.0))
    lo = eh * (0.55 + 0.15 * i.eye_round) * (1 - e.get("lid_lower", 0.0))
    tilt = i.eye_tilt * 0.012
    p_up = 0.55 + 0.25 * i.eye_round

    def upper(x):
        xl = np.clip(np.asarray(x, np.float64) - cx, -hw, hw)
        k = np.maximum(0.0, 1 - (xl / hw) ** 2)
        return cy - tilt * (xl * side / hw) * 0.5 - up * k ** p_up + 0.008 * (xl * side / hw) * k

    def lower(x):
        xl = np.clip(np.asarray(x, np.float64) - cx, -hw, hw)
        k = np.maximum(0.0, 1 - (xl / hw) ** 2)
        return cy - tilt * (xl * side / hw) * 0.5 + lo * k ** 0.8

    return cx, cy, hw, eh, upper, lower, fs


@lru_cache(maxsize=8)
def _unit_circle(n: int) -> np.ndarray:
    t = np.arange(n) * (2 * math.pi / n)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _ell(cx, cy, rx, ry, n=20) -> np.ndarray:
    return _unit_circle(n) * (rx, ry) + (cx, cy)


def draw_eye(ctx: Ctx, side: int):
    pen, e = ctx.pen, ctx.expr
    cx, cy, hw, eh, upper, lower, fs = _eye_geom(ctx, side)
    line = (46, 30, 32)
    n = 14
    xs = cx - hw + 2 * hw * np.arange(n + 1) / n
    if e.get("closed"):
        arc = np.stack([xs, cy + 0.01 - 0.03 * (1 - ((xs - cx) / hw) ** 2)], axis=1)
        pen.line(arc, line, 0.018)
        return
    up_y, lo_y = upper(xs), lower(xs)
    top = np.stack([xs, up_y], axis=1)
    pen.poly(np.vstack([top, np.stack([xs, lo_y], axis=1)[::-1]]), fill=(250, 248, 246))
    small = ctx.detail < 45  # iris of a few pixels at most: draw the essentials only
    if not small:
        pen.poly(np.vstack([top + (0, 0.012), top[[-1, 0]]]), fill=(214, 206, 214))  # lid shadow on the sclera
    gx, gy = e.get("gaze", (0, 0))
    fx, fy = ctx.frame.get("gaze", (0, 0))
    gx = gx + fx * ctx.turn
    gy = gy + fy
    r = 0.064 * ctx.ident.eye_size * e.get("iris", 1.0)
    ix = cx + gx * hw * 0.42
    iy = cy + 0.004 + gy * eh * 0.35
    rx = r * max(0.55, fs)

    def clip(pts: np.ndarray, bottom=lower) -> np.ndarray:
        x = np.clip(pts[:, 0], cx - hw, cx + hw)
        y = np.minimum(np.maximum(pts[:, 1], upper(x)), bottom(x))
        return np.stack([x, y], axis=1)

    iris = ctx.eye
    if small:
        pen.poly(clip(_ell(ix, iy, rx, r, 14)), fill=iris)
        pen.poly(clip(_ell(ix, iy, rx * 0.4, r * 0.42, 10)), fill=mul(iris, 0.2))
        pen.line(top if side > 0 else top[::-1], line, 0.02)
        return
    pen.poly(clip(_ell(ix, iy, rx, r, 22)), fill=mul(iris, 0.55))
    pen.poly(clip(_ell(ix, iy, rx * 0.87, r * 0.87, 22)), fill=iris)
    pen.poly(clip(_ell(ix, iy + r * 0.3, rx * 0.6, r * 0.5, 16)), fill=mix(iris, (255, 255, 255), 0.35))
    if ctx.fantasy:
        pen.poly(clip(_ell(ix, iy, rx * 0.7, r * 0.7, 20)), outline=mix(iris, (255, 255, 255), 0.7 * ctx.fantasy),
                 width=0.008)
    pen.poly(clip(_ell(ix, iy, rx * 0.38, r * 0.4, 14)), fill=mul(iris, 0.18))
    # shadow of the upper lid across the iris
    pen.poly(clip(_ell(ix, iy, rx, r, 22), lambda x: upper(x) + 0.016), fill=mul(iris, 0.5))
    hx, hy = ix - rx * 0.35 * ctx.light_side, max(iy - r * 0.35, float(upper(ix)) + r * 0.3)
    pen.ellipse(hx, hy, r * 0.26, r * 0.26, fill=(255, 255, 255))
    pen.ellipse(ix + rx * 0.35 * ctx.light_side, iy + r * 0.4, r * 0.1, r * 0.1, fill=(255, 255, 255))
    # lids
    corner = float(upper(cx + side * hw))
    wing = np.array([(cx + side * hw * 1.02, corner - 0.002),
                     (cx + side * hw * 1.22, corner - 0.014 - 0.01 * ctx.ident.lashes)])
    ut = top if side > 0 else top[::-1]
    pen.line(np.vstack([ut, wing]), line, 0.016)
    half = slice(n // 2, None) if side > 0 else slice(0, n // 2 + 1)
    pen.line(np.stack([xs[half], lo_y[half]], axis=1), mul(line, 1.6), 0.006)
    cx_ = xs[2:-2]
    pen.line(np.stack([cx_, up_y[2:-2] - 0.02 - 0.01 * (1 - ((cx_ - cx) / hw) ** 2)], axis=1), ctx.skin_sh, 0.006)


def draw_brow(ctx: Ctx, side: int):
    i, e = ctx.ident, ctx.expr
    x_in, x_out = side * 0.075 * i.eye_spacing, side * 0.25 * i.eye_spacing
    y0 = -0.055
    yi = y0 + e.get("brow_inner", 0.0)
    yo = y0 + 0.01 - i.brow_angle * 0.01 + e.get("brow_outer", 0.0)
    if e.get("one_brow") and side == 1:  # thinking: one brow raised
        yi += e["one_brow"]
        yo += e["one_brow"]
    arch = 0.012 + 0.018 * i.brow_arch
    t = 0.02 * i.brow_thick
    n = 6
    top, bot = [], []
    for k in range(n + 1):
        u = k / n
        x = x_in + (x_out - x_in) * u
        y = yi + (yo - yi) * u - arch * math.sin(math.pi * min(1.0, u * 1.15))
        th = t * (1.0 - 0.6 * u)
        top.append(ctx.hp(x, y - th * 0.5))
        bot.append(ctx.hp(x, y + th * 0.5))
    col = mix(mul(ctx.hair, 0.7), (40, 30, 30), 0.45)
    ctx.pen.poly(top + list(reversed(bot)), fill=col)
