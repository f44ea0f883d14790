"""The figure below the head: torso geometry (`Body`, with yaw), legs, arms, hands, necklines, the neck and the
near shoulder of over-the-shoulder shots. Outfits (outfits.py) dress it with these parts."""
from __future__ import annotations

import math

from .context import Ctx, cel
from .geometry import Colour, Pt, mul, spline


Y_NECK, Y_SHOULDER, Y_ARMPIT, Y_WAIST, Y_HIP, Y_CROTCH, Y_KNEE, Y_ANKLE = 0.8, 1.02, 1.48, 2.35, 2.85, 3.3, 4.6, 5.9


class Body:
    """Torso geometry with a yaw: silhouettes narrow as the body turns; front details slide to one side."""

    def __init__(self, ctx: Ctx):
        self.ctx = ctx
        b = ctx.body
        self.sw, self.nw, self.cw = b["shoulders"], b["neck"], b["chest"]
        self.ww, self.hw, self.aw, self.lw = b["waist"], b["hips"], b["arm"], b["leg"]
        phi = ctx.body_phi
        self.cos, self.sin = math.cos(phi), math.sin(phi)
        self.wf = math.sqrt(self.cos ** 2 + 0.14 * self.sin ** 2)
        self.front = self.cos > 0.25
        self.back = self.cos < -0.25
        self.bx = -0.08 * ctx.turn if abs(ctx.yaw) > 1.3 else 0.0  # profile: shoulders sit behind the face
        self.near = -1 if self.sin > 0 else 1  # side of the body nearer the camera when turned
        self.side_view = abs(self.sin) > 0.9     # only the near arm / shoulder shows

    def X(self, x: float, z: float | None = None) -> float:
        if z is None:
            return self.bx + x * self.wf
        return self.bx + x * self.cos + z * self.sin

    def sil(self, pts) -> list[Pt]:
        return [(self.X(x), y) for x, y in pts]

    def det(self, pts, depth: float = 0.5) -> list[Pt]:
        """Details on the front (back when turned away) surface: depth follows the local half width."""
        sgn = 1 if not self.back else -1
        out = []
        for x, y in pts:
            half = self.half(y)
            z = sgn * depth * half * math.sqrt(max(0.0, 1 - min(1.0, (x / max(half, 1e-6)) ** 2)))
            out.append((self.X(x, z), y))
        return out

    def half(self, y: float) -> float:
        if y < Y_SHOULDER:
            return self.nw + (self.sw - self.nw) * max(0.0, (y - Y_NECK) / (Y_SHOULDER - Y_NECK))
        if y < Y_ARMPIT:
            return self.sw + (self.cw - self.sw) * (y - Y_SHOULDER) / (Y_ARMPIT - Y_SHOULDER)
        if y < Y_WAIST:
            return self.cw + (self.ww - self.cw) * (y - Y_ARMPIT) / (Y_WAIST - Y_ARMPIT)
        return self.ww + (self.hw - self.ww) * min(1.0, (y - Y_WAIST) / (Y_HIP - Y_WAIST))

    def torso(self, bottom: float = Y_CROTCH, flare: float = 0.0, top_pad: float = 0.0) -> list[Pt]:
        sw, nw, cw, ww, hw = self.sw, self.nw + top_pad, self.cw, self.ww, self.hw
        right = [(nw * 1.05, Y_NECK - 0.02), (sw * 0.55, Y_NECK + 0.07), (sw * 0.88, Y_NECK + 0.12),
                 (sw, Y_SHOULDER + 0.06), (sw * 0.97, Y_SHOULDER + 0.2), (cw, Y_ARMPIT), (ww, Y_WAIST),
                 (hw + flare * 0.5, Y_HIP), (hw + flare, bottom)]
        right = [p for p in right if p[1] <= bottom + 1e-6]
        left = [(-x, y) for x, y in reversed(right)]
        pts = spline(left + right, closed=False, n=3)
        pts += [(right[-1][0], bottom), (left[0][0], bottom)]
        return self.sil(pts)

    def arm(self, side: int, sleeve_w: float = 1.0, cuff: float = 1.0) -> tuple[list[Pt], Pt, float]:
        """Sleeve polygon of one hanging arm, the wrist point and the hand radius."""
        aw = self.aw * sleeve_w
        sx = side * (self.sw - self.aw * 0.75)
        ex = side * (self.sw + 0.03)
        wx = side * max(self.hw + self.aw * 0.9, self.sw * 0.9)
        top = (sx, Y_SHOULDER - 0.02)
        pts_out = [(sx + side * aw * 0.9, Y_SHOULDER + 0.02), (ex + side * aw * 0.85, Y_WAIST - 0.05),
                   (wx + side * aw * 0.7 * cuff, Y_HIP + 0.25)]
        pts_in = [(wx - side * aw * 0.7 * cuff, Y_HIP + 0.25), (ex - side * aw * 0.85, Y_WAIST - 0.05),
                  (sx - side * aw * 0.4, Y_ARMPIT)]
        poly = [top] + pts_out + pts_in
        if self.side_view:  # the near arm hangs at the middle of the side-on torso
            shift = -side * self.sw * 0.55
            mapped = [(self.X(x + shift, 0.0), y) for x, y in poly]
            wrist = (self.X(wx + shift, 0.0), Y_HIP + 0.25)
        else:
            mapped = [(self.X(x), y) for x, y in poly]
            wrist = (self.X(wx), Y_HIP + 0.25)
        return mapped, wrist, self.aw * 0.85


