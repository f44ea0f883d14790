"""Procedural cel-shaded character portraits: the synthetic training corpus for the from-scratch model.

Choice lists come from the app's catalogues (customizer/character.py), so the model learns exactly the words the
designer offers; how each choice is drawn (colours, sizes, which painter) lives in render_styles.yaml. Shapes are
drawn with PIL at `supersample` x the output size and LANCZOS-downsampled; lighting and themes are numpy
post-processes on the small image.

Geometry is in head units (crown to chin = 1.0, head centre at y = 0, y grows downwards). A person's face, marks,
parting and outfit colours come from `Identity` alone, so the same person survives any scene, expression, framing
or theme; `Variation` holds everything that changes between photos of one person.
"""
from __future__ import annotations

import colorsys
import math
import random
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import yaml
from PIL import Image, ImageDraw

from ..character import AGE_MAX, AGE_MIN, NO_THEME, CharacterSpec, SelfieSpec, catalogue, selfie_catalogue

STYLES_PATH = Path(__file__).resolve().parent / "render_styles.yaml"
CUSTOM_SCENE = "custom"

Colour = tuple[int, int, int]
Pt = tuple[float, float]


@lru_cache(maxsize=1)
def styles() -> dict:
    """render_styles.yaml, parsed once (treat as read-only); [r, g, b] lists become tuples (PIL wants tuples)."""
    return _tuples(yaml.safe_load(STYLES_PATH.read_text(encoding="utf-8")))


def _tuples(node):
    if isinstance(node, dict):
        return {k: _tuples(v) for k, v in node.items()}
    if isinstance(node, list):
        items = [_tuples(v) for v in node]
        if len(items) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            return tuple(items)
        return items
    return node


# ---- the hidden person and the per-photo variation ------------------------------------------------------------

MARKS = ("none", "none", "freckles", "mole", "scar")


@dataclass(frozen=True)
class Identity:
    """Hidden per-person parameters, all derived from `seed`: same attributes, different people."""
    seed: int
    face_w: float        # face width multiplier
    face_len: float      # lower-face length multiplier
    jaw: float           # 0 narrow/tapered .. 1 square
    chin: float          # 0 pointed .. 1 broad
    cheek: float         # cheekbone prominence 0..1
    eye_spacing: float
    eye_size: float
    eye_round: float     # 0 almond .. 1 round
    eye_tilt: float      # -1 down-turned .. 1 up-turned
    lashes: float        # 0..1
    brow_thick: float
    brow_arch: float     # 0 flat .. 1 arched
    brow_angle: float    # -1 .. 1 (outer end down/up)
    nose_len: float      # -1 .. 1
    nose_w: float
    mouth_w: float
    lip_full: float      # 0..1
    ear_size: float
    mark: str            # none / freckles / mole / scar
    mark_x: float        # -1..1 (side and position of mole / scar)
    mark_y: float        # 0..1
    parting: int         # -1 left, 0 centre, 1 right
    hairline: float      # -1 low .. 1 high
    fringe: float        # 0 open forehead .. 1 heavy fringe
    skin_jitter: float   # -1..1 lightness/hue within the chosen tone
    hair_jitter: float   # -1..1
    outfit_palette: int  # which palette of the outfit (mod its count)

    @classmethod
    def sample(cls, seed: int) -> Identity:
        r = random.Random(f"identity:{seed}")
        u = r.uniform
        return cls(seed=seed, face_w=u(0.9, 1.1), face_len=u(0.92, 1.1), jaw=u(0, 1), chin=u(0, 1),
                   cheek=u(0, 1), eye_spacing=u(0.92, 1.08), eye_size=u(0.88, 1.14), eye_round=u(0, 1),
                   eye_tilt=u(-1, 1), lashes=u(0, 1), brow_thick=u(0.7, 1.6), brow_arch=u(0, 1),
                   brow_angle=u(-1, 1), nose_len=u(-1, 1), nose_w=u(0.8, 1.25), mouth_w=u(0.82, 1.18),
                   lip_full=u(0, 1), ear_size=u(0.85, 1.15), mark=r.choice(MARKS), mark_x=u(-1, 1),
                   mark_y=u(0, 1), parting=r.choice((-1, -1, 0, 1, 1)), hairline=u(-1, 1), fringe=u(0, 1),
                   skin_jitter=u(-1, 1), hair_jitter=u(-1, 1), outfit_palette=r.randrange(1000))


def _selfie_choices(key: str) -> list[str]:
    return list(selfie_catalogue()[key].choices)


@dataclass(frozen=True)
class Variation:
    """One photo of a person: where, which face, which pose, which light."""
    scene: str
    expression: str
    framing: str
    lighting: float      # -1 .. 1: sign = side the key light comes from (- left, + right), size = contrast
    seed: int            # background details, palette, turn direction, grain

    @classmethod
    def sample(cls, seed: int, scene: str | None = None, expression: str | None = None,
               framing: str | None = None) -> Variation:
        r = random.Random(f"variation:{seed}")
        scenes = [s for s in _selfie_choices("scene") if s != CUSTOM_SCENE]
        return cls(scene=scene if scene is not None else r.choice(scenes),
                   expression=expression if expression is not None else r.choice(_selfie_choices("expression")),
                   framing=framing if framing is not None else r.choice(_selfie_choices("framing")),
                   lighting=round(r.uniform(-1, 1), 3), seed=seed)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ---- attributes and captions ----------------------------------------------------------------------------------

