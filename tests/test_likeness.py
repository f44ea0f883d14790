"""The likeness package on its own: band and retry logic, result states, config parsing, the scorer's states, the
identity instrument (random weights in the real format) and the dlib face descriptor on real photos."""
from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from PIL import Image

from customizer.config import LikenessConfig, load_config
from customizer.errors import ConfigError
from customizer.likeness import badge
from customizer.likeness.adapter import read_calibration
from customizer.likeness.band import Band
from customizer.likeness.result import Likeness
from customizer.likeness.retry import Attempt, attempt_seeds, best_of
from customizer.likeness.scorer import NO_FACE_BLOB, load_scorer
from likeness_helpers import needs_face, random_adapter_encoder, random_identity_encoder


def scored(x: float) -> Likeness:
    return Likeness("scored", "test", score=x)


# ---- result, band, retries ---------------------------------------------------------------------------------------

def test_likeness_states_are_checked():
    assert scored(0.5).to_dict() == {"state": "scored", "instrument": "test", "score": 0.5, "reason": "",
                                     "detail": {}}
    for bad in (lambda: Likeness("scored", "x"), lambda: Likeness("no_face", "x", score=0.3),
                lambda: Likeness("maybe", "x"), lambda: Likeness("scored", "x", score=1.5),
                lambda: Likeness("scored", "x", score=math.nan)):
        with pytest.raises(ValueError):
            bad()


def test_band_position_and_distance():
    band = Band(0.5, 0.9)
    assert [band.position(scored(x)) for x in (0.2, 0.5, 0.7, 0.9, 0.95)] == ["below", "in", "in", "in", "above"]
    assert band.distance(scored(0.2)) == pytest.approx(0.3) and band.distance(scored(0.95)) == pytest.approx(0.05)
    assert band.distance(scored(0.7)) == 0.0
    assert band.distance(Likeness("no_face", "f")) == math.inf and band.position(Likeness("no_face", "f")) is None
    with pytest.raises(ValueError):
        Band(0.9, 0.5)


def test_attempt_seeds_are_deterministic_distinct_and_start_with_the_request():
    seeds = attempt_seeds(7, 5)
    assert seeds[0] == 7 and len(set(seeds)) == 5 and seeds == attempt_seeds(7, 5)
    assert attempt_seeds(7, 3) == seeds[:3]  # more attempts extend the same sequence
    assert 8 not in seeds  # the next selfie's seed is not reused as a retry
    assert all(0 <= s < 2**31 - 1 for s in seeds) and attempt_seeds(8, 5) != seeds


def run(scores: dict[int, Likeness], seeds: list[int], band: Band | None):
    made = []

    def make(seed):
        made.append(seed)
        return Attempt(seed, f"image{seed}", f"recipe{seed}", scores[seed], 0.1)

    kept, tried = best_of(seeds, make, band)
    return kept, tried, made


def test_best_of_stops_in_band_and_keeps_the_closest():
    band = Band(0.5, 0.9)
    kept, tried, made = run({1: scored(0.3), 2: scored(0.7), 3: scored(0.8)}, [1, 2, 3], band)
    assert made == [1, 2] and kept.seed == 2 and len(tried) == 2  # stopped at the first in-band result
    kept, _, made = run({1: scored(0.3), 2: scored(0.97), 3: scored(0.45)}, [1, 2, 3], band)
    assert made == [1, 2, 3] and kept.seed == 3  # none in band: 0.45 is 0.05 away, 0.97 is 0.07, 0.3 is 0.2
    kept, _, _ = run({1: scored(0.95), 2: scored(0.95)}, [1, 2], band)
    assert kept.seed == 1  # a tie keeps the earlier attempt


def test_best_of_retries_no_face_but_not_states_every_seed_shares():
    band = Band(0.5, 0.9)
    kept, _, made = run({1: Likeness("no_face", "f"), 2: scored(0.2), 3: Likeness("no_face", "f")},
                            [1, 2, 3], band)
    assert made == [1, 2, 3] and kept.seed == 2  # any score beats no face
    for state in ("unavailable", "no_face_reference", "error"):
        _, _, made = run({1: Likeness(state, "f"), 2: scored(0.7)}, [1, 2], band)
        assert made == [1], state
    _, _, made = run({1: scored(0.1), 2: scored(0.7)}, [1, 2], None)
    assert made == [1]  # no band: score only


# ---- config ------------------------------------------------------------------------------------------------------

def write(tmp_path, likeness) -> object:
    path = tmp_path / "spaces.yaml"
    path.write_text(yaml.safe_dump({"profiles": {"p": {"base_model": "./m", "likeness": likeness}}}))
    return path


def test_config_parses_the_likeness_entry(tmp_path):
    (tmp_path / "instr").mkdir()
    p = load_config(write(tmp_path, {"instrument": "identity", "path": "instr", "band": [0.4, 0.95],
                                     "max_attempts": 4})).profile()
    assert p.likeness == LikenessConfig("identity", str(tmp_path / "instr"), (0.4, 0.95), 4)
    p = load_config(write(tmp_path, {"instrument": "face"})).profile()
    assert p.likeness == LikenessConfig("face", None, None, 1)
    assert load_config(write(tmp_path, None)).profile().likeness is None