def _shade(ctx: Ctx, pts, fill, line=None, width=0.008, cx=None, band=0.15, k=0.82):
    pen = ctx.pen
    pen.poly(pts, fill=fill)
    cel(ctx, pts, mul(fill, k), cx, band)
    if line is not None:
        pen.poly(pts, outline=line, width=width)


def _outline(c) -> Colour:
    return mul(c, 0.55)


def draw_legs(ctx: Ctx, b: Body, legs, shoes, bare: bool = False):
    """Trousers (or bare legs) and shoes; only when the frame reaches the legs."""
    if ctx.view_bottom < Y_CROTCH - 0.1:
        return
    pen = ctx.pen
    for side in (-1, 1):
        hip_x = side * b.hw * 0.55
        knee_x = side * max(b.lw * 1.05, b.hw * 0.42)
        ank_x = side * max(b.lw * 0.8, b.hw * 0.32)
        lw = b.lw
        pts = [(hip_x - lw * 1.15, Y_HIP - 0.2), (hip_x + lw * 1.15, Y_HIP - 0.2),
               (knee_x + side * lw * 0.5 + lw * 0.4, Y_KNEE), (ank_x + lw * 0.55, Y_ANKLE),
               (ank_x - lw * 0.55, Y_ANKLE), (knee_x - lw * 0.85, Y_KNEE)]
        pts = b.sil(pts)
        if bare:
            pen.poly(pts, fill=ctx.skin)
            pen.poly(pts, outline=ctx.skin_line, width=0.012)
        else:
            _shade(ctx, pts, legs, _outline(legs), 0.014, b.X(hip_x), 0.07)
        fx = b.X(ank_x + side * 0.03)
        pen.ellipse(fx, Y_ANKLE + 0.1, lw * 0.95, 0.13, fill=shoes, outline=_outline(shoes), width=0.012)


def draw_hands(ctx: Ctx, wrist: Pt, r: float):
    pen = ctx.pen
    rx = r * 0.7 + 0.02
    pen.ellipse(wrist[0], wrist[1] + rx * 1.3, rx, rx * 1.65, fill=ctx.skin, outline=ctx.skin_line, width=0.01)


def draw_arms(ctx: Ctx, b: Body, fill, sleeve_w=1.0, cuff_colour=None, bare=False, stripe=None, cuff=1.0,
              sides=(-1, 1)):
    if ctx.view_bottom < Y_SHOULDER + 0.2:
        return
    pen = ctx.pen
    for side in sides:
        if b.side_view and side != b.near:
            continue
        pts, wrist, hr = b.arm(side, sleeve_w, cuff)
        col = ctx.skin if bare else fill
        _shade(ctx, pts, col, ctx.skin_line if bare else _outline(col), 0.012, wrist[0], 0.06)
        if stripe is not None:
            a = [pts[0], pts[1], pts[2], pts[3]]
            pen.line([((a[0][0] + a[1][0]) / 2, a[0][1] + 0.05), ((a[1][0] + a[2][0]) / 2 + side * 0.01, a[2][1]),
                      (a[3][0] + side * 0.02, a[3][1] - 0.02)], stripe, 0.03)
        if cuff_colour is not None:
            w0, w1 = pts[3], pts[4]
            pen.line([(w0[0], w0[1] - 0.04), (w1[0], w1[1] - 0.04)], cuff_colour, 0.06)
        draw_hands(ctx, wrist, hr)


