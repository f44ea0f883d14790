"""Synthetic-corpus renderer: catalogue coverage, determinism, legibility of every attribute, identity, captions."""
import json
import random

import numpy as np
import pytest

from customizer.character import AGE_MAX, AGE_MIN, CharacterSpec, catalogue, selfie_catalogue
from customizer.training import corpus
from customizer.training.render import (BACKGROUNDS, HAIR_PAINTERS, MOUTHS, OUTFITS, Identity, Variation, caption,
                                        default_attrs, random_attrs, render, render_with_mask, styles)

SIZE = 96
BASE = {**default_attrs(), "theme_strength": 1.0}   # brown straight medium hair, brown eyes, casual, age 30
IDENT = Identity.sample(7)
CLOSE = Variation("studio", "neutral", "close-up", 0.3, 5)
HALF = Variation("studio", "neutral", "half body", 0.3, 5)


def px(img) -> np.ndarray:
    return np.asarray(img, np.int16)


def changed(a, b, level: int = 24) -> np.ndarray:
    """Pixels whose largest channel difference exceeds `level`."""
    return np.abs(px(a) - px(b)).max(axis=2) > level


def saturation(img) -> float:
    arr = np.asarray(img, np.float32) / 255.0
    mx, mn = arr.max(axis=2), arr.min(axis=2)
    return float(np.mean((mx - mn) / np.maximum(mx, 1e-6)))


# ---- the data file covers the catalogues ------------------------------------------------------------------------

CHARACTER_KEYS = ("hair_colour", "hair_style", "hair_length", "eye_colour", "skin_tone", "body_type", "outfit",
                  "theme")


@pytest.mark.parametrize("key", CHARACTER_KEYS)
def test_every_character_choice_has_a_style(key):
    missing = [c for c in catalogue()[key].choices if c not in styles()[key]]
    assert not missing, f"render_styles.yaml: {key} has no entry for {missing}"


@pytest.mark.parametrize("key", ("scene", "expression", "framing"))
def test_every_selfie_choice_has_a_style(key):
    missing = [c for c in selfie_catalogue()[key].choices if c not in styles()[key]]
    assert not missing, f"render_styles.yaml: {key} has no entry for {missing}"


def test_styles_name_existing_painters():
    st = styles()
    assert {v["painter"] for v in st["hair_style"].values()} <= set(HAIR_PAINTERS)
    assert {v["painter"] for v in st["outfit"].values()} <= set(OUTFITS)
    assert {v["painter"] for v in st["scene"].values()} <= set(BACKGROUNDS)
    assert {v["mouth"] for v in st["expression"].values()} <= set(MOUTHS)


def test_style_colours_are_rgb():
    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, f"{path}.{k}")
        elif isinstance(node, (list, tuple)):
            if len(node) == 3 and all(isinstance(v, int) for v in node):
                yield path, node
            else:
                for i, v in enumerate(node):
                    yield from walk(v, f"{path}[{i}]")
    colours = list(walk(styles(), ""))
    assert len(colours) > 100
    bad = [(p, c) for p, c in colours if not all(0 <= v <= 255 for v in c)]
    assert not bad


# ---- rendering --------------------------------------------------------------------------------------------------

def test_render_is_deterministic():
    a = render(BASE, Identity.sample(3), Variation.sample(11), SIZE)
    b = render(dict(BASE), Identity.sample(3), Variation.sample(11), SIZE)
    assert a.mode == "RGB" and a.size == (SIZE, SIZE)
    assert a.tobytes() == b.tobytes()
    vintage = {**BASE, "theme": "vintage"}  # the film grain is seeded too
    assert render(vintage, IDENT, CLOSE, SIZE).tobytes() == render(vintage, IDENT, CLOSE, SIZE).tobytes()


@pytest.mark.parametrize("key", CHARACTER_KEYS)
def test_every_character_choice_renders(key):
    for choice in catalogue()[key].choices:
        img = render({**BASE, key: choice}, IDENT, HALF, 64)
        assert img.size == (64, 64) and img.mode == "RGB"
        assert px(img).std() > 10, f"{key}={choice} rendered a blank image"


@pytest.mark.parametrize("key", ("scene", "expression", "framing"))
def test_every_selfie_choice_renders(key):
    for choice in selfie_catalogue()[key].choices:
        fields = {"scene": "studio", "expression": "neutral", "framing": "close-up", key: choice}
        var = Variation(fields["scene"], fields["expression"], fields["framing"], -0.4, 3)
        img, mask = render_with_mask(BASE, IDENT, var, 64)
        assert img.size == (64, 64)
        assert 0.02 < mask.mean() < 0.95, f"{key}={choice}: character missing or filling the frame"


def test_unknown_choice_is_a_clear_error():
    with pytest.raises(ValueError, match="hair_colour"):
        render({**BASE, "hair_colour": "plaid"}, IDENT, CLOSE, 32)
    with pytest.raises(ValueError, match="scene"):
        render(BASE, IDENT, Variation("moon", "neutral", "close-up", 0.0, 1), 32)