@pytest.mark.parametrize("entry, message", [
    ({"instrument": "retina"}, "instrument must be one of"),
    ({"instrument": "face", "band": [0.9, 0.5]}, "band"),
    ({"instrument": "face", "band": [0.5]}, "band"),
    ({"instrument": "face", "band": ["a", 1]}, "band"),
    ({"instrument": "face", "band": [0.5, 1.5]}, "band"),
    ({"instrument": "face", "max_attempts": 0}, "max_attempts"),
    ({"instrument": "face", "max_attempts": 50}, "max_attempts"),
    ({"instrument": "face", "max_attempts": True}, "max_attempts"),
    ({"instrument": "face", "retries": 3}, "unknown keys"),
    ("face", "mapping"),
])
def test_config_refuses_bad_likeness_entries(tmp_path, entry, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, entry))


def test_shipped_profiles_configure_likeness():
    config = load_config()
    bundled = config.profile("bundled").likeness
    # the app picks retries with the adapter's encoder, so the eval's identity instrument stays the judge
    assert bundled.instrument == "adapter" and bundled.path.endswith("assets/bundled/ip_adapter/image_encoder")
    assert bundled.band and bundled.max_attempts > 1
    # the band starts at the threshold calibrated for these weights (assemble writes it; a retrained encoder must
    # move the band with it)
    threshold = read_calibration(bundled.path)["threshold"]
    assert threshold - 0.01 <= bundled.band[0] <= threshold + 1e-9
    for name in ("sd15", "sd15-zerogpu", "sdxl"):
        face = config.profile(name).likeness
        assert face.instrument == "face" and face.band[0] == pytest.approx(0.5)  # dlib's same-person line


# ---- scorer states -----------------------------------------------------------------------------------------------

def test_scorer_without_instrument_is_explicitly_unavailable(tmp_path):
    for cfg, words in ((None, "no 'likeness' entry"),
                       (LikenessConfig("identity", str(tmp_path / "missing")), "no trained identity encoder"),
                       (LikenessConfig("identity", None), "needs a path")):
        s = load_scorer(cfg)
        assert not s.available
        lk = s.score(b"\0" * 16, Image.new("RGB", (32, 32)))
        assert lk.state == "unavailable" and lk.score is None and words in lk.reason
        assert str(tmp_path) not in lk.reason  # server paths stay in the log


def test_damaged_instrument_files_are_unavailable_not_a_crash(tmp_path):
    folder = random_identity_encoder(tmp_path / "instr")
    (folder / "identity.safetensors").write_bytes(b"not safetensors")
    s = load_scorer(LikenessConfig("identity", str(folder)))
    assert not s.available and "could not be loaded" in s.unavailable().reason


def test_identity_instrument_with_random_weights(tmp_path):
    s = load_scorer(LikenessConfig("identity", str(random_identity_encoder(tmp_path / "a", seed=0))))
    assert s.available and s.cache_key.startswith("likeness:identity:")
    rng = np.random.default_rng(0)
    ref = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    other = Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8))
    blob = s.reference_blob(ref)
    assert len(blob) == 128 * 4 and blob == s.reference_blob(ref)  # deterministic 128-D float32
    same = s.score(blob, ref)
    assert same.state == "scored" and same.score == pytest.approx(1.0, abs=1e-5)
    lk = s.score(blob, other)
    assert lk.state == "scored" and 0 <= lk.score < same.score and "cosine" in lk.detail
    # other weights -> another cache key: a cached reference descriptor is never used with the wrong encoder
    s2 = load_scorer(LikenessConfig("identity", str(random_identity_encoder(tmp_path / "b", seed=1))))
    assert s2.cache_key != s.cache_key


def test_adapter_instrument_with_random_weights(tmp_path):
    folder = random_adapter_encoder(tmp_path / "enc", seed=0)
    s = load_scorer(LikenessConfig("adapter", str(folder)))
    assert s.available and s.cache_key.startswith("likeness:adapter:")
    rng = np.random.default_rng(0)
    ref = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    other = Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8))  # resized to the encoder's size
    blob = s.reference_blob(ref)
    assert len(blob) == 16 * 4 and blob == s.reference_blob(ref)   # the projection, float32, deterministic
    same = s.score(blob, ref)
    assert same.state == "scored" and same.score == pytest.approx(1.0, abs=1e-5)
    lk = s.score(blob, other)
    assert lk.state == "scored" and lk.score < same.score and "threshold" not in lk.detail
    s2 = load_scorer(LikenessConfig("adapter", str(random_adapter_encoder(tmp_path / "enc2", seed=1))))
    assert s2.cache_key != s.cache_key
    missing = load_scorer(LikenessConfig("adapter", str(tmp_path / "nothing")))
    assert not missing.available and "no IP-Adapter image encoder" in missing.reason