def _neckline(ctx, b: Body, depth: float, width: float, fill):
    """A U/V opening at the neck showing skin (or `fill`)."""
    pts = [(-width, Y_NECK - 0.03), (-width * 0.6, Y_NECK + depth * 0.6), (0, Y_NECK + depth),
           (width * 0.6, Y_NECK + depth * 0.6), (width, Y_NECK - 0.03)]
    ctx.pen.poly(b.det(spline(pts, closed=False, n=3)), fill=fill)


def draw_neck(ctx: Ctx, b: Body):
    pen = ctx.pen
    nw = b.nw
    top = 0.28
    fl = ctx.ident.face_len
    if abs(ctx.yaw) > 1.3:  # profile: the neck rises forward from the shoulders to under the skull
        d = ctx.turn
        w = ctx.ident.face_w
        pts = [(ctx.hx - d * 0.2 * w, 0.2), (ctx.hx + d * 0.18 * w, 0.42), (b.X(0) + d * nw * 1.8, Y_NECK + 0.12),
               (b.X(0) - d * nw * 1.3, Y_NECK + 0.12)]
        sh = [(ctx.hx - d * 0.2 * w, 0.2), (ctx.hx + d * 0.2 * w, 0.44), (ctx.hx + d * 0.1 * w, 0.56),
              (ctx.hx - d * 0.12 * w, 0.46)]
    else:
        pts = [(ctx.hx - nw, top), (ctx.hx + nw, top), (b.X(0) + nw * b.wf * 1.15, Y_NECK + 0.1),
               (b.X(0) - nw * b.wf * 1.15, Y_NECK + 0.1)]
        sh = [(ctx.hx - nw * 1.1, top), (ctx.hx + nw * 1.1, top), (ctx.hx + nw * 1.05, 0.47 + 0.04 * fl),
              (ctx.hx, 0.56 + 0.05 * fl), (ctx.hx - nw * 1.05, 0.47 + 0.04 * fl)]
    pen.poly(pts, fill=ctx.skin, outline=ctx.skin_line, width=0.008)
    cel(ctx, pts, ctx.skin_sh, None, nw * 0.5)
    pen.poly(sh, fill=ctx.skin_sh)  # shadow under the jaw


def draw_near_shoulder(ctx: Ctx, b: Body, outfit_st: dict):
    """Over-the-shoulder shots: the near shoulder rises in the foreground, under the turned face."""
    sh = outfit_st.get("shoulder", {})
    fill = ctx.outfit.get(sh.get("fill", ""), ctx.skin)
    d = ctx.turn
    cx = ctx.hx + d * 0.42
    top = 0.62
    pts = spline([(cx - d * 0.55, 1.6), (cx - d * 0.5, top + 0.22), (cx - d * 0.2, top), (cx + d * 0.3, top + 0.03),
                  (cx + d * 0.7, top + 0.3), (cx + d * 0.85, 1.6)], closed=True, n=4)
    line = ctx.skin_line if fill == ctx.skin else _outline(fill)
    _shade(ctx, pts, fill, line, 0.012, cx, 0.12)
    trim = ctx.outfit.get(sh.get("trim", ""))
    if trim is not None:
        ctx.pen.line(spline([(cx - d * 0.45, top + 0.25), (cx - d * 0.15, top + 0.05), (cx + d * 0.3, top + 0.08),
                             (cx + d * 0.62, top + 0.33)], closed=False, n=3), trim, 0.03)
    seam = ctx.outfit.get(sh.get("seam", ""))
    if seam is not None:
        ctx.pen.line([(cx - d * 0.35, 1.6), (cx - d * 0.32, top + 0.2)], seam, 0.014)
