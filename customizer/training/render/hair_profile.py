"""Side-view hair: one compact routine for every style, driven by the same style data as the front painters."""
from __future__ import annotations

import math
import random

from .context import Ctx
from .geometry import clamp_x, ellipse_pts, mix, spline
from .hair import _curl_ring
from .hair_styles import _bun_size, _mohawk_height


def hair_profile(ctx: Ctx, layer: str):
    """Side-view hair: one compact routine, style differences from the same style data."""
    pen = ctx.pen
    d, hx = ctx.turn, ctx.hx
    st = ctx.hair_style
    painter = st["painter"]
    vol = st.get("vol", 0.04)
    drop = ctx.hair_len["drop"]
    w = ctx.ident.face_w

    def P(x, y):
        return (hx + d * x * w, y)

    def fill(pts, shade=True):
        pen.poly(pts, fill=ctx.hair)
        if shade and ctx.light_side == -d:
            pen.poly(clamp_x(pts, lambda y: hx - d * 0.15, -d), fill=ctx.hair_sh)
        pen.poly(pts, outline=ctx.hair_line, width=0.01)

    tight = painter in ("braided", "ponytail", "bun")
    shaved = painter in ("buzz", "mohawk")
    if layer == "back":
        if painter in ("straight", "curly") and drop > 0.5:
            wv = st.get("wave", 0.0) + (0.05 if painter == "curly" else 0)
            pts = [P(-0.2, -0.45), P(-0.5 - vol, -0.15), P(-0.52 - vol - wv, 0.3), P(-0.5 - vol + wv, drop * 0.7),
                   P(-0.42 - vol, drop), P(-0.25, drop - 0.1), P(-0.18 + wv, drop * 0.6), P(-0.15, 0.3)]
            fill(spline(pts, closed=True, n=3))
        if painter == "ponytail":
            tl = max(0.55, drop)
            pts = [P(-0.3, -0.42), P(-0.55, -0.3), P(-0.62, tl * 0.5), P(-0.5, tl), P(-0.45, tl * 0.5), P(-0.4, -0.2)]
            fill(spline(pts, closed=True, n=3))
        if painter == "braided" and drop > 0.5:
            for k in range(max(3, int((drop - 0.1) / 0.11))):
                y = 0.1 + k * 0.11
                x, yy = P(-0.36 - 0.02 * math.sin(k), y)
                pen.poly(ellipse_pts(x, yy, 0.07, 0.065, 0.6 * (1 if k % 2 else -1), 12), fill=ctx.hair,
                         outline=ctx.hair_line, width=0.008)
        return
    if layer != "top":
        return
    if shaved:
        pts = spline([P(0.25, -0.36), P(0.1, -0.5), P(-0.2, -0.52), P(-0.44, -0.3), P(-0.46, 0.0), P(-0.35, 0.18),
                      P(-0.15, 0.05), P(0.02, 0.02), P(0.12, -0.2)], closed=True, n=3)
        pen.poly(pts, fill=mix(ctx.hair, ctx.skin, 0.3 if painter == "buzz" else 0.55))
        if painter == "mohawk":
            height = _mohawk_height(drop)
            crest = [P(0.26, -0.4)]
            for k in range(5):
                u = k / 4
                ang = math.pi * (0.25 + 0.75 * u)
                bx, by = 0.28 - 0.72 * u, -0.42 - 0.1 * math.sin(math.pi * u)
                crest.append(P(bx - 0.06, by))
                crest.append(P(bx - 0.1 - 0.1 * u, by - height * (0.8 + 0.2 * math.sin(ang))))
            crest.append(P(-0.46, -0.05))
            fill(crest)
        return
    # cap: forehead hairline -> over the top -> down the back; sideburn in front of the ear
    nape = 0.3 if not tight else 0.2
    pts = [P(0.3, -0.3), P(0.22, -0.47 - vol), P(-0.05, -0.54 - vol), P(-0.35, -0.44 - vol),
           P(-0.5 - vol, -0.12), P(-0.46 - vol, nape - 0.1), P(-0.3, nape), P(-0.18, 0.12), P(-0.02, -0.02),
           P(0.04, 0.1), P(0.08, -0.05), P(0.14, -0.22)]
    fill(spline(pts, closed=True, n=3))
    pen.line([P(0.15, -0.4), P(-0.1, -0.47), P(-0.3, -0.38)], ctx.hair_hi, 0.018)
    if painter == "straight":
        a = ctx.ident.fringe
        fill(spline([P(0.3, -0.4), P(0.36, -0.28), P(0.37, -0.15 + 0.06 * a), P(0.3, -0.2), P(0.2, -0.32)],
                    closed=True, n=3))
    if painter == "curly":
        r = random.Random(f"curls:{ctx.ident.seed}")
        ring = [P(0.3 * math.cos(a) - 0.08, -0.1 + 0.45 * math.sin(a)) for a in
                [math.pi * (1.0 + 0.12 * k) for k in range(9)]]
        _curl_ring(ctx, [(x, y) for x, y in ring], st.get("curl", 0.07), r)
    if painter == "bun":
        bx, by = P(-0.35, -0.42)
        size = _bun_size(drop)
        pen.ellipse(bx, by, size, size * 0.9, fill=ctx.hair, outline=ctx.hair_line, width=0.01)
        pen.line(ellipse_pts(bx, by, size * 0.55, size * 0.5, 0.3, 12, 0.3, 4.5), ctx.hair_sh, 0.012)
    if tight:
        ex, ey = P(-0.07, 0.08)
        i = ctx.ident
        pen.ellipse(ex, ey, 0.055 * i.ear_size, 0.095 * i.ear_size, fill=ctx.skin, outline=ctx.skin_line, width=0.008)
