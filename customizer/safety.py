"""Refuse free text that asks for minors, explicit content or real people, with the reason from data/safety.yaml.

Matching is on whole words of a normalised text, so "sex" is caught in "nude-sex" but not in "Sussex". The
normalisation undoes the usual tricks (fullwidth letters, accents, zero-width characters, leetspeak digits inside
words, s.p.a.c.e.d letters) rather than matching substrings, which would refuse "kidney" and "Middlesex".
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from .errors import SafetyError

DATA = Path(__file__).resolve().parent / "data" / "safety.yaml"

# Digits only count as letters inside a word that also has letters ("t33n"), so "15 years" stays a number.
_LEET = str.maketrans("013457", "oieast")
# Cyrillic/Greek look-alikes NFKC leaves alone ("nudе" with a Cyrillic е).
_CONFUSABLES = str.maketrans("аеорсухіѕјοαεικνρτυχ", "aeopcyxisjoaeikvptux")
_SYMBOL_LETTERS = re.compile(r"(?<=\w)[@$]|[@$](?=\w)")  # "$ex", "b@be"; a lone "$5" is still money
_WORDS = re.compile(r"[^\W_]+")  # underscores, hyphens and punctuation separate words

_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                 "sixteen seventeen").split()
_NUM = r"(?P<n>\d{1,3}(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")"
# "15 years old", "15-year-old", "15yo", "15 y/o", "15 years of age"; not "15 years ago".
_AGE_AFTER = re.compile(r"(?<![\w.])" + _NUM + r"[\s-]*(?:(?:years?|yrs?)[\s-]*(?:old|of[\s-]+age)|yo|y/o|y\.o\.?)(?!\w)")
# "aged 12", "age 16", "age: 16", "age of 15"; \b keeps "page 12" and "image 3" out.
_AGE_BEFORE = re.compile(r"\bage[ds]?[\s:=-]*(?:of[\s-]+)?" + _NUM + r"(?![\w.])")
_ADULT_AGE = 18


@dataclass(frozen=True)
class _Category:
    name: str
    reason: str
    terms: tuple[str, ...]        # normalised, words joined by single spaces
    allow: tuple[re.Pattern, ...]
    substrings: tuple[str, ...]
    name_patterns: tuple[re.Pattern, ...]


def _clean(text: str) -> str:
    """NFKC, whitespace-like characters -> space, invisible ones dropped (so "nu\u200bde" reads as "nude")."""
    text = unicodedata.normalize("NFKC", text)
    out = []
    for ch in text:
        if ch.isspace():
            out.append(" ")
        elif unicodedata.category(ch) not in ("Cc", "Cf", "Co", "Cs"):
            out.append(ch)
    return " ".join("".join(out).split())


def _fold(text: str) -> str:
    """Case, accents and look-alike letters folded away; symbols used as letters replaced."""
    text = unicodedata.normalize("NFKD", _clean(text).casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = unicodedata.normalize("NFC", text).translate(_CONFUSABLES)
    return _SYMBOL_LETTERS.sub(lambda m: "a" if m.group() == "@" else "s", text)


def _tokens(text: str) -> list[str]:
    words = _WORDS.findall(_fold(text))
    return [w.translate(_LEET) if not w.isdigit() and any(c.isdigit() for c in w) else w for w in words]


def _merge_letters(tokens: list[str]) -> list[str]:
    """Runs of two or more one-character words become one word: "n u d e", "s.3.x" -> "nude", "sex"."""
    out: list[str] = []
    run: list[str] = []
    for tok in [*tokens, ""]:
        if len(tok) == 1:
            run.append(tok)
            continue
        if len(run) >= 2 and any(c.isalpha() for c in run):
            out.append("".join(run).translate(_LEET))
        else:
            out.extend(run)
        run = []
        if tok:
            out.append(tok)
    return out


def _phrase(words: str) -> str:
    return " ".join(_tokens(words))


@lru_cache(maxsize=1)
def _rules() -> tuple[tuple[_Category, ...], str]:
    raw = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    cats = []
    for name, body in raw.items():
        if not isinstance(body, dict):
            continue  # negative_terms and other scalars
        allow = tuple(re.compile(r"(?<= )" + re.escape(_phrase(a)) + r"(?= )") for a in body.get("allow", []))
        cats.append(_Category(
            name=name,
            reason=str(body["reason"]),
            # Longest phrases first so the error names "little girl" rather than "girl".
            terms=tuple(sorted((_phrase(str(t)) for t in body.get("terms", [])), key=lambda t: -t.count(" "))),
            allow=allow,
            substrings=tuple(_phrase(str(s)) for s in body.get("substrings", [])),
            name_patterns=tuple(re.compile(p) for p in body.get("name_patterns", [])),
        ))
    return tuple(cats), str(raw.get("negative_terms", ""))


def _category(name: str) -> _Category:
    return next(c for c in _rules()[0] if c.name == name)


def _minor_age(text: str) -> str | None:
    folded = _clean(text).casefold()
    for pattern in (_AGE_AFTER, _AGE_BEFORE):
        for m in pattern.finditer(folded):
            n = m.group("n")
            value = _NUMBER_WORDS.index(n) if n in _NUMBER_WORDS else float(n)
            if value < _ADULT_AGE:
                return m.group(0)
    return None


def check_text(text: str, field: str = "text") -> None:
    """Raise SafetyError(category, reason, match) if `text` asks for something that must not be generated.

    The message starts with `field` so the user knows which box to fix.
    """
    if not isinstance(text, str):
        raise TypeError(f"{field}: expected text, got {type(text).__name__}")
    if not text.strip():
        return
    cats, _ = _rules()

    age = _minor_age(text)
    if age is not None:
        minors = _category("minors")
        raise SafetyError(minors.name, f"{field}: {minors.reason}", age)

    tokens = _tokens(text)
    views = {" " + " ".join(tokens) + " ", " " + " ".join(_merge_letters(tokens)) + " "}
    for cat in cats:
        for view in views:
            for allowed in cat.allow:
                view = allowed.sub("~", view)
            for term in cat.terms:
                if f" {term} " in view:
                    raise SafetyError(cat.name, f"{field}: {cat.reason}", term)
            for sub in cat.substrings:
                # Inside one word only: across words "top ornament" would spell "porn".
                if any(sub in word for word in view.split()):
                    raise SafetyError(cat.name, f"{field}: {cat.reason}", sub)

    # Name patterns rely on capitalisation, so they see the original case (NFKC only).
    original = _clean(text)
    for cat in cats:
        for pattern in cat.name_patterns:
            m = pattern.search(original)
            if m:
                raise SafetyError(cat.name, f"{field}: {cat.reason}", m.group(0))


def safety_negative() -> str:
    """Terms appended to every negative prompt (data/safety.yaml negative_terms)."""
    return _rules()[1]