def test_other_sizes_render():
    for size in (32, 200):
        assert render(BASE, IDENT, CLOSE, size).size == (size, size)


@pytest.mark.parametrize("key", CHARACTER_KEYS)
def test_changing_an_attribute_changes_the_image(key):
    base = (render(BASE, IDENT, CLOSE, SIZE), render(BASE, IDENT, HALF, SIZE))
    for choice in catalogue()[key].choices:
        if choice == BASE[key]:
            continue
        attrs = {**BASE, key: choice}
        n = sum(int(changed(b, render(attrs, IDENT, var, SIZE)).sum()) for b, var in zip(base, (CLOSE, HALF)))
        assert n > 25, f"{key}: {BASE[key]} -> {choice} changed only {n} pixels"


def test_age_shows():
    young = render(BASE, IDENT, CLOSE, SIZE)
    assert changed(young, render({**BASE, "age": 50}, IDENT, CLOSE, SIZE)).sum() > 25
    assert changed(young, render({**BASE, "age": 68}, IDENT, CLOSE, SIZE)).sum() > 300
    assert render({**BASE, "age": 18}, IDENT, CLOSE, SIZE).tobytes() == young.tobytes()  # no lines before ~45


def _region_mean(img, mask) -> np.ndarray:
    return px(img)[mask].mean(axis=0)


@pytest.mark.parametrize("key,a,b", [("hair_colour", "black", "blonde"), ("hair_colour", "blue", "red"),
                                     ("eye_colour", "blue", "amber"), ("eye_colour", "green", "violet"),
                                     ("skin_tone", "very light", "dark")])
def test_colour_changes_land_in_their_region(key, a, b):
    """The pixels that change are the hair / iris / skin, coloured like that choice's style colour."""
    ia, ib = (render({**BASE, key: c}, IDENT, CLOSE, 128) for c in (a, b))
    region = changed(ia, ib, 40)
    assert region.sum() > 40
    style = styles()[key]
    ref_a = np.array(style[a]["base"] if key == "skin_tone" else style[a], float)
    ref_b = np.array(style[b]["base"] if key == "skin_tone" else style[b], float)
    mean_a, mean_b = _region_mean(ia, region), _region_mean(ib, region)
    assert np.linalg.norm(mean_a - ref_a) < np.linalg.norm(mean_a - ref_b)
    assert np.linalg.norm(mean_b - ref_b) < np.linalg.norm(mean_b - ref_a)


def test_two_identities_with_the_same_attributes_differ():
    for seeds in ((1, 2), (3, 4), (10, 11)):
        a, b = (render(BASE, Identity.sample(s), CLOSE, SIZE) for s in seeds)
        assert changed(a, b).sum() > 150


def test_identity_survives_scene_expression_and_light():
    """Invariant: a person's close-up silhouette (face shape, hair, ears) is the same in any scene, with any
    expression and light, while another person with the same attributes has a different one."""
    def mask(ident, var):
        return render_with_mask(BASE, ident, var, SIZE)[1] > 0.5

    ref = mask(IDENT, CLOSE)
    for scene, expr, light in (("beach", "laughing", -0.9), ("city", "angry", 0.8), ("library", "surprised", 0.0)):
        m = mask(IDENT, Variation(scene, expr, "close-up", light, 99))
        assert (m != ref).mean() < 0.002, (scene, expr)
    other = mask(Identity.sample(8), CLOSE)
    assert (other != ref).mean() > 0.01


def test_identity_is_deterministic_and_varied():
    assert Identity.sample(5) == Identity.sample(5)
    people = [Identity.sample(s) for s in range(40)]
    assert len({p.face_w for p in people}) == 40
    assert {p.mark for p in people} >= {"none", "freckles", "mole", "scar"}
    assert {p.parting for p in people} == {-1, 0, 1}


def test_vintage_is_more_sepia_than_none():
    var = Variation("beach", "happy", "half body", 0.3, 5)
    plain = render(BASE, IDENT, var, SIZE)
    vintage = render({**BASE, "theme": "vintage"}, IDENT, var, SIZE)
    half = render({**BASE, "theme": "vintage", "theme_strength": 0.5}, IDENT, var, SIZE)
    assert saturation(vintage) < saturation(half) < saturation(plain)
    r, g, b = px(vintage).reshape(-1, 3).mean(axis=0)
    assert r > g > b  # warm brown, not grey


def test_theme_strength_zero_is_no_theme():
    plain = render(BASE, IDENT, CLOSE, SIZE)
    for theme in ("vintage", "fantasy"):
        assert render({**BASE, "theme": theme, "theme_strength": 0.0}, IDENT, CLOSE, SIZE).tobytes() == plain.tobytes()


def test_fantasy_adds_ears_and_glow():
    plain, fantasy = (render_with_mask({**BASE, "theme": t}, IDENT, CLOSE, SIZE) for t in ("none", "fantasy"))
    assert fantasy[1].sum() > plain[1].sum()  # pointed ears (and circlet) widen the silhouette
    assert changed(plain[0], fantasy[0]).sum() > 150


