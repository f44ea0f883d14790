"""Outfit painters: one `outfit_*` per outfit style, each drawing legs, torso, details and arms over a `Body`.

Every painter is called twice: stage "pre" (behind the neck, e.g. a hood) and stage "main".
"""
from __future__ import annotations

import math
from typing import Callable

from .body import (Y_ANKLE, Y_ARMPIT, Y_CROTCH, Y_HIP, Y_KNEE, Y_NECK, Y_SHOULDER, Y_WAIST, Body, _neckline,
                   _outline, _shade, draw_arms, draw_legs)
from .context import Ctx, cel
from .geometry import ellipse_pts, mix, mul, spline


def outfit_casual(ctx: Ctx, b: Body, stage: str):
    p, pen = ctx.outfit, ctx.pen
    if stage == "pre":
        return
    draw_legs(ctx, b, p["legs"], p["shoes"])
    _shade(ctx, b.torso(top_pad=0.02), p["jacket"], _outline(p["jacket"]), 0.01, b.bx, 0.2)
    if b.front:
        # the t-shirt showing between the open jacket fronts
        tee = [(-b.nw * 1.5, Y_NECK - 0.02), (b.nw * 1.5, Y_NECK - 0.02), (b.cw * 0.36, Y_ARMPIT),
               (b.hw * 0.42, Y_CROTCH - 0.12), (-b.hw * 0.42, Y_CROTCH - 0.12), (-b.cw * 0.36, Y_ARMPIT)]
        pen.poly(b.det(tee, 0.45), fill=p["top"])
        cel(ctx, b.det(tee, 0.45), mul(p["top"], 0.88), None, 0.06)
        _neckline(ctx, b, 0.09, b.nw * 1.25, ctx.skin)
        pen.line(b.det(spline([(-b.nw * 1.3, Y_NECK - 0.02), (0, Y_NECK + 0.1), (b.nw * 1.3, Y_NECK - 0.02)],
                              closed=False, n=3)), mul(p["top"], 0.82), 0.022)
        for side in (-1, 1):  # lapels / collar of the jacket
            lapel = [(side * b.nw * 1.45, Y_NECK - 0.06), (side * b.nw * 2.7, Y_NECK + 0.06),
                     (side * b.nw * 2.35, Y_NECK + 0.2), (side * b.cw * 0.52, Y_ARMPIT + 0.05),
                     (side * b.cw * 0.36, Y_ARMPIT)]
            pen.poly(b.det(lapel, 0.45), fill=mul(p["jacket"], 0.86), outline=_outline(p["jacket"]), width=0.009)
            pen.line(b.det([(side * b.cw * 0.36, Y_ARMPIT), (side * b.hw * 0.42, Y_CROTCH - 0.12)], 0.45),
                     _outline(p["jacket"]), 0.01)
            for k in range(2):  # seams and a pocket
                pen.line(b.det([(side * b.cw * 0.66, Y_ARMPIT + 0.1 + k * 0.5),
                                (side * b.cw * 0.66, Y_ARMPIT + 0.32 + k * 0.5)], 0.3),
                         mix(p["jacket"], (255,) * 3, 0.3), 0.008)
            pen.line(b.det([(side * b.cw * 0.45, Y_WAIST + 0.15), (side * b.cw * 0.8, Y_WAIST + 0.12)], 0.3),
                     _outline(p["jacket"]), 0.01)
    else:
        pen.line(b.det([(0, Y_NECK + 0.05), (0, Y_CROTCH - 0.2)]), mul(p["jacket"], 0.8), 0.01)
        pen.line(b.det([(-b.nw * 1.6, Y_NECK + 0.02), (b.nw * 1.6, Y_NECK + 0.02)]), mul(p["jacket"], 0.75), 0.06)
    draw_arms(ctx, b, p["jacket"], cuff_colour=mul(p["jacket"], 0.8))


