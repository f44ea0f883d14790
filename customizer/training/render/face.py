"""The head from the front or three-quarter: face outline, ears, nose, age lines, marks, and
`draw_face_front`, which puts them together with the eyes, brows and expression mouth."""
from __future__ import annotations

import math
import random

from .context import Ctx, cel, styles
from .eyes import _eye_geom, draw_brow, draw_eye
from .geometry import Pt, ellipse_pts, mix, mul, spline
from .mouths import MOUTHS, _mouth_frame


def face_outline(ctx: Ctx) -> list[Pt]:
    i, fw = ctx.ident, ctx.fw
    fl = i.face_len
    jaw_w = 0.74 + 0.16 * i.jaw
    chin_w = 0.22 + 0.18 * i.chin
    ctrl = [  # (x, y, z_far, z_near) for the right side (x > 0), top to chin
        (0.0, -0.52, 0.0, 0.0),
        (fw * 0.7, -0.43, 0.1, -0.25),
        (fw * 0.98, -0.24, 0.3, -0.35),
        (fw * (1.0 + 0.04 * i.cheek), 0.03, 0.38, -0.32),
        (fw * (0.93 + 0.04 * i.jaw), 0.2 * fl, 0.38, -0.3),
        (fw * jaw_w, 0.36 * fl, 0.4, -0.2),
        (fw * chin_w, 0.475 * fl, 0.72, 0.55),
        (0.0, 0.5 * fl, 0.85, 0.85),
    ]
    ca, sa = math.cos(ctx.yaw), math.sin(ctx.yaw)
    far = 1 if ctx.yaw >= 0 else -1
    pts = []
    for side in (1, -1):
        seq = ctrl if side == 1 else list(reversed(ctrl))
        for x, y, zf, zn in seq:
            if x == 0.0 and side == -1:
                continue
            z = (zf if side == far else zn) * fw
            pts.append((ctx.hx + side * x * ca + z * sa, y))
    pts = pts[:-1] if pts[-1] == pts[0] else pts
    # ctrl goes top -> chin on the right, then chin -> top on the left: drop the duplicated chin
    clean = []
    for p in pts:
        if not clean or abs(p[0] - clean[-1][0]) + abs(p[1] - clean[-1][1]) > 1e-9:
            clean.append(p)
    return spline(clean, closed=True, n=4)


def draw_ears(ctx: Ctx, front_layer: bool):
    """Ears: behind the face seen from the front; the near ear over the face edge when turned."""
    i, pen, fw = ctx.ident, ctx.pen, ctx.fw
    turned = abs(ctx.yaw) > 0.2
    if front_layer != turned:
        return
    ca, sa = math.cos(ctx.yaw), math.sin(ctx.yaw)
    elf = ctx.fantasy > 0
    for side in (-1, 1):
        if turned and side == (1 if ctx.yaw > 0 else -1):
            continue  # far ear hidden
        z = -0.25 * fw if turned else 0.0
        ex = ctx.hx + side * (fw * 0.98) * ca + z * sa
        ey = 0.08
        rx, ry = 0.055 * i.ear_size, 0.1 * i.ear_size
        cx = ex + side * rx * (0.55 if not turned else 0.1)
        if elf:
            pts = [(cx - side * rx * 0.6, ey - ry * 0.6), (cx + side * rx * 3.0, ey - ry * 2.2),
                   (cx + side * rx * 0.9, ey - ry * 0.1), (cx + side * rx * 0.6, ey + ry * 0.8),
                   (cx - side * rx * 0.3, ey + ry * 0.9)]
            pts = spline(pts, closed=True, n=3)
        else:
            pts = ellipse_pts(cx, ey, rx, ry, side * -0.15, 16)
        pen.poly(pts, fill=ctx.skin, outline=ctx.skin_line, width=0.008)
        pen.line([(cx + side * rx * 0.1, ey - ry * 0.5), (cx + side * rx * 0.4, ey), (cx, ey + ry * 0.5)],
                 ctx.skin_sh, 0.014)


def draw_nose(ctx: Ctx):
    i, pen = ctx.ident, ctx.pen
    ny = 0.2 + 0.035 * i.nose_len
    nw = 0.03 * i.nose_w
    tx, ty = ctx.hp(0.0, ny, 1.05)
    s = ctx.light_side
    if abs(ctx.yaw) > 0.2:
        d = 1 if ctx.yaw > 0 else -1
        bridge = [ctx.hp(d * 0.035, 0.06, 1.05), (tx + d * 0.025, ty - 0.01), (tx + d * 0.01, ty + 0.012),
                  (tx - d * nw * 0.6, ty + 0.01)]
        pen.line(bridge, ctx.skin_line, 0.008)
    else:
        pen.poly([(tx + s * nw * 0.2, ty - 0.07), (tx + s * nw * 1.0, ty + 0.005), (tx, ty + 0.012)],
                 fill=ctx.skin_sh)
        pen.line([(tx - nw * 0.7, ty + 0.005), (tx, ty + 0.014), (tx + nw * 0.7, ty + 0.005)], ctx.skin_line, 0.008)


