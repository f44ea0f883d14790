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
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import yaml

from .errors import SafetyError

DATA = Path(__file__).resolve().parent / "data" / "safety.yaml"
LEXICONS = Path(__file__).resolve().parent / "data" / "safety_lexicons.yaml"
_ADULT_AGE = 18

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


# ---------------------------------------------------------------------------------------------- rules

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


# ---------------------------------------------------------------------------------------------- matchers

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


@dataclass(frozen=True)
class _Word:
    text: str      # as written (look-alike capitals mapped)
    key: str       # casefolded, accents stripped, possessive 's dropped
    start: int
    end: int
    possessive: bool

    @property
    def capitalised(self) -> bool:
        return self.text[0].isupper()


def _name_words(text: str) -> list[_Word]:
    out = []
    for m in _NAME_WORD.finditer(text):
        word = m.group()
        key = _strip_accents(word.casefold()).translate(_CONFUSABLES)
        possessive = key.endswith(("'s", "’s"))
        if possessive:
            key = key[:-2]
        out.append(_Word(word, key.replace("’", "'"), m.start(), m.end(), possessive))
    return out


class _NameReader:
    """Finds "<likeness cue> <a person's name>" and "<a person's name> <lookalike>" in one text."""

    def __init__(self, text: str, lk: _Likeness, lex: dict[str, frozenset[str]]):
        mixed = " ".join(w.translate(_CONFUSABLES_UPPER) if not w.isascii() else w for w in text.split(" "))
        self.text = mixed
        self.words = _name_words(mixed)
        self.lk, self.lex = lk, lex
        long_words = [w for w in self.words if len(w.text) > 2]
        # Title Case Text Says Nothing About Names: then capitalised ordinary words ("With Rose Gold") are no name
        self.title_case = len(long_words) >= 4 and sum(w.capitalised for w in long_words) >= 0.6 * len(long_words)

    def _adjacent(self, a: int, b: int) -> bool:
        return bool(_NAME_GAP.fullmatch(self.text[self.words[a].end:self.words[b].start]))

    def _is_name_word(self, i: int) -> bool:
        w = self.words[i]
        return w.capitalised and w.key not in self.lex["not_names"]

    def _place(self, run: list[int], after: int | None) -> bool:
        lex = self.lex
        if self.words[run[0]].key in lex["place_prefixes"] or self.words[run[-1]].key in lex["place_words"]:
            return True
        first_two = " ".join(self.words[i].key for i in run[:2])
        if first_two in lex["place_names"] or first_two in lex["fictional_names"]:
            return True
        return (after is not None and after < len(self.words) and self._adjacent(run[-1], after)
                and (self.words[after].key in lex["place_words"] or self.words[after].key in lex["thing_words"]))

    def _given(self, i: int, capitalised: bool) -> bool:
        key = self.words[i].key
        if key not in self.lex["given_names"]:
            return False
        # "rose", "grace": a name only when written as one, and not in Title Case text
        return key not in self.lex["given_names_that_are_words"] or (capitalised and not self.title_case)

    def _surname_like(self, i: int) -> bool:
        w = self.words[i]
        lex = self.lex
        return (len(w.key) >= 2 and w.key.isalpha() and w.key not in lex["stopwords"]
                and w.key not in lex["place_words"] and w.key not in lex["name_fillers"]
                and not w.key.endswith("ing"))

    def _forward(self, j: int, strong: bool) -> tuple[int, int] | None:
        """A person's name starting at word j (after the cue): (first, last) word index, or None."""
        words, n = self.words, len(self.words)
        skipped = 0
        while j < n and words[j].key in self.lex["name_fillers"] and skipped < 3:
            j, skipped = j + 1, skipped + 1
        if j >= n:
            return None
        if strong and words[j].key in ("my", "our") and j + 1 < n:
            # "looks like my ex", "same face as my best friend"
            for size in (2, 1):
                chunk = words[j + 1:j + 1 + size]
                if len(chunk) == size and " ".join(w.key for w in chunk) in self.lex["relation"]:
                    return j, j + size
        run = []
        k = j
        while k < n and (not run or self._adjacent(run[-1], k)):
            if self._is_name_word(k):
                run.append(k)
                k += 1
                if words[run[-1]].possessive:
                    break
            elif (run and words[k].key in self.lex["name_particles"] and k + 1 < n and self._adjacent(k, k + 1)
                  and self._is_name_word(k + 1)):
                k += 1
            else:
                break
        if len(run) == 1 and words[run[0]].key in self.lex["famous_first_names"]:
            return run[0], run[0]  # "portrait of Elon"
        if len(run) >= 2 and not self._place(run, k):
            if strong or self._given(run[0], capitalised=True):
                return run[0], run[-1]
            return None
        if not run and not words[j].capitalised and j + 1 < n and self._adjacent(j, j + 1):
            # lowercase: "looks like ryan gosling"
            if (self._given(j, capitalised=False) and not words[j + 1].capitalised and self._surname_like(j + 1)
                    and not self._place([j, j + 1], j + 2)):
                return j, j + 1
        return None

    def _backward(self, p: int, needs_possessive: bool) -> tuple[int, int] | None:
        """A person's name ending just before word p (the postfix cue): "a Ryan Gosling lookalike"."""
        words = self.words
        last = p - 1
        if last < 0 or not self._adjacent(last, p) or (needs_possessive and not words[last].possessive):
            return None
        run = []
        k = last
        while k >= 0 and (not run or self._adjacent(k, run[0])):
            if self._is_name_word(k) and (k == last or not words[k].possessive):
                run.insert(0, k)
            elif run and words[k].key in self.lex["name_particles"] and k > 0 and self._is_name_word(k - 1):
                pass
            else:
                break
            k -= 1
        if len(run) >= 2 and not self._place(run, None):
            return run[0], run[-1]
        if (not run and last >= 1 and self._adjacent(last - 1, last) and not words[last].capitalised
                and self._given(last - 1, capitalised=False) and self._surname_like(last)):
            return last - 1, last
        return None

    def find(self) -> str | None:
        words = self.words
        keys = [w.key for w in words]
        for i in range(len(words)):
            for tier, cues in (("strong", self.lk.strong), ("cue", self.lk.cues)):
                for cue in cues:
                    if tuple(keys[i:i + len(cue)]) == cue:
                        span = self._forward(i + len(cue), strong=tier == "strong")
                        if span:
                            return self.text[words[i].start:words[span[1]].end]
            for cue in self.lk.postfix:
                if tuple(keys[i:i + len(cue)]) == cue:
                    span = self._backward(i, needs_possessive=False)
                    if span:
                        return self.text[words[span[0]].start:words[i + len(cue) - 1].end]
            if keys[i] in self.lk.possessive:
                span = self._backward(i, needs_possessive=True)
                if span:
                    return self.text[words[span[0]].start:words[i].end]
        return None


# ---------------------------------------------------------------------------------------------- public

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
