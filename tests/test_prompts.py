"""Prompt assembly: every chosen fragment present, clean joins, safety terms always in the negative."""
import dataclasses

import pytest

from customizer.character import CharacterSpec, SelfieSpec, catalogue, selfie_catalogue
from customizer.errors import SpecError
from customizer.prompts import (Prompt, age_words, default_negative, portrait_prompt, selfie_prompt,
                                with_safety)
from customizer.safety import safety_negative

CAT, STUDIO = catalogue(), selfie_catalogue()
SAFETY_TERMS = [t.strip() for t in safety_negative().split(",")]
QUALITY = "detailed, high quality, sharp focus"


def spec(**kw) -> CharacterSpec:
    return CharacterSpec.from_dict(kw)


def assert_clean(text: str):
    assert ", ," not in text and ",," not in text and "  " not in text
    assert not text.startswith((",", " ")) and not text.endswith((",", " "))


@pytest.mark.parametrize("key,value", [(k, v) for k, o in CAT.items() for v, f in o.choices.items() if f])
def test_portrait_contains_chosen_fragment(key, value):
    p = portrait_prompt(spec(**{key: value}))
    assert CAT[key].choices[value] in p.positive


def test_portrait_contains_every_fragment_of_a_full_spec():
    s = spec(hair_colour="auburn", hair_style="curly", hair_length="long", eye_colour="hazel", skin_tone="olive",
             body_type="athletic", outfit="armour", theme="vintage", age=45, extra="a scar over the left eyebrow")
    positive = portrait_prompt(s).positive
    for key in CAT:
        assert CAT[key].choices[getattr(s, key)] in positive, key
    assert "a middle-aged adult" in positive
    assert "a scar over the left eyebrow" in positive
    assert positive.endswith(QUALITY)  # quality last: CLIP truncation drops it first
    assert_clean(positive)


@pytest.mark.parametrize("key,value", [(k, v) for k, o in STUDIO.items() for v in o.choices if v != "custom"])
def test_selfie_contains_scene_expression_framing(key, value):
    selfie = SelfieSpec.from_dict({key: value})
    positive = selfie_prompt(spec(), selfie).positive
    for k in STUDIO:
        assert STUDIO[k].choices[getattr(selfie, k)] in positive, k
    assert_clean(positive)


def test_selfie_outfit_override_replaces_designed_outfit():
    designed = spec(outfit="casual")
    positive = selfie_prompt(designed, SelfieSpec(outfit="armour")).positive
    assert CAT["outfit"].choices["armour"] in positive
    assert CAT["outfit"].choices["casual"] not in positive
    assert CAT["outfit"].choices["casual"] in selfie_prompt(designed, SelfieSpec()).positive


def test_selfie_from_reference_leaves_the_look_to_the_reference():
    s = spec(hair_colour="blue", hair_style="curly", hair_length="long", eye_colour="green", skin_tone="dark",
             body_type="athletic", outfit="armour", extra="freckles")
    selfie = SelfieSpec(scene="beach", expression="happy", framing="half body")
    full = selfie_prompt(s, selfie).positive
    bare = selfie_prompt(s, selfie, from_reference=True).positive
    for key in ("hair_colour", "hair_style", "hair_length", "eye_colour", "skin_tone"):
        assert CAT[key].choices[getattr(s, key)] in full, key
        assert CAT[key].choices[getattr(s, key)] not in bare, key
    # what a close-up reference cannot show, the shot itself and the character's marks stay in words
    for text in (CAT["body_type"].choices["athletic"], CAT["outfit"].choices["armour"], "freckles",
                 *(STUDIO[k].choices[getattr(selfie, k)] for k in STUDIO)):
        assert text in bare, text
    assert bare.endswith(QUALITY)
    assert_clean(bare)


def test_selfie_custom_scene_and_appended_scene_text():
    custom = selfie_prompt(spec(), SelfieSpec(scene="custom", scene_text="on a neon rooftop")).positive
    assert "on a neon rooftop" in custom
    assert_clean(custom)
    preset = selfie_prompt(spec(), SelfieSpec(scene="beach", scene_text="at sunset")).positive
    assert f"{STUDIO['scene'].choices['beach']}, at sunset" in preset