def outfit_formal(ctx: Ctx, b: Body, stage: str):
    p, pen = ctx.outfit, ctx.pen
    if stage == "pre":
        return
    draw_legs(ctx, b, p["legs"], p["shoes"])
    _shade(ctx, b.torso(top_pad=0.02), p["suit"], _outline(p["suit"]), 0.01, b.bx, 0.2, k=0.75)
    if b.front:
        vd = 0.72
        shirt = [(-b.nw * 1.3, Y_NECK - 0.04), (b.nw * 1.3, Y_NECK - 0.04), (b.nw * 0.9, Y_NECK + vd * 0.5),
                 (0, Y_NECK + vd), (-b.nw * 0.9, Y_NECK + vd * 0.5)]
        pen.poly(b.det(shirt), fill=p["shirt"], outline=mul(p["shirt"], 0.7), width=0.006)
        for side in (-1, 1):  # collar points
            pen.poly(b.det([(side * b.nw * 1.25, Y_NECK - 0.05), (side * b.nw * 0.15, Y_NECK + 0.1),
                            (side * b.nw * 1.1, Y_NECK + 0.12)]), fill=mul(p["shirt"], 0.92),
                     outline=mul(p["shirt"], 0.6), width=0.006)
        tie = [(-0.04, Y_NECK + 0.06), (0.04, Y_NECK + 0.06), (0.03, Y_NECK + 0.12), (0.065, Y_NECK + vd * 0.95),
               (0, Y_NECK + vd * 1.05), (-0.065, Y_NECK + vd * 0.95), (-0.03, Y_NECK + 0.12)]
        pen.poly(b.det(tie), fill=p["tie"], outline=_outline(p["tie"]), width=0.006)
        pen.line(b.det([(-0.02, Y_NECK + 0.3), (0.04, Y_NECK + 0.25)]), mul(p["tie"], 0.75), 0.012)
        for side in (-1, 1):  # lapels
            lap = [(side * b.nw * 1.35, Y_NECK - 0.04), (side * b.nw * 2.7, Y_NECK + 0.1),
                   (side * b.nw * 2.1, Y_NECK + 0.28), (side * b.nw * 2.6, Y_NECK + 0.34),
                   (side * 0.02, Y_NECK + vd + 0.02), (side * b.nw * 0.95, Y_NECK + vd * 0.5)]
            pen.poly(b.det(lap), fill=mul(p["suit"], 1.25), outline=_outline(p["suit"]), width=0.008)
        pen.poly(b.det([(0, Y_NECK + vd), (0.03, Y_NECK + vd + 0.02), (0, Y_WAIST)]), fill=mul(p["suit"], 0.6))
        for k in range(2):
            pen.ellipse(*b.det([(0.05, Y_NECK + vd + 0.15 + k * 0.3)])[0], 0.022, 0.022, fill=mul(p["suit"], 0.55))
        pen.poly(b.det([(b.cw * 0.5, Y_ARMPIT + 0.05), (b.cw * 0.8, Y_ARMPIT + 0.02), (b.cw * 0.78, Y_ARMPIT + 0.1),
                        (b.cw * 0.52, Y_ARMPIT + 0.1)]), fill=p["shirt"])  # pocket square
    else:
        pen.line(b.det([(-b.nw * 1.4, Y_NECK), (b.nw * 1.4, Y_NECK)]), p["shirt"], 0.04)
        pen.line(b.det([(0, Y_NECK + 0.1), (0, Y_CROTCH - 0.2)]), mul(p["suit"], 0.7), 0.01)
    draw_arms(ctx, b, p["suit"], cuff_colour=p["shirt"])