_CHOICE_KEYS = ("hair_colour", "hair_style", "hair_length", "eye_colour", "skin_tone", "body_type", "outfit",
                "theme")


def random_attrs(rng: random.Random) -> dict:
    """A valid CharacterSpec dict with every choice drawn from the app catalogue."""
    cat = catalogue()
    weights = styles().get("sampling", {})
    attrs: dict = {}
    for key in _CHOICE_KEYS:
        choices = list(cat[key].choices)
        w = weights.get(key, {})
        if key == "hair_length":  # e.g. a buzz cut is mostly short: weights may depend on the style
            w = weights.get("hair_length_by_style", {}).get(attrs.get("hair_style"), w)
        attrs[key] = rng.choices(choices, weights=[float(w.get(c, 1)) for c in choices])[0]
    attrs["age"] = rng.randint(AGE_MIN, AGE_MAX)
    attrs["theme_strength"] = 1.0
    attrs["extra"] = ""
    return attrs


def caption(attrs: dict, variation: Variation, rng: random.Random, kind: str = "selfie") -> str:
    """The training caption: the app's own prompt for this spec (prompts.py), so training and inference agree.

    kind "selfie" uses the selfie template (framing, expression, scene); "portrait" the designer's portrait
    template. rng occasionally drops the constant quality words (they carry no information in this corpus).
    """
    from ..prompts import portrait_prompt, selfie_prompt  # late: prompts pulls in safety data

    spec = CharacterSpec.from_dict(attrs)
    if kind == "portrait":
        text = portrait_prompt(spec).positive
    elif kind == "selfie":
        scene_text = styles()["scene"][CUSTOM_SCENE].get("text", "") if variation.scene == CUSTOM_SCENE else ""
        selfie = SelfieSpec(scene=variation.scene, scene_text=scene_text, expression=variation.expression,
                            framing=variation.framing)
        text = selfie_prompt(spec, selfie).positive
    else:
        raise ValueError(f"caption kind must be 'selfie' or 'portrait', got {kind!r}")
    if rng.random() < 0.1:
        quality = _quality_words()
        if quality and text.endswith(quality):
            text = text[: -len(quality)].rstrip(", ")
    return text


@lru_cache(maxsize=1)
def _quality_words() -> str:
    try:
        from ..prompts import _templates
        return str(_templates().get("quality", ""))
    except (ImportError, AttributeError):  # prompts.py refactored: just keep the words
        return ""


# ---- colour helpers --------------------------------------------------------------------------------------------

def _c(c) -> Colour:
    r, g, b = round(c[0]), round(c[1]), round(c[2])
    return (0 if r < 0 else 255 if r > 255 else int(r), 0 if g < 0 else 255 if g > 255 else int(g),
            0 if b < 0 else 255 if b > 255 else int(b))


def mix(a, b, t: float) -> Colour:
    return _c([a[i] + (b[i] - a[i]) * t for i in range(3)])


def mul(a, k) -> Colour:
    if isinstance(k, (int, float)):
        k = (k, k, k)
    return _c([a[i] * k[i] for i in range(3)])


def jitter(c, amount: float, hue: float = 0.0) -> Colour:
    h, l, s = colorsys.rgb_to_hls(*(v / 255 for v in c))
    h = (h + hue) % 1.0
    l = max(0.0, min(1.0, l * (1 + amount)))
    return _c([v * 255 for v in colorsys.hls_to_rgb(h, l, s)])


def rgba(c, a: float) -> tuple[int, int, int, int]:
    return (*_c(c), int(max(0, min(255, round(a * 255)))))


# ---- geometry helpers ------------------------------------------------------------------------------------------

@lru_cache(maxsize=16)
def _cr_basis(n: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float64) / n
    t2, t3 = t * t, t * t * t
    return 0.5 * np.stack([-t + 2 * t2 - t3, 2 - 5 * t2 + 3 * t3, t + 4 * t2 - 3 * t3, -t2 + t3], axis=1)


def spline(pts: list[Pt], closed: bool = True, n: int = 4) -> list[Pt]:
    """Catmull-Rom through pts (n samples per segment)."""
    p = np.asarray(pts, np.float64)
    m = len(p)
    if closed:
        idx = np.arange(m)
        quads = np.stack([(idx - 1) % m, idx, (idx + 1) % m, (idx + 2) % m], axis=1)
    else:
        idx = np.arange(m - 1)
        quads = np.stack([np.maximum(idx - 1, 0), idx, idx + 1, np.minimum(idx + 2, m - 1)], axis=1)
    ctrl = p[quads]                                   # segments x 4 x 2
    out = np.einsum("kj,sjd->skd", _cr_basis(n), ctrl).reshape(-1, 2)
    if not closed:
        out = np.vstack([out, p[-1:]])
    return [tuple(q) for q in out.tolist()]


