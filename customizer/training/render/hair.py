"""Hair geometry shared by the style painters: `Hair` (skull arc, back panel, cap, fringes, locks), grey streaks
and curl clumps."""
from __future__ import annotations

import math
import random

from .context import Ctx, cel, styles
from .geometry import Pt, ellipse_pts, mix, offset, spline


class Hair:
    """Hair geometry shared by the style painters (front / three-quarter views)."""

    def __init__(self, ctx: Ctx):
        self.ctx = ctx
        st = ctx.hair_style
        self.vol = st.get("vol", 0.04)
        self.wave = st.get("wave", 0.0)
        self.curl = st.get("curl", 0.07)
        self.drop = ctx.hair_len["drop"]
        i = ctx.ident
        self.R = ctx.fw * 1.06 + self.vol
        self.cy = -0.09
        self.Ry = 0.43 + self.vol
        self.hairline = -0.25 - 0.035 * i.hairline
        self.part = i.parting
        self.dx = -0.07 * math.sin(ctx.yaw) * ctx.fw  # skull centre shifts away from the turn

    def skull_arc(self, a0=math.pi, a1=2 * math.pi, grow=0.0, n=16) -> list[Pt]:
        cx = self.ctx.hx + self.dx
        return ellipse_pts(cx, self.cy, self.R + grow, self.Ry + grow, 0, n, a0, a1)

    def fill(self, pts, shade=True, outline=True):
        ctx = self.ctx
        ctx.pen.poly(pts, fill=ctx.hair)
        if shade:
            cel(ctx, pts, ctx.hair_sh, None, 0.06)
        if outline:
            ctx.pen.poly(pts, outline=ctx.hair_line, width=0.01)

    def back_panel(self, drop: float, flare: float = 0.1, tips: int = 6, wave: float | None = None) -> list[Pt]:
        """Hair behind the head falling to `drop`."""
        wave = self.wave if wave is None else wave
        ctx = self.ctx
        cx = ctx.hx + self.dx
        top = self.skull_arc(math.pi, 2 * math.pi, 0.01)
        right, left = [], []
        n = 7
        for k in range(1, n + 1):
            y = self.cy + (drop - self.cy) * k / n
            below = max(0.0, y - 0.35)
            w = self.R + 0.01 + flare * min(1.0, below / 0.7) + 0.02 * below
            wv = wave * math.sin(k * 1.9)
            right.append((cx + w + wv, y))
            left.append((cx - w + wv * 0.8, y))
        bottom = []
        w_end = right[-1][0] - cx
        for k in range(tips + 1):
            u = k / tips
            x = cx + w_end - 2 * w_end * u
            y = drop + (0.0 if k % 2 == 0 else -0.07 - wave)
            bottom.append((x, y))
        return top + right + bottom[1:-1] + list(reversed(left))

    def cap(self, sides_to: float = 0.1, tight: bool = False) -> list[Pt]:
        """Top hair mass ending at the forehead hairline. Tight (pulled-back) caps leave the ears free."""
        ctx = self.ctx
        hl = self.hairline
        fw = ctx.fw
        xp = self.part * 0.3 * fw
        if tight:
            arc = self.skull_arc(math.pi * 0.96, math.pi * 2.04, 0.0, 18)
            front = [(0.97 * fw, -0.08), (0.86 * fw, hl + 0.07), (0.5 * fw, hl + 0.012), (xp, hl - 0.012),
                     (-0.5 * fw, hl + 0.012), (-0.86 * fw, hl + 0.07), (-0.97 * fw, -0.08)]
            return arc + ctx.hps(spline(front, closed=False, n=3), 0.9)
        arc = self.skull_arc(math.pi * 0.97, math.pi * 2.03, 0.0, 18)
        front = [(0.97 * fw, sides_to), (0.9 * fw, hl + 0.1), (0.62 * fw, hl + 0.015), (xp, hl - 0.01),
                 (-0.62 * fw, hl + 0.015), (-0.9 * fw, hl + 0.1), (-0.97 * fw, sides_to)]
        return arc + ctx.hps(front, 0.9)

    def highlight(self, y: float = -0.34):
        """The glossy 'angel ring': two arcs of lighter colour across the crown."""
        ctx = self.ctx
        cx = ctx.hx + self.dx
        for a0, a1 in ((1.2, 1.42), (1.5, 1.78)):
            pts = ellipse_pts(cx, self.cy + 0.03, self.R * 0.86, self.Ry * 0.78, 0, 6, math.pi * a0, math.pi * a1)
            ctx.pen.line(pts, ctx.hair_hi, 0.026)

    def fringe_swept(self, amount: float, wavy: float = 0.0):
        """Bangs as overlapping pointed clumps swept away from the parting."""
        ctx, fw = self.ctx, self.ctx.fw
        p = self.part
        r = random.Random(f"bangs:{ctx.ident.seed}")
        tip_base = -0.16 + 0.1 * amount
        n = 6
        clumps = []
        for k in range(n):
            u = (k + 0.5) / n
            xt = (-1 + 2 * u) * 0.98 * fw - p * 0.05
            edge = abs(2 * u - 1)
            ty = tip_base + 0.035 * (k % 2) + r.uniform(-0.015, 0.015) + 0.12 * edge ** 3 + wavy * 0.3
            if p and (xt * p > 0.45 * fw):  # the parting side lifts away from the face
                ty -= 0.05
            xr = xt * 0.45 + p * 0.3 * fw
            w = 1.25 * fw / n
            bend = -p * 0.04 - (0.02 if xt < 0 else -0.02) * edge
            clumps.append([(xr - w * 0.8, -0.46), (xt - w + bend * 0.5, (ty - 0.46) * 0.45),
                           (xt + bend, ty), (xt + w * 0.9 + bend * 0.5, (ty - 0.46) * 0.5), (xr + w * 0.9, -0.46)])
        lo = self.hairline + 0.02
        for c in clumps:  # the fringe's shadow on the forehead
            pts = spline(offset(c, 0, 0.028), closed=True, n=3)
            ctx.pen.poly(ctx.hps([(x, max(y, lo)) for x, y in pts], 0.95), fill=ctx.skin_sh)
        order = sorted(range(n), key=lambda k: -abs(k - (n - 1) / 2 + p * 2))
        for k in order:
            pts = ctx.hps(spline(clumps[k], closed=True, n=3), 0.95)
            ctx.pen.poly(pts, fill=ctx.hair, outline=ctx.hair_line, width=0.008)
        if p:
            ctx.pen.line([ctx.hp(p * 0.3 * fw, -0.47, 0.9), ctx.hp(p * 0.28 * fw, -0.38, 0.9)], ctx.hair_sh, 0.012)

    def fringe_parted(self):
        """Hair combed back from the parting: strand lines and, for some people, loose wisps at the temples."""
        ctx, fw = self.ctx, self.ctx.fw
        hl = self.hairline
        xp = self.part * 0.3 * fw
        for s_ in (-1, 1):
            for k in range(3):
                u = (k + 1) / 4
                x_end = s_ * (0.55 + 0.45 * u) * fw
                pts = [(xp + s_ * 0.04 * u, hl + 0.005), (xp + (x_end - xp) * 0.5, hl - 0.06 - 0.08 * (1 - u)),
                       (x_end * 1.05, -0.3 - 0.12 * (1 - u))]
                ctx.pen.line(ctx.hps(spline(pts, closed=False, n=3), 0.9), ctx.hair_sh, 0.008)
        ctx.pen.line(ctx.hps([(xp, hl - 0.01), (xp * 0.7, -0.42)], 0.9), ctx.hair_sh, 0.012)

    def side_locks(self, to_y: float, width: float = 0.11, wave: float = 0.0):
        """Locks framing the face in front of the ears."""
        ctx, fw = self.ctx, self.ctx.fw
        for s in (-1, 1):
            pts = [(s * 0.8 * fw, self.hairline + 0.05), (s * (fw + 0.08), -0.1),
                   (s * (fw + 0.09 + wave), (to_y - 0.1) * 0.5), (s * (fw + 0.05), to_y),
                   (s * (fw - width * 0.6 + wave), to_y - 0.1), (s * (fw - width), 0.0),
                   (s * (fw - width * 1.2), self.hairline + 0.1)]
            far = (1 if ctx.yaw > 0 else -1) == s and abs(ctx.yaw) > 0.2
            wpts = [(ctx.hp(x, y, 0.5)[0], y) for x, y in pts]
            if far:
                wpts = [(x - s * 0.02, y) for x, y in wpts]
            self.fill(spline(wpts, closed=True, n=3))

    def front_locks(self, drop: float, wave: float = 0.0, width: float = 0.15):
        """Long hair falling in front of the shoulders (drawn over the body)."""
        ctx, fw = self.ctx, self.ctx.fw
        nw = ctx.body["neck"]
        for s in (-1, 1):
            far = (1 if ctx.yaw > 0 else -1) == s and abs(ctx.yaw) > 0.2
            if far and abs(ctx.yaw) > 0.4:
                continue
            x_top = ctx.hx + s * (fw + 0.01)
            xs = ctx.hx + s * (nw + 0.2)
            pts_out = [(x_top + s * 0.04, 0.05), (x_top + s * 0.07, 0.45), (xs + s * width + wave, 0.95),
                       (xs + s * width * 0.9 - wave, drop * 0.7 + 0.3), (xs + s * width * 0.4, drop)]
            pts_in = [(xs - s * width * 0.35 + wave * 0.5, drop - 0.12),
                      (xs - s * width * 0.2 - wave, drop * 0.6 + 0.3),
                      (xs - s * width * 0.35, 0.95), (x_top - s * 0.07, 0.5), (x_top - s * 0.08, 0.2)]
            pts = spline(pts_out + pts_in, closed=True, n=3)
            self.fill(pts)
            ctx.pen.line(spline([(x_top, 0.2), (xs + wave * 0.5, 0.95), (xs + s * width * 0.2, drop - 0.15)],
                                closed=False, n=3), ctx.hair_sh, 0.008)


