"""The rules of data/safety.yaml and the word lists of data/safety_lexicons.yaml, compiled once."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import yaml

from .normalise import _CONFUSABLES, _NUM, _WORDS, _accented_phrase, _fold, _phrase, _strip_accents

DATA = Path(__file__).resolve().parents[1] / "data" / "safety.yaml"
LEXICONS = Path(__file__).resolve().parents[1] / "data" / "safety_lexicons.yaml"


@dataclass(frozen=True)
class _Likeness:
    strong: tuple[tuple[str, ...], ...]
    cues: tuple[tuple[str, ...], ...]
    postfix: tuple[tuple[str, ...], ...]
    possessive: frozenset[str]


@dataclass(frozen=True)
class _Category:
    name: str
    reason: str
    terms: re.Pattern | None            # whole-word terms (folded), one alternation, longest first
    single_terms: frozenset[str]        # the one-word terms (masked words are checked against these)
    joined_terms: frozenset[str]        # every term with its spaces removed (re-joined words are checked here)
    accented_terms: re.Pattern | None   # terms written with accents or in another script
    allow: tuple[re.Pattern, ...]
    substrings: tuple[str, ...]
    patterns: tuple[re.Pattern, ...]
    age_patterns: tuple[re.Pattern, ...]
    name_patterns: tuple[re.Pattern, ...]
    likeness: _Likeness | None
    place_guard: bool                   # a term followed by a place word is a place ("Queen Elizabeth Hospital")


@dataclass(frozen=True)
class _Rules:
    categories: tuple[_Category, ...]
    negative: str
    lexicons: dict[str, frozenset[str]]


def _alternation(items: Iterable[str]) -> str:
    return "|".join(re.escape(t) for t in sorted(set(items), key=lambda t: (-len(t), t)))


def _words_regex(phrases: Iterable[str]) -> re.Pattern | None:
    phrases = [p for p in phrases if p]
    return re.compile(r"(?<= )(?:" + _alternation(phrases) + r")(?= )") if phrases else None


def _expand(pattern: str, lexicons: dict[str, list[str]]) -> str:
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name == "num":
            return _NUM
        if name not in lexicons:
            raise KeyError(f"safety.yaml: pattern refers to unknown list {{{name}}}")
        return "(?:" + _alternation(lexicons[name]) + ")"
    return re.sub(r"\{([a-z_]+)\}", sub, pattern)


def _cue_list(items: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    return tuple(sorted({tuple(_WORDS.findall(_strip_accents(str(c).casefold()).translate(_CONFUSABLES)))
                         for c in items}, key=len, reverse=True))


@lru_cache(maxsize=1)
def _rules() -> _Rules:
    raw = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    lex_raw = {k: [str(x) for x in v] for k, v in yaml.safe_load(LEXICONS.read_text(encoding="utf-8")).items()}
    lexicons = {k: frozenset(_phrase(x) for x in v) for k, v in lex_raw.items()}
    folded_lex = {k: sorted({_phrase(x) for x in v}) for k, v in lex_raw.items()}
    cats = []
    for name, body in raw.items():
        if not isinstance(body, dict):
            continue  # negative_terms and other scalars
        terms = [str(t) for t in body.get("terms", [])]
        plain = [t for t in terms if _phrase(t) == _accented_phrase(t) or t.isascii()]
        accented = [t for t in terms if t not in plain]
        subs = [str(s) for s in body.get("substrings", [])]
        lk = body.get("likeness")
        cats.append(_Category(
            name=name,
            reason=str(body["reason"]),
            terms=_words_regex(_phrase(t) for t in plain),
            single_terms=frozenset(p for p in (_phrase(t) for t in plain) if p and " " not in p),
            joined_terms=frozenset(_phrase(t).replace(" ", "") for t in plain if len(_phrase(t)) >= 3),
            accented_terms=_words_regex(_accented_phrase(t) for t in accented),
            allow=tuple(re.compile(r"(?<= )" + re.escape(_phrase(a)) + r"(?= )") for a in body.get("allow", [])),
            substrings=tuple(_phrase(s) if s.isascii() else _fold(s, strip=False) for s in subs),
            patterns=tuple(re.compile(r"(?<![^ ])(?:" + _expand(p, folded_lex) + r")(?![^ ])")
                           for p in body.get("patterns", [])),
            age_patterns=tuple(re.compile(_expand(p, folded_lex)) for p in body.get("age_patterns", [])),
            name_patterns=tuple(re.compile(p) for p in body.get("name_patterns", [])),
            likeness=_Likeness(strong=_cue_list(lk.get("strong_cues", [])), cues=_cue_list(lk.get("cues", [])),
                               postfix=_cue_list(lk.get("postfix", [])),
                               possessive=frozenset(_phrase(x) for x in lk.get("possessive", [])))
            if lk else None,
            place_guard=bool(lk),
        ))
    return _Rules(tuple(cats), str(raw.get("negative_terms", "")), lexicons)


def _category(name: str) -> _Category:
    return next(c for c in _rules().categories if c.name == name)