def outfit_dress(ctx: Ctx, b: Body, stage: str):
    p, pen = ctx.outfit, ctx.pen
    if stage == "pre":
        return
    skirt_end = Y_KNEE + 0.35
    draw_legs(ctx, b, ctx.skin, p["shoes"], bare=True)
    top = Y_NECK + 0.36
    bod = [(-b.cw * 0.98, top + 0.1), (-b.cw * 0.5, top - 0.02), (0, top + 0.12), (b.cw * 0.5, top - 0.02),
           (b.cw * 0.98, top + 0.1), (b.ww, Y_WAIST), (b.hw + 0.1, Y_HIP),
           (b.hw + 0.35, skirt_end), (-(b.hw + 0.35), skirt_end), (-(b.hw + 0.1), Y_HIP), (-b.ww, Y_WAIST)]
    sk = b.torso()  # skin torso underneath (shoulders, chest above the neckline)
    _shade(ctx, sk, ctx.skin, ctx.skin_line, 0.01, b.bx, 0.2, k=0.9)
    pts = spline(bod[:5], closed=False, n=3) + bod[5:]
    pts = b.det(pts, 0.25) if (b.front or b.back) else b.sil(pts)
    _shade(ctx, pts, p["dress"], _outline(p["dress"]), 0.01, b.bx, 0.2)
    for side in (-1, 1):  # straps
        pen.line(b.det([(side * b.cw * 0.55, top), (side * b.sw * 0.6, Y_NECK + 0.09)], 0.25), p["dress"], 0.035)
    pen.line(b.det([(-b.ww, Y_WAIST), (b.ww, Y_WAIST)], 0.3), p["trim"], 0.04)
    if ctx.view_bottom > Y_WAIST + 0.3:
        for k in (-1, 0, 1):
            pen.line(b.det([(k * b.hw * 0.35, Y_WAIST + 0.1), (k * b.hw * 0.7, skirt_end - 0.05)], 0.2),
                     mul(p["dress"], 0.75), 0.012)
    if b.front:  # necklace
        pen.line(b.det(spline([(-b.nw * 1.3, Y_NECK), (0, Y_NECK + 0.2), (b.nw * 1.3, Y_NECK)], closed=False, n=4)),
                 p["trim"], 0.012)
        px, py = b.det([(0, Y_NECK + 0.22)])[0]
        pen.ellipse(px, py, 0.03, 0.035, fill=p["trim"], outline=mul(p["trim"], 0.6), width=0.006)
    draw_arms(ctx, b, ctx.skin, bare=True)


def outfit_sporty(ctx: Ctx, b: Body, stage: str):
    p, pen = ctx.outfit, ctx.pen
    if stage == "pre":
        return
    draw_legs(ctx, b, p["legs"], p["shoes"])
    _shade(ctx, b.torso(top_pad=0.03), p["top"], _outline(p["top"]), 0.01, b.bx, 0.2)
    # stand-up collar
    col = [(-b.nw * 1.25, Y_NECK - 0.12), (b.nw * 1.25, Y_NECK - 0.12), (b.nw * 1.45, Y_NECK + 0.06),
           (-b.nw * 1.45, Y_NECK + 0.06)]
    pen.poly(b.det(col), fill=mul(p["top"], 0.9), outline=_outline(p["top"]), width=0.008)
    for side in (-1, 1):  # shoulder stripes
        for k in (0, 1):
            off = 0.045 * k
            pen.line(b.det([(side * (b.nw * 1.5 + off * 0.3), Y_NECK + 0.04 + off),
                            (side * (b.sw * 0.8), Y_NECK + 0.12 + off), (side * (b.sw - 0.01), Y_SHOULDER + 0.1 + off)],
                           0.2), p["stripe"], 0.022)
    if b.front:
        pen.line(b.det([(0, Y_NECK - 0.1), (0, Y_CROTCH - 0.15)]), mul(p["top"], 0.45), 0.014)
        zx, zy = b.det([(0, Y_NECK + 0.2)])[0]
        pen.rect(zx - 0.02, zy, zx + 0.02, zy + 0.07, fill=(220, 220, 226))
        for side in (-1, 1):
            pen.line(b.det([(side * b.cw * 0.55, Y_ARMPIT + 0.2), (side * b.ww * 0.7, Y_WAIST + 0.3)]),
                     p["stripe"], 0.02)
        lx, ly = b.det([(b.cw * 0.45, Y_ARMPIT)])[0]  # logo
        pen.poly([(lx - 0.05, ly), (lx + 0.05, ly - 0.035), (lx, ly + 0.02)], fill=p["stripe"])
    draw_arms(ctx, b, p["top"], stripe=p["stripe"], cuff_colour=mul(p["top"], 0.7))


