"""Hair style painters for the front / three-quarter view (`HAIR_PAINTERS`, one per style painter, each drawn in
layers "back", "top" and "front") and each style's highest point (`hair_top`, used to fit tight framings)."""
from __future__ import annotations

import math
import random
from typing import Callable

from .context import Ctx, cel
from .geometry import Pt, ellipse_pts, mix, mul, spline
from .hair import Hair, _curl_ring, _grey_streaks


def hair_straight(ctx: Ctx, h: Hair, layer: str):
    drop = h.drop
    short = drop < 0.5
    if layer == "back":
        if not short:
            h.fill(h.back_panel(drop, 0.1 + 0.4 * h.wave * 2, 6 if h.wave == 0 else 5))
        else:
            h.fill(h.back_panel(0.3, 0.02, 4, h.wave * 0.4))
    elif layer == "top":
        h.fill(h.cap(0.12 if short else 0.2))
        h.highlight()
        if not short:
            h.side_locks(min(drop, 0.62), 0.1, h.wave)
        h.fringe_swept(ctx.ident.fringe, h.wave)
        _grey_streaks(ctx, h)
    elif layer == "front" and ctx.hair_len.get("front_locks"):
        h.front_locks(drop, h.wave * 1.5)


def hair_curly(ctx: Ctx, h: Hair, layer: str):
    rng = random.Random(f"curls:{ctx.ident.seed}:{layer}")
    drop = max(h.drop, 0.3)
    c = h.curl * 1.2
    cx = ctx.hx + h.dx
    flare = 0.12 + 0.05 * min(2.0, drop)
    if layer == "back":
        panel = h.back_panel(drop, flare, 4, 0.0)
        ctx.pen.poly(panel, fill=ctx.hair_sh)
        ring = []
        steps = max(2, int((drop - h.cy) / (c * 1.3)))
        for k in range(1, steps + 1):
            y = h.cy + (drop - h.cy) * k / steps
            below = max(0.0, y - 0.35)
            w = h.R + 0.01 + flare * min(1.0, below / 0.7) + 0.02 * below
            ring += [(cx + w, y), (cx - w, y)]
        w_end = h.R + flare + 0.02 * max(0.0, drop - 0.35)
        for k in range(5):
            ring.append((cx - w_end + 2 * w_end * k / 4, drop))
        _curl_ring(ctx, ring, c, rng)
    elif layer == "top":
        cap = h.cap(0.15)
        h.fill(cap, outline=False)
        n = 11
        arc = [(cx + (h.R + 0.01) * math.cos(math.pi * (1.0 + k / (n - 1))),
                h.cy + (h.Ry + 0.01) * math.sin(math.pi * (1.0 + k / (n - 1)))) for k in range(n)]
        _curl_ring(ctx, arc, c * 0.95, rng)
        hl = h.hairline + 0.02 + 0.05 * ctx.ident.fringe
        xs = (-0.92, -0.58, -0.22, 0.18, 0.55, 0.9)
        row = [ctx.hp(x * ctx.fw, hl + 0.03 * math.cos(x * 5), 0.95) for x in xs]
        for x, y in row:
            ctx.pen.ellipse(x, y + 0.035, c * 0.8, c * 0.55, fill=ctx.skin_sh)
        _curl_ring(ctx, row, c * 0.85, rng)
        _grey_streaks(ctx, h)
    elif layer == "front" and ctx.hair_len.get("front_locks"):
        nw = ctx.body["neck"]
        for s in (-1, 1):
            if abs(ctx.yaw) > 0.4 and (1 if ctx.yaw > 0 else -1) == s:
                continue
            pts = []
            steps = max(3, int((drop - 0.5) / (c * 1.3)))
            for k in range(steps + 1):
                y = 0.45 + (drop - 0.45) * k / steps
                x = ctx.hx + s * (ctx.fw + 0.06 + (nw + 0.28 - ctx.fw) * min(1.0, (y - 0.45) / 0.5))
                pts.append((x + 0.03 * math.sin(k * 2.1), y))
            _curl_ring(ctx, pts, c * 1.05, rng)


