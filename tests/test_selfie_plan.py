"""The selfie path as data (customizer/selfie_plan.py): a Plan's recipe inputs for a Shot, and take()'s
render -> judge -> retry loop, driven with real Likeness/Band/Recipe objects and a render that only paints."""
from __future__ import annotations

import dataclasses

import pytest
from PIL import Image

from customizer import charlora
from customizer.character import CharacterSpec, SelfieSpec
from customizer.likeness.band import Band
from customizer.likeness.result import Likeness
from customizer.likeness.retry import attempt_seeds
from customizer.recipe import Recipe
from customizer.selfie_plan import SEED_MAX, Conditioning, Plan, Shot, ip_scale, recipe_inputs, take
from customizer.settings import Settings

SETTINGS = Settings(sampler="euler", steps=3, guidance=5.0, width=32, height=32, negative=None)
LORA = {"id": "l1", "sha256": "ab" * 32, "facts": {"images": ["x", "y", "z"]}}


def plan(**changes) -> Plan:
    base = Plan(kind="selfie", spec=CharacterSpec.default(), settings=SETTINGS, triggers="",
                theme_loras={"fantasy": 0.5},
                reference_sha="cd" * 32, conditioning=Conditioning(b"e", ["cd" * 32, "ef" * 32], [], []),
                ip_scale=(0.2, 0.8), controlnet={"model": "local:cn", "control": "pose", "scale": 0.7},
                reference_image=None, band=Band(0.5, 0.9), max_attempts=3, lora=LORA, lora_strength=0.5,
                sheet_facts={"sheet": {"views": ["frontal"], "left_out": []}})
    return dataclasses.replace(base, **changes)


def recipe(seed: int, **inputs) -> Recipe:
    return Recipe(kind=inputs.get("kind", "selfie"), profile="p", model_id="m", model_revision="r",
                  prompt=inputs["prompt"].positive, negative_prompt=inputs["prompt"].negative, seed=seed,
                  scheduler="euler", steps=3, guidance=5.0, width=32, height=32, loras=inputs["loras"],
                  ip_adapter_scale=inputs["ip_scale"], extra=inputs["extra"])


def test_recipe_inputs_carry_conditioning_lora_and_pose():
    p = plan()
    got = recipe_inputs(p, Shot(SelfieSpec(likeness=0.5, framing="half body"), 7, {"pack": {"slot": "happy"}}))
    assert got["ip_scale"] == ip_scale(p, 0.5) == 0.5 and got["conditioning"] == ["cd" * 32, "ef" * 32]
    assert got["loras"] == {"fantasy": 0.5, charlora.adapter_name("ab" * 32): 0.5}
    assert got["character_lora"] == "ab" * 32
    assert got["extra"]["character_lora"] == {"id": "l1", "strength": 0.5, "images": 3}
    assert got["extra"]["pack"] == {"slot": "happy"} and got["extra"]["sheet"]["views"] == ["frontal"]
    assert got["controlnet"] == {"model": "local:cn", "control": "pose", "preset": "half body", "scale": 0.7}
    assert "seed" not in got  # take() gives every attempt its own

    # a sheet view: its pose instead of the framing; no LoRA when the shot turns it off or its strength is 0
    view = recipe_inputs(plan(kind="sheet", lora=None, sheet_facts={}),
                         Shot(SelfieSpec(), 1, pose="three-quarter left"))
    assert view["kind"] == "sheet" and view["controlnet"]["preset"] == "three-quarter left"
    assert view["character_lora"] is None and "sheet" not in view["extra"] and view["loras"] == {"fantasy": 0.5}
    for shot in (SelfieSpec(character_lora=False), SelfieSpec(character_lora_strength=0.0)):
        assert recipe_inputs(p, Shot(shot, 1))["character_lora"] is None
    # no IP-Adapter: scale 0 whatever the slider says, nothing conditions it
    bare = recipe_inputs(plan(conditioning=None, controlnet=None), Shot(SelfieSpec(likeness=1.0), 1))
    assert bare["ip_scale"] == 0.0 and bare["conditioning"] is None and bare["controlnet"] is None


def test_a_plan_from_the_reference_prompts_without_the_look():
    from customizer.prompts import selfie_prompt

    shot = Shot(SelfieSpec(scene="beach"), 1)
    full, short = (recipe_inputs(plan(from_reference=f), shot)["prompt"] for f in (False, True))
    assert full == selfie_prompt(CharacterSpec.default(), shot.selfie)
    assert short == selfie_prompt(CharacterSpec.default(), shot.selfie, from_reference=True)
    assert "hair" in full.positive and "hair" not in short.positive and short.negative == full.negative


@pytest.mark.parametrize("scores, max_attempts, kept_at", [
    ([0.2, 0.95, 0.7], 3, 3),   # drift, copy, then in the band: stops there
    ([0.6], 3, 1),              # in the band at once: one render
    ([0.2, 0.4, 0.3], 3, 2),    # never in the band: the closest is kept
    ([0.1], 1, 1),              # one attempt allowed (a sheet view)
])
def test_take_retries_into_the_band_and_keeps_the_best(scores, max_attempts, kept_at):
    p = plan(max_attempts=max_attempts)
    shot = Shot(SelfieSpec(), 1234, {"note": 1})
    inputs = recipe_inputs(p, shot)
    rendered, reports = [], []

    def render(r: Recipe):
        rendered.append(r.seed)
        return Image.new("RGB", (8, 8), (len(rendered), 0, 0)), {"denoise": 0.01}

    def judge(image: Image.Image) -> Likeness:
        return Likeness("scored", "identity", scores[image.getpixel((0, 0))[0] - 1])

    taken = take(p, shot, lambda s: recipe(s, **inputs), render, judge, reports.append)
    seeds = attempt_seeds(1234, max_attempts, SEED_MAX)
    assert rendered == seeds[:len(scores)]
    assert taken.attempts == len(scores) and taken.likeness.score == scores[kept_at - 1]
    assert taken.recipe.seed == seeds[kept_at - 1] and taken.image.getpixel((0, 0))[0] == kept_at
    att = taken.recipe.extra["attempts"]
    assert (att["count"], att["max"], att["kept"]) == (len(scores), max_attempts, kept_at)
    assert [t["seed"] for t in att["tried"]] == seeds[:len(scores)]
    assert taken.recipe.extra["likeness"]["band"] == [0.5, 0.9] and taken.recipe.extra["note"] == 1
    assert taken.recipe.extra["timings"] == {"denoise": 0.01}
    assert len(reports) == len(scores) - 1  # a retry is announced; the last attempt is not
