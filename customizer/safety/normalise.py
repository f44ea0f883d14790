"""Text normalisation: the "views" of a text that the word rules match against (see the package docstring)."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable


# Digits only count as letters inside a word that also has letters ("t33n"), so "15 years" stays a number.
_LEET = str.maketrans("0134578", "oieastb")
_LEET_L = str.maketrans("0134578", "oleastb")      # "1" as l: "1oli", "nak3d g1rl" is caught by the other view
# Look-alike letters NFKC leaves alone, lowercase (after casefold): Cyrillic, Greek, Armenian, Latin extensions,
# small capitals.
_CONFUSABLE_PAIRS = {
    "а": "a", "в": "b", "е": "e", "ё": "e", "і": "i", "ї": "i", "ј": "j", "к": "k", "м": "m", "н": "h", "о": "o",
    "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h",
    "ӏ": "l", "ь": "b", "ɡ": "g", "ı": "i", "ȷ": "j", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "α": "a", "β": "b",
    "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
    "ω": "w", "ϲ": "c", "ս": "u", "ո": "n", "օ": "o", "ց": "g", "հ": "h", "ƒ": "f", "ɑ": "a", "ɩ": "i", "ʋ": "u",
    "ɛ": "e", "ɔ": "o", "ĸ": "k", "ŧ": "t", "ƶ": "z", "ɓ": "b", "ɗ": "d", "ƙ": "k", "ɲ": "n", "ŋ": "n", "ʂ": "s",
    "ȿ": "s", "ɋ": "q", "ɍ": "r", "ɏ": "y", "ƴ": "y", "ʐ": "z", "ɦ": "h", "ɱ": "m", "ƿ": "p", "þ": "p",
}
_CONFUSABLES = str.maketrans(_CONFUSABLE_PAIRS)
# Small capitals and regional indicators (🇳🇺🇩🇪) are plain letters in every view.
_SMALL_CAPS = dict(zip("ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡʏᴢ", "abcdefghijklmnoprstuvwyz"))
_ALWAYS = str.maketrans({**_SMALL_CAPS, **{chr(0x1F1E6 + i): chr(ord("a") + i) for i in range(26)}})
# Capital look-alikes, for the name rule, which reads case ("Тоm Наnks" with Cyrillic Т and Н).
_CONFUSABLES_UPPER = str.maketrans({"А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
                                    "С": "C", "Т": "T", "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S", "Α": "A", "Β": "B",
                                    "Ε": "E", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P",
                                    "Τ": "T", "Υ": "Y", "Χ": "X", "Ζ": "Z"})
# "$ex", "b@be", "k!d", "sk|rt"; a lone "$5" is still money and "NUDE!!!" ends with exclamation marks
_SYMBOL_LETTERS = re.compile(r"(?<=\w)[@$€]|[@$€](?=\w)|(?<=[^\W\d_])[!|](?=[^\W\d_])")
_SYMBOL_MAP = {"@": "a", "$": "s", "€": "e", "!": "i", "|": "l"}
_WORDS = re.compile(r"[^\W_]+")  # underscores, hyphens and punctuation separate words
_MASKED = re.compile(r"(?<![\w*])[^\W\d_]*(?:\*+[^\W\d_]*)+")  # "n*de", "p**n"
_STRETCH = re.compile(r"([^\W\d_])\1{2,}")  # "nuuude"
_CAPITAL_I_AS_L = re.compile(r"(?<=[a-z])I|I(?=[a-z]{2})")  # "nippIes", "cIothes" ("Ilona" harmlessly -> "llona")
# Word endings tried off a word to find a listed term under it ("teenaged" -> "teenage", "disrobing" ->
# "disrobe"); only stems of 4+ letters count, so "kidding" never becomes "kid".
_ENDINGS = (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("d", ""), ("ing", ""), ("ing", "e"),
            ("ers", ""), ("er", ""), ("ers", "e"), ("er", "e"))
_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                 "sixteen seventeen").split()
_NUM = r"(?P<n>\d{1,3}(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")"
_NAME_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_NAME_GAP = re.compile(r"[\s.\-]*")  # what may stand between the words of one name ("J. R. R. Tolkien", "Jean-Luc")
_SCRIPT_WITHOUT_SPACES = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


# ---------------------------------------------------------------------------------------------- normalisation

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


def _strip_accents(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize("NFC", "".join(ch for ch in text if not unicodedata.combining(ch)))


def _fold(text: str, strip: bool = True) -> str:
    """Case (and, with strip, accents) folded away; small capitals, regional indicators and symbols used as
    letters replaced."""
    text = _clean(text).casefold().translate(_ALWAYS)
    if strip:
        text = _strip_accents(text)
    return _SYMBOL_LETTERS.sub(lambda m: _SYMBOL_MAP[m.group()], text)


def _leet(words: Iterable[str], table=_LEET) -> list[str]:
    return [w.translate(table) if not w.isdigit() and any(c.isdigit() for c in w) else w for w in words]


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


def _tokens(text: str) -> list[str]:
    return _leet(_WORDS.findall(_fold(text)))


def _phrase(words: str) -> str:
    """A term as the views spell it: words of the folded text joined by single spaces."""
    return " ".join(_tokens(words))


def _accented_phrase(words: str) -> str:
    return " ".join(_WORDS.findall(_fold(words, strip=False)))


@dataclass(frozen=True)
class _Views:
    """The normalised forms of one text that the word rules look at."""
    lower: tuple[str, ...]      # " w1 w2 ... " strings: plain, letters joined, 1-as-l, look-alikes, squeezed
    accented: str               # " w1 w2 ... " with accents kept (terms written with accents)
    raw_accented: str           # the folded text itself (scripts written without spaces)
    pairs: frozenset[str]       # two short neighbouring words joined ("nu de" -> "nude"), and words joined from
                                # one-letter runs ("t a y l o r s w i f t")
    masked: tuple[str, ...]     # words with * in them ("n*de")


def _views(text: str) -> _Views:
    if _CAPITAL_I_AS_L.search(text):
        text = text + " \n " + _CAPITAL_I_AS_L.sub("l", text)  # both readings; a newline keeps them apart
    stripped = _fold(text)
    words = _WORDS.findall(stripped)
    base = _leet(words)
    merged = _merge_letters(base)
    forms = [words, base, merged]  # words as written keep "7th grade" readable
    if "1" in stripped:
        forms.append(_merge_letters(_leet(words, _LEET_L)))
    looked = [w.translate(_CONFUSABLES) for w in merged]
    if looked != merged:
        forms.append(looked)
    for form in list(forms):
        if any(_STRETCH.search(w) for w in form):
            forms.append([_STRETCH.sub(r"\1", w) for w in form])
            forms.append([_STRETCH.sub(r"\1\1", w) for w in form])
    lower = tuple(dict.fromkeys(" " + " ".join(f) + " " for f in forms))
    pairs = {a + b for f in (merged, looked) for a, b in zip(f, f[1:]) if len(a) <= 4 and len(b) <= 4}
    pairs |= set(merged) - set(base)
    accented_text = _fold(text, strip=False)
    return _Views(lower=lower, accented=" " + " ".join(_WORDS.findall(accented_text)) + " ",
                  raw_accented=accented_text, pairs=frozenset(pairs),
                  masked=tuple(m.group().translate(_CONFUSABLES) for m in _MASKED.finditer(stripped)))
