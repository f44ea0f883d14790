"""The option catalogue and validated character/selfie specs.

Choices live in data/options.yaml and data/scenes.yaml so a new hair colour or scene is a data change, not code.
Specs are frozen; validate() returns a normalised copy (cleaned text, floats as float) or raises SpecError /
SafetyError, and from_dict() is the one door for untrusted input (UI, API, imports).
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import yaml

from . import safety
from .errors import SpecError, shown

DATA_DIR = Path(__file__).resolve().parent / "data"
AGE_MIN, AGE_MAX = 18, 70
DEFAULT_AGE = 30
MAX_EXTRA = 300        # chars of free text
MAX_SCENE_TEXT = 200
NO_THEME = "none"      # theme value that adds no words and no LoRA


@dataclass(frozen=True)
class Option:
    key: str
    label: str
    default: str
    choices: dict[str, str]  # value -> prompt fragment


def _load_options(name: str) -> dict[str, Option]:
    raw = yaml.safe_load((DATA_DIR / name).read_text(encoding="utf-8"))
    options: dict[str, Option] = {}
    for key, body in raw.items():
        choices = body["choices"]
        for value, fragment in choices.items():
            # YAML reads unquoted yes/no/on/off as booleans; fail loudly rather than offer "False" as a choice.
            if not isinstance(value, str) or not isinstance(fragment, (str, type(None))):
                raise TypeError(f"{name}: {key}: choice {value!r} must be a quoted string mapping to a string")
        if body["default"] not in choices:
            raise ValueError(f"{name}: {key}: default {body['default']!r} is not one of its choices")
        options[key] = Option(key, str(body.get("label", key)), body["default"],
                              {v: (f or "") for v, f in choices.items()})
    return options


@lru_cache(maxsize=None)
def _cached(name: str) -> dict[str, Option]:
    return _load_options(name)


def catalogue() -> dict[str, Option]:
    """Character options from data/options.yaml, in UI order. A copy: callers may not edit the cache."""
    return dict(_cached("options.yaml"))


def selfie_catalogue() -> dict[str, Option]:
    """Selfie studio options (scene, expression, framing) from data/scenes.yaml."""
    return dict(_cached("scenes.yaml"))


# ---- field checks shared by both specs ---------------------------------------------------------------------

def clean_text(value: str) -> str:
    """Whitespace (newlines from a textarea) -> single spaces; control/format characters dropped.

    Zero-width and control characters would otherwise hide words from the safety filter and leak into prompts.
    """
    kept = (" " if ch.isspace() else ch for ch in value if ch.isspace() or unicodedata.category(ch)[0] != "C")
    return " ".join("".join(kept).split())


def _choice(field: str, value: Any, option: Option) -> str:
    if not isinstance(value, str) or value not in option.choices:
        raise SpecError(field, f"{shown(value)} is not a valid {option.label.lower()}; "
                               f"choose one of: {', '.join(option.choices)}")
    return value


def _unit(field: str, value: Any) -> float:
    # bool is an int subclass: True would silently mean 1.0.
    # (math.isfinite() itself overflows on a huge int: only floats can be nan/inf)
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (isinstance(value, float) and not math.isfinite(value))):
        raise SpecError(field, f"must be a number between 0 and 1, got {shown(value)}")
    if not 0 <= value <= 1:
        raise SpecError(field, f"must be between 0 and 1, got {shown(value)}")
    return float(value)


def _age(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError("age", f"must be a whole number from {AGE_MIN} to {AGE_MAX}, got {shown(value)}")
    if value < AGE_MIN:
        raise SpecError("age", f"characters must be adults ({AGE_MIN} or older), got {shown(value)}")
    if value > AGE_MAX:
        raise SpecError("age", f"must be at most {AGE_MAX}, got {shown(value)}")
    return value


def _text(field: str, value: Any, limit: int) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise SpecError(field, f"must be text, got {type(value).__name__}")
    cleaned = clean_text(value)
    if len(cleaned) > limit:
        raise SpecError(field, f"must be at most {limit} characters, got {len(cleaned)}")
    safety.check_text(cleaned, field=field)
    return cleaned


# ---- from_dict coercion: form widgets and query strings send "30" and 30.0 ------------------------------------

def _to_int(field: str, value: Any) -> Any:
    if isinstance(value, str):
        if not re.fullmatch(r"\s*[+-]?\d+\s*", value):
            raise SpecError(field, f"must be a whole number, got {shown(value)}")
        try:
            return int(value)
        except ValueError:  # more digits than int() accepts from text (4300)
            raise SpecError(field, f"is far out of range, got {shown(value)}") from None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)  # gr.Number sends floats
    return value  # validate() refuses the rest with the proper message


def _to_float(field: str, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)  # "nan"/"inf" parse here and are refused by validate()
        except ValueError:
            raise SpecError(field, f"must be a number, got {shown(value)}") from None
    return value


def _from_dict(cls: type, d: Any, base: Any, coerce: dict[str, Callable[[str, Any], Any]]) -> Any:
    if not isinstance(d, Mapping):
        raise SpecError(cls.__name__, f"expected a mapping of field -> value, got {type(d).__name__}")
    names = [f.name for f in fields(cls)]
    unknown = [k for k in d if k not in names]
    if unknown:
        raise SpecError(str(unknown[0]), f"unknown field; valid fields: {', '.join(names)}")
    values = {**asdict(base), **d}
    for key, fn in coerce.items():
        values[key] = fn(key, values[key])
    return cls(**values).validate()


_CHARACTER_CHOICES = ("hair_colour", "hair_style", "hair_length", "eye_colour", "skin_tone", "body_type", "outfit",
                      "theme")


@dataclass(frozen=True)
class CharacterSpec:
    hair_colour: str
    hair_style: str
    hair_length: str
    eye_colour: str
    skin_tone: str
    age: int
    body_type: str
    outfit: str
    theme: str = NO_THEME
    theme_strength: float = 0.8
    extra: str = ""

    @classmethod
    def default(cls) -> CharacterSpec:
        cat = catalogue()
        return cls(age=DEFAULT_AGE, **{k: cat[k].default for k in _CHARACTER_CHOICES})

    @classmethod
    def from_dict(cls, d: dict) -> CharacterSpec:
        return _from_dict(cls, d, cls.default(), {"age": _to_int, "theme_strength": _to_float})

    def validate(self) -> CharacterSpec:
        cat = catalogue()
        for key in _CHARACTER_CHOICES:
            _choice(key, getattr(self, key), cat[key])
        _age(self.age)
        return replace(self, theme_strength=_unit("theme_strength", self.theme_strength),
                       extra=_text("extra", self.extra, MAX_EXTRA))

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        parts = [str(self.age), f"{self.hair_colour} {self.hair_style} hair", f"{self.eye_colour} eyes"]
        if self.theme != NO_THEME:
            parts.append(self.theme)
        return ", ".join(parts)


@dataclass(frozen=True)
class SelfieSpec:
    scene: str = "studio"
    scene_text: str = ""
    expression: str = "neutral"
    framing: str = "close-up"
    outfit: str | None = None  # None = keep the designed outfit
    likeness: float = 0.7      # 0 = free, 1 = stick to the reference (the engine maps it to IP-Adapter scale)
    extra: str = ""
    character_lora: bool = True                   # use the character's trained LoRA when it has one
    character_lora_strength: float | None = None  # its adapter weight 0-1; None = data/character_lora.yaml's

    @classmethod
    def from_dict(cls, d: dict) -> SelfieSpec:
        return _from_dict(cls, d, cls(), {"likeness": _to_float, "character_lora_strength": _to_float})

    def validate(self) -> SelfieSpec:
        cat = selfie_catalogue()
        scene = _choice("scene", self.scene, cat["scene"])
        scene_text = _text("scene_text", self.scene_text, MAX_SCENE_TEXT)
        if scene == "custom" and not scene_text:
            raise SpecError("scene_text", "describe the scene: a custom scene needs scene text")
        _choice("expression", self.expression, cat["expression"])
        _choice("framing", self.framing, cat["framing"])
        outfit = None if self.outfit in (None, "") else _choice("outfit", self.outfit, catalogue()["outfit"])
        if not isinstance(self.character_lora, bool):
            raise SpecError("character_lora", f"must be true or false, got {shown(self.character_lora)}")
        strength = (None if self.character_lora_strength is None
                    else _unit("character_lora_strength", self.character_lora_strength))
        return replace(self, scene_text=scene_text, outfit=outfit, likeness=_unit("likeness", self.likeness),
                       extra=_text("extra", self.extra, MAX_EXTRA), character_lora_strength=strength)

    def to_dict(self) -> dict:
        return asdict(self)