def test_selfie_keeps_character_extra_and_adds_selfie_extra():
    positive = selfie_prompt(spec(extra="freckles"), SelfieSpec(extra="holding a coffee")).positive
    assert "freckles" in positive and "holding a coffee" in positive
    assert positive.endswith(QUALITY)


def test_theme_triggers_replace_catalogue_words():
    themed = spec(theme="fantasy")
    assert "fntsy_style" in portrait_prompt(themed, theme_triggers="fntsy_style").positive
    assert CAT["theme"].choices["fantasy"] in portrait_prompt(themed).positive
    assert "fntsy_style" in selfie_prompt(themed, SelfieSpec(), theme_triggers="fntsy_style").positive


def test_theme_none_adds_no_words():
    plain = spec(theme="none")
    assert "fntsy_style" not in portrait_prompt(plain, theme_triggers="fntsy_style").positive
    assert "fntsy_style" not in selfie_prompt(plain, SelfieSpec(), theme_triggers="fntsy_style").positive


@pytest.mark.parametrize("user_negative", [None, "", "ugly hands", "blurry,, , extra fingers,", "NUDE, child"])
def test_negative_always_has_safety_terms(user_negative):
    for p in (portrait_prompt(spec(), negative=user_negative),
              selfie_prompt(spec(), SelfieSpec(), negative=user_negative)):
        have = [t.strip().casefold() for t in p.negative.split(",")]
        for term in SAFETY_TERMS:
            assert have.count(term.casefold()) == 1, term  # present once, never duplicated
        assert_clean(p.negative)


def test_negative_default_and_user_edited():
    assert portrait_prompt(spec()).negative.startswith(default_negative())
    edited = portrait_prompt(spec(), negative="ugly hands").negative
    assert edited.startswith("ugly hands, ")
    assert default_negative() not in edited  # the user's edit replaces the template negative


def test_default_negative_has_no_safety_terms_and_with_safety_is_idempotent():
    assert "underage" not in default_negative()
    once = with_safety(default_negative())
    assert with_safety(once) == once
    assert with_safety("") == safety_negative()


def test_no_dangling_commas_for_empty_extra_and_messy_extra():
    for s in (spec(), spec(extra=" , freckles,,  , ")):
        p = portrait_prompt(s)
        assert_clean(p.positive)
    assert "freckles, detailed" in portrait_prompt(spec(extra=" , freckles,,  , ")).positive


@pytest.mark.parametrize("age,words", [
    (18, "a young adult"), (24, "a young adult"), (25, "an adult"), (39, "an adult"),
    (40, "a middle-aged adult"), (54, "a middle-aged adult"), (55, "an older adult"), (70, "an older adult"),
])
def test_age_words(age, words):
    assert age_words(age) == words
    assert f"portrait of {words}" in portrait_prompt(spec(age=age)).positive


@pytest.mark.parametrize("age", [17, 0, True, "30"])
def test_age_words_refuses_minors_and_non_ints(age):
    with pytest.raises(SpecError):
        age_words(age)


def test_prompts_validate_specs_built_in_code():
    # Specs made with the constructor skip from_dict; the prompt builder is the last gate.
    with pytest.raises(SpecError):
        portrait_prompt(dataclasses.replace(CharacterSpec.default(), age=16))
    with pytest.raises(SpecError):
        selfie_prompt(CharacterSpec.default(), SelfieSpec(scene="custom"))


def test_prompt_type():
    p = portrait_prompt(spec())
    assert isinstance(p, Prompt) and p.positive and p.negative


def test_part_with_only_empty_placeholders_is_dropped_with_its_literal_words():
    from customizer.prompts import _render
    parts = ["portrait of {age_words}", "wearing {outfit}", "{extra}", "{quality}"]
    assert _render(parts, {"age_words": "an adult", "outfit": "", "extra": " ", "quality": "sharp"}) == \
        "portrait of an adult, sharp"