def outfit_hoodie(ctx: Ctx, b: Body, stage: str):
    p, pen = ctx.outfit, ctx.pen
    if stage == "pre":
        if b.front:  # the hood lies behind the neck
            hood = [(-b.nw * 2.6, Y_NECK + 0.15), (-b.nw * 2.3, Y_NECK - 0.2), (0, Y_NECK - 0.3),
                    (b.nw * 2.3, Y_NECK - 0.2), (b.nw * 2.6, Y_NECK + 0.15)]
            pts = b.sil(spline(hood, closed=False, n=3))
            pen.poly(pts, fill=p["inner"], outline=_outline(p["top"]), width=0.01)
        elif not b.back:  # side view: the hood bunches behind the neck
            hx = b.X(0) - ctx.turn * (b.nw + 0.12)
            pen.ellipse(hx, Y_NECK - 0.02, 0.2, 0.17, fill=p["top"], outline=_outline(p["top"]), width=0.01)
            pen.ellipse(hx + ctx.turn * 0.04, Y_NECK - 0.02, 0.1, 0.09, fill=p["inner"])
        return
    draw_legs(ctx, b, p["legs"], p["shoes"])
    _shade(ctx, b.torso(flare=-0.05, top_pad=0.03), p["top"], _outline(p["top"]), 0.01, b.bx, 0.2)
    if b.front:
        rim = [(-b.nw * 2.4, Y_NECK - 0.05), (-b.nw * 1.3, Y_NECK + 0.22), (0, Y_NECK + 0.3),
               (b.nw * 1.3, Y_NECK + 0.22), (b.nw * 2.4, Y_NECK - 0.05)]
        pen.line(b.det(spline(rim, closed=False, n=3), 0.3), mul(p["top"], 0.85), 0.08)
        _neckline(ctx, b, 0.2, b.nw * 1.3, ctx.skin)
        for side in (-1, 1):  # drawstrings
            s0 = b.det([(side * b.nw * 0.7, Y_NECK + 0.25)])[0]
            s1 = b.det([(side * b.nw * 0.85, Y_NECK + 0.7)])[0]
            pen.line([s0, s1], p["string"], 0.018)
            pen.ellipse(s1[0], s1[1] + 0.03, 0.016, 0.035, fill=mul(p["string"], 0.8))
        pocket = [(-b.ww * 0.7, Y_WAIST), (b.ww * 0.7, Y_WAIST), (b.ww * 0.85, Y_HIP), (-b.ww * 0.85, Y_HIP)]
        pen.poly(b.det(pocket), fill=mul(p["top"], 0.93), outline=_outline(p["top"]), width=0.01)
        pen.rect(-b.hw - 0.05, Y_HIP + 0.2, b.hw + 0.05, Y_HIP + 0.27, fill=mul(p["top"], 0.85))
    else:
        hood = [(-b.nw * 2.2, Y_NECK - 0.05), (b.nw * 2.2, Y_NECK - 0.05), (b.nw * 1.4, Y_NECK + 0.55),
                (0, Y_NECK + 0.68), (-b.nw * 1.4, Y_NECK + 0.55)]
        pts = b.det(spline(hood, closed=True, n=3), 0.3)
        _shade(ctx, pts, mul(p["top"], 0.95), _outline(p["top"]), 0.012, b.bx, 0.12)
    draw_arms(ctx, b, p["top"], cuff_colour=mul(p["top"], 0.85))


