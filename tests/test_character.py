"""Character and selfie specs: catalogue-driven choices, strict types, round trips."""
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from customizer.character import (AGE_MAX, AGE_MIN, MAX_EXTRA, MAX_SCENE_TEXT, CharacterSpec, SelfieSpec,
                                  catalogue, selfie_catalogue)
from customizer.errors import SafetyError, SpecError

CHOICES = [(k, v) for k, opt in catalogue().items() for v in opt.choices]
SELFIE_CHOICES = [(k, v) for k, opt in selfie_catalogue().items() for v in opt.choices]
SPEC_FIELDS = {f.name for f in dataclasses.fields(CharacterSpec)}


def test_catalogue_matches_spec_fields():
    # An option added to options.yaml without a spec field (or the reverse) would be silently ignored.
    assert set(catalogue()) == SPEC_FIELDS - {"age", "theme_strength", "extra"}
    assert set(selfie_catalogue()) == {"scene", "expression", "framing"}


def test_catalogue_is_ordered_and_not_shared():
    assert list(catalogue())[:2] == ["hair_colour", "hair_style"]
    catalogue().clear()
    assert catalogue()


def test_defaults_valid_and_from_catalogue():
    spec = CharacterSpec.default()
    assert spec.validate() == spec
    assert spec.age == 30
    for key, opt in catalogue().items():
        assert getattr(spec, key) == opt.default
    assert CharacterSpec.from_dict({}) == spec


def test_selfie_defaults_match_scenes_yaml():
    selfie = SelfieSpec()
    assert selfie.validate() == selfie
    for key, opt in selfie_catalogue().items():
        assert getattr(selfie, key) == opt.default


@pytest.mark.parametrize("key,value", CHOICES)
def test_every_catalogue_choice_accepted(key, value):
    spec = CharacterSpec.from_dict({key: value})
    assert getattr(spec, key) == value


@pytest.mark.parametrize("key,value", SELFIE_CHOICES)
def test_every_selfie_choice_accepted(key, value):
    extra = {"scene_text": "on a rooftop"} if value == "custom" else {}
    assert getattr(SelfieSpec.from_dict({key: value, **extra}), key) == value


@pytest.mark.parametrize("key", list(catalogue()))
def test_unknown_choice_names_field_and_lists_choices(key):
    with pytest.raises(SpecError) as info:
        CharacterSpec.from_dict({key: "plaid"})
    assert info.value.field == key
    for value in catalogue()[key].choices:
        assert value in str(info.value)


@pytest.mark.parametrize("age", [AGE_MIN, 42, AGE_MAX])
def test_age_bounds_accepted(age):
    assert CharacterSpec.from_dict({"age": age}).age == age


def test_minor_age_refused_mentions_adults():
    with pytest.raises(SpecError, match="adults") as info:
        CharacterSpec.from_dict({"age": 17})
    assert info.value.field == "age"
    with pytest.raises(SpecError, match="adults"):  # direct construction is checked too
        dataclasses.replace(CharacterSpec.default(), age=17).validate()


@pytest.mark.parametrize("age", [AGE_MAX + 1, -5, "abc", "", 30.5, "30.5", True, False, float("nan"),
                                 float("inf"), None, [30]])
def test_bad_ages_refused(age):
    with pytest.raises(SpecError) as info:
        CharacterSpec.from_dict({"age": age})
    assert info.value.field == "age"


@pytest.mark.parametrize("raw,expected", [("30", 30), (" 42 ", 42), (30.0, 30), (55, 55)])
def test_age_coercion(raw, expected):
    age = CharacterSpec.from_dict({"age": raw}).age
    assert age == expected and type(age) is int


@pytest.mark.parametrize("raw,expected", [("0.5", 0.5), (0, 0.0), (1, 1.0), ("1", 1.0), (0.25, 0.25)])
def test_theme_strength_coercion(raw, expected):
    value = CharacterSpec.from_dict({"theme_strength": raw}).theme_strength
    assert value == expected and type(value) is float


@pytest.mark.parametrize("value", [-0.01, 1.01, 5, float("nan"), float("inf"), "nan", "-inf", True, "strong", None])
def test_theme_strength_out_of_range_refused(value):
    with pytest.raises(SpecError) as info:
        CharacterSpec.from_dict({"theme_strength": value})
    assert info.value.field == "theme_strength"


def test_unknown_key_refused():
    with pytest.raises(SpecError, match="unknown field") as info:
        CharacterSpec.from_dict({"gender": "x"})
    assert info.value.field == "gender"
    with pytest.raises(SpecError):
        SelfieSpec.from_dict({"pose": "x"})


def test_non_mapping_refused():
    with pytest.raises(SpecError):
        CharacterSpec.from_dict(["age", 30])  # type: ignore[arg-type]


def test_extra_length_limit():
    assert CharacterSpec.from_dict({"extra": "a" * MAX_EXTRA}).extra == "a" * MAX_EXTRA
    with pytest.raises(SpecError) as info:
        CharacterSpec.from_dict({"extra": "a" * (MAX_EXTRA + 1)})
    assert info.value.field == "extra"


