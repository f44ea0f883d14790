"""The head in side profile: outline, ear, side-view eye, brow, nostril, mouth, marks and age lines."""
from __future__ import annotations

import random

from .context import Ctx, styles
from .face import _age_amount
from .geometry import Pt, clamp_x, ellipse_pts, mix, mul, spline


def profile_outline(ctx: Ctx) -> list[Pt]:
    i = ctx.ident
    d, hx = ctx.turn, ctx.hx
    nl = i.nose_len
    fl = i.face_len
    lip = i.lip_full
    pts = [(-0.04, -0.53), (0.2, -0.47), (0.31, -0.32), (0.345, -0.12), (0.352, -0.04), (0.325, 0.035),
           (0.36 + 0.015 * nl, 0.13), (0.41 + 0.03 * nl * i.nose_w, 0.21 + 0.01 * nl), (0.37, 0.25),
           (0.345, 0.27), (0.352 + 0.012 * lip, 0.305 * fl), (0.332, 0.335 * fl), (0.345 + 0.012 * lip, 0.36 * fl),
           (0.315, 0.405 * fl), (0.33 + 0.02 * i.chin, 0.46 * fl), (0.29, 0.505 * fl), (0.15, 0.5 * fl),
           (0.0 - 0.04 * i.jaw, 0.42), (-0.1, 0.3), (-0.25, 0.28), (-0.42, 0.1), (-0.47, -0.12), (-0.4, -0.36),
           (-0.23, -0.5)]
    w = i.face_w
    return spline([(hx + d * x * w, y) for x, y in pts], closed=True, n=3)