def outfit_armour(ctx: Ctx, b: Body, stage: str):
    p, pen = ctx.outfit, ctx.pen
    if stage == "pre":
        return
    draw_legs(ctx, b, p["legs"], p["shoes"])
    _shade(ctx, b.torso(top_pad=0.05), p["metal"], _outline(p["dark"]), 0.012, b.bx, 0.2, k=0.7)
    if b.front or b.back:
        for k in range(4):  # lames
            y = Y_ARMPIT + 0.25 + k * 0.22
            pen.line(b.det([(-b.half(y) * 0.95, y), (0, y + 0.06), (b.half(y) * 0.95, y)], 0.5), p["dark"], 0.014)
        if b.front:
            pen.line(b.det([(0, Y_NECK + 0.15), (0, Y_WAIST)], 0.5), mix(p["metal"], (255,) * 3, 0.5), 0.02)
            hx, hy = b.det([(-b.cw * 0.45, Y_ARMPIT)], 0.5)[0]
            pen.ellipse(hx, hy, 0.1, 0.18, fill=mix(p["metal"], (255, 255, 255), 0.35))  # specular
            gx, gy = b.det([(0, Y_NECK + 0.35)])[0]
            pen.ellipse(gx, gy, 0.06, 0.06, fill=ctx.jewel if ctx.fantasy else p["trim"], outline=p["trim"],
                        width=0.012)
    gorget = [(-b.nw * 1.5, Y_NECK - 0.1), (b.nw * 1.5, Y_NECK - 0.1), (b.nw * 2.0, Y_NECK + 0.12),
              (-b.nw * 2.0, Y_NECK + 0.12)]
    pen.poly(b.det(gorget), fill=mul(p["metal"], 0.9), outline=p["trim"], width=0.014)
    draw_arms(ctx, b, mul(p["metal"], 0.9), cuff_colour=p["trim"])
    for side in (-1, 1):  # pauldrons: overlapping curved lames, the top one last
        if b.side_view and side != b.near:
            continue
        cx = b.X(side * (b.sw - 0.06), 0.0) if b.side_view else b.X(side * (b.sw - 0.06))
        plates = ((0.22, 0.12, 0.2), (0.25, 0.13, 0.1), (0.28, 0.2, 0.0))
        for k, (rx, ry, dy) in enumerate(plates):
            y0 = Y_SHOULDER - 0.04 + dy
            top = ellipse_pts(cx + side * 0.03, y0, rx, ry, 0.0, 14, math.pi, 2 * math.pi)
            bottom = [(cx + side * 0.03 + rx * 0.95, y0 + 0.07), (cx + side * 0.03, y0 + 0.1),
                      (cx + side * 0.03 - rx * 0.95, y0 + 0.07)]
            pts = top + bottom
            pen.poly(pts, fill=mul(p["metal"], 0.86 + 0.07 * k), outline=p["trim"], width=0.012)
        pen.line(ellipse_pts(cx + side * 0.03, Y_SHOULDER - 0.04, 0.2, 0.13, 0.0, 6, math.pi * 1.2, math.pi * 1.55),
                 mix(p["metal"], (255, 255, 255), 0.55), 0.02)
        for k in (-1, 0, 1):
            pen.ellipse(cx + side * 0.03 + k * 0.14, Y_SHOULDER + 0.02 - abs(k) * 0.03, 0.016, 0.016, fill=p["trim"])


def outfit_robe(ctx: Ctx, b: Body, stage: str):
    p, pen = ctx.outfit, ctx.pen
    if stage == "pre":
        return
    floor = Y_ANKLE + 0.1
    if ctx.view_bottom > Y_CROTCH:
        for side in (-1, 1):
            fx = b.X(side * b.lw * 1.0)
            pen.ellipse(fx, Y_ANKLE + 0.12, b.lw, 0.1, fill=p["shoes"])
    _shade(ctx, b.torso(bottom=floor, flare=0.35, top_pad=0.02), p["robe"], _outline(p["robe"]), 0.01, b.bx, 0.2)
    if b.front:
        _neckline(ctx, b, 0.32, b.nw * 1.2, ctx.skin)
        for side in (-1, 1):  # crossed collar bands
            band = [(side * b.nw * 1.3, Y_NECK - 0.04), (-side * 0.12, Y_NECK + 0.62), (-side * 0.3, Y_WAIST - 0.05)]
            pen.line(b.det(band), p["trim"], 0.07)
        pen.line(b.det([(-0.3, Y_WAIST - 0.05), (-0.15, floor)], 0.3), mul(p["robe"], 0.7), 0.014)
        pen.line(b.det([(-b.ww - 0.02, Y_WAIST - 0.02), (b.ww + 0.02, Y_WAIST - 0.02)], 0.4), p["sash"], 0.16)
        kx, ky = b.det([(b.ww * 0.3, Y_WAIST)], 0.4)[0]
        pen.poly([(kx, ky), (kx + 0.08, ky + 0.35), (kx - 0.02, ky + 0.33)], fill=mul(p["sash"], 0.85))
    else:
        pen.line(b.det([(-b.nw * 1.5, Y_NECK), (b.nw * 1.5, Y_NECK)]), p["trim"], 0.06)
        pen.line(b.det([(-b.ww - 0.02, Y_WAIST), (b.ww + 0.02, Y_WAIST)], 0.4), p["sash"], 0.14)
    draw_arms(ctx, b, p["robe"], sleeve_w=1.8, cuff=2.2, cuff_colour=p["trim"])