def ellipse_pts(cx, cy, rx, ry, angle=0.0, n=18, a0=0.0, a1=2 * math.pi) -> list[Pt]:
    ca, sa = math.cos(angle), math.sin(angle)
    out = []
    full = abs(a1 - a0 - 2 * math.pi) < 1e-9
    count = n if full else n + 1
    for k in range(count):
        t = a0 + (a1 - a0) * k / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        out.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return out


def clamp_x(pts: list[Pt], t: Callable[[float], float], side: int) -> list[Pt]:
    """The part of a (horizontally convex) shape beyond the curve x = t(y) on `side`: a cheap clip for cel shadows."""
    if side > 0:
        return _squeeze([(max(x, t(y)), y) for x, y in pts], [x < t(y) for x, y in pts])
    return _squeeze([(min(x, t(y)), y) for x, y in pts], [x > t(y) for x, y in pts])


def _squeeze(pts: list[Pt], cut: list[bool]) -> list[Pt]:
    """Keep only the ends of each run of clipped points (PIL would draw a collapsed run as a stray line)."""
    n = len(pts)
    if all(cut):
        return []
    start = next(k for k in range(n) if not cut[k])
    out: list[Pt] = []
    k = 0
    while k < n:
        j = (start + k) % n
        if not cut[j]:
            out.append(pts[j])
            k += 1
            continue
        run = []
        while k < n and cut[(start + k) % n]:
            run.append(pts[(start + k) % n])
            k += 1
        out.append(run[0])
        if len(run) > 1:
            out.append(run[-1])
    return out


def offset(pts: list[Pt], dx: float, dy: float) -> list[Pt]:
    return [(x + dx, y + dy) for x, y in pts]


class Pen:
    """ImageDraw in world units: pixel = origin + world * scale."""

    def __init__(self, draw: ImageDraw.ImageDraw, scale: float, ox: float, oy: float):
        self.d, self.s, self.ox, self.oy = draw, scale, ox, oy

    def px(self, pts):
        s, ox, oy = self.s, self.ox, self.oy
        if isinstance(pts, np.ndarray):
            return (pts * s + (ox, oy)).ravel().tolist()
        return [(ox + x * s, oy + y * s) for x, y in pts]

    def w(self, width: float) -> int:
        return max(1, int(round(width * self.s)))

    def poly(self, pts, fill=None, outline=None, width: float = 0.0):
        if len(pts) < 3:
            return
        if outline is not None:
            self.d.polygon(self.px(pts), fill=fill, outline=outline, width=self.w(width))
        else:
            self.d.polygon(self.px(pts), fill=fill)

    def line(self, pts, fill, width: float):
        if len(pts) >= 2:
            self.d.line(self.px(pts), fill=fill, width=self.w(width), joint="curve")

    def ellipse(self, cx, cy, rx, ry, fill=None, outline=None, width: float = 0.0):
        s = self.s
        box = [self.ox + (cx - rx) * s, self.oy + (cy - ry) * s, self.ox + (cx + rx) * s, self.oy + (cy + ry) * s]
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            return
        self.d.ellipse(box, fill=fill, outline=outline, width=self.w(width) if outline is not None else 0)

    def rect(self, x0, y0, x1, y1, fill=None):
        s = self.s
        self.d.rectangle([self.ox + x0 * s, self.oy + y0 * s, self.ox + x1 * s, self.oy + y1 * s], fill=fill)


# ---- the render context ----------------------------------------------------------------------------------------

@dataclass
class Ctx:
    """Everything the painters need for one image (resolved colours, geometry, camera)."""
    attrs: dict
    ident: Identity
    var: Variation
    pen: Pen
    rng: random.Random
    skin: Colour
    skin_sh: Colour
    skin_line: Colour
    lip: Colour
    hair: Colour
    hair_sh: Colour
    hair_hi: Colour
    hair_line: Colour
    grey: float          # 0..1 greying from age
    eye: Colour
    expr: dict
    frame: dict
    body: dict
    outfit: dict         # palette colours
    outfit_painter: str
    hair_style: dict
    hair_len: dict
    fantasy: float       # fantasy theme strength (0 when not fantasy)
    jewel: Colour
    light_side: int      # +1: shadow on the right (light from the left)
    light_amt: float     # 0..1 shadow size
    yaw: float           # head turn in radians (profile: +-pi/2)
    turn: int            # +1 faces viewer's right
    hx: float            # head centre x (world)
    body_phi: float      # torso yaw (radians)
    view_bottom: float   # world y at the bottom of the frame
    fw: float            # face half width
    detail: float = 100.0  # output pixels per head unit: small heads skip sub-pixel detail

    # head-surface projection: local (x, y) on the front of the head -> world
    def hp(self, x: float, y: float, depth: float = 0.95) -> Pt:
        r = self.fw * 1.03
        z = depth * math.sqrt(max(0.0, r * r - x * x))
        return (self.hx + x * math.cos(self.yaw) + z * math.sin(self.yaw), y)

    def hps(self, pts, depth: float = 0.95) -> list[Pt]:
        return [self.hp(x, y, depth) for x, y in pts]