def draw_face_profile(ctx: Ctx):
    pen, e, i = ctx.pen, ctx.expr, ctx.ident
    d, hx, w = ctx.turn, ctx.hx, ctx.ident.face_w
    out = profile_outline(ctx)
    pen.poly(out, fill=ctx.skin)
    pen.poly(clamp_x(out, lambda y: hx - d * 0.05, -d), fill=ctx.skin_sh) if ctx.light_side == -d else None
    pen.poly(out, outline=ctx.skin_line, width=0.01)

    def P(x, y):
        return (hx + d * x * w, y)

    # ear
    ex, ey = P(-0.07, 0.08)
    rx, ry = 0.055 * i.ear_size, 0.095 * i.ear_size
    if ctx.fantasy:
        pts = spline([P(-0.03, 0.0), P(-0.2, -0.16), P(-0.12, 0.04), P(-0.1, 0.17), P(-0.03, 0.16)], n=3)
        pen.poly(pts, fill=ctx.skin, outline=ctx.skin_line, width=0.008)
    else:
        pen.ellipse(ex, ey, rx, ry, fill=ctx.skin, outline=ctx.skin_line, width=0.008)
    pen.line([P(-0.05, 0.03), P(-0.1, 0.07), P(-0.06, 0.13)], ctx.skin_sh, 0.014)
    # eye (side view)
    cx, cy = P(0.265, 0.045)
    line = (46, 30, 32)
    if e.get("closed"):
        pen.line([P(0.22, 0.04), P(0.26, 0.025), P(0.3, 0.04)], line, 0.016)
    else:
        op = 1 - e.get("lid_upper", 0.1)
        up = [P(0.215, 0.04), P(0.25, 0.04 - 0.035 * op), P(0.3, 0.03 - 0.015 * op), P(0.305, 0.045)]
        lo = [P(0.295, 0.062), P(0.25, 0.068), P(0.215, 0.05)]
        eye = spline(up + lo, closed=True, n=3)
        pen.poly(eye, fill=(250, 248, 246))
        gx = e.get("gaze", (0, 0))[1]
        ix, iy = P(0.272, 0.045 + 0.008 * gx)
        r = 0.038 * i.eye_size * e.get("iris", 1.0)
        top_y = min(y for _, y in eye)
        bot_y = max(y for _, y in eye)
        xmin, xmax = min(x for x, _ in eye), max(x for x, _ in eye)

        def clip(pts):
            return [(min(max(x, xmin), xmax), min(max(y, top_y), bot_y)) for x, y in pts]

        pen.poly(clip(ellipse_pts(ix, iy, r * 0.55, r, 0, 16)), fill=mul(ctx.eye, 0.6))
        pen.poly(clip(ellipse_pts(ix, iy, r * 0.45, r * 0.82, 0, 16)), fill=ctx.eye)
        pen.poly(clip(ellipse_pts(ix + d * 0.004, iy, r * 0.2, r * 0.4, 0, 12)), fill=mul(ctx.eye, 0.2))
        pen.ellipse(ix + d * 0.008, iy - r * 0.35, r * 0.16, r * 0.16, fill=(255, 255, 255))
        pen.line(spline(up, closed=False, n=3) + [P(0.2, 0.025 - 0.01 * i.lashes)], line, 0.014)
    by = -0.03 + e.get("brow_inner", 0) * 0.6 + e.get("brow_outer", 0) * 0.4
    pen.line([P(0.2, by + 0.008), P(0.26, by - 0.012 - 0.01 * i.brow_arch),
              P(0.33, by - 0.004 + e.get("brow_inner", 0) * 0.5)],
             mix(mul(ctx.hair, 0.7), (40, 30, 30), 0.45), 0.02 * i.brow_thick)
    pen.line([P(0.37, 0.245), P(0.345, 0.228)], ctx.skin_line, 0.008)  # nostril
    if e.get("blush", 0) > 0:
        bx, by2 = P(0.2, 0.17)
        pen.ellipse(bx, by2, 0.05, 0.028, fill=mix(ctx.skin, styles()["blush"], 0.4 * e["blush"]))
    m = e.get("mouth", "neutral")
    mx, my = P(0.335, 0.335 * i.face_len)
    lipc = mul(ctx.lip, 0.55)
    profile_mouths = {
        "neutral": lambda: pen.line([P(0.345, 0.335), P(0.3, 0.34)], lipc, 0.01),
        "smile": lambda: pen.line([P(0.345, 0.335), P(0.29, 0.325)], lipc, 0.012),
        "laugh": lambda: pen.poly([P(0.36, 0.32), P(0.28, 0.325), P(0.34, 0.39)], fill=(110, 30, 44)),
        "sad": lambda: pen.line([P(0.345, 0.335), P(0.3, 0.35)], lipc, 0.011),
        "oh": lambda: pen.ellipse(mx + d * 0.01, my, 0.012, 0.022, fill=(110, 34, 46)),
        "angry": lambda: pen.line([P(0.345, 0.338), P(0.3, 0.348)], lipc, 0.014),
        "side": lambda: pen.line([P(0.345, 0.335), P(0.31, 0.33)], lipc, 0.01),
    }
    profile_mouths.get(m, profile_mouths["neutral"])()
    if i.mark == "mole":
        pen.ellipse(*P(0.22, 0.28 + 0.1 * i.mark_y), 0.01, 0.01, fill=(70, 40, 34))
    elif i.mark == "freckles":
        r0 = random.Random(f"freckles:{i.seed}")
        for _ in range(8):
            pen.ellipse(*P(r0.uniform(0.18, 0.33), r0.uniform(0.12, 0.2)), 0.005, 0.005,
                        fill=mix(ctx.skin, (120, 60, 30), 0.45))
    elif i.mark == "scar" and i.mark_x * d > 0:
        pen.line([P(0.22, -0.05), P(0.26, 0.1)], mix(ctx.skin, (160, 60, 70), 0.4), 0.012)
    a = _age_amount(ctx)
    if a > 0:
        col = mix(ctx.skin, mul(ctx.skin, 0.7), 0.5 + 0.5 * a)
        pen.line([P(0.2, 0.05), P(0.17, 0.08)], col, 0.007)
        pen.line([P(0.3, 0.24), P(0.27, 0.3), P(0.29, 0.36)], col, 0.007)