def outfit_uniform(ctx: Ctx, b: Body, stage: str):
    p, pen = ctx.outfit, ctx.pen
    if stage == "pre":
        return
    draw_legs(ctx, b, p["legs"], p["shoes"])
    _shade(ctx, b.torso(top_pad=0.02), p["top"], _outline(p["top"]), 0.01, b.bx, 0.2)
    if b.front:
        _neckline(ctx, b, 0.16, b.nw * 1.1, ctx.skin)
        for side in (-1, 1):  # pointed collar
            pen.poly(b.det([(side * b.nw * 1.15, Y_NECK - 0.06), (side * b.nw * 0.3, Y_NECK + 0.18),
                            (side * b.nw * 2.3, Y_NECK + 0.16)]), fill=p["collar"], outline=_outline(p["top"]),
                     width=0.008)
            for _k in (0,):  # chest pockets with flaps
                px0 = side * b.cw * 0.25
                px1 = side * b.cw * 0.7
                pk = [(px0, Y_ARMPIT - 0.05), (px1, Y_ARMPIT - 0.05), (px1, Y_ARMPIT + 0.25), (px0, Y_ARMPIT + 0.25)]
                pen.poly(b.det(pk), outline=_outline(p["top"]), width=0.01)
                pen.poly(b.det(pk[:2] + [(px1, Y_ARMPIT + 0.04), (px0, Y_ARMPIT + 0.04)]), fill=mul(p["top"], 0.85))
        pen.line(b.det([(0, Y_NECK + 0.16), (0, Y_CROTCH - 0.1)]), mul(p["top"], 0.6), 0.012)
        wx, wy = b.det([(-b.cw * 0.47, Y_ARMPIT - 0.16)])[0]  # pilot wings
        pen.poly([(wx - 0.15, wy - 0.03), (wx, wy + 0.02), (wx + 0.15, wy - 0.03), (wx + 0.1, wy + 0.035),
                  (wx, wy + 0.05), (wx - 0.1, wy + 0.035)], fill=p["badge"])
        pen.ellipse(wx, wy + 0.01, 0.03, 0.03, fill=p["patch"])
        nx, ny = b.det([(b.cw * 0.47, Y_ARMPIT - 0.15)])[0]  # name tape
        pen.rect(nx - 0.12, ny - 0.025, nx + 0.12, ny + 0.025, fill=mul(p["top"], 0.7))
    for side in (-1, 1):  # epaulettes
        pen.line(b.det([(side * b.nw * 1.6, Y_NECK + 0.06), (side * b.sw * 0.9, Y_SHOULDER + 0.02)], 0.2),
                 p["collar"], 0.06)
    draw_arms(ctx, b, p["top"], cuff_colour=p["collar"])
    if ctx.view_bottom > Y_SHOULDER + 0.3:
        for side in (1,) if b.front else (-1, 1):  # round shoulder patch
            pts, _, _ = b.arm(side)
            x = (pts[0][0] + pts[1][0]) / 2
            pen.ellipse(x, Y_SHOULDER + 0.25, 0.075, 0.075, fill=p["patch"], outline=p["badge"], width=0.012)


OUTFITS: dict[str, Callable] = {"casual": outfit_casual, "formal": outfit_formal, "dress": outfit_dress,
                                "sporty": outfit_sporty, "hoodie": outfit_hoodie, "armour": outfit_armour,
                                "robe": outfit_robe, "uniform": outfit_uniform}
