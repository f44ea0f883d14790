"""Refuse user-written text that asks for minors, nudity, real people, gore, abuse or hate, with the reason from
data/safety.yaml (word lists the rules refer to: data/safety_lexicons.yaml).

Every string a user writes that is stored or shown - extra details, scene details, character and pack names -
passes check_text(). Matching is on whole words of a normalised text, so "sex" is caught in "nude-sex" but not in
"Sussex". The normalisation undoes the usual tricks rather than matching substrings (which would refuse "kidney"
and "Middlesex"); a text is looked at in a few "views" and refused if any view matches:

- NFKC (fullwidth, mathematical and circled letters), case, accents, invisible characters, small capitals and
  regional-indicator letters folded away; symbols used as letters inside words ("$ex", "b@be", "k!d") replaced;
- digits inside words read as letters ("t33n", "n00dz"; "1" once as i and once as l), numbers left alone;
- one-letter runs joined ("n u d e", "s.3.x"), two short neighbours joined ("nu de"), stretched letters squeezed
  ("nuuude"), masked letters ("n*de") matched against the single-word terms;
- look-alike letters (Cyrillic/Greek/Armenian "nudе") mapped to Latin in one view, kept in another (so Russian
  terms still match); terms with accents ("niña") are matched with their accents, so "Nina" stays a name.

On top of the word lists: regular-expression patterns per category (implicit nudity "wearing nothing", gore
"cut off his hand", minors "7th grader"), numeric ages under 18, and the real-people likeness rule: a likeness
cue ("looks like", "lookalike of", "photo of", "as") followed by a person's name, told apart from places named
after people ("a market on Victor Hugo street") by the lexicons. See data/safety.yaml for the rule forms.

Modules: normalise (the views), rules (the data files, compiled), words (word and age matchers), names (the
likeness rule); this file is the public face: check_text, find, categories, safety_negative.
"""
from __future__ import annotations

from ..errors import SafetyError
from .names import _NameReader
from .normalise import _clean, _views
from .rules import _Category, _rules
from .words import _minor_age, _word_match

__all__ = ["categories", "check_text", "find", "safety_negative"]


def check_text(text: str, field: str = "text") -> None:
    """Raise SafetyError(category, reason, match) if `text` asks for something that must not be generated.

    The message starts with `field` so the user knows which box to fix.
    """
    if not isinstance(text, str):
        raise TypeError(f"{field}: expected text, got {type(text).__name__}")
    if not text.strip():
        return
    hit = find(text)
    if hit is not None:
        cat, match = hit
        raise SafetyError(cat.name, f"{field}: {cat.reason}", match)


def find(text: str) -> tuple[_Category, str] | None:
    """The first category `text` falls in, with what matched; None when the text may be used."""
    rules = _rules()
    views = _views(text)
    original = _clean(text)
    places = rules.lexicons["place_words"]
    for cat in rules.categories:
        if cat.age_patterns:
            age = _minor_age(cat, text)
            if age is not None:
                return cat, age
        match = _word_match(cat, views, places)
        if match is not None:
            return cat, match
        for pattern in cat.name_patterns:
            m = pattern.search(original)
            if m:
                return cat, m.group(0)
        if cat.likeness is not None:
            match = _NameReader(original, cat.likeness, rules.lexicons).find()
            if match is not None:
                return cat, match
    return None


def categories() -> list[str]:
    """Category names in the order they are checked."""
    return [c.name for c in _rules().categories]


def safety_negative() -> str:
    """Terms appended to every negative prompt (data/safety.yaml negative_terms)."""
    return _rules().negative
