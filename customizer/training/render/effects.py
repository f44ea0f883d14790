"""Theme and lighting effects: the fantasy circlet and sparkles, and `_post`, the numpy post-process on the small
image (ambient scene light, key-light ramp, fantasy rim light and grade, vintage tone, fade, vignette and grain)."""
from __future__ import annotations

import random
from functools import lru_cache

import numpy as np

from ...character import NO_THEME
from .context import Ctx, styles
from .geometry import mix


def draw_circlet(ctx: Ctx):
    pen = ctx.pen
    gold = tuple(styles()["theme"]["fantasy"]["circlet"])
    if abs(ctx.yaw) > 1.3:
        d, hx, w = ctx.turn, ctx.hx, ctx.ident.face_w
        pen.line([(hx + d * 0.33 * w, -0.24), (hx - d * 0.1 * w, -0.33), (hx - d * 0.46 * w, -0.3)], gold, 0.025)
        pen.ellipse(hx + d * 0.33 * w, -0.24, 0.025, 0.03, fill=ctx.jewel, outline=gold, width=0.008)
        return
    y = -0.2 - 0.03 * ctx.ident.hairline
    pts = [ctx.hp(x * ctx.fw, y + 0.06 * x * x, 0.95) for x in (-1.02, -0.7, -0.35, 0.0, 0.35, 0.7, 1.02)]
    pen.line(pts, gold, 0.022)
    gx, gy = ctx.hp(0.0, y + 0.01)
    pen.poly([(gx, gy - 0.045), (gx + 0.03, gy), (gx, gy + 0.04), (gx - 0.03, gy)], fill=ctx.jewel,
             outline=gold, width=0.008)


def draw_sparkles(ctx: Ctx, count: int):
    r = random.Random(f"sparkle:{ctx.var.seed}")
    pen = ctx.pen
    S = pen.s
    for _ in range(count):
        # screen-relative placement, avoiding the face centre
        u, v = r.uniform(0.04, 0.96), r.uniform(0.04, 0.9)
        if abs(u - 0.5) < 0.22 and v < 0.7:
            u = u * 0.3 if u < 0.5 else 0.7 + u * 0.3
        x = (u * pen.d.im.size[0] - pen.ox) / S
        y = (v * pen.d.im.size[1] - pen.oy) / S
        k = r.uniform(0.6, 1.2) * 0.035 * (pen.d.im.size[0] / S) / 1.75
        col = mix(ctx.jewel, (255, 255, 255), 0.6)
        pen.poly([(x, y - k), (x + k * 0.22, y - k * 0.22), (x + k, y), (x + k * 0.22, y + k * 0.22), (x, y + k),
                  (x - k * 0.22, y + k * 0.22), (x - k, y), (x - k * 0.22, y - k * 0.22)], fill=col)


@lru_cache(maxsize=8)
def _vignette(h: int, w: int, amount: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rr = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (0.5 * (w * w + h * h) / 2)
    return (1 - amount * np.clip(rr - 0.25, 0, 1))[..., None]


def _post(img: np.ndarray, alpha: np.ndarray, ctx: Ctx, attrs: dict) -> np.ndarray:
    """Lighting and theme post-processes on the small float image (0..1)."""
    h, w, _ = img.shape
    st = styles()
    tint = np.array(st["scene"][ctx.var.scene].get("light", (255, 255, 255)), np.float32) / 255.0
    lx = ctx.var.lighting
    ramp = 1.0 + 0.06 * abs(lx) * np.linspace(1, -1, w, dtype=np.float32) * (-1 if lx > 0 else 1)
    k = (0.45 - 0.45 * tint).astype(np.float32)
    img *= 1 - alpha[..., None] * k      # ambient colour on the figure
    img *= ramp[None, :, None]           # key light side
    strength = float(attrs.get("theme_strength", 1.0))
    theme = attrs.get("theme", NO_THEME)
    if theme == "fantasy" and strength > 0:
        f = st["theme"]["fantasy"]
        sh = max(1, w // 64)
        s = -ctx.light_side
        rim = np.clip(alpha - np.roll(alpha, sh * s, axis=1), 0, 1)  # edge away from the key light
        jewel = np.array(ctx.jewel, np.float32) / 255.0
        img = img + rim[..., None] * jewel * f["rim"] * strength
        img = img * (1 - 0.12 * strength) + 0.12 * strength * jewel * img  # jewel-tone grade
        img = img * (1 + 0.08 * strength)
    if theme == "vintage" and strength > 0:
        v = st["theme"]["vintage"]
        lum = img @ np.array([0.299, 0.587, 0.114], np.float32)
        out = lum[..., None] * np.array(v["tint"], np.float32)  # monochrome, toned brown
        fade = v["fade"]
        out = out * (1 - fade) + fade * np.array([0.55, 0.48, 0.38], np.float32)
        out = out * _vignette(h, w, float(v["vignette"]))
        out += np.random.default_rng(ctx.var.seed).standard_normal((h, w, 1), dtype=np.float32) * v["grain"]
        img = img * (1 - strength) + out * strength
    return img