def _grey_streaks(ctx: Ctx, h: Hair):
    if ctx.grey <= 0.15:
        return
    grey = styles()["hair_shading"]["age_grey"]
    col = mix(ctx.hair, grey, min(1.0, ctx.grey * 1.6))
    for s in (-1, 1):
        pts = [ctx.hp(s * 0.7 * ctx.fw, h.hairline + 0.02, 0.9), ctx.hp(s * 0.95 * ctx.fw, h.hairline + 0.1, 0.6),
               ctx.hp(s * 0.98 * ctx.fw, 0.0, 0.4)]
        ctx.pen.line(pts, col, 0.02)
    ctx.pen.line([(ctx.hx + h.dx - 0.05, -0.5), (ctx.hx + h.dx + 0.05, -0.42), (ctx.hx + h.dx + 0.1, -0.3)], col, 0.015)


def _curl_ring(ctx: Ctx, pts: list[Pt], r: float, rng: random.Random, highlight: bool = True):
    """Overlapping curl clumps: each a disc with an outline and a small glossy arc."""
    pen = ctx.pen
    for x, y in pts:
        rr = r * rng.uniform(0.85, 1.2)
        x += rng.uniform(-0.2, 0.2) * r
        y += rng.uniform(-0.2, 0.2) * r
        pen.ellipse(x, y, rr, rr, fill=ctx.hair, outline=ctx.hair_line, width=0.008)
        a0 = math.pi * (1.05 + rng.uniform(0, 0.3))
        pen.line(ellipse_pts(x, y, rr * 0.62, rr * 0.62, 0, 4, a0, a0 + 1.6), ctx.hair_sh, 0.01)
        if highlight:
            pen.line(ellipse_pts(x, y, rr * 0.55, rr * 0.55, 0, 3, a0 + 1.8, a0 + 2.6), ctx.hair_hi, 0.008)