def test_calibration_writes_the_threshold_the_adapter_instrument_reports(tmp_path):
    from customizer.training.calibrate_likeness import calibrate

    folder = random_adapter_encoder(tmp_path / "enc")
    cal = calibrate(folder, people=4, selfies=2)
    assert read_calibration(folder) == cal and cal["people"] == 4 and cal["max_far"] == 0.05
    assert cal["far"] <= 0.05 and -1.0 <= cal["threshold"] <= 1.0 + 1e-6
    s = load_scorer(LikenessConfig("adapter", str(folder)))
    img = Image.new("RGB", (32, 32), (200, 120, 80))
    lk = s.score(s.reference_blob(img), img)
    assert lk.detail["threshold"] == cal["threshold"] and lk.detail["same_person"] is True


def test_scorer_turns_instrument_failures_into_an_error_state(tmp_path):
    s = load_scorer(LikenessConfig("identity", str(random_identity_encoder(tmp_path / "a"))))

    def broken(image):
        raise RuntimeError("boom")

    s.instrument.describe = broken
    lk = s.score(np.zeros(128, np.float32).tobytes(), Image.new("RGB", (8, 8)))
    assert lk.state == "error" and "failed" in lk.reason


# ---- the real face descriptor ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photos():
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    lfw = data.lfw_subset()[:100]  # the first 100 are faces of different people, 25 x 25 grey

    def lfw_face(i: int) -> Image.Image:
        return Image.fromarray((lfw[i] * 255).astype(np.uint8)).convert("RGB").resize((150, 150), Image.BICUBIC)

    return {"astronaut": astronaut, "flipped": astronaut.transpose(Image.FLIP_LEFT_RIGHT),
            "darker": Image.fromarray((data.astronaut() * 0.6).astype(np.uint8)),
            "small": astronaut.resize((200, 200), Image.LANCZOS),
            "others": [lfw_face(i) for i in (0, 1, 2, 50, 99)],
            "coffee": Image.fromarray(data.coffee()), "cat": Image.fromarray(data.chelsea())}


@pytest.fixture(scope="module")
def face():
    s = load_scorer(LikenessConfig("face"))
    assert s.available, s.reason
    return s


@needs_face
def test_face_descriptor_same_person_on_real_photos(face, photos):
    blob = face.reference_blob(photos["astronaut"])
    assert len(blob) == 128 * 4
    assert face.score(blob, photos["astronaut"]).score == pytest.approx(1.0)
    for name in ("flipped", "darker", "small"):  # small: only found with the upsampled detector
        lk = face.score(blob, photos[name])
        assert lk.state == "scored" and lk.detail["same_person"], name
        assert lk.detail["distance"] < 0.6 and 0.5 < lk.score < 1.0, name
        # the documented mapping: score = 1 - distance / 1.2
        assert lk.score == pytest.approx(1 - lk.detail["distance"] / 1.2, abs=1e-5)


@needs_face
def test_face_descriptor_different_people_on_real_photos(face, photos):
    blob = face.reference_blob(photos["astronaut"])
    for other in photos["others"]:
        lk = face.score(blob, other)
        assert lk.state == "scored" and not lk.detail["same_person"] and lk.score < 0.5


@needs_face
def test_no_face_is_an_explicit_state(face, photos):
    blob = face.reference_blob(photos["astronaut"])
    for name in ("coffee", "cat"):
        lk = face.score(blob, photos[name])
        assert lk.state == "no_face" and lk.score is None and lk.reason == "no face found in this image"
    assert face.reference_blob(photos["coffee"]) == NO_FACE_BLOB
    lk = face.score(NO_FACE_BLOB, photos["astronaut"])
    assert lk.state == "no_face_reference" and lk.score is None


# ---- how it reads ------------------------------------------------------------------------------------------------

def test_badges_say_score_band_state_and_attempts():
    selfie = {"seed": 9, "likeness": 0.82, "likeness_state": "scored", "attempts": 2, "path": "/x/a b.png",
              "recipe": {"extra": {"likeness": {"band": [0.6, 0.9], "position": "in"}}}}
    assert badge.caption(selfie) == "seed 9 · likeness 0.82 ▰▰▰▰▰▰▰▰▱▱ in band · 2 attempts"
    html = badge.cards_html([selfie])
    assert 'data-score="0.820000"' in html and 'data-attempts="2"' in html and "lk-in" in html
    assert "width:82.0%" in html and "left:60.0%" in html and "gradio_api/file=/x/a%20b.png" in html
    for state, words in (("no_face", "no face found"), ("unavailable", "likeness unavailable"),
                         (None, "likeness not measured")):
        item = {"seed": 1, "likeness": None, "likeness_state": state, "attempts": 1, "recipe": {}}
        assert words in badge.caption(item) and words in badge.cards_html([item])
    assert badge.caption({"seed": 4, "likeness": None, "recipe": {}}) == "seed 4"  # a candidate: no likeness
    view = {"view": "frontal", "likeness": 0.9, "likeness_state": "scored", "recipe": {}}
    assert badge.sheet_caption(view | {"conditions": True}).endswith("· conditions selfies")
    assert badge.sheet_caption(view | {"conditions": False}).endswith("· left out")
    assert badge.sheet_caption(view | {"conditions": False, "viewing_only": True}).endswith("· for viewing")
