"""Candidates of one design are rendered in ONE batched pipeline call (tiny real pipeline, no mocks).

A batched image is not bit-identical to its seed rendered alone, so each candidate's recipe records its batch
({"seeds", "index"}) and reproducing it renders the whole batch again: bit for bit. Single renders (n=1, and every
recipe stored before batching) carry no batch and stay what they were.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from customizer.engine.pipeline import batch_seeds
from customizer.errors import SpecError
from customizer.recipe import Recipe
from pixel_helpers import px

SPEC = {"hair_colour": "red", "hair_style": "wavy", "eye_colour": "green", "age": 34, "theme": "fantasy",
        "theme_strength": 0.6}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models run on one thread


def stored(path) -> np.ndarray:
    with Image.open(path) as im:
        return px(im)


def batch_of(recipe: Recipe, seeds: list[int]) -> list[Recipe]:
    return [recipe.replace(seed=s, batch={"seeds": seeds, "index": i}) for i, s in enumerate(seeds)]


def test_four_candidates_are_one_batch_and_each_reproduces_bit_exactly(studio, monkeypatch):
    calls, real = [], studio._render
    monkeypatch.setattr(studio, "_render", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    unet, batches = studio.engine.pipe.unet, []
    forward = unet.forward
    monkeypatch.setattr(unet, "forward", lambda x, *a, **k: batches.append(len(x)) or forward(x, *a, **k))
    messages = []
    out = studio.design(SPEC, seed=40, n=4, progress=lambda f, m: messages.append((f, m)))
    cands = out["candidates"]
    assert len(calls) == 1 and len(calls[0]) == 4  # one render for the four
    assert batches == [8] * cands[0]["recipe"]["steps"]  # one UNet call per step: 4 images x (negative, positive)
    assert messages[-1] == (1.0, "done") and any("4 candidates in one batch" in m for _, m in messages)
    assert [c["seed"] for c in cands] == [40, 41, 42, 43]
    images = [stored(c["path"]) for c in cands]
    assert len({im.tobytes() for im in images}) == 4
    for i, c in enumerate(cands):
        r = c["recipe"]
        assert r["batch"] == {"seeds": [40, 41, 42, 43], "index": i}
        assert r["seed"] == r["batch"]["seeds"][r["batch"]["index"]]
        assert "batch_seconds" in r["extra"] and "timings" in r["extra"] and "seconds" not in r["extra"]
        assert studio.store.read_recipe(c["image_sha256"])["batch"] == r["batch"]  # the PNG carries it too
    monkeypatch.undo()
    for c in cands:
        image, same = studio.reproduce(c["image_sha256"])
        assert same, f"candidate {c['recipe']['batch']['index']} did not reproduce"
        assert np.array_equal(px(image), stored(c["path"]))


def test_single_candidate_has_no_batch_and_reproduces(studio):
    cand = studio.design(SPEC, seed=11, n=1)["candidates"][0]
    assert cand["recipe"]["batch"] is None and "seconds" in cand["recipe"]["extra"]
    assert studio.reproduce(cand["image_sha256"])[1]


def test_old_recipe_without_batch_loads_and_reproduces(studio):
    cand = studio.design(SPEC, seed=12, n=1)["candidates"][0]
    old = {k: v for k, v in studio.store.read_recipe(cand["image_sha256"]).items() if k != "batch"}
    recipe = Recipe.from_dict(old)
    assert recipe.batch is None and recipe.batch_seeds() == ([12], 0)
    # stored as an image made before batching existed: its PNG's recipe has no "batch" key at all
    image, _ = studio.engine.render(recipe)
    row = studio.store.add_candidate(cand["character_id"], image, old)
    assert "batch" not in studio.store.read_recipe(row["image_sha256"])
    assert studio.reproduce(row["image_sha256"])[1]


def test_batch_rerun_is_identical_and_close_to_seeds_alone(studio):
    out = studio.design(SPEC, seed=7, n=3)
    recipes = [Recipe.from_dict(c["recipe"]) for c in out["candidates"]]
    again = studio.engine.render_batch(recipes)
    for c, r, (image, _timings) in zip(out["candidates"], recipes, again):
        assert np.array_equal(px(image), stored(c["path"]))
        assert np.array_equal(px(studio.engine.render(r)[0]), stored(c["path"]))  # render(recipe) runs its batch
        alone, _ = studio.engine.render(r.replace(batch=None))
        d = np.abs(px(alone) - stored(c["path"]))
        # informative: the batch rounds differently from a lone render, by a pixel level or so (not asserted)
        print(f"seed {r.seed}: batched vs alone max {d.max()} mean {d.mean():.4f} levels")
        assert d.mean() < 2  # still the same picture, not another one


def test_batch_with_ip_adapter_reference_and_no_cfg(studio):
    """IP-Adapter embeddings (given for one image) are repeated per image by the pipeline; without CFG too."""
    engine = studio.engine
    cand = studio.design(SPEC, seed=3, n=1)["candidates"][0]
    base = Recipe.from_dict(cand["recipe"]).replace(ip_adapter_scale=1.0, loras={})
    with Image.open(cand["path"]) as im:
        embeds = engine.encode_reference(im.convert("RGB"))
    for guidance in (5.0, 1.0):
        recipes = batch_of(base.replace(guidance=guidance), [5, 6])
        made = engine.render_batch(recipes, reference_embeds=embeds)
        for r, (image, _) in zip(recipes, made):
            assert np.array_equal(px(engine.render(r, reference_embeds=embeds)[0]), px(image))
            alone = engine.render(r.replace(batch=None), reference_embeds=embeds)[0]
            assert np.abs(px(alone) - px(image)).mean() < 2
        free = engine.render_batch(batch_of(base.replace(guidance=guidance, ip_adapter_scale=0.0), [5, 6]),
                                   reference_embeds=embeds)
        assert np.abs(px(free[0][0]) - px(made[0][0])).mean() > 0.5  # the reference really conditions each image


def test_bad_batches_are_refused():
    r = Recipe(kind="portrait", profile="p", model_id="m", model_revision="x", prompt="a", negative_prompt="",
               seed=5, scheduler="euler", steps=2, guidance=5.0, width=32, height=32)
    good = batch_of(r, [5, 6])
    assert batch_seeds(good) == [5, 6] and batch_seeds([r]) == [5]
    for bad in ({"seeds": [5, 6], "index": 1}, {"seeds": [], "index": 0}, {"seeds": [5], "index": True},
                {"seeds": "56", "index": 0}, ["not", "a", "dict"]):
        with pytest.raises(SpecError, match="batch"):
            r.replace(batch=bad).batch_seeds()
    for wrong in (good[:1], good[::-1], [good[0], good[1].replace(prompt="b")], [r, r], []):
        with pytest.raises(ValueError):
            batch_seeds(wrong)
    # extra holds no inputs: recipes differing only there still form a batch
    assert batch_seeds([good[0].replace(extra={"x": 1}), good[1]]) == [5, 6]


def test_failed_batch_leaves_no_empty_character(studio, monkeypatch):
    def broken(recipe, embeds=None, reference=None):
        raise RuntimeError("GPU fell off")

    monkeypatch.setattr(studio, "_render", broken)
    with pytest.raises(RuntimeError):
        studio.design(SPEC, seed=1, n=4)
    assert studio.list_characters() == []


def test_ancestral_sampler_batch_reproduces_with_upscale(studio):
    """euler_a draws fresh noise every step from each image's own generator; the upscale runs per image."""
    out = studio.design(SPEC, seed=21, n=2, advanced={"sampler": "euler_a", "upscale": True})
    for c in out["candidates"]:
        assert c["recipe"]["upscale"] == "lanczos2x" and c["recipe"]["batch"]["seeds"] == [21, 22]
        with Image.open(c["path"]) as im:
            assert im.size == (64, 64)
        assert studio.reproduce(c["image_sha256"])[1]
