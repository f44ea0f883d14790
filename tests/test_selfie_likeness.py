"""Likeness on every selfie, through the Studio on the tiny real pipeline: scored against the locked reference,
stored with the image (row, recipe, PNG), retried into the profile's band with a deterministic seed sequence, and
every kept image reproducible bit-for-bit from its own recipe. The identity encoder has random weights (scores are
meaningless, all else is real)."""
from __future__ import annotations

import dataclasses
import sqlite3

import numpy as np
import pytest
from PIL import Image

from customizer.config import LikenessConfig
from customizer.likeness.retry import attempt_seeds
from customizer.service import Studio
from customizer.store import Store
from likeness_helpers import needs_face, random_identity_encoder

SPEC = {"hair_colour": "red", "eye_colour": "green", "age": 34}


@pytest.fixture(scope="module")
def identity_dir(tmp_path_factory):
    return random_identity_encoder(tmp_path_factory.mktemp("instr") / "instruments")


@pytest.fixture
def make_studio(studio, tiny_engine):
    """Studios over the same store and engine whose profile has the given likeness entry."""
    def make(likeness: LikenessConfig | None) -> Studio:
        profile = dataclasses.replace(studio.profile, likeness=likeness)
        return Studio(studio.config, profile, studio.store, engine_factory=lambda p: tiny_engine)

    return make


def locked(studio: Studio, seed: int = 1) -> str:
    out = studio.design(SPEC, seed=seed, n=1)
    cid = out["character"]["id"]
    studio.lock(cid, out["candidates"][0]["id"])
    return cid


def test_every_selfie_is_scored_and_stored_with_its_score(make_studio, identity_dir):
    st = make_studio(LikenessConfig("identity", str(identity_dir)))  # no band: score only, one attempt
    cid = locked(st)
    made = st.selfie(cid, {"scene": "beach"}, seed=5, count=2)
    for s in made:
        assert s["likeness_state"] == "scored" and s["likeness_instrument"] == "identity"
        assert 0.0 <= s["likeness"] <= 1.0 and s["attempts"] == 1
        info = s["recipe"]["extra"]["likeness"]
        assert info["score"] == s["likeness"] and info["band"] is None and "cosine" in info["detail"]
        assert s["recipe"]["extra"]["attempts"]["tried"][0]["seed"] == s["seed"]
    assert [s["seed"] for s in made] == [5, 6]
    # stored: the row (after a reload), and the recipe inside the PNG
    again = {s["id"]: s for s in st.get_character(cid)["selfies"]}
    for s in made:
        row = again[s["id"]]
        assert (row["likeness"], row["likeness_state"], row["attempts"]) == (s["likeness"], "scored", 1)
        assert st.store.read_recipe(s["image_sha256"])["extra"]["likeness"]["score"] == s["likeness"]
    # the score is the instrument's verdict on this very image against the reference
    reference = st.get_character(cid)["reference"]
    scorer = st.scorer
    with Image.open(reference["path"]) as ref, Image.open(made[0]["path"]) as im:
        expected = scorer.score(scorer.reference_blob(ref.convert("RGB")), im.convert("RGB"))
    assert expected.score == made[0]["likeness"]
    # the reference descriptor was computed once and cached with the reference
    assert st.store.get_reference_embedding(reference["id"], scorer.cache_key) is not None


def test_retries_into_the_band_keep_the_best_and_reproduce_exactly(make_studio, identity_dir):
    # band [0, 0]: every random-encoder score is above it (a "copy"), so all 3 attempts run and the lowest wins
    st = make_studio(LikenessConfig("identity", str(identity_dir), band=(0.0, 0.0), max_attempts=3))
    cid = locked(st)
    kept = st.selfie(cid, {"scene": "city", "expression": "happy"}, seed=11)[0]
    tries = kept["recipe"]["extra"]["attempts"]
    assert kept["attempts"] == 3 and tries["count"] == 3 and tries["max"] == 3
    assert [t["seed"] for t in tries["tried"]] == attempt_seeds(11, 3)
    scores = [t["score"] for t in tries["tried"]]
    assert len(set(scores)) == 3 and all(s > 0 for s in scores)
    best = int(np.argmin(scores))
    assert kept["likeness"] == scores[best] and kept["seed"] == tries["tried"][best]["seed"]
    assert tries["kept"] == best + 1 and kept["recipe"]["seed"] == kept["seed"]
    assert kept["recipe"]["extra"]["likeness"]["position"] == "above"
    # only the kept image is stored, and it regenerates bit-for-bit from its own recipe
    assert len(st.get_character(cid)["selfies"]) == 1
    _, same = st.reproduce(kept["image_sha256"])
    assert same

    # a band around attempt 2's exact score: the same request now stops after 2 attempts and keeps attempt 2
    second = scores[1]
    assert scores[0] != second
    st2 = make_studio(LikenessConfig("identity", str(identity_dir), band=(second, second), max_attempts=3))
    kept2 = st2.selfie(cid, {"scene": "city", "expression": "happy"}, seed=11)[0]
    assert kept2["attempts"] == 2 and kept2["seed"] == attempt_seeds(11, 3)[1]
    assert kept2["likeness"] == second and kept2["recipe"]["extra"]["likeness"]["position"] == "in"
    assert [t["score"] for t in kept2["recipe"]["extra"]["attempts"]["tried"]] == scores[:2]
    _, same = st2.reproduce(kept2["image_sha256"])
    assert same
    # band [1, 1]: every score is below it (drift); the same 3 attempts, now the highest wins. Between this and
    # the lowest above, at least one kept attempt is not the last one made
    st_hi = make_studio(LikenessConfig("identity", str(identity_dir), band=(1.0, 1.0), max_attempts=3))
    kept_hi = st_hi.selfie(cid, {"scene": "city", "expression": "happy"}, seed=11)[0]
    assert [t["score"] for t in kept_hi["recipe"]["extra"]["attempts"]["tried"]] == scores
    assert kept_hi["likeness"] == max(scores) and kept_hi["seed"] == attempt_seeds(11, 3)[int(np.argmax(scores))]
    assert kept_hi["recipe"]["extra"]["likeness"]["position"] == "below"
    assert st_hi.reproduce(kept_hi["image_sha256"])[1]
    # a band every score falls in: one attempt, the requested seed
    st3 = make_studio(LikenessConfig("identity", str(identity_dir), band=(0.0, 1.0), max_attempts=3))
    kept3 = st3.selfie(cid, {"scene": "city", "expression": "happy"}, seed=11)[0]
    assert kept3["attempts"] == 1 and kept3["seed"] == 11


