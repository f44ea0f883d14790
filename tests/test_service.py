"""The Studio over a real store and the tiny real pipeline: design -> lock -> selfie -> reproduce."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from customizer.errors import NotFound, SafetyError, SpecError, StateError
from customizer.recipe import Recipe

SPEC = {"hair_colour": "red", "hair_style": "wavy", "eye_colour": "green", "age": 34, "theme": "fantasy",
        "theme_strength": 0.6}
RECIPE_FIELDS = ("model_id", "model_revision", "prompt", "negative_prompt", "seed", "scheduler", "steps",
                 "guidance", "width", "height", "loras", "ip_adapter_scale", "versions")


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def test_design_makes_candidates_with_full_recipes(studio):
    out = studio.design(SPEC, seed=40, n=3, name="Rowan")
    cands = out["candidates"]
    assert [c["seed"] for c in cands] == [40, 41, 42]
    assert out["character"]["name"] == "Rowan" and out["character"]["status"] == "draft"
    recipe = cands[0]["recipe"]
    for field in RECIPE_FIELDS:
        assert field in recipe, field
    assert recipe["loras"] == {"fantasy": 0.6}
    assert "red hair" in recipe["prompt"] and "fantasy style" in recipe["prompt"]
    assert "underage" in recipe["negative_prompt"]  # safety terms always in the negative
    assert recipe["versions"]["diffusers"] and recipe["model_revision"].startswith("sha256:")
    # the PNG carries the same recipe as the row
    assert studio.store.read_recipe(cands[0]["image_sha256"])["seed"] == 40


def test_theme_none_uses_no_lora_and_strength_zero_matches_none(studio):
    base = studio.design(dict(SPEC, theme="none"), seed=5, n=1)["candidates"][0]
    assert base["recipe"]["loras"] == {}
    zero = studio.design(dict(SPEC, theme="fantasy", theme_strength=0.0), seed=5, n=1)["candidates"][0]
    assert zero["recipe"]["loras"] == {"fantasy": 0.0}


def test_lock_then_selfie_is_conditioned_on_reference(studio, monkeypatch):
    out = studio.design(SPEC, seed=1, n=2)
    cid = out["character"]["id"]
    ref = studio.lock(cid, out["candidates"][1]["id"])
    assert ref["image_sha256"] == out["candidates"][1]["image_sha256"]
    # the reference embedding is computed at lock time, then only read from the cache
    calls = []
    original = studio.engine.encode_reference
    monkeypatch.setattr(studio.engine, "encode_reference", lambda im: calls.append(1) or original(im))
    selfies = studio.selfie(cid, {"scene": "beach", "expression": "happy", "likeness": 1.0}, seed=9, count=2)
    assert calls == []
    assert [s["seed"] for s in selfies] == [9, 10]
    r = selfies[0]["recipe"]
    assert r["kind"] == "selfie" and r["reference_sha256"] == ref["image_sha256"] and r["ip_adapter_scale"] == 1.0
    assert "beach" in r["prompt"] and "happy" in r["prompt"]
    assert r["controlnet"]["preset"] == "close-up"
    # likeness 0 vs 1 changes the image: the reference really conditions the selfie
    free = studio.selfie(cid, {"scene": "beach", "expression": "happy", "likeness": 0.0}, seed=9)[0]
    assert np.abs(pixels(free["path"]) - pixels(selfies[0]["path"])).mean() > 0.5
    history = studio.get_character(cid)
    assert len(history["selfies"]) == 3 and history["status"] == "locked"


def test_selfie_before_lock_and_redesign_after_lock_are_refused(studio):
    out = studio.design(SPEC, seed=1, n=1)
    cid = out["character"]["id"]
    with pytest.raises(StateError, match="lock"):
        studio.selfie(cid, {"scene": "city"})
    studio.lock(cid, out["candidates"][0]["id"])
    with pytest.raises(StateError):
        studio.design(SPEC, seed=2, n=1, character_id=cid)
    with pytest.raises(StateError):
        studio.lock(cid, out["candidates"][0]["id"])


def test_draft_redesign_keeps_the_character(studio):
    first = studio.design(SPEC, seed=1, n=1)
    cid = first["character"]["id"]
    again = studio.design(dict(SPEC, hair_colour="blue"), seed=2, n=1, character_id=cid)
    assert again["character"]["id"] == cid
    assert again["character"]["spec"]["hair_colour"] == "blue"
    assert len(studio.get_character(cid)["candidates"]) == 2


@pytest.mark.parametrize("kwargs, error", [
    ({"spec": dict(SPEC, age=17)}, SpecError),
    ({"spec": dict(SPEC, hair_colour="plaid")}, SpecError),
    ({"spec": dict(SPEC, extra="a nude portrait")}, SafetyError),
    ({"spec": SPEC, "n": 5}, SpecError),
    ({"spec": SPEC, "n": 0}, SpecError),
    ({"spec": SPEC, "seed": -5}, SpecError),
    ({"spec": SPEC, "seed": "abc"}, SpecError),
    ({"spec": SPEC, "advanced": {"steps": 0}}, SpecError),
    ({"spec": SPEC, "advanced": {"sampler": "plms"}}, SpecError),
    ({"spec": SPEC, "character_id": "missing"}, NotFound),
])
def test_bad_design_input_is_refused_and_writes_nothing(studio, kwargs, error):
    spec = kwargs.pop("spec")
    with pytest.raises(error):
        studio.design(spec, **kwargs)
    assert studio.list_characters() == []


def test_selfie_input_validation(studio):
    out = studio.design(SPEC, seed=1, n=1)
    cid = out["character"]["id"]
    studio.lock(cid, out["candidates"][0]["id"])
    with pytest.raises(SpecError):
        studio.selfie(cid, {"scene": "custom"})  # custom scene needs text
    with pytest.raises(SafetyError):
        studio.selfie(cid, {"scene": "custom", "scene_text": "with Taylor Swift"})
    with pytest.raises(SpecError):
        studio.selfie(cid, {"expression": "smug"})
    with pytest.raises(SpecError):
        studio.selfie(cid, {}, count=9)
    assert studio.get_character(cid)["selfies"] == []


def test_reproduce_from_stored_recipe_is_bit_identical(studio):
    out = studio.design(SPEC, seed=11, n=1, advanced={"sampler": "euler_a", "steps": 3})
    cand = out["candidates"][0]
    _, same = studio.reproduce(cand["image_sha256"])
    assert same
    studio.lock(out["character"]["id"], cand["id"])
    selfie = studio.selfie(out["character"]["id"], {"scene": "forest", "framing": "half body"}, seed=3)[0]
    image, same = studio.reproduce(selfie["image_sha256"])
    assert same and image.size == (32, 32)
    # a recipe is the whole story: changing one input changes the image
    recipe = Recipe.from_dict(studio.store.read_recipe(selfie["image_sha256"]))
    other, _ = studio.engine.render(recipe.replace(seed=4), reference_embeds=studio.engine.encode_reference(
        Image.open(studio.store.image_path(recipe.reference_sha256)).convert("RGB")))
    assert np.abs(np.asarray(other, dtype=np.int16) - pixels(selfie["path"])).mean() > 0.5


def test_upscale_is_the_last_step(studio):
    cand = studio.design(SPEC, seed=2, n=1, advanced={"upscale": True})["candidates"][0]
    assert cand["recipe"]["upscale"] == "lanczos2x"
    with Image.open(cand["path"]) as im:
        assert im.size == (64, 64)


def test_export_import_round_trip_through_the_studio(studio):
    out = studio.design(SPEC, seed=1, n=1, name="Export me")
    cid = out["character"]["id"]
    studio.lock(cid, out["candidates"][0]["id"])
    studio.selfie(cid, {"scene": "cafe"}, seed=1)
    imported = studio.import_(studio.export(cid))
    copy = studio.get_character(imported["id"])
    assert copy["status"] == "locked" and len(copy["selfies"]) == 1
    assert copy["reference"]["image_sha256"] == out["candidates"][0]["image_sha256"]
    # an imported locked character can take selfies right away (embedding recomputed on demand)
    assert studio.selfie(imported["id"], {"scene": "city"}, seed=2)[0]["reference_id"] == copy["reference"]["id"]


def test_failed_first_render_leaves_no_empty_character(studio, monkeypatch):
    def broken(recipe, embeds=None, reference=None):
        raise RuntimeError("GPU fell off")

    monkeypatch.setattr(studio, "_render", broken)
    with pytest.raises(RuntimeError):
        studio.design(SPEC, seed=1, n=2)
    assert studio.list_characters() == []