def hair_braided(ctx: Ctx, h: Hair, layer: str):
    pen = ctx.pen
    p = h.part if h.part != 0 else 1
    drop = h.drop
    if layer == "back":
        pass
    elif layer == "top":
        h.fill(h.cap(tight=True))
        h.highlight()
        h.fringe_parted()
        if drop < 0.5:  # crown braid over the top
            arc = h.skull_arc(math.pi * 1.15, math.pi * 1.85, -0.06, 7)
            for k, (x, y) in enumerate(arc):
                pts = ellipse_pts(x, y, 0.06, 0.035, 0.6 if k % 2 else -0.6, 14)
                pen.poly(pts, fill=ctx.hair, outline=ctx.hair_line, width=0.008)
        _grey_streaks(ctx, h)
    elif layer == "front" and drop >= 0.5:
        # one braid over the shoulder on the parting side
        if abs(ctx.yaw) > 0.4 and (1 if ctx.yaw > 0 else -1) == p:
            p = -p
        x0 = ctx.hx + p * (ctx.fw + 0.02)
        x1 = ctx.hx + p * (ctx.body["neck"] + 0.22)
        segs = max(3, int((drop - 0.25) / 0.075))
        last = (x0, 0.2)
        for k in range(segs):
            u = k / max(1, segs - 1)
            y = 0.2 + (drop - 0.3) * u
            x = x0 + (x1 - x0) * min(1.0, u * 2.5)
            w = 0.085 * (1 - 0.3 * u)
            for sgn in (-1, 1):
                pts = ellipse_pts(x + sgn * w * 0.32, y + (0.03 if sgn > 0 else 0), w * 0.62, 0.068, sgn * 0.55, 14)
                pen.poly(pts, fill=ctx.hair if sgn > 0 else mul(ctx.hair, 0.88), outline=ctx.hair_line, width=0.008)
            last = (x, y)
        x, y = last
        pen.rect(x - 0.035, y + 0.05, x + 0.035, y + 0.08, fill=ctx.jewel if ctx.fantasy else (200, 60, 70))
        pen.poly([(x - 0.03, y + 0.08), (x + 0.03, y + 0.08), (x + 0.05, y + 0.2), (x, y + 0.17),
                  (x - 0.05, y + 0.2)], fill=ctx.hair, outline=ctx.hair_line, width=0.008)


def hair_ponytail(ctx: Ctx, h: Hair, layer: str):
    pen = ctx.pen
    p = -(h.part if h.part != 0 else 1)
    drop = h.drop
    if layer == "back":
        tail_len = max(0.55, drop)
        cx = ctx.hx + h.dx
        x0 = cx + p * 0.18
        pts = [(x0 - p * 0.05, -0.5), (x0 + p * 0.3, -0.42), (cx + p * (h.R + 0.12), -0.05),
               (cx + p * (h.R + 0.16), tail_len * 0.6), (cx + p * (h.R + 0.04), tail_len),
               (cx + p * (h.R - 0.02), tail_len * 0.5), (cx + p * (h.R - 0.05), 0.0)]
        h.fill(spline(pts, closed=True, n=4))
        pen.line(spline([(x0 + p * 0.2, -0.4), (cx + p * (h.R + 0.08), 0.0), (cx + p * (h.R + 0.08), tail_len * 0.7)],
                        closed=False, n=3), ctx.hair_sh, 0.01)
    elif layer == "top":
        h.fill(h.cap(tight=True))
        h.highlight()
        h.fringe_parted()
        tx, ty = ctx.hx + h.dx + p * (h.R - 0.02), -0.3
        pen.ellipse(tx, ty, 0.03, 0.05, fill=ctx.jewel if ctx.fantasy else mul(ctx.hair, 0.45))
        _grey_streaks(ctx, h)


def hair_bun(ctx: Ctx, h: Hair, layer: str):
    pen = ctx.pen
    size = _bun_size(h.drop)
    cx = ctx.hx + h.dx
    by = h.cy - h.Ry - size * 0.45
    if layer == "back":
        pts = ellipse_pts(cx, by, size * 1.1, size, 0, 22)
        h.fill(pts)
        pen.line(ellipse_pts(cx + 0.01, by + 0.01, size * 0.6, size * 0.5, 0.3, 12, 0.3, 4.5), ctx.hair_sh, 0.012)
        pen.line(ellipse_pts(cx - 0.01, by - 0.01, size * 0.85, size * 0.75, 0.3, 12, 3.5, 6.0), ctx.hair_hi, 0.012)
    elif layer == "top":
        h.fill(h.cap(tight=True))
        h.highlight()
        h.fringe_parted()
        pen.line([(cx - size * 0.7, h.cy - h.Ry + 0.02), (cx + size * 0.7, h.cy - h.Ry + 0.02)],
                 ctx.jewel if ctx.fantasy else mul(ctx.hair, 0.5), 0.03)
        for s in (-1, 1):  # loose wisps
            x0, y0 = ctx.hp(s * 0.9 * ctx.fw, h.hairline + 0.1, 0.6)
            pen.line(spline([(x0, y0), (x0 + s * 0.02, y0 + 0.12), (x0 - s * 0.01, y0 + 0.22)], closed=False, n=3),
                     ctx.hair, 0.014)
        _grey_streaks(ctx, h)