def cel(ctx: Ctx, pts: list[Pt], colour, cx: float | None = None, band: float = 0.07):
    """Cel shadow: a band of `colour` along the shadow-side contour of a shape (width grows with the light)."""
    if ctx.light_amt <= 0.05 or len(pts) < 3:
        return
    side = ctx.light_side
    arr = np.asarray(pts, np.float64)
    if cx is None:
        cx = float(arr[:, 0].mean())
    sel = arr[(arr[:, 0] - cx) * side >= 0]
    if len(sel) < 2:
        return
    order = np.argsort(sel[:, 1], kind="stable")
    ys, xs = sel[order, 1], sel[order, 0]
    bw = band * (0.45 + 0.55 * ctx.light_amt)
    edge = np.interp(arr[:, 1], ys, xs)
    t = edge - side * np.minimum(bw, 0.5 * np.abs(edge - cx))  # the band tapers where the shape narrows
    new = np.maximum(arr[:, 0], t) if side > 0 else np.minimum(arr[:, 0], t)
    shadow = list(zip(new.tolist(), arr[:, 1].tolist()))
    if len(shadow) >= 3:
        ctx.pen.poly(shadow, fill=colour)


# ---- backgrounds -----------------------------------------------------------------------------------------------

@lru_cache(maxsize=64)
def _gradient(top: Colour, bottom: Colour, size: int, curve: float = 1.0) -> Image.Image:
    t = (np.linspace(0.0, 1.0, size, dtype=np.float32) ** curve)[:, None, None]
    a, b = np.array(top, np.float32), np.array(bottom, np.float32)
    col = (a + (b - a) * t).astype(np.uint8)
    return Image.fromarray(np.broadcast_to(col, (size, size, 3)).copy(), "RGB")


@lru_cache(maxsize=64)
def _band(top: Colour, bottom: Colour, width: int, height: int) -> Image.Image:
    return _gradient(top, bottom, max(2, height)).resize((width, height))


class BG:
    """Background drawing in unit coordinates (0..1 of the frame)."""

    def __init__(self, img: Image.Image, rng: random.Random):
        self.img, self.rng = img, rng
        self.S = img.size[0]
        self.d = ImageDraw.Draw(img, "RGBA")

    def p(self, pts):
        S = self.S
        return [(x * S, y * S) for x, y in pts]

    def poly(self, pts, fill):
        self.d.polygon(self.p(pts), fill=fill)

    def rect(self, x0, y0, x1, y1, fill):
        S = self.S
        self.d.rectangle([x0 * S, y0 * S, x1 * S, y1 * S], fill=fill)

    def ellipse(self, cx, cy, rx, ry, fill):
        S = self.S
        self.d.ellipse([(cx - rx) * S, (cy - ry) * S, (cx + rx) * S, (cy + ry) * S], fill=fill)

    def line(self, pts, fill, w):
        self.d.line(self.p(pts), fill=fill, width=max(1, int(w * self.S)))

    def band(self, y0, y1, top, bottom):
        """A vertical gradient band from y0 to y1."""
        S = self.S
        a, b = int(y0 * S), int(y1 * S)
        if b <= a:
            return
        self.img.paste(_band(_c(top), _c(bottom), S, b - a), (0, a))


def bg_studio(b: BG, p: dict, ctx: Ctx):
    b.img.paste(_gradient(_c(p["top"]), _c(p["bottom"]), b.S, 1.3))
    for k, a in ((0.42, 0.18), (0.33, 0.22), (0.24, 0.26)):
        b.ellipse(0.5, 0.36, k * 1.25, k, rgba(p["spot"], a))
    b.rect(0, 0.9, 1, 1, rgba(mul(p["bottom"], 0.85), 0.5))


def _clouds(b: BG, y0: float, y1: float, colour, n: int):
    r = b.rng
    for _ in range(n):
        cx, cy, w = r.uniform(-0.1, 1.1), r.uniform(y0, y1), r.uniform(0.08, 0.18)
        for k in range(4):
            b.ellipse(cx + (k - 1.5) * w * 0.45, cy - (0.3 if k in (1, 2) else 0) * w * 0.5, w * 0.42,
                      w * 0.3, rgba(colour, 0.75))


