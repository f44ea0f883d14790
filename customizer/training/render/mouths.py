"""Mouth painters, one per expression mouth shape (`MOUTHS`), for the front / three-quarter head."""
from __future__ import annotations

import math
from typing import Callable

from .context import Ctx
from .geometry import mul, spline


def _mouth_frame(ctx: Ctx):
    i = ctx.ident
    mx, my = ctx.hp(0.0, 0.335 + 0.02 * (i.face_len - 1), 1.0)
    mw = 0.078 * i.mouth_w * max(0.55, math.cos(ctx.yaw))
    return mx, my, mw


def mouth_neutral(ctx, mx, my, mw):
    pen, lip = ctx.pen, ctx.lip
    full = 0.012 + 0.012 * ctx.ident.lip_full
    pen.poly(spline([(mx - mw * 0.7, my + 0.004), (mx, my + full + 0.006), (mx + mw * 0.7, my + 0.004)],
                    closed=True, n=4), fill=lip)
    pen.line([(mx - mw, my), (mx - mw * 0.3, my + 0.004), (mx, my + 0.002), (mx + mw * 0.3, my + 0.004),
              (mx + mw, my)], mul(lip, 0.5), 0.01)


def mouth_smile(ctx, mx, my, mw):
    pen = ctx.pen
    w = mw * 1.1
    top = [(mx - w, my - 0.016), (mx - w * 0.5, my - 0.002), (mx, my + 0.002), (mx + w * 0.5, my - 0.002),
           (mx + w, my - 0.016)]
    bot = [(mx + w * 0.6, my + 0.025), (mx, my + 0.04), (mx - w * 0.6, my + 0.025)]
    shape = spline(top + bot, closed=True, n=3)
    pen.poly(shape, fill=(120, 40, 50))
    teeth = spline(top, closed=False, n=3) + [(mx + w * 0.5, my + 0.01), (mx - w * 0.5, my + 0.01)]
    pen.poly(teeth, fill=(252, 250, 246))
    pen.poly(shape, outline=mul(ctx.lip, 0.5), width=0.008)
    pen.line([(mx - w * 0.4, my + 0.055), (mx + w * 0.4, my + 0.055)], ctx.lip, 0.01)


def mouth_laugh(ctx, mx, my, mw):
    pen = ctx.pen
    w = mw * 1.25
    top = [(mx - w, my - 0.02), (mx, my - 0.008), (mx + w, my - 0.02)]
    bot = [(mx + w * 0.75, my + 0.045), (mx, my + 0.085), (mx - w * 0.75, my + 0.045)]
    shape = spline(top + bot, closed=True, n=4)
    pen.poly(shape, fill=(110, 30, 44))
    pen.poly(spline([(mx - w * 0.45, my + 0.075), (mx, my + 0.045), (mx + w * 0.45, my + 0.075),
                     (mx, my + 0.085)], closed=True, n=3), fill=(226, 104, 112))
    teeth = spline(top, closed=False, n=4) + [(mx + w * 0.55, my + 0.004), (mx - w * 0.55, my + 0.004)]
    pen.poly(teeth, fill=(252, 250, 246))
    pen.poly(shape, outline=mul(ctx.lip, 0.5), width=0.009)


def mouth_sad(ctx, mx, my, mw):
    pen = ctx.pen
    w = mw * 0.85
    pen.poly(spline([(mx - w * 0.6, my + 0.008), (mx, my + 0.022), (mx + w * 0.6, my + 0.008)], closed=True, n=3),
             fill=ctx.lip)
    pen.line(spline([(mx - w, my + 0.018), (mx, my - 0.004), (mx + w, my + 0.018)], closed=False, n=3),
             mul(ctx.lip, 0.5), 0.011)


def mouth_oh(ctx, mx, my, mw):
    pen = ctx.pen
    pen.ellipse(mx, my + 0.012, mw * 0.42, 0.036, fill=(110, 34, 46), outline=ctx.lip, width=0.012)


def mouth_angry(ctx, mx, my, mw):
    pen = ctx.pen
    w = mw * 0.95
    shape = [(mx - w, my + 0.018), (mx - w * 0.5, my - 0.004), (mx + w * 0.5, my - 0.004), (mx + w, my + 0.018),
             (mx + w * 0.5, my + 0.02), (mx - w * 0.5, my + 0.02)]
    pen.poly(shape, fill=(252, 250, 246), outline=mul(ctx.lip, 0.45), width=0.01)
    pen.line([(mx - w * 0.6, my + 0.008), (mx + w * 0.6, my + 0.008)], (170, 160, 160), 0.004)


def mouth_side(ctx, mx, my, mw):
    pen = ctx.pen
    d = 1
    pen.line([(mx - d * mw * 0.35, my + 0.006), (mx + d * mw * 0.4, my + 0.004), (mx + d * mw * 0.95, my - 0.012)],
             mul(ctx.lip, 0.5), 0.011)
    pen.ellipse(mx + d * mw * 0.3, my + 0.016, mw * 0.35, 0.008, fill=ctx.lip)


MOUTHS: dict[str, Callable] = {"neutral": mouth_neutral, "smile": mouth_smile, "laugh": mouth_laugh,
                               "sad": mouth_sad, "oh": mouth_oh, "angry": mouth_angry, "side": mouth_side}