def _age_amount(ctx: Ctx) -> float:
    """0 below age_lines_from, rising to 1 at age_lines_full (render_styles.yaml)."""
    st = styles()["hair_shading"]
    lo, hi = st["age_lines_from"], st["age_lines_full"]
    age = int(ctx.attrs["age"])
    return 0.0 if age < lo else min(1.0, 0.25 + 0.75 * (age - lo) / (hi - lo))


def draw_age(ctx: Ctx):
    a = _age_amount(ctx)
    if a <= 0:
        return
    pen, col = ctx.pen, mix(ctx.skin, mul(ctx.skin, 0.7), 0.5 + 0.5 * a)
    w = 0.006 + 0.002 * a
    for side in (-1, 1):
        cx, cy, hw, *_ = _eye_geom(ctx, side)
        ox = cx + side * hw * 1.15
        for k in range(1 + int(a * 2.5)):  # crow's feet
            pen.line([(ox, cy - 0.01 + k * 0.016), (ox + side * 0.035, cy - 0.02 + k * 0.024)], col, w)
        # nasolabial folds
        pen.line([ctx.hp(side * 0.06, 0.22), ctx.hp(side * 0.095, 0.3), ctx.hp(side * 0.1, 0.37)], col, w)
        pen.line([ctx.hp(side * 0.05, 0.105), ctx.hp(side * 0.12, 0.12)], col, w * 0.8)  # under-eye
    if a > 0.45:
        for k in range(2):  # forehead
            y = -0.2 + k * 0.03
            pen.line([ctx.hp(-0.12, y), ctx.hp(0, y - 0.006), ctx.hp(0.12, y)], col, w)


def draw_marks(ctx: Ctx):
    i, pen = ctx.ident, ctx.pen
    kind = i.mark
    if kind == "freckles":
        r = random.Random(f"freckles:{i.seed}")
        col = mix(ctx.skin, (120, 60, 30), 0.45)
        for _ in range(16):
            side = r.choice((-1, 1))
            x = side * r.uniform(0.06, 0.23)
            y = r.uniform(0.1, 0.22) - 0.08 * (abs(x) - 0.06)
            px, py = ctx.hp(x, y)
            rr = r.uniform(0.004, 0.0075)
            pen.ellipse(px, py, rr, rr, fill=col)
    elif kind == "mole":
        x = (0.1 + 0.12 * abs(i.mark_x)) * (1 if i.mark_x >= 0 else -1)
        px, py = ctx.hp(x, 0.25 + 0.15 * i.mark_y)
        pen.ellipse(px, py, 0.011, 0.011, fill=(70, 40, 34))
    elif kind == "scar":
        side = 1 if i.mark_x >= 0 else -1
        x0 = side * (0.1 + 0.08 * abs(i.mark_x))
        y0 = -0.07 + 0.05 * i.mark_y
        pts = [ctx.hp(x0 - 0.02, y0 - 0.04), ctx.hp(x0 + 0.015, y0 + 0.09)]
        pen.line(pts, mix(ctx.skin, (160, 60, 70), 0.4), 0.012)
        pen.line(pts, mix(ctx.skin, (255, 240, 240), 0.35), 0.005)


def draw_face_front(ctx: Ctx):
    pen, e = ctx.pen, ctx.expr
    draw_ears(ctx, front_layer=False)
    out = face_outline(ctx)
    pen.poly(out, fill=ctx.skin)
    cel(ctx, out, ctx.skin_sh, ctx.hx, 0.06)
    pen.poly(out, outline=ctx.skin_line, width=0.01)
    draw_ears(ctx, front_layer=True)
    blush = e.get("blush", 0.0)
    if blush > 0:
        for side in (-1, 1):
            bx, by = ctx.hp(side * 0.2, 0.17)
            pen.ellipse(bx, by, 0.065 * max(0.5, math.cos(ctx.yaw)), 0.032,
                        fill=mix(ctx.skin, styles()["blush"], 0.4 * blush))
    if ctx.detail >= 30:  # marks and lines are sub-pixel on a full-body figure
        draw_marks(ctx)
        draw_age(ctx)
    draw_nose(ctx)
    for side in (-1, 1):
        draw_eye(ctx, side)
        draw_brow(ctx, side)
    mx, my, mw = _mouth_frame(ctx)
    MOUTHS[e.get("mouth", "neutral")](ctx, mx, my, mw)
