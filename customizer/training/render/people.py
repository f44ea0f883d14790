"""Who is drawn and how they are described.

`Identity` is the hidden person (face, marks, parting, outfit palette: all from one seed), `Variation` one photo of
them (scene, expression, framing, light); `random_attrs` / `default_attrs` give catalogue attribute dicts and
`caption` the training text for one image.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, fields
from functools import lru_cache

from ...character import AGE_MAX, AGE_MIN, CharacterSpec, SelfieSpec, catalogue, selfie_catalogue
from .context import CUSTOM_SCENE, styles


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

    kind "selfie" uses the selfie template (framing, expression, scene); "selfie_from_reference" the selfie template
    without the hair, eyes and skin (a selfie whose look comes from the reference); "portrait" the designer's
    portrait template. rng occasionally drops the constant quality words (they carry no information in this corpus).
    """
    from ...prompts import portrait_prompt, selfie_prompt  # late: prompts pulls in safety data

    spec = CharacterSpec.from_dict(attrs)
    if kind == "portrait":
        text = portrait_prompt(spec).positive
    elif kind in ("selfie", "selfie_from_reference"):
        scene_text = styles()["scene"][CUSTOM_SCENE].get("text", "") if variation.scene == CUSTOM_SCENE else ""
        selfie = SelfieSpec(scene=variation.scene, scene_text=scene_text, expression=variation.expression,
                            framing=variation.framing)
        text = selfie_prompt(spec, selfie, from_reference=kind == "selfie_from_reference").positive
    else:
        raise ValueError(f"caption kind must be 'selfie', 'selfie_from_reference' or 'portrait', got {kind!r}")
    return without_quality(text) if rng.random() < 0.1 else text


def without_quality(text: str) -> str:
    """The caption without its trailing quality words (unchanged when it has none)."""
    quality = _quality_words()
    return text[: -len(quality)].rstrip(", ") if quality and text.endswith(quality) else text


@lru_cache(maxsize=1)
def _quality_words() -> str:
    try:
        from ...prompts import _templates
        return str(_templates().get("quality", ""))
    except (ImportError, AttributeError):  # prompts.py refactored: just keep the words
        return ""


def default_attrs() -> dict:
    """The catalogue defaults as a renderable attrs dict."""
    spec = CharacterSpec.default()
    d = spec.to_dict()
    d["theme_strength"] = 1.0
    return d
