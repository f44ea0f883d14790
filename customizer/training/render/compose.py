"""The render pipeline: resolve the styles of one image into a `Ctx`, paint background, body, head and hair back to
front at `supersample` x the size, downsample, then apply lighting and theme post-processes."""
from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageDraw

from ...character import NO_THEME
from .backgrounds import BACKGROUNDS, BG
from .body import Body, draw_near_shoulder, draw_neck
from .context import Ctx, styles
from .effects import _post, draw_circlet, draw_sparkles
from .face import draw_face_front
from .geometry import Pen, jitter, mix, mul
from .hair import Hair
from .hair_profile import hair_profile
from .hair_styles import HAIR_PAINTERS, hair_top
from .outfits import OUTFITS
from .people import _CHOICE_KEYS, Identity, Variation
from .profile import draw_face_profile


def _palette(options: list, index: int):
    return options[index % len(options)]


def render(attrs: dict, identity: Identity, variation: Variation, size: int = 128) -> Image.Image:
    """Draw one character image (RGB, size x size). Deterministic in (attrs, identity, variation, size)."""
    return render_with_mask(attrs, identity, variation, size)[0]


def render_with_mask(attrs: dict, identity: Identity, variation: Variation,
                     size: int = 128) -> tuple[Image.Image, np.ndarray]:
    """render() plus the character's coverage mask (float32 size x size, 0 background .. 1 character)."""
    st = styles()
    for key in _CHOICE_KEYS:
        if attrs.get(key) not in st[key]:
            raise ValueError(f"render_styles.yaml has no {key} style for {attrs.get(key)!r}")
    for key in ("scene", "expression", "framing"):
        if getattr(variation, key) not in st[key]:
            raise ValueError(f"render_styles.yaml has no {key} style for {getattr(variation, key)!r}")
    ss = int(st.get("supersample", 3))
    S = size * ss
    rng = random.Random(f"render:{variation.seed}")
    i = identity
    skin_st = st["skin_tone"][attrs["skin_tone"]]
    skin = jitter(skin_st["base"], 0.025 * i.skin_jitter, 0.004 * i.skin_jitter)
    skin_sh = mul(skin, skin_st["shadow"])
    hs = st["hair_shading"]
    age = int(attrs["age"])
    grey = max(0.0, min(1.0, (age - hs["age_grey_from"]) / (hs["age_grey_full"] - hs["age_grey_from"])))
    hair = jitter(st["hair_colour"][attrs["hair_colour"]], 0.07 * i.hair_jitter, 0.01 * i.hair_jitter)
    hair = mix(hair, hs["age_grey"], 0.55 * grey)
    lips = st["lips"]
    frame = st["framing"][variation.framing]
    expr = st["expression"][variation.expression]
    outfit_st = st["outfit"][attrs["outfit"]]
    theme = attrs.get("theme", NO_THEME)
    strength = float(attrs.get("theme_strength", 1.0))
    fantasy = strength if theme == "fantasy" else 0.0
    jewels = st["theme"]["fantasy"]["jewels"]
    turn = 1 if rng.random() < 0.5 else -1
    yaw_amt = float(frame.get("yaw", 0.0))
    yaw = turn * (math.pi / 2 if yaw_amt >= 0.99 else yaw_amt * 0.95)
    view, centre = float(frame["view"]), float(frame["centre"])
    if frame.get("fit_top"):  # tight framings widen (bottom fixed) so a bun or a crest is not cut off
        need = hair_top(st["hair_style"][attrs["hair_style"]], st["hair_length"][attrs["hair_length"]]["drop"]) - 0.04
        bottom = centre + view / 2
        if need < bottom - view:
            view, centre = bottom - need, (bottom + need) / 2
    scale = S / view
    body_phi = turn * math.radians(float(frame.get("body", 0.0)))
    hx = turn * float(frame.get("head_shift", 0.0))
    cam_x = hx * 0.4
    ox, oy = S / 2 - cam_x * scale, S / 2 - centre * scale

    img = Image.new("RGB", (S, S))
    layer = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    pen = Pen(ImageDraw.Draw(layer, "RGBA"), scale, ox, oy)
    ctx = Ctx(attrs=attrs, ident=i, var=variation, pen=pen, rng=rng, skin=skin, skin_sh=skin_sh,
              skin_line=mul(skin_sh, 0.7), lip=mix(skin, lips["mix"], lips["amount"] + 0.1 * i.lip_full),
              hair=hair, hair_sh=mul(hair, hs["shadow"]), hair_hi=mix(hair, (255, 255, 255), hs["highlight"]),
              hair_line=mul(hair, hs["line"]), grey=grey, eye=jitter(st["eye_colour"][attrs["eye_colour"]], 0.0),
              expr=expr, frame=frame, body=st["body_type"][attrs["body_type"]],
              outfit=_palette(outfit_st["palettes"], i.outfit_palette), outfit_painter=outfit_st["painter"],
              hair_style=st["hair_style"][attrs["hair_style"]], hair_len=st["hair_length"][attrs["hair_length"]],
              fantasy=fantasy, jewel=tuple(_palette(jewels, variation.seed)),
              light_side=1 if variation.lighting <= 0 else -1, light_amt=min(1.0, abs(variation.lighting)),
              yaw=yaw, turn=turn, hx=hx, body_phi=body_phi, view_bottom=centre + view / 2,
              fw=0.36 * i.face_w, detail=size / view)

    scene_st = st["scene"][variation.scene]
    bg = BG(img, rng)
    BACKGROUNDS[scene_st["painter"]](bg, _palette(scene_st["palettes"], variation.seed), ctx)

    body = Body(ctx)
    profile = abs(yaw) > 1.3
    hair_painter = HAIR_PAINTERS[ctx.hair_style["painter"]]
    h = Hair(ctx)
    outfit = OUTFITS[ctx.outfit_painter]

    # back to front
    if body.back:
        outfit(ctx, body, "pre")
        outfit(ctx, body, "main")
        draw_neck(ctx, body)
        hair_painter(ctx, h, "back")
    else:
        if profile:
            hair_profile(ctx, "back")
        else:
            hair_painter(ctx, h, "back")
        outfit(ctx, body, "pre")
        draw_neck(ctx, body)
        outfit(ctx, body, "main")
    if profile:
        draw_face_profile(ctx)
        hair_profile(ctx, "top")
    else:
        draw_face_front(ctx)
        hair_painter(ctx, h, "top")
        if not body.back:
            hair_painter(ctx, h, "front")
    if frame.get("shoulder"):
        draw_near_shoulder(ctx, body, outfit_st)
    if fantasy > 0.3:
        draw_circlet(ctx)
    if fantasy > 0:
        draw_sparkles(ctx, int(round(st["theme"]["fantasy"]["sparkles"] * fantasy)))

    img.paste(layer, (0, 0), layer)
    # LANCZOS down; reducing_gap lets PIL box-reduce by the integer factor first (same look, ~3x faster)
    small = img.resize((size, size), Image.LANCZOS, reducing_gap=1.01)
    a_small = layer.getchannel("A")
    a_small = a_small.reduce(ss) if S == size * ss else a_small.resize((size, size), Image.BOX)
    alpha = np.asarray(a_small, np.float32) / 255.0
    arr = np.asarray(small, np.float32) * (1 / 255.0)
    arr = _post(arr, alpha, ctx, attrs)
    return Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB"), alpha