def test_progress_says_why_it_retries(make_studio, identity_dir):
    st = make_studio(LikenessConfig("identity", str(identity_dir), band=(0.0, 0.0), max_attempts=2))
    cid = locked(st)
    messages = []
    st.selfie(cid, {}, seed=3, progress=lambda f, m: messages.append(m))
    assert any("above the band; attempt 2 of 2" in m for m in messages), messages


def test_no_instrument_is_an_explicit_unavailable_state(make_studio, tmp_path):
    for cfg in (None, LikenessConfig("identity", str(tmp_path / "not-trained-yet"), (0.5, 0.9), 3)):
        st = make_studio(cfg)
        cid = locked(st)
        s = st.selfie(cid, {}, seed=2)[0]
        assert s["likeness"] is None and s["likeness_state"] == "unavailable" and s["attempts"] == 1
        assert s["recipe"]["extra"]["likeness"]["reason"]
        assert st.get_character(cid)["selfies"][0]["likeness_state"] == "unavailable"


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((256, 256), Image.LANCZOS)


@needs_face
def test_face_instrument_no_face_in_selfies_is_retried(make_studio, astronaut):
    """A real photo as the locked reference; the tiny model's noise selfies have no face: each attempt is
    'no face found', so all attempts run and the first is kept."""
    st = make_studio(LikenessConfig("face", band=(0.5, 0.9), max_attempts=2))
    c = st.store.create_character("Photo", SPEC)
    cand = st.store.add_candidate(c["id"], astronaut, {"kind": "portrait", "seed": 0})
    st.lock(c["id"], cand["id"])
    s = st.selfie(c["id"], {}, seed=4)[0]
    assert s["likeness_state"] == "no_face" and s["likeness_instrument"] == "face" and s["likeness"] is None
    assert s["attempts"] == 2 and s["seed"] == 4
    assert [t["state"] for t in s["recipe"]["extra"]["attempts"]["tried"]] == ["no_face", "no_face"]


@needs_face
def test_face_instrument_reference_without_a_face(make_studio):
    st = make_studio(LikenessConfig("face", band=(0.5, 0.9), max_attempts=3))
    cid = locked(st)  # the tiny model's portrait is noise: no face to compare with, so no retries either
    s = st.selfie(cid, {}, seed=4)[0]
    assert s["likeness_state"] == "no_face_reference" and s["attempts"] == 1
    assert "reference" in s["recipe"]["extra"]["likeness"]["reason"]


def test_schema_upgrade_keeps_old_selfies_as_not_measured(tmp_path):
    """A database from before likeness states (migration 1 only) upgrades in place; old rows read as NULL."""
    import customizer.store.migrations as migrations

    first = migrations.MIGRATIONS[:1]
    old, gc = migrations.MIGRATIONS, Store.gc
    migrations.MIGRATIONS = first
    Store.gc = lambda self: []  # today's gc asks about tables the old schema lacks (sheet_views)
    try:
        s = Store(tmp_path / "c.db", tmp_path / "data")
        c = s.create_character("Old", {"a": 1})
        k = s.add_candidate(c["id"], Image.new("RGB", (8, 8), "red"), {"seed": 1, "kind": "portrait"})
        s.lock(c["id"], k["id"])
        ref = s.active_reference(c["id"])
        s.close()
        with sqlite3.connect(tmp_path / "c.db") as conn:  # a selfie row as the old code wrote it
            assert "likeness_state" not in {r[1] for r in conn.execute("PRAGMA table_info(selfies)")}
            conn.execute("INSERT INTO selfies (id, character_id, reference_id, image_sha256, seed, model_id, kind, "
                         "recipe_json, selfie_json, likeness, attempts, created_at) VALUES "
                         "('s1', ?, ?, ?, 2, 'm', 'selfie', '{}', '{}', 0.4, 1, '2020-01-01T00:00:00+00:00')",
                         [c["id"], ref["id"], ref["image_sha256"]])
    finally:
        migrations.MIGRATIONS, Store.gc = old, gc
    s = Store(tmp_path / "c.db", tmp_path / "data")
    assert s.schema_version == len(old)
    selfie = s.get_character(c["id"])["selfies"][0]
    assert selfie["likeness"] == 0.4 and selfie["likeness_state"] is None and selfie["pack_id"] is None
    assert s.get_character(c["id"])["packs"] == [] and s.get_character(c["id"])["sheet"] == []
    s.close()