def test_extra_control_characters_stripped():
    spec = CharacterSpec.from_dict({"extra": "  freckles\x00\u200b and\n\tscar\x7f  "})
    assert spec.extra == "freckles and scar"


def test_extra_zero_width_cannot_hide_a_term():
    with pytest.raises(SafetyError):
        CharacterSpec.from_dict({"extra": "nu\u200bde"})


def test_extra_must_be_text():
    with pytest.raises(SpecError):
        CharacterSpec.from_dict({"extra": 42})
    assert CharacterSpec.from_dict({"extra": None}).extra == ""


@pytest.mark.parametrize("text", ["topless", "a schoolgirl", "15 years old", "a photo of Taylor Smith"])
def test_extra_with_refused_term(text):
    with pytest.raises(SafetyError, match="^extra: "):
        CharacterSpec.from_dict({"extra": text})


def test_summary():
    spec = CharacterSpec.from_dict({"hair_colour": "red", "hair_style": "wavy", "eye_colour": "green",
                                    "theme": "fantasy"})
    assert spec.summary() == "30, red wavy hair, green eyes, fantasy"
    assert CharacterSpec.default().summary() == "30, brown straight hair, brown eyes"


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CharacterSpec.default().age = 40  # type: ignore[misc]


# ---- selfie -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   ", "\u200b"])
def test_custom_scene_needs_text(text):
    with pytest.raises(SpecError) as info:
        SelfieSpec.from_dict({"scene": "custom", "scene_text": text})
    assert info.value.field == "scene_text"


def test_custom_scene_with_text():
    assert SelfieSpec.from_dict({"scene": "custom", "scene_text": " on a\nrooftop "}).scene_text == "on a rooftop"


def test_scene_text_limit_and_safety():
    SelfieSpec.from_dict({"scene": "custom", "scene_text": "x" * MAX_SCENE_TEXT})
    with pytest.raises(SpecError):
        SelfieSpec.from_dict({"scene": "custom", "scene_text": "x" * (MAX_SCENE_TEXT + 1)})
    with pytest.raises(SafetyError, match="^scene_text: "):
        SelfieSpec.from_dict({"scene": "beach", "scene_text": "nude beach"})


def test_selfie_extra_checked():
    with pytest.raises(SafetyError, match="^extra: "):
        SelfieSpec.from_dict({"extra": "sexy pose"})
    with pytest.raises(SpecError):
        SelfieSpec.from_dict({"extra": "a" * (MAX_EXTRA + 1)})


@pytest.mark.parametrize("raw,expected", [(None, None), ("", None), ("armour", "armour"), ("dress", "dress")])
def test_outfit_override_accepted(raw, expected):
    assert SelfieSpec.from_dict({"outfit": raw}).outfit == expected


@pytest.mark.parametrize("raw", ["bikini", "Armour", 3, "custom"])
def test_outfit_override_must_be_catalogue_outfit(raw):
    with pytest.raises(SpecError) as info:
        SelfieSpec.from_dict({"outfit": raw})
    assert info.value.field == "outfit"
    assert "armour" in str(info.value)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "inf", True, "high"])
def test_likeness_range(value):
    with pytest.raises(SpecError) as info:
        SelfieSpec.from_dict({"likeness": value})
    assert info.value.field == "likeness"


def test_likeness_coercion():
    assert SelfieSpec.from_dict({"likeness": "0.3"}).likeness == 0.3
    assert SelfieSpec.from_dict({"likeness": 1}).likeness == 1.0


@pytest.mark.parametrize("key", ["scene", "expression", "framing"])
def test_unknown_selfie_choice(key):
    with pytest.raises(SpecError) as info:
        SelfieSpec.from_dict({key: "moonwalk"})
    assert info.value.field == key


# ---- round trips --------------------------------------------------------------------------------------------

SAFE_WORDS = st.sampled_from(["freckles", "scar", "silver", "earrings", "tattoo", "glasses", "beard", "a", "é", "  "])
TEXT = st.lists(SAFE_WORDS, max_size=8).map(" ".join)
UNIT = st.floats(min_value=0, max_value=1, allow_nan=False)


def _choice(key, cat=catalogue):
    return st.sampled_from(list(cat()[key].choices))


character_specs = st.builds(
    CharacterSpec, age=st.integers(AGE_MIN, AGE_MAX), theme_strength=UNIT, extra=TEXT,
    **{k: _choice(k) for k in catalogue()},
)
selfie_specs = st.builds(
    SelfieSpec, scene=_choice("scene", selfie_catalogue), scene_text=TEXT.map(lambda t: t + " park"),
    expression=_choice("expression", selfie_catalogue), framing=_choice("framing", selfie_catalogue),
    outfit=st.none() | _choice("outfit"), likeness=UNIT, extra=TEXT,
)


@settings(max_examples=60, deadline=None)
@given(character_specs)
def test_character_round_trip(spec):
    spec = spec.validate()
    assert CharacterSpec.from_dict(spec.to_dict()) == spec
    assert spec.validate() == spec  # validate is idempotent


@settings(max_examples=60, deadline=None)
@given(selfie_specs)
def test_selfie_round_trip(selfie):
    selfie = selfie.validate()
    assert SelfieSpec.from_dict(selfie.to_dict()) == selfie