def _stubble(ctx: Ctx, pts: list[Pt], h: Hair, colour, lowest: float):
    ctx.pen.poly(pts, fill=colour)
    r = random.Random(f"stubble:{ctx.ident.seed}")
    dark = mul(colour, 0.8)
    xs = [x for x, _ in pts]
    ys = [y for _, y in pts]
    for _ in range(70):
        x, y = r.uniform(min(xs), max(xs)), r.uniform(min(ys), lowest)
        if (x - ctx.hx - h.dx) ** 2 / h.R ** 2 + (y - h.cy) ** 2 / h.Ry ** 2 < 0.85:
            ctx.pen.line([(x, y), (x + 0.004, y + 0.008)], mix(colour, dark, 0.6), 0.004)


def hair_buzz(ctx: Ctx, h: Hair, layer: str):
    if layer != "top":
        return
    col = mix(ctx.hair, ctx.skin, 0.62 if ctx.hair_style["painter"] == "mohawk" else 0.4)
    side = 0.02 + 0.04 * min(1.0, h.drop)  # sideburns a little longer for longer settings
    cap = h.skull_arc(math.pi * 0.95, math.pi * 2.05, 0.012, 18)
    hl = h.hairline - 0.03
    fw = ctx.fw
    front = [(0.97 * fw, side), (0.93 * fw, hl + 0.08), (0.5 * fw, hl), (0, hl - 0.01), (-0.5 * fw, hl),
             (-0.93 * fw, hl + 0.08), (-0.97 * fw, side)]
    pts = cap + ctx.hps(front, 0.9)
    _stubble(ctx, pts, h, col, hl - 0.02)
    cel(ctx, pts, mix(col, ctx.hair_sh, 0.4), ctx.hx, 0.05)
    ctx.pen.poly(pts, outline=mix(ctx.hair_line, ctx.skin_line, 0.5), width=0.006)


def hair_mohawk(ctx: Ctx, h: Hair, layer: str):
    pen = ctx.pen
    height = _mohawk_height(h.drop)
    cx = ctx.hx + h.dx
    if layer != "top":
        return
    hair_buzz(ctx, h, "top")
    top = h.cy - h.Ry
    base_w = 0.085
    # seen from the front the crest is a narrow fan of spikes
    tips = [(-0.11, 0.8), (-0.05, 1.0), (0.02, 0.95), (0.09, 0.78)]
    pts = [(cx - base_w, top + 0.1)]
    for k, (dx, f) in enumerate(tips):
        pts.append((cx + dx * 1.2, top - height * f))
        if k < len(tips) - 1:
            pts.append((cx + (dx + tips[k + 1][0]) * 0.5, top - height * f * 0.55))
    pts.append((cx + base_w, top + 0.1))
    h.fill(pts)
    for dx, f in tips[1:3]:
        pen.line([(cx + dx * 0.4, top + 0.05), (cx + dx * 1.0, top - height * f * 0.7)], ctx.hair_sh, 0.01)
    pen.line([(cx - 0.02, top), (cx - 0.04, top - height * 0.6)], ctx.hair_hi, 0.014)


def _bun_size(drop: float) -> float:
    return 0.12 + 0.035 * min(3.0, drop)


def _mohawk_height(drop: float) -> float:
    return 0.16 + 0.1 * min(3.0, drop)


HAIR_TOPS: dict[str, Callable[[dict, float], float]] = {  # highest point of each style (head units)
    "bun": lambda st, drop: -0.52 - st.get("vol", 0.0) - 1.45 * _bun_size(drop),
    "mohawk": lambda st, drop: -0.53 - _mohawk_height(drop),
    "curly": lambda st, drop: -0.53 - st.get("vol", 0.0) - 0.6 * st.get("curl", 0.07),
}


def hair_top(style: dict, drop: float) -> float:
    fn = HAIR_TOPS.get(style["painter"])
    return fn(style, drop) if fn else -0.53 - style.get("vol", 0.0)


HAIR_PAINTERS: dict[str, Callable] = {"straight": hair_straight, "curly": hair_curly, "braided": hair_braided,
                                      "ponytail": hair_ponytail, "bun": hair_bun, "buzz": hair_buzz,
                                      "mohawk": hair_mohawk}
