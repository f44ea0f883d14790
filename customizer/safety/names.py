"""The real-people likeness rule: a likeness cue next to a person's name, told apart from places named after people."""
from __future__ import annotations

from dataclasses import dataclass

from .normalise import _CONFUSABLES, _CONFUSABLES_UPPER, _NAME_GAP, _NAME_WORD, _strip_accents
from .rules import _Likeness

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
