"""Expression pack: one call makes the standard set (data/packs.yaml) of a locked character as a named pack, stored
per character (scored and retried like any selfie), reproducible, exported and imported with the character."""
from __future__ import annotations

import dataclasses

import pytest
from PIL import Image

from customizer.character import selfie_catalogue
from customizer.config import LikenessConfig
from customizer.errors import NotFound, SpecError, StateError
from customizer.packs import pack_kind
from customizer.service import Studio
from likeness_helpers import random_identity_encoder

STANDARD = ["neutral", "happy", "laughing", "sad", "surprised", "angry", "thinking"]
SPEC = {"hair_colour": "blue", "eye_colour": "amber", "age": 27}


@pytest.fixture
def scored_studio(studio, tiny_engine, tmp_path):
    folder = random_identity_encoder(tmp_path / "instruments")
    profile = dataclasses.replace(studio.profile, likeness=LikenessConfig("identity", str(folder), (0.0, 0.0), 2))
    return Studio(studio.config, profile, studio.store, engine_factory=lambda p: tiny_engine)


def locked(studio: Studio) -> str:
    out = studio.design(SPEC, seed=3, n=1)
    studio.lock(out["character"]["id"], out["candidates"][0]["id"])
    return out["character"]["id"]


def test_the_pack_definition_is_data_over_the_catalogue():
    kind = pack_kind("expressions")
    assert list(kind.values) == STANDARD and kind.field == "expression"
    assert set(STANDARD) <= set(selfie_catalogue()["expression"].choices)
    with pytest.raises(SpecError, match="pack kind"):
        pack_kind("poses")
    with pytest.raises(SpecError, match="expression"):
        kind.shots({"expression": "sad"})  # the field the pack varies is not the caller's to set


def test_one_click_makes_the_standard_set_as_a_named_pack(scored_studio):
    st = scored_studio
    cid = locked(st)
    pack = st.expression_pack(cid, name="Chat faces", seed=21, selfie={"outfit": "hoodie", "likeness": 0.6})
    assert pack["name"] == "Chat faces" and pack["kind"] == "expressions" and pack["complete"]
    assert pack["slots"] == STANDARD and [s["pack_slot"] for s in pack["items"]] == STANDARD
    prompts = [s["recipe"]["prompt"] for s in pack["items"]]
    fragments = selfie_catalogue()["expression"].choices
    for slot, prompt in zip(STANDARD, prompts):
        assert fragments[slot] in prompt and "hoodie" in prompt and "studio" in prompt
    assert len(set(prompts)) == 7
    for s in pack["items"]:
        assert s["selfie"]["framing"] == "close-up" and s["selfie"]["likeness"] == 0.6
        assert s["pack_id"] == pack["id"] and s["likeness_state"] == "scored"
        # band [0, 0] forces both attempts; one seed for the whole pack, so the same sequence for every slot
        assert s["attempts"] == 2
        assert [t["seed"] for t in s["recipe"]["extra"]["attempts"]["tried"]] == [21, s["recipe"]["extra"][
            "attempts"]["tried"][1]["seed"]]
        assert s["recipe"]["extra"]["pack"] == {"id": pack["id"], "kind": "expressions", "name": "Chat faces",
                                                "slot": s["pack_slot"], "slots": STANDARD}
    # stored per character, found again
    character = st.get_character(cid)
    assert [p["id"] for p in character["packs"]] == [pack["id"]]
    assert st.get_pack(pack["id"]) == character["packs"][0]
    assert len([s for s in character["selfies"] if s["pack_id"] == pack["id"]]) == 7
    # any pack image regenerates bit-for-bit from its recipe
    _, same = st.reproduce(pack["items"][2]["image_sha256"])
    assert same


def test_pack_names_default_and_must_be_unique(studio):
    cid = locked(studio)
    first = studio.expression_pack(cid, seed=1)
    second = studio.expression_pack(cid, seed=2)
    assert (first["name"], second["name"]) == ("Expressions 1", "Expressions 2")
    assert [p["name"] for p in studio.get_character(cid)["packs"]] == ["Expressions 2", "Expressions 1"]
    with pytest.raises(SpecError, match="already has a pack"):
        studio.expression_pack(cid, name="Expressions 1", seed=3)
    assert len(studio.get_character(cid)["packs"]) == 2  # the refused one left nothing