def test_expressions_differ_from_each_other():
    imgs = {e: render(BASE, IDENT, Variation("studio", e, "close-up", 0.3, 5), SIZE)
            for e in selfie_catalogue()["expression"].choices}
    names = list(imgs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert changed(imgs[a], imgs[b]).sum() > 15, (a, b)


def test_framings_differ_in_coverage():
    cover = {}
    for f in selfie_catalogue()["framing"].choices:
        cover[f] = render_with_mask(BASE, IDENT, Variation("studio", "neutral", f, 0.3, 5), SIZE)[1].mean()
    assert cover["close-up"] > cover["half body"] > cover["full body"]


# ---- attributes, variations and captions ------------------------------------------------------------------------

def test_random_attrs_are_valid_specs():
    rng = random.Random(0)
    seen = {k: set() for k in CHARACTER_KEYS}
    for _ in range(400):
        attrs = random_attrs(rng)
        spec = CharacterSpec.from_dict(attrs)
        assert spec.to_dict() == attrs
        assert AGE_MIN <= attrs["age"] <= AGE_MAX
        for k in CHARACTER_KEYS:
            seen[k].add(attrs[k])
    for k in CHARACTER_KEYS:
        assert seen[k] == set(catalogue()[k].choices), k


def test_variation_sample():
    assert Variation.sample(4) == Variation.sample(4)
    v = Variation.sample(4, scene="cafe", expression="sad", framing="profile")
    assert (v.scene, v.expression, v.framing, v.seed) == ("cafe", "sad", "profile", 4)
    scenes = {Variation.sample(s).scene for s in range(300)}
    assert "custom" not in scenes and len(scenes) == len(selfie_catalogue()["scene"].choices) - 1
    assert all(-1 <= Variation.sample(s).lighting <= 1 for s in range(50))


def test_selfie_caption_mentions_every_attribute():
    cat, studio = catalogue(), selfie_catalogue()
    rng = random.Random(1)
    for seed in range(30):
        attrs = random_attrs(rng)
        var = Variation.sample(seed)
        text = caption(attrs, var, random.Random(seed))
        for key in ("hair_colour", "hair_style", "eye_colour", "skin_tone", "body_type", "outfit"):
            assert cat[key].choices[attrs[key]] in text, (key, text)
        for key in ("scene", "expression", "framing"):
            assert studio[key].choices[getattr(var, key)] in text, (key, text)
        if attrs["theme"] != "none":
            assert attrs["theme"] in text


def test_portrait_caption_and_custom_scene():
    attrs = {**BASE, "hair_colour": "green", "eye_colour": "violet"}
    text = caption(attrs, CLOSE, random.Random(0), kind="portrait")
    assert text.startswith("portrait of") and "green hair" in text and "violet eyes" in text
    assert "studio" not in text
    custom = caption(attrs, Variation("custom", "happy", "profile", 0.0, 1), random.Random(0))
    assert styles()["scene"]["custom"]["text"] in custom
    with pytest.raises(ValueError):
        caption(attrs, CLOSE, random.Random(0), kind="poster")


# ---- corpus -----------------------------------------------------------------------------------------------------

def test_held_out_split_is_deterministic_and_small():
    flags = [corpus.is_held_out(s) for s in range(2000)]
    assert flags == [corpus.is_held_out(s) for s in range(2000)]
    assert 0.05 < sum(flags) / len(flags) < 0.15


def test_plan_groups_photos_by_identity():
    recs = corpus.plan(40, seed=3)
    assert [r.index for r in recs] == list(range(40))
    assert [r.to_json() for r in recs] == [r.to_json() for r in corpus.plan(40, seed=3)]
    by_person = {}
    for r in recs:
        by_person.setdefault(r.identity_seed, []).append(r)
    assert len(by_person) >= 5
    for person in by_person.values():
        assert len({json.dumps(r.attrs, sort_keys=True) for r in person}) == 1
        assert {r.split for r in person} == {"held_out" if corpus.is_held_out(person[0].identity_seed) else "train"}
        assert person[0].kind == "portrait" and person[0].variation.framing == "close-up"
    full = [p for p in by_person.values() if len(p) >= corpus.MIN_PER_IDENTITY]
    assert all(len({r.variation for r in p}) == len(p) for p in full)


def test_write_corpus(tmp_path):
    corpus.main(["--out", str(tmp_path), "--n", "6", "--seed", "2", "--size", "48", "--sheet"])
    lines = [json.loads(line) for line in (tmp_path / "metadata.jsonl").read_text().splitlines()]
    assert len(lines) == 6
    for rec in lines:
        assert (tmp_path / rec["file"]).is_file()
        assert set(rec) >= {"file", "identity_seed", "attrs", "variation", "caption", "split"}
        CharacterSpec.from_dict(rec["attrs"])
    assert (tmp_path / "contact_sheet.png").is_file()
