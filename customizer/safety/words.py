"""Word and age matchers: whole words of any view, their stems, masked words, numeric ages under 18."""
from __future__ import annotations

import re
from typing import Iterable

from .normalise import _ENDINGS, _NUMBER_WORDS, _Views, _clean
from .rules import _Category, _rules

_ADULT_AGE = 18

_DIGIT_O = re.compile(r"(?<=\d)[oO]|[oO](?=\d)")     # "1O years old"
_DIGIT_L = re.compile(r"(?<=\d)[lI|]|[lI|](?=\d)")   # "l5 years old"


def _minor_age(cat: _Category, text: str) -> str | None:
    folded = _DIGIT_L.sub("1", _DIGIT_O.sub("0", _clean(text))).casefold()
    for pattern in cat.age_patterns:
        for m in pattern.finditer(folded):
            n = m.group("n")
            value = _NUMBER_WORDS.index(n) if n in _NUMBER_WORDS else float(n)
            if value < _ADULT_AGE:
                return m.group(0).strip()
    return None


def _next_word(view: str, end: int) -> str:
    rest = view[end:].split(" ", 2)
    return rest[1] if len(rest) > 1 else ""


def _stem(word: str, terms: frozenset[str]) -> str:
    """The listed one-word term under an inflected word ("teenaged" -> "teenage"), else the word."""
    if word in terms or len(word) < 5 or word in _rules().lexicons["not_inflections"]:
        return word
    for ending, replacement in _ENDINGS:
        if word.endswith(ending):
            stem = word[: -len(ending)] + replacement
            if len(stem) >= 4 and stem in terms:
                return stem
    return word


def _with_stems(views: Iterable[str], terms: frozenset[str]) -> list[str]:
    out = []
    for view in views:
        out.append(view)
        stemmed = " " + " ".join(_stem(w, terms) for w in view.split()) + " "
        if stemmed != view:
            out.append(stemmed)
    return out


def _word_match(cat: _Category, views: _Views, places: frozenset[str]) -> str | None:
    for view in _with_stems(views.lower, cat.single_terms):
        for allowed in cat.allow:
            view = allowed.sub("~", view)
        if cat.terms is not None:
            for m in cat.terms.finditer(view):
                if cat.place_guard and _next_word(view, m.end()) in places:
                    continue  # "Queen Elizabeth Hospital", "Trump Tower"
                return m.group()
        for pattern in cat.patterns:
            m = pattern.search(view)
            if m:
                return m.group().strip()
        for sub in cat.substrings:
            # Inside one word only: across words "top ornament" would spell "porn".
            if sub.isascii() and any(sub in word for word in view.split()):
                return sub
    joined = cat.joined_terms & views.pairs
    if joined:
        return min(joined)
    for masked in views.masked:
        pattern = re.compile("".join("." if c == "*" else re.escape(c) for c in masked))
        hit = next((t for t in sorted(cat.single_terms) if len(t) == len(masked) and pattern.fullmatch(t)), None)
        if hit and sum(c.isalpha() for c in masked) >= 2:
            return hit
    if cat.accented_terms is not None:
        m = cat.accented_terms.search(views.accented)
        if m:
            return m.group()
    for sub in cat.substrings:
        if not sub.isascii() and sub in views.raw_accented:
            return sub
    return None