def test_pack_refusals(studio):
    out = studio.design(SPEC, seed=3, n=1)
    cid = out["character"]["id"]
    with pytest.raises(StateError, match="lock"):
        studio.expression_pack(cid)
    studio.lock(cid, out["candidates"][0]["id"])
    for kwargs, error in (({"kind": "poses"}, SpecError), ({"selfie": {"expression": "sad"}}, SpecError),
                          ({"selfie": {"scene": "moon"}}, SpecError), ({"name": 5}, SpecError),
                          ({"name": "x" * 200}, SpecError), ({"seed": "abc"}, SpecError)):
        with pytest.raises(error):
            studio.expression_pack(cid, **kwargs)
    with pytest.raises(NotFound):
        studio.expression_pack(cid, owner="someone-else")
    with pytest.raises(NotFound):
        studio.get_pack(studio.expression_pack(cid, seed=1)["id"], owner="someone-else")
    assert len(studio.get_character(cid)["packs"]) == 1


def test_a_failure_mid_pack_keeps_what_was_made(studio, monkeypatch):
    cid = locked(studio)
    real = studio._render
    calls = []

    def flaky(recipe, embeds=None, reference=None):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("power cut")
        return real(recipe, embeds, reference)

    monkeypatch.setattr(studio, "_render", flaky)
    with pytest.raises(RuntimeError):
        studio.expression_pack(cid, seed=5)
    (pack,) = studio.get_character(cid)["packs"]
    assert [s["pack_slot"] for s in pack["items"]] == STANDARD[:3] and not pack["complete"]
    assert pack["completed_at"] is None
    # a failure before the first image leaves no empty pack behind
    calls.clear()
    monkeypatch.setattr(studio, "_render", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no GPU")))
    with pytest.raises(RuntimeError):
        studio.expression_pack(cid, seed=6)
    assert len(studio.get_character(cid)["packs"]) == 1
    assert studio.store.integrity_report()["files_without_row"] == []


def test_store_guards_pack_slots(studio):
    cid = locked(studio)
    store = studio.store
    pack = store.create_pack(cid, "expressions", STANDARD, name="Guarded")
    shot = {"scene": "studio", "expression": "happy"}
    img = Image.new("RGB", (8, 8), "red")
    store.add_selfie(cid, img, {"seed": 1, "kind": "selfie"}, shot, pack_id=pack["id"], pack_slot="happy")
    with pytest.raises(ValueError, match="not a slot"):
        store.add_selfie(cid, img, {"seed": 2, "kind": "selfie"}, shot, pack_id=pack["id"], pack_slot="smug")
    with pytest.raises(Exception, match="UNIQUE"):  # one image per slot
        store.add_selfie(cid, Image.new("RGB", (8, 8), "blue"), {"seed": 3, "kind": "selfie"}, shot,
                         pack_id=pack["id"], pack_slot="happy")
    # a pack belongs to the reference it was made from: after a new lock it is history, not a target
    other = locked(studio)
    studio.unlock(cid)
    cand = studio.design(SPEC, seed=4, n=1, character_id=cid)["candidates"][0]
    studio.lock(cid, cand["id"])
    with pytest.raises(StateError, match="earlier reference"):
        store.add_selfie(cid, img, {"seed": 4, "kind": "selfie"}, shot, pack_id=pack["id"], pack_slot="sad")
    with pytest.raises(NotFound):
        store.add_selfie(other, img, {"seed": 5}, shot, pack_id=pack["id"], pack_slot="sad")  # not its pack
    assert store.integrity_report()["files_without_row"] == []


def test_delete_pack_removes_its_selfies_and_files(studio):
    cid = locked(studio)
    pack = studio.expression_pack(cid, seed=8)
    paths = [s["path"] for s in pack["items"]]
    studio.store.delete_pack(pack["id"])
    assert studio.get_character(cid)["packs"] == [] and studio.get_character(cid)["selfies"] == []
    from pathlib import Path

    assert not any(Path(p).exists() for p in paths)
    assert studio.store.integrity_report()["unreferenced_image_rows"] == []


def test_packs_travel_with_export_and_import(scored_studio):
    st = scored_studio
    cid = locked(st)
    pack = st.expression_pack(cid, name="Travel", seed=2)
    loose = st.selfie(cid, {"scene": "beach"}, seed=1)[0]
    copy = st.get_character(st.import_(st.export(cid))["id"])
    (p,) = copy["packs"]
    assert (p["name"], p["kind"], p["slots"], p["complete"]) == ("Travel", "expressions", STANDARD, True)
    assert p["id"] != pack["id"] and p["reference_id"] == copy["reference"]["id"]
    assert [s["image_sha256"] for s in p["items"]] == [s["image_sha256"] for s in pack["items"]]
    by_sha = {s["image_sha256"]: s for s in copy["selfies"]}
    assert by_sha[loose["image_sha256"]]["pack_id"] is None
    for s in pack["items"] + [loose]:
        c = by_sha[s["image_sha256"]]
        assert (c["likeness"], c["likeness_state"], c["likeness_instrument"], c["attempts"]) == \
            (s["likeness"], "scored", "identity", s["attempts"])
