"""Spec -> prompt strings, from the templates in data/prompts.yaml.

The template is a list of parts; a part whose placeholders are all empty is dropped, so an empty extra or theme
leaves no ", ," behind. Quality words come last: CLIP reads 77 tokens and truncation should cost them first.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from string import Formatter

import yaml

from .character import AGE_MIN, NO_THEME, CharacterSpec, SelfieSpec, catalogue, clean_text, selfie_catalogue
from .errors import SpecError
from .safety import safety_negative

DATA = Path(__file__).resolve().parent / "data" / "prompts.yaml"
_COMMA_RUNS = re.compile(r"\s*,[\s,]*")


@dataclass(frozen=True)
class Prompt:
    positive: str
    negative: str


@lru_cache(maxsize=1)
def _templates() -> dict:
    return yaml.safe_load(DATA.read_text(encoding="utf-8"))


def _tidy(text: str) -> str:
    """One space between words, ", " between parts, no empty or dangling commas."""
    return _COMMA_RUNS.sub(", ", clean_text(text)).strip(" ,")


def _render(parts: list[str], values: dict[str, str]) -> str:
    values = {k: _tidy(v) for k, v in values.items()}
    out = []
    for part in parts:
        names = [name for _, name, _, _ in Formatter().parse(part) if name]
        if names and not any(values[n] for n in names):
            continue
        text = _tidy(part.format(**values))
        if text:
            out.append(text)
    return ", ".join(out)


def age_words(age: int) -> str:
    """Words for an age band (data/prompts.yaml): the model is never given a bare number it could misread."""
    if isinstance(age, bool) or not isinstance(age, int):
        raise SpecError("age", f"must be a whole number, got {age!r}")
    if age < AGE_MIN:
        raise SpecError("age", f"characters must be adults ({AGE_MIN} or older), got {age}")
    bands = _templates()["age_words"]
    return next((b["words"] for b in bands if age <= b["max"]), bands[-1]["words"])


def default_negative() -> str:
    """The template negative prompt, without the safety terms."""
    return _tidy(_templates()["negative"])


def with_safety(negative: str) -> str:
    """`negative` plus every safety term it lacks; a user-edited negative can add terms, never drop these."""
    base = _tidy(negative or "")
    have = {term.casefold() for term in base.split(", ")}
    missing = [t for t in _tidy(safety_negative()).split(", ") if t and t.casefold() not in have]
    return _tidy(", ".join([base, *missing]))


def _character_values(spec: CharacterSpec, theme_triggers: str | None) -> dict[str, str]:
    cat = catalogue()
    frag = {key: cat[key].choices[getattr(spec, key)]
            for key in ("hair_colour", "hair_style", "hair_length", "eye_colour", "skin_tone", "body_type", "outfit")}
    if spec.theme == NO_THEME:
        theme_words = ""  # no theme means no LoRA, so its trigger words would be noise
    elif theme_triggers is None:
        theme_words = cat["theme"].choices[spec.theme]
    else:
        theme_words = theme_triggers
    return {**frag, "age_words": age_words(spec.age), "theme_words": theme_words, "extra": spec.extra,
            "quality": _templates()["quality"]}


def portrait_prompt(spec: CharacterSpec, theme_triggers: str | None = None, negative: str | None = None) -> Prompt:
    spec = spec.validate()  # last gate before generation: specs built in code skip from_dict
    values = _character_values(spec, theme_triggers)
    return Prompt(_render(_templates()["portrait"]["parts"], values),
                  with_safety(default_negative() if negative is None else negative))


def selfie_prompt(spec: CharacterSpec, selfie: SelfieSpec, theme_triggers: str | None = None,
                  negative: str | None = None, from_reference: bool = False) -> Prompt:
    """from_reference: the template that leaves hair, eyes and skin to the locked reference (prompts.yaml)."""
    spec, selfie = spec.validate(), selfie.validate()
    cat, studio = catalogue(), selfie_catalogue()
    values = _character_values(spec, theme_triggers)
    if selfie.outfit is not None:
        values["outfit"] = cat["outfit"].choices[selfie.outfit]
    # "custom" has an empty fragment, so the text stands alone; a preset scene gets the text appended.
    values["scene"] = ", ".join(p for p in (studio["scene"].choices[selfie.scene], selfie.scene_text) if p)
    values["expression"] = studio["expression"].choices[selfie.expression]
    values["framing"] = studio["framing"].choices[selfie.framing]
    values["extra"] = ", ".join(p for p in (spec.extra, selfie.extra) if p)  # the character's marks stay on
    template = _templates()["selfie_from_reference" if from_reference else "selfie"]
    return Prompt(_render(template["parts"], values),
                  with_safety(default_negative() if negative is None else negative))
