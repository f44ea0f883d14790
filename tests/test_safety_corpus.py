"""The safety policy against its corpora (tests/data/safety_corpus.yaml, tests/data/safety_holdout.yaml): every
hostile phrase refused (0 false accepts) with its category's reason, at most 1% of the ordinary phrases refused.

`python tests/test_safety_corpus.py` prints precision and recall per corpus (the figures in the README).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml

from customizer.safety import check_text, find

DATA = Path(__file__).resolve().parent / "data"
CORPORA = ["safety_corpus.yaml", "safety_holdout.yaml"]
MAX_FALSE_REFUSALS = 0.01
RULES = yaml.safe_load((Path(__file__).resolve().parent.parent / "customizer/data/safety.yaml").read_text())


def load(name: str) -> dict:
    corpus = yaml.safe_load((DATA / name).read_text(encoding="utf-8"))
    for side in ("refuse", "allow"):
        for group, phrases in corpus[side].items():
            for p in phrases:
                assert isinstance(p, str) and p.strip(), f"{name}: {side}.{group}: {p!r} is not a phrase"
    return corpus


def measure(corpus: dict) -> dict:
    hostile = [(cat, p) for cat, ps in corpus["refuse"].items() for p in ps]
    ordinary = [(group, p) for group, ps in corpus["allow"].items() for p in ps]
    t0 = time.perf_counter()
    accepted = [(cat, p) for cat, p in hostile if find(p) is None]
    refused = [(g, p, *find(p)) for g, p in ordinary if find(p) is not None]
    seconds = time.perf_counter() - t0
    tp, fp = len(hostile) - len(accepted), len(refused)
    return {"hostile": len(hostile), "ordinary": len(ordinary), "false_accepts": accepted, "false_refusals": refused,
            "precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / len(hostile),
            "false_refusal_rate": fp / len(ordinary),
            "ms_per_phrase": 1000 * seconds / (2 * len(ordinary) + len(hostile))}


@pytest.mark.parametrize("name", CORPORA)
def test_corpus_is_big_enough_and_balanced(name):
    corpus = load(name)
    assert set(corpus["refuse"]) == {k for k, v in RULES.items() if isinstance(v, dict)}, "a category has no phrases"
    hostile = sum(map(len, corpus["refuse"].values()))
    ordinary = sum(map(len, corpus["allow"].values()))
    assert hostile >= (300 if name == "safety_corpus.yaml" else 100)
    assert ordinary >= (300 if name == "safety_corpus.yaml" else 100)


@pytest.mark.parametrize("name", CORPORA)
def test_no_hostile_phrase_is_accepted(name):
    m = measure(load(name))
    assert m["false_accepts"] == [], f"{len(m['false_accepts'])} accepted: {m['false_accepts'][:20]}"


@pytest.mark.parametrize("name", CORPORA)
def test_false_refusals_at_most_one_percent(name):
    m = measure(load(name))
    assert m["false_refusal_rate"] <= MAX_FALSE_REFUSALS, [(p, c.name, hit) for _, p, c, hit in m["false_refusals"]]


@pytest.mark.parametrize("name", CORPORA)
def test_refusals_name_their_category_and_reason(name):
    """The reason shown is the phrase's own category's - or the minors one, which comes first by design (a
    phrase that mentions a minor is refused for that, whatever else it asks)."""
    for cat, phrases in load(name)["refuse"].items():
        for p in phrases:
            hit = find(p)
            assert hit is not None and hit[0].name in (cat, "minors"), (p, cat, hit and hit[0].name)
            with pytest.raises(Exception) as err:
                check_text(p, field="extra")
            assert str(err.value).startswith(f"extra: {RULES[hit[0].name]['reason']}"), str(err.value)


if __name__ == "__main__":
    for name in CORPORA:
        m = measure(load(name))
        print(f"{name}: {m['hostile']} hostile, {m['ordinary']} ordinary; precision {m['precision']:.3f}, "
              f"recall {m['recall']:.3f}, false refusals {len(m['false_refusals'])} "
              f"({100 * m['false_refusal_rate']:.1f}%), {m['ms_per_phrase']:.2f} ms per phrase")
    sys.exit(0)