def bg_beach(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    hz = r.uniform(0.52, 0.6)
    b.img.paste(_gradient(_c(p["sky_top"]), _c(p["sky_low"]), b.S, 0.8))
    sx = r.choice((0.18, 0.82))
    for k, a in ((0.16, 0.15), (0.11, 0.25), (0.065, 1.0)):
        b.ellipse(sx, hz - 0.2, k, k, rgba(p["sun"], a))
    _clouds(b, 0.08, hz - 0.12, (255, 255, 255), 3)
    b.band(hz, 0.8, p["sea_far"], p["sea"])
    for _ in range(9):
        y = r.uniform(hz + 0.02, 0.78)
        x = r.uniform(0, 1)
        b.line([(x, y), (x + r.uniform(0.05, 0.15), y)], rgba((255, 255, 255), 0.55), 0.006)
    sand = p["sand"]
    b.poly([(0, 0.8), (0.3, 0.77), (0.7, 0.79), (1, 0.76), (1, 1), (0, 1)], sand)
    b.poly([(0, 0.8), (0.3, 0.77), (0.7, 0.79), (1, 0.76), (1, 0.78), (0.7, 0.81), (0.3, 0.79), (0, 0.82)],
           rgba((255, 255, 255), 0.7))


def _tree(b: BG, x, base, h, w, colour, trunk):
    b.rect(x - w * 0.08, base - h * 0.45, x + w * 0.08, base, trunk)
    for k in range(3):
        y = base - h * (0.35 + 0.22 * k)
        ww = w * (1 - 0.25 * k)
        b.poly([(x - ww, y), (x, y - h * 0.42), (x + ww, y)], colour)


def bg_forest(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    b.img.paste(_gradient(mix(p["sky"], (255, 255, 255), 0.3), _c(p["sky"]), b.S))
    for layer, (key, base, hmin, hmax, n) in enumerate((("far", 0.62, 0.25, 0.4, 9), ("mid", 0.8, 0.35, 0.55, 6))):
        col = p[key]
        for _ in range(n):
            _tree(b, r.uniform(-0.05, 1.05), base + r.uniform(0, 0.05), r.uniform(hmin, hmax),
                  r.uniform(0.07, 0.12) * (1 + layer * 0.4), col, mul(p["trunk"], 0.8 + 0.2 * layer))
        b.rect(0, base, 1, 1, mix(col, p["ground"], 0.6))
    for _ in range(3):  # light shafts
        x = r.uniform(0, 1)
        b.poly([(x, 0), (x + 0.06, 0), (x + 0.26, 1), (x + 0.14, 1)], rgba((255, 255, 230), 0.12))
    for x in (r.uniform(-0.05, 0.12), r.uniform(0.88, 1.05)):  # near trunks framing the shot
        w = r.uniform(0.05, 0.08)
        b.rect(x - w, 0, x + w, 1, mul(p["trunk"], 0.7))
        b.ellipse(x, r.uniform(0.0, 0.15), w * 3.5, 0.14, p["near"])
    b.rect(0, 0.88, 1, 1, p["ground"])


def bg_city(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    b.img.paste(_gradient(_c(p["sky_top"]), _c(p["sky_low"]), b.S))
    b.ellipse(r.uniform(0.1, 0.9), r.uniform(0.07, 0.16), 0.045, 0.045, (250, 246, 220))
    for _ in range(14):
        b.ellipse(r.uniform(0, 1), r.uniform(0, 0.3), 0.003, 0.003, (255, 255, 255))
    for layer, key in enumerate(("building2", "building")):
        x = -0.05
        while x < 1.05:
            w = r.uniform(0.1, 0.2)
            top = r.uniform(0.12, 0.45) + 0.15 * layer
            b.rect(x, top, x + w - 0.01, 0.9, p[key])
            cols = max(2, int(w / 0.035))
            rows = int((0.85 - top) / 0.05)
            for i in range(rows):
                for j in range(cols):
                    if r.random() < 0.45:
                        wc = p["window"] if r.random() < 0.75 else p["window2"]
                        wx = x + 0.012 + j * (w - 0.03) / cols
                        wy = top + 0.02 + i * 0.05
                        b.rect(wx, wy, wx + 0.014, wy + 0.022, rgba(wc, 0.85 - 0.25 * (1 - layer)))
            x += w
    b.rect(0, 0.88, 1, 1, p["street"])
    for _ in range(7):  # bokeh
        c = p["window"] if r.random() < 0.6 else p["window2"]
        rr = r.uniform(0.02, 0.05)
        b.ellipse(r.uniform(0, 1), r.uniform(0.55, 0.95), rr, rr, rgba(c, 0.35))


def bg_cafe(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    b.img.paste(_gradient(_c(p["wall"]), _c(p["wall_low"]), b.S))
    wx = r.uniform(0.05, 0.55)
    b.rect(wx, 0.12, wx + 0.4, 0.6, mul(p["wood"], 0.9))
    b.rect(wx + 0.02, 0.14, wx + 0.38, 0.58, p["window"])
    b.rect(wx + 0.195, 0.14, wx + 0.205, 0.58, mul(p["wood"], 0.9))
    b.rect(wx + 0.02, 0.355, wx + 0.38, 0.365, mul(p["wood"], 0.9))
    bx = 0.72 if wx < 0.3 else 0.04
    b.rect(bx, 0.18, bx + 0.24, 0.42, mul(p["wood"], 0.8))
    b.rect(bx + 0.015, 0.195, bx + 0.225, 0.405, p["board"])
    for i in range(4):
        yy = 0.24 + i * 0.045
        b.line([(bx + 0.04, yy), (bx + r.uniform(0.12, 0.2), yy)], rgba((240, 240, 230), 0.7), 0.004)
    for lx in (r.uniform(0.1, 0.3), r.uniform(0.7, 0.9)):
        b.line([(lx, 0), (lx, 0.1)], (40, 30, 24), 0.004)
        b.poly([(lx - 0.05, 0.15), (lx, 0.09), (lx + 0.05, 0.15)], mul(p["wood"], 0.6))
        b.ellipse(lx, 0.16, 0.06, 0.05, rgba(p["lamp"], 0.35))
        b.ellipse(lx, 0.155, 0.02, 0.015, p["lamp"])
    b.rect(0, 0.66, 1, 0.69, mul(p["wood"], 1.2))
    b.rect(0, 0.69, 1, 1, p["wood"])
    for i in range(12):
        x = i / 11
        b.line([(x, 0.69), (x, 1)], mul(p["wood"], 0.8), 0.003)
    for _ in range(3):  # cups on the counter
        cx = r.uniform(0.05, 0.95)
        b.rect(cx - 0.02, 0.62, cx + 0.02, 0.66, (246, 242, 236))
    for _ in range(5):
        rr = r.uniform(0.02, 0.04)
        b.ellipse(r.uniform(0, 1), r.uniform(0.05, 0.5), rr, rr, rgba(p["lamp"], 0.25))


def bg_mountains(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    b.img.paste(_gradient(_c(p["sky_top"]), _c(p["sky_low"]), b.S, 0.9))
    _clouds(b, 0.06, 0.25, (255, 255, 255), 2)
    for key, base, hmin, hmax, n in (("far", 0.62, 0.18, 0.32, 4), ("near", 0.72, 0.14, 0.26, 5)):
        pts = [(-0.1, base + 0.1)]
        x = -0.1
        peaks = []
        while x < 1.1:
            w = r.uniform(0.2, 0.38) if key == "far" else r.uniform(0.15, 0.3)
            h = r.uniform(hmin, hmax)
            peaks.append((x + w / 2, base - h, w))
            pts += [(x + w / 2, base - h), (x + w, base - r.uniform(0, 0.05))]
            x += w
        pts += [(1.2, base + 0.1), (1.2, 1), (-0.1, 1)]
        b.poly(pts, p[key])
        for px_, py, w in peaks:  # snow caps
            s = 0.28
            lx, rx_ = px_ - w / 2 * s, px_ + w / 2 * s
            cap = [(px_, py), (rx_, py + (base - py) * s), (px_ + w * 0.05, py + (base - py) * s * 0.75),
                   (px_ - w * 0.03, py + (base - py) * s * 1.05), (lx, py + (base - py) * s)]
            b.poly(cap, p["snow"])
    b.rect(0, 0.82, 1, 1, p["ground"])
    for _ in range(8):
        x = r.uniform(0, 1)
        h = r.uniform(0.08, 0.14)
        b.poly([(x - 0.025, 0.84), (x, 0.84 - h), (x + 0.025, 0.84)], p["pine"])


def bg_library(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    b.img.paste(_gradient(_c(p["wall"]), mul(p["wall"], 0.6), b.S))
    books = p["books"]
    for col in range(3):
        x0 = col / 3 + 0.01
        x1 = (col + 1) / 3 - 0.01
        b.rect(x0 - 0.01, 0, x1 + 0.01, 1, p["dark"])
        for row in range(5):
            y1 = 0.18 + row * 0.2
            x = x0
            while x < x1 - 0.02:
                w = r.uniform(0.018, 0.035)
                h = r.uniform(0.11, 0.16)
                c = jitter(r.choice(books), r.uniform(-0.15, 0.15))
                if r.random() < 0.1:  # leaning book
                    b.poly([(x, y1), (x + w, y1), (x + w + 0.04, y1 - h), (x + 0.04, y1 - h)], c)
                    x += 0.04
                else:
                    b.rect(x, y1 - h, x + w - 0.003, y1, c)
                    b.rect(x, y1 - h + 0.02, x + w - 0.003, y1 - h + 0.028, rgba((240, 210, 140), 0.5))
                x += w
            b.rect(x0 - 0.01, y1, x1 + 0.01, y1 + 0.02, p["shelf"])
    b.ellipse(r.uniform(0.2, 0.8), 0.25, 0.35, 0.3, rgba(p["lamp"], 0.12))


def bg_space(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    b.img.paste(_gradient(_c(p["panel"]), _c(p["panel_dark"]), b.S))
    wx0, wx1 = r.uniform(0.05, 0.2), r.uniform(0.8, 0.95)
    wy0, wy1 = 0.08, 0.62
    b.d.rounded_rectangle(b.p([(wx0 - 0.02, wy0 - 0.02), (wx1 + 0.02, wy1 + 0.02)]), radius=int(0.06 * b.S),
                          fill=mul(p["panel_dark"], 0.7))
    b.d.rounded_rectangle(b.p([(wx0, wy0), (wx1, wy1)]), radius=int(0.05 * b.S), fill=p["space"])
    for _ in range(40):
        x, y = r.uniform(wx0 + 0.02, wx1 - 0.02), r.uniform(wy0 + 0.02, wy1 - 0.02)
        rr = r.choice((0.002, 0.002, 0.003, 0.005))
        b.ellipse(x, y, rr, rr, (255, 255, 255))
    px_, py, pr = r.uniform(wx0 + 0.12, wx1 - 0.12), r.uniform(wy0 + 0.12, wy1 - 0.1), r.uniform(0.07, 0.12)
    b.ellipse(px_, py, pr, pr, p["planet"])
    b.ellipse(px_ + pr * 0.25, py + pr * 0.2, pr * 0.8, pr * 0.8, rgba(mul(p["planet"], 0.6), 0.6))
    b.line([(px_ - pr * 1.6, py + pr * 0.3), (px_ + pr * 1.6, py - pr * 0.3)], rgba(p["planet2"], 0.8), 0.008)
    b.line([(wx0 + (wx1 - wx0) / 2, wy0), (wx0 + (wx1 - wx0) / 2, wy1)], mul(p["panel_dark"], 0.7), 0.012)
    for y in (0.72, 0.86):
        b.rect(0, y, 1, y + 0.006, mul(p["panel_dark"], 0.8))
    for i in range(6):
        x = (i + 0.5) / 6
        b.rect(x, 0.62, x + 0.004, 1, mul(p["panel_dark"], 0.85))
        b.ellipse(x + 0.04, 0.68, 0.008, 0.008, p["light"] if i % 2 else p["accent"])
    b.rect(0, 0.0, 1, 0.03, rgba(p["light"], 0.6))


def bg_abstract(b: BG, p: dict, ctx: Ctx):
    r = b.rng
    b.img.paste(_gradient(_c(p["top"]), _c(p["bottom"]), b.S))
    for _ in range(7):
        rr = r.uniform(0.06, 0.2)
        b.ellipse(r.uniform(0, 1), r.uniform(0, 1), rr, rr, rgba(r.choice(p["shapes"]), 0.35))


BACKGROUNDS: dict[str, Callable] = {"studio": bg_studio, "beach": bg_beach, "forest": bg_forest, "city": bg_city,
                                    "cafe": bg_cafe, "mountains": bg_mountains, "library": bg_library,
                                    "space": bg_space, "abstract": bg_abstract}


# ---- body and outfits ------------------------------------------------------------------------------------------

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
            for k in (0,):  # chest pockets with flaps
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


# ---- head (front / three-quarter) -------------------------------------------------------------------------------

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


def _eye_geom(ctx: Ctx, side: int):
    """Eye centre, half width, height and the lid curves upper(x) / lower(x) (numpy-vectorised)."""
    i, e = ctx.ident, ctx.expr
    ex0 = side * 0.158 * i.eye_spacing
    ey = 0.05
    cx, cy = ctx.hp(ex0, ey)
    # foreshortening of a surface point at angle alpha
    alpha = math.atan2(ex0, 0.3)
    fs = max(0.3, min(1.12, math.cos(alpha + ctx.yaw) / math.cos(alpha)))
    hw = 0.092 * i.eye_size * fs
    eh = (0.052 + 0.014 * i.eye_round) * i.eye_size
    up = eh * (1 - e.get("lid_upper", 0.0))
    lo = eh * (0.55 + 0.15 * i.eye_round) * (1 - e.get("lid_lower", 0.0))
    tilt = i.eye_tilt * 0.012
    p_up = 0.55 + 0.25 * i.eye_round

    def upper(x):
        xl = np.clip(np.asarray(x, np.float64) - cx, -hw, hw)
        k = np.maximum(0.0, 1 - (xl / hw) ** 2)
        return cy - tilt * (xl * side / hw) * 0.5 - up * k ** p_up + 0.008 * (xl * side / hw) * k

    def lower(x):
        xl = np.clip(np.asarray(x, np.float64) - cx, -hw, hw)
        k = np.maximum(0.0, 1 - (xl / hw) ** 2)
        return cy - tilt * (xl * side / hw) * 0.5 + lo * k ** 0.8

    return cx, cy, hw, eh, upper, lower, fs


@lru_cache(maxsize=8)
def _unit_circle(n: int) -> np.ndarray:
    t = np.arange(n) * (2 * math.pi / n)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _ell(cx, cy, rx, ry, n=20) -> np.ndarray:
    return _unit_circle(n) * (rx, ry) + (cx, cy)


def draw_eye(ctx: Ctx, side: int):
    pen, e = ctx.pen, ctx.expr
    cx, cy, hw, eh, upper, lower, fs = _eye_geom(ctx, side)
    line = (46, 30, 32)
    n = 14
    xs = cx - hw + 2 * hw * np.arange(n + 1) / n
    if e.get("closed"):
        arc = np.stack([xs, cy + 0.01 - 0.03 * (1 - ((xs - cx) / hw) ** 2)], axis=1)
        pen.line(arc, line, 0.018)
        return
    up_y, lo_y = upper(xs), lower(xs)
    top = np.stack([xs, up_y], axis=1)
    pen.poly(np.vstack([top, np.stack([xs, lo_y], axis=1)[::-1]]), fill=(250, 248, 246))
    small = ctx.detail < 45  # iris of a few pixels at most: draw the essentials only
    if not small:
        pen.poly(np.vstack([top + (0, 0.012), top[[-1, 0]]]), fill=(214, 206, 214))  # lid shadow on the sclera
    gx, gy = e.get("gaze", (0, 0))
    fx, fy = ctx.frame.get("gaze", (0, 0))
    gx = gx + fx * ctx.turn
    gy = gy + fy
    r = 0.064 * ctx.ident.eye_size * e.get("iris", 1.0)
    ix = cx + gx * hw * 0.42
    iy = cy + 0.004 + gy * eh * 0.35
    rx = r * max(0.55, fs)

    def clip(pts: np.ndarray, bottom=lower) -> np.ndarray:
        x = np.clip(pts[:, 0], cx - hw, cx + hw)
        y = np.minimum(np.maximum(pts[:, 1], upper(x)), bottom(x))
        return np.stack([x, y], axis=1)

    iris = ctx.eye
    if small:
        pen.poly(clip(_ell(ix, iy, rx, r, 14)), fill=iris)
        pen.poly(clip(_ell(ix, iy, rx * 0.4, r * 0.42, 10)), fill=mul(iris, 0.2))
        pen.line(top if side > 0 else top[::-1], line, 0.02)
        return
    pen.poly(clip(_ell(ix, iy, rx, r, 22)), fill=mul(iris, 0.55))
    pen.poly(clip(_ell(ix, iy, rx * 0.87, r * 0.87, 22)), fill=iris)
    pen.poly(clip(_ell(ix, iy + r * 0.3, rx * 0.6, r * 0.5, 16)), fill=mix(iris, (255, 255, 255), 0.35))
    if ctx.fantasy:
        pen.poly(clip(_ell(ix, iy, rx * 0.7, r * 0.7, 20)), outline=mix(iris, (255, 255, 255), 0.7 * ctx.fantasy),
                 width=0.008)
    pen.poly(clip(_ell(ix, iy, rx * 0.38, r * 0.4, 14)), fill=mul(iris, 0.18))
    # shadow of the upper lid across the iris
    pen.poly(clip(_ell(ix, iy, rx, r, 22), lambda x: upper(x) + 0.016), fill=mul(iris, 0.5))
    hx, hy = ix - rx * 0.35 * ctx.light_side, max(iy - r * 0.35, float(upper(ix)) + r * 0.3)
    pen.ellipse(hx, hy, r * 0.26, r * 0.26, fill=(255, 255, 255))
    pen.ellipse(ix + rx * 0.35 * ctx.light_side, iy + r * 0.4, r * 0.1, r * 0.1, fill=(255, 255, 255))
    # lids
    corner = float(upper(cx + side * hw))
    wing = np.array([(cx + side * hw * 1.02, corner - 0.002),
                     (cx + side * hw * 1.22, corner - 0.014 - 0.01 * ctx.ident.lashes)])
    ut = top if side > 0 else top[::-1]
    pen.line(np.vstack([ut, wing]), line, 0.016)
    half = slice(n // 2, None) if side > 0 else slice(0, n // 2 + 1)
    pen.line(np.stack([xs[half], lo_y[half]], axis=1), mul(line, 1.6), 0.006)
    cx_ = xs[2:-2]
    pen.line(np.stack([cx_, up_y[2:-2] - 0.02 - 0.01 * (1 - ((cx_ - cx) / hw) ** 2)], axis=1), ctx.skin_sh, 0.006)


def draw_brow(ctx: Ctx, side: int):
    i, e, pen = ctx.ident, ctx.expr, ctx.pen
    x_in, x_out = side * 0.075 * i.eye_spacing, side * 0.25 * i.eye_spacing
    y0 = -0.055
    yi = y0 + e.get("brow_inner", 0.0)
    yo = y0 + 0.01 - i.brow_angle * 0.01 + e.get("brow_outer", 0.0)
    if e.get("one_brow") and side == 1:  # thinking: one brow raised
        yi += e["one_brow"]
        yo += e["one_brow"]
    arch = 0.012 + 0.018 * i.brow_arch
    t = 0.02 * i.brow_thick
    n = 6
    top, bot = [], []
    for k in range(n + 1):
        u = k / n
        x = x_in + (x_out - x_in) * u
        y = yi + (yo - yi) * u - arch * math.sin(math.pi * min(1.0, u * 1.15))
        th = t * (1.0 - 0.6 * u)
        top.append(ctx.hp(x, y - th * 0.5))
        bot.append(ctx.hp(x, y + th * 0.5))
    col = mix(mul(ctx.hair, 0.7), (40, 30, 30), 0.45)
    ctx.pen.poly(top + list(reversed(bot)), fill=col)


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


# ---- head (profile) --------------------------------------------------------------------------------------------

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


# ---- hair ------------------------------------------------------------------------------------------------------

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


# ---- accessories and themes -------------------------------------------------------------------------------------

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


# ---- main entry -------------------------------------------------------------------------------------------------

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


def default_attrs() -> dict:
    """The catalogue defaults as a renderable attrs dict."""
    spec = CharacterSpec.default()
    d = spec.to_dict()
    d["theme_strength"] = 1.0
    return d
