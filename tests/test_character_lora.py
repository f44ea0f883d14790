"""Character LoRA: accepted selfies, a peft LoRA trained in a background process on the reference + its sheet + the
accepted selfies, selfies that use it (reference conditioning + the LoRA, alone or with a theme LoRA) and reproduce
bit for bit, cancel, owners, export/import. Tiny random pipeline; every training is a real
`python -m customizer.engine.character_lora` process (a few steps: the process start is most of its time)."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from customizer import charlora
from customizer.config import load_config
from customizer.errors import ConfigError, ImportRefused, ModelUnavailable, NotFound, SpecError, StateError
from customizer.recipe import Recipe
from customizer.service import Studio
from customizer.store import Store
from tiny_profiles import tiny_profile_yaml

SPEC = {"hair_colour": "auburn", "eye_colour": "hazel", "age": 29}
ALICE, MALLORY = "alice", "mallory"
# a few steps at a high rate: seconds, and enough to change a picture of the random tiny model
FAST = {"steps": 6, "lr": 0.05, "batch": 2, "warmup": 1}
LONG = {"steps": 100000, "lr": 1e-4, "batch": 1, "warmup": 1}  # runs until cancelled
FINISHED = ("done", "cancelled", "failed")
TIMEOUT_S = 240  # a training process on 2 busy cores: start (imports, model load) is most of it


def studio_for(config, store: Store, engine, **lora) -> Studio:
    profile = config.profile("tiny")
    profile = dataclasses.replace(profile, character_lora={**FAST, **lora})
    return Studio(config, profile, store, engine_factory=lambda p: engine)


def design_and_lock(st: Studio, owner: str = ALICE, seed: int = 8, **spec) -> tuple[str, dict]:
    out = st.design({**SPEC, **spec}, seed=seed, n=1, owner=owner)
    cid = out["character"]["id"]
    return cid, st.lock(cid, out["candidates"][0]["id"], owner=owner)


def wait(st: Studio, job_id: str, owner: str = ALICE, until=lambda s: s["state"] in FINISHED,
         timeout: float = TIMEOUT_S) -> tuple[dict, list[tuple[str, int]]]:
    """Poll the job until `until(status)`; returns the last status and every (state, step) seen, in order."""
    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + timeout
    while True:
        s = st.character_lora_status(job_id, owner=owner)
        if not seen or seen[-1] != (s["state"], s["step"]):
            seen.append((s["state"], s["step"]))
        if until(s):
            return s, seen
        assert time.monotonic() < deadline, f"job still {s}"
        time.sleep(0.03)


def px(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def config(tiny_config_path):
    return load_config(tiny_config_path)


@pytest.fixture
def make_studio(config, studio, tiny_engine):
    made: list[Studio] = []

    def make(store: Store | None = None, engine=None, **lora) -> Studio:
        st = studio_for(config, store or studio.store, engine or tiny_engine, **lora)
        made.append(st)
        return st

    yield make
    for st in made:
        st.lora_jobs.shutdown()


@dataclasses.dataclass
class Trained:
    st: Studio
    cid: str
    ref: dict
    before: dict      # a selfie taken before the LoRA existed
    accepted: dict    # the accepted selfie the LoRA trained on
    job: dict         # the finished job
    seen: list        # (state, step) while it ran
    items: list       # the training set


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir, tiny_engine):
    """One character with a LoRA trained to done, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("charlora")
    (root / "spaces.yaml").write_text(yaml.safe_dump(
        {"default_profile": "tiny", "storage": {"db": "characters.db", "data_dir": "data"},
         "profiles": {"tiny": tiny_profile_yaml(tiny_model_dir)}}))
    config = load_config(root / "spaces.yaml")
    store = Store(config.db_path, config.data_dir)
    st = studio_for(config, store, tiny_engine)
    cid, ref = design_and_lock(st)
    before = st.selfie(cid, {"scene": "beach"}, seed=7, owner=ALICE)[0]
    accepted = st.selfie(cid, {"scene": "forest", "expression": "happy"}, seed=9, owner=ALICE)[0]
    st.accept_selfie(accepted["id"], True, owner=ALICE)
    _, items = st.lora_training_set(cid, owner=ALICE)
    job_id = st.start_character_lora(cid, owner=ALICE)
    job, seen = wait(st, job_id)
    yield Trained(st, cid, ref, before, accepted, job, seen, items)
    st.lora_jobs.shutdown()
    store.close()


# ---------------------------------------------------------------- settings, accepting, the training set

def test_settings_are_data_and_profile_overrides_are_checked(config):
    s = charlora.settings()
    assert s["steps"] >= 100 and s["rank"] == 8 and 0 < s["lr"] < 0.01 and s["parallel"] == 1
    assert "to_q" in s["targets"] and s["strength"] == 0.5
    profile = config.profile("tiny")
    over = dataclasses.replace(profile, character_lora={"steps": 3, "lr": 1})
    assert charlora.settings(over)["steps"] == 3 and charlora.settings(over)["lr"] == 1.0
    for bad, reason in (({"steps": 0}, "at least 1"), ({"steps": "many"}, "must be int"),
                        ({"parallel": 4}, "unknown or fixed"), ({"lr": float("nan")}, "finite"), ("fast", "mapping")):
        with pytest.raises(ConfigError, match=reason):
            charlora.settings(dataclasses.replace(profile, character_lora=bad))
    assert charlora.adapter_name("ab" * 32) == "character_" + "ab" * 8 != charlora.adapter_name("cd" * 32)


def test_accepting_selfies_shapes_the_training_set(make_studio):
    st = make_studio()
    draft = st.design(SPEC, seed=3, n=1, owner=ALICE)["character"]["id"]
    with pytest.raises(StateError, match="lock a portrait first"):
        st.start_character_lora(draft, owner=ALICE)  # nothing to train on
    cid, ref = design_and_lock(st)
    a, b = st.selfie(cid, {"scene": "city"}, seed=4, count=2, owner=ALICE)
    reference, items = st.lora_training_set(cid, owner=ALICE)
    sheet = [v["image_sha256"] for v in ref["sheet"]]
    assert reference["id"] == ref["id"] and len(sheet) == 4
    assert [i["image_sha256"] for i in items] == [ref["image_sha256"], *sheet]  # reference + in-band views
    assert not a["accepted"] and not b["accepted"]
    got = st.accept_selfie(b["id"], True, owner=ALICE)
    assert got["accepted"] and got["accepted_at"]
    st.accept_selfie(a["id"], True, owner=ALICE)
    items = st.lora_training_set(cid, owner=ALICE)[1]
    assert [i["image_sha256"] for i in items][5:] == [a["image_sha256"], b["image_sha256"]]  # oldest first
    assert [i["recipe"]["prompt"] for i in items][5:] == [a["recipe"]["prompt"], b["recipe"]["prompt"]]
    assert not st.accept_selfie(a["id"], False, owner=ALICE)["accepted"]
    assert [s["accepted"] for s in st.get_character(cid, owner=ALICE)["selfies"]] == [True, False]  # newest first
    assert [i["image_sha256"] for i in st.lora_training_set(cid, owner=ALICE)[1]][5:] == [b["image_sha256"]]
    with pytest.raises(SpecError, match="accepted"):
        st.accept_selfie(a["id"], "yes", owner=ALICE)
    # nobody else can accept (or even find) it
    with pytest.raises(NotFound):
        st.accept_selfie(a["id"], True, owner=MALLORY)
    assert not st.store.get_selfie(a["id"], owner=ALICE)["accepted"]
    # a profile this trainer cannot train for says so
    sdxl = Studio(st.config, dataclasses.replace(st.profile, family="sdxl"), st.store,
                  engine_factory=lambda p: st.engine)
    with pytest.raises(StateError, match="sd15"):
        sdxl.start_character_lora(cid, owner=ALICE)


# ---------------------------------------------------------------- training

def test_training_runs_to_done_with_progress_and_stores_the_lora(trained):
    job, st = trained.job, trained.st
    assert job["state"] == "done", job
    assert job["progress"] == 1.0 and job["step"] == job["steps"] == FAST["steps"] and job["images"] == 6
    assert math.isfinite(job["loss"]) and job["seconds"] > 0
    steps = [step for state, step in trained.seen if state == "running" and step > 0]
    assert steps and steps == sorted(steps)  # progress was reported while it ran
    loras = st.store.character_loras(trained.cid, owner=ALICE)
    assert len(loras) == 1 and loras[0]["sha256"] == job["lora"]["sha256"] and "path" not in job["lora"]
    lora = loras[0]
    facts = lora["facts"]
    # the training set: the reference, its 4 sheet views, the accepted selfie - nothing else
    assert facts["images"] == [i["image_sha256"] for i in trained.items]
    assert facts["images"][0] == trained.ref["image_sha256"] and facts["images"][-1] == \
        trained.accepted["image_sha256"] and trained.before["image_sha256"] not in facts["images"]
    assert facts["kinds"] == ["portrait", "sheet", "sheet", "sheet", "sheet", "selfie"]
    assert (facts["steps"], facts["seed"], facts["rank"]) == (FAST["steps"], 0, 8)
    assert facts["seconds"] > 0 and facts["s_per_step"] > 0
    assert facts["conditioning_sha256"] == [trained.ref["image_sha256"], *facts["images"][1:5]]
    # content-addressed like images, a safetensors of UNet LoRA weights
    path = st.store.lora_path(lora["sha256"])
    assert Path(lora["path"]) == path and path.suffix == ".safetensors" and sha(path) == lora["sha256"]
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("unet.") and ".lora_" in k for k in keys)
    assert any(".ff.net." in k for k in keys) and any(".attn2.to_k." in k for k in keys)
    assert st.store.integrity_report()["files_without_row"] == []
    info = st.character_lora(trained.cid, owner=ALICE)
    assert info["lora"]["id"] == lora["id"] and info["job"]["id"] == job["id"] and info["training_images"] == 6


def test_selfies_use_the_lora_and_reproduce_bit_identically(trained):
    st, cid, lora = trained.st, trained.cid, trained.job["lora"]
    adapter = charlora.adapter_name(lora["sha256"])
    shot = {"scene": "beach"}
    default = st.selfie(cid, shot, seed=7, owner=ALICE)[0]  # default: on, at the data file's strength
    assert default["recipe"]["loras"] == {adapter: charlora.settings()["strength"]}
    on = st.selfie(cid, {**shot, "character_lora_strength": 1.0}, seed=7, owner=ALICE)[0]
    off = st.selfie(cid, {**shot, "character_lora": False}, seed=7, owner=ALICE)[0]
    half = st.selfie(cid, {**shot, "character_lora_strength": 0.5}, seed=7, owner=ALICE)[0]
    zero = st.selfie(cid, {**shot, "character_lora_strength": 0.0}, seed=7, owner=ALICE)[0]
    r = on["recipe"]
    assert r["loras"] == {adapter: 1.0} and r["character_lora_sha256"] == lora["sha256"]
    assert r["extra"]["character_lora"] == {"id": lora["id"], "strength": 1.0, "images": 6}
    assert r["conditioning_sha256"] == trained.before["recipe"]["conditioning_sha256"]  # reference conditioning too
    assert half["recipe"]["loras"] == {adapter: 0.5}
    for plain in (off, zero):
        assert plain["recipe"]["loras"] == {} and plain["recipe"]["character_lora_sha256"] is None
        assert "character_lora" not in plain["recipe"]["extra"]
        assert np.array_equal(px(plain["path"]), px(trained.before["path"]))  # without it: as before training
    # the LoRA changes the picture, more at full strength than at half
    full_diff = np.abs(px(on["path"]) - px(off["path"])).mean()
    half_diff = np.abs(px(half["path"]) - px(off["path"])).mean()
    assert full_diff > 2.0 and 0 < half_diff < full_diff, (full_diff, half_diff)
    # the stored recipe says it all: every one regenerates exactly (the LoRA named by its sha256)
    for s in (on, half, off):
        image, same = st.reproduce(s["image_sha256"])
        assert same, s["recipe"]["loras"]
    # an expression pack uses it too
    pack = st.expression_pack(cid, name="with lora", seed=2, owner=ALICE)
    assert all(s["recipe"]["character_lora_sha256"] == lora["sha256"] for s in pack["items"])


def test_theme_and_character_lora_combine_and_fusing_stays_exact(trained, config, tiny_engine):
    """Two adapters run as peft branches; a lone one is fused. Every state reproduces whatever ran before it, and
    fusing the lone character LoRA (whose feed-forward layers no theme reaches) matches peft's unfused branch."""
    from customizer.engine.pipeline import Engine

    st, lora = trained.st, trained.job["lora"]
    adapter = charlora.adapter_name(lora["sha256"])
    base = Recipe.from_dict(trained.before["recipe"])
    recipes = {"none": base.replace(loras={}),
               "theme": base.replace(loras={"fantasy": 0.8}),
               "character": base.replace(loras={adapter: 1.0}, character_lora_sha256=lora["sha256"]),
               "both": base.replace(loras={"fantasy": 0.8, adapter: 1.0}, character_lora_sha256=lora["sha256"])}
    embeds = st._conditioning(trained.ref, ALICE).embeds
    with Image.open(trained.ref["path"]) as im:
        ref_image = im.convert("RGB")
    path = st.store.lora_path(lora["sha256"])

    def render(engine, name):
        r = recipes[name]
        image, _ = engine.render(r, embeds, ref_image, character_lora=path if r.character_lora_sha256 else None)
        return np.asarray(image, dtype=np.int16)

    order = ["theme", "character", "both", "none", "theme", "both", "character", "none"]
    got = [(name, render(tiny_engine, name)) for name in order]
    first = {}
    for name, image in got:
        if name in first:
            assert np.array_equal(first[name], image), f"{name} changed after other LoRA states"
        first.setdefault(name, image)
    assert np.array_equal(first["none"], px(trained.before["path"]))
    names = list(first)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(first[a] - first[b]).mean() > 0.5, (a, b)
    # an engine that never fuses: two adapters are unfused in both (identical); the lone LoRA differs by rounding
    profile = dataclasses.replace(st.profile, fuse_lora=False)
    plain = Engine(profile)
    assert np.array_equal(render(plain, "both"), first["both"])
    for name in ("character", "theme"):  # a fuser blind to the LoRA's feed-forward layers: mean 0.56, max 4
        d = np.abs(render(plain, name) - first[name])
        assert d.max() <= 1 and d.mean() < 0.1, (name, d.max(), d.mean())
    assert tiny_engine._fuser is not None and plain._fuser is None
    # a loaded character adapter serves only the recipe that names its file
    with pytest.raises(ModelUnavailable, match="character_lora_sha256"):
        tiny_engine.render(base.replace(loras={adapter: 1.0}), embeds, ref_image)
    with pytest.raises(ModelUnavailable, match="needs its character LoRA file"):
        tiny_engine.render(recipes["character"], embeds, ref_image)


def test_training_is_deterministic_given_images_and_seed(trained):
    st, cid = trained.st, trained.cid
    again = wait(st, st.start_character_lora(cid, owner=ALICE))[0]
    assert again["state"] == "done" and again["lora"]["sha256"] == trained.job["lora"]["sha256"]
    assert again["lora"]["id"] != trained.job["lora"]["id"]  # a second row, the same content-addressed file
    # another seed gives other weights; that row is removed again so the shared character keeps its LoRA
    other = wait(st, st.start_character_lora(cid, owner=ALICE, seed=1))[0]
    assert other["state"] == "done" and other["lora"]["sha256"] != again["lora"]["sha256"]
    assert other["lora"]["facts"]["seed"] == 1
    with st.store._tx() as db:
        db.execute("DELETE FROM character_loras WHERE id = ?", [other["lora"]["id"]])
    st.store.gc()
    assert not st.store.lora_path(other["lora"]["sha256"]).exists()
    assert st.current_lora(trained.ref, ALICE)["sha256"] == trained.job["lora"]["sha256"]


# ---------------------------------------------------------------- cancel, and a render during training

def test_cancel_stops_a_running_job_and_stores_nothing(make_studio):
    st = make_studio(**LONG)
    cid, _ = design_and_lock(st)
    other, _ = design_and_lock(st, seed=30)
    job_id = st.start_character_lora(cid, owner=ALICE)
    with pytest.raises(StateError, match="already training"):
        st.start_character_lora(cid, owner=ALICE)  # one job per character
    queued = st.start_character_lora(other, owner=ALICE)  # one trainer at a time: this one waits
    running, _ = wait(st, job_id, until=lambda s: s["state"] == "running" and s["step"] >= 2)
    assert st.character_lora_status(queued, owner=ALICE)["state"] == "queued"
    proc = st.lora_jobs._jobs[job_id].proc
    assert proc is not None and proc.poll() is None
    t0 = time.monotonic()
    done = st.cancel_character_lora(job_id, owner=ALICE)
    assert done["state"] == "cancelled" and time.monotonic() - t0 < 10
    assert proc.poll() is not None  # the training process is gone
    assert 2 <= done["step"] < LONG["steps"] and st.store.character_loras(cid, owner=ALICE) == []
    assert st.character_lora(cid, owner=ALICE)["lora"] is None
    # the queued one took the free trainer; cancelling it also stores nothing
    started, _ = wait(st, queued, until=lambda s: s["state"] != "queued")
    assert started["state"] == "running"
    assert st.cancel_character_lora(queued, owner=ALICE)["state"] == "cancelled"
    assert st.store.character_loras(other, owner=ALICE) == []
    assert not list((st.store.data_dir / "loras").rglob("*.safetensors"))
    # a finished job stays as it was; a character can train again after a cancel
    assert st.cancel_character_lora(job_id, owner=ALICE)["state"] == "cancelled"
    again = st.start_character_lora(cid, owner=ALICE)
    assert st.cancel_character_lora(again, owner=ALICE)["state"] == "cancelled"


def test_a_cancelled_queued_job_never_starts(make_studio):
    st = make_studio(**LONG)
    first, _ = design_and_lock(st)
    second, _ = design_and_lock(st, seed=31)
    running = st.start_character_lora(first, owner=ALICE)
    queued = st.start_character_lora(second, owner=ALICE)
    out = st.cancel_character_lora(queued, owner=ALICE)
    assert out["state"] == "cancelled" and out["step"] == 0 and out["seconds"] == 0.0
    assert st.lora_jobs._jobs[queued].proc is None
    st.cancel_character_lora(running, owner=ALICE)


def test_a_render_during_training_is_unaffected_and_not_blocked(make_studio):
    import threading

    st = make_studio(**LONG)
    cid, _ = design_and_lock(st)
    quiet = st.selfie(cid, {"scene": "cafe"}, seed=12, owner=ALICE)[0]  # before any training
    job_id = st.start_character_lora(cid, owner=ALICE)
    wait(st, job_id, until=lambda s: s["state"] == "running" and s["step"] >= 2)
    made: list[dict] = []
    render = threading.Thread(target=lambda: made.extend(st.selfie(cid, {"scene": "cafe"}, seed=12, owner=ALICE)))
    render.start()
    render.join(120)  # a render waiting for the training would wait for 100000 steps
    try:
        assert not render.is_alive() and made, "the render waited for the training"
        during = st.character_lora_status(job_id, owner=ALICE)
        assert during["state"] == "running", during  # it really ran during the training
        wait(st, job_id, until=lambda s: s["step"] > during["step"])  # which goes on afterwards
    finally:
        st.cancel_character_lora(job_id, owner=ALICE)
        render.join(120)
    busy = made[0]
    # the picture is exactly the one made without a training around, and reproduces
    assert np.array_equal(px(busy["path"]), px(quiet["path"]))
    assert busy["recipe"]["character_lora_sha256"] is None
    assert st.reproduce(busy["image_sha256"])[1]


# ---------------------------------------------------------------- owners

def test_another_owner_cannot_see_start_or_use_it(trained):
    st, cid, job = trained.st, trained.cid, trained.job
    for call in (lambda: st.character_lora_status(job["id"], owner=MALLORY),
                 lambda: st.cancel_character_lora(job["id"], owner=MALLORY),
                 lambda: st.start_character_lora(cid, owner=MALLORY),
                 lambda: st.character_lora(cid, owner=MALLORY),
                 lambda: st.store.character_loras(cid, owner=MALLORY),
                 lambda: st.accept_selfie(trained.accepted["id"], False, owner=MALLORY),
                 lambda: st.selfie(cid, {"scene": "beach"}, seed=7, owner=MALLORY),
                 lambda: st.export(cid, owner=MALLORY)):
        with pytest.raises(NotFound):
            call()
    assert st.character_lora_status(job["id"], owner=ALICE)["state"] == "done"  # untouched by the tries
    # Mallory's own character gets no LoRA: not Alice's, even though the engine has it loaded
    theirs, _ = design_and_lock(st, owner=MALLORY, seed=8)
    s = st.selfie(theirs, {"scene": "beach"}, seed=7, owner=MALLORY)[0]
    assert s["recipe"]["loras"] == {} and s["recipe"]["character_lora_sha256"] is None
    assert st.character_lora(theirs, owner=MALLORY)["lora"] is None
    assert st.lora_jobs.latest_for(cid, MALLORY) is None
    with pytest.raises(NotFound):
        st.character_lora_status("not-a-job", owner=ALICE)


# ---------------------------------------------------------------- export / import / delete

def rezip(data: bytes, change_manifest=None, change_member=None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            name, blob = info.filename, src.read(info)
            if name == "character.json" and change_manifest:
                m = json.loads(blob)
                change_manifest(m)
                blob = json.dumps(m).encode()
            elif change_member:
                changed = change_member(name, blob)
                if changed is None:  # left out
                    continue
                name, blob = changed
            dst.writestr(name, blob)
    return out.getvalue()


def test_export_import_round_trip_reproduces_and_delete_removes_the_lora(trained, config, tmp_path):
    from customizer.engine.pipeline import Engine

    st, lora = trained.st, trained.job["lora"]
    made = st.selfie(trained.cid, {"scene": "city", "expression": "laughing"}, seed=21, owner=ALICE)[0]
    assert made["recipe"]["character_lora_sha256"] == lora["sha256"]
    data = st.export(trained.cid, owner=ALICE)
    member = f"loras/{lora['sha256']}.safetensors"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("character.json"))
        assert hashlib.sha256(zf.read(member)).hexdigest() == lora["sha256"]
    rows = manifest["character_loras"]
    stored = st.store.character_loras(trained.cid, owner=ALICE)  # the determinism test may have added a twin
    assert [(r["id"], r["sha256"], r["facts"]) for r in rows] == \
        [(lo["id"], lo["sha256"], lo["facts"]) for lo in stored]
    assert {r["sha256"] for r in rows} == {lora["sha256"]}
    assert any(s["accepted_at"] for s in manifest["selfies"])
    # into another store, with a freshly loaded engine: the LoRA can only come from the imported file
    other = Store(tmp_path / "other.db", tmp_path / "other")
    try:
        st2 = studio_for(config, other, Engine(st.profile))
        new = st2.import_(data, owner=MALLORY)
        got = st2.get_character(new["id"], owner=MALLORY)
        assert [(lo["sha256"], lo["facts"], lo["created_at"]) for lo in got["loras"]] == \
            [(lo["sha256"], lo["facts"], lo["created_at"]) for lo in stored]
        assert {lo["reference_id"] for lo in got["loras"]} == {got["reference"]["id"]}
        assert sha(other.lora_path(lora["sha256"])) == lora["sha256"]
        assert [s["accepted"] for s in got["selfies"]] == [s["accepted"] for s in st.get_character(
            trained.cid, owner=ALICE)["selfies"]]
        assert st2.reproduce(made["image_sha256"])[1]  # the imported selfie regenerates bit for bit
        assert st2.lora_training_set(new["id"], owner=MALLORY)[1][-1]["image_sha256"] == \
            trained.accepted["image_sha256"]
        # new selfies of the imported character use the imported LoRA
        s = st2.selfie(new["id"], {"scene": "beach"}, seed=7, owner=MALLORY)[0]
        assert s["recipe"]["character_lora_sha256"] == lora["sha256"]
        # delete removes the row and the file (nothing else in this store uses it)
        st2.delete(new["id"], owner=MALLORY)
        assert not other.lora_path(lora["sha256"]).exists()
        assert other.integrity_report()["rows_without_file"] == []
        with other._read() as db:
            assert db.execute("SELECT count(*) FROM character_loras").fetchone()[0] == 0
    finally:
        other.close()
    assert st.store.lora_path(lora["sha256"]).is_file()  # the original is untouched


def test_hostile_lora_members_are_refused(trained):
    st, lora = trained.st, trained.job["lora"]
    data = st.export(trained.cid, owner=ALICE)
    member = f"loras/{lora['sha256']}.safetensors"

    def flip(name, blob):
        return name, (blob[:-1] + bytes([blob[-1] ^ 1])) if name == member else blob

    def not_safetensors(name, blob):
        if name != member:
            return name, blob
        junk = b"\xff" * 64
        return f"loras/{hashlib.sha256(junk).hexdigest()}.safetensors", junk

    def drop(name, blob):
        return ("images/" + "0" * 64 + ".png", blob) if name == member else (name, blob)

    def pointed(m):
        m["character_loras"][0]["sha256"] = hashlib.sha256(b"\xff" * 64).hexdigest()

    def orphan(m):
        m["character_loras"][0]["reference_id"] = "nope"

    count = len(st.list_characters(owner=MALLORY))
    for archive, reason in ((rezip(data, change_member=flip), "do not match"),
                            (rezip(data, pointed, not_safetensors), "not a character LoRA"),
                            (rezip(data, change_member=lambda n, b: drop(n, b)), "do not match|missing"),
                            (rezip(data, orphan), r"character_loras\[0\].reference_id")):
        with pytest.raises(ImportRefused, match=reason):
            st.import_(archive, owner=MALLORY)
    assert len(st.list_characters(owner=MALLORY)) == count
    # an archive from before character LoRAs still imports
    old = st.import_(rezip(data, lambda m: m.pop("character_loras"),
                           lambda n, b: (n, b) if n != member else None), owner=MALLORY)
    assert st.get_character(old["id"], owner=MALLORY)["loras"] == []
    st.delete(old["id"], owner=MALLORY)


# ---------------------------------------------------------------- the API, on the real app

@pytest.mark.e2e   # a launched app: the e2e tier, though the file is integration
def test_api_accept_train_poll_and_selfie(tmp_path, tiny_model_dir):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from apprunner import App

    (tmp_path / "spaces.yaml").write_text(yaml.safe_dump(
        {"default_profile": "tiny", "storage": {"db": "characters.db", "data_dir": "data"},
         "profiles": {"tiny": tiny_profile_yaml(tiny_model_dir, controlnet=None, steps=2, character_lora=FAST)}}))
    app = App(tmp_path / "spaces.yaml")
    try:
        client = Client(app.wait_ready(), verbose=False)
        me, them = {"token": "alice-secret-token-0123456789"}, {"token": "mallory-secret-token-987654321"}

        def call(api, **req):
            return client.predict({**me, **req}, api_name=f"/{api}")

        made, _ = call("design_candidates", spec=SPEC, seed=4, n=1)
        cid = made["character_id"]
        call("lock", character_id=cid, candidate_id=made["candidates"][0]["id"])
        selfies, _ = call("selfie", character_id=cid, selfie={"scene": "beach"}, seed=3)
        accepted, images = call("accept_selfie", selfie_id=selfies[0]["id"])
        assert accepted["accepted"] and len(images) == 1 and "path" not in accepted
        with pytest.raises(AppError, match="not found"):
            client.predict({**them, "selfie_id": selfies[0]["id"]}, api_name="/accept_selfie")
        job, _ = call("character_lora_start", character_id=cid)
        assert job["state"] in ("queued", "running") and job["images"] == 6
        with pytest.raises(AppError, match="not found"):
            client.predict({**them, "job_id": job["id"]}, api_name="/character_lora_status")
        deadline = time.monotonic() + TIMEOUT_S
        while job["state"] not in FINISHED and time.monotonic() < deadline:
            time.sleep(0.5)
            job, _ = call("character_lora_status", job_id=job["id"])
        assert job["state"] == "done" and job["progress"] == 1.0, job
        assert "path" not in job["lora"] and job["lora"]["facts"]["steps"] == FAST["steps"]
        assert call("character_lora_cancel", job_id=job["id"])[0]["state"] == "done"  # finished: left as it is
        shot, _ = call("selfie", character_id=cid, selfie={"scene": "beach", "character_lora_strength": 0.6}, seed=3)
        assert shot[0]["recipe"]["character_lora_sha256"] == job["lora"]["sha256"]
        assert shot[0]["recipe"]["loras"] == {charlora.adapter_name(job["lora"]["sha256"]): 0.6}
        character, _ = call("get_character", character_id=cid)
        assert [lo["sha256"] for lo in character["loras"]] == [job["lora"]["sha256"]]
        assert all("path" not in lo for lo in character["loras"])
        with pytest.raises(AppError, match="accepted: must be true or false"):
            call("accept_selfie", selfie_id=selfies[0]["id"], accepted="yes")
        with pytest.raises(AppError, match="character_lora: must be true or false"):
            call("selfie", character_id=cid, selfie={"character_lora": "on"})
    finally:
        app.stop()
    assert "Traceback" not in app.log.read_text()


# ---------------------------------------------------------------- the Selfie studio, in a browser

@pytest.mark.e2e   # a launched app: the e2e tier, though the file is integration
def test_browser_accept_train_with_progress_and_take_a_lora_selfie(tmp_path, tiny_model_dir):
    import os
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        if os.environ.get("CI"):
            pytest.fail("chromium must be installed in CI")
        pytest.skip("chromium is not installed (CI installs it: see .ci/run)")
    from playwright.sync_api import sync_playwright

    from apprunner import App

    (tmp_path / "spaces.yaml").write_text(yaml.safe_dump(
        {"default_profile": "tiny", "storage": {"db": "characters.db", "data_dir": "data"},
         # enough steps that the bar is seen moving on a fast machine too
         "profiles": {"tiny": tiny_profile_yaml(tiny_model_dir, controlnet=None, steps=2,
                                                character_lora={**FAST, "steps": 60})}}))
    app = App(tmp_path / "spaces.yaml")
    try:
        url = app.wait_ready()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox",
                                                                        "--disable-gpu"])
            page = browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
            page.set_default_timeout(240_000)
            page.goto(url)
            page.wait_for_function("window.localStorage.getItem('customizer-owner')")
            page.click("#generate")
            page.wait_for_selector("#candidates img")
            page.locator("#candidates img").first.click()
            page.click("#lock")
            page.get_by_role("tab", name="Selfie studio", selected=True).wait_for()
            page.get_by_text("No character LoRA yet").wait_for()
            page.click("#take-selfie")
            page.get_by_text("New: seed").wait_for()
            page.locator("#history img").first.click()
            page.get_by_text("Selected: seed").wait_for()
            page.click("#accept-selfie")
            page.get_by_text("accepted: the next character LoRA trains on it").wait_for()
            page.get_by_text("(6 images now)").wait_for()
            page.click("#train-lora")
            page.wait_for_selector("#lora-progress .lora-job")
            states = set()
            for _ in range(2400):  # the timer polls the job; the bar follows it to the end
                states.add(page.locator("#lora-progress .lora-job").get_attribute("data-state"))
                if "done" in states:
                    break
                page.wait_for_timeout(100)
            assert "done" in states and states & {"queued", "running"}, states
            page.get_by_text("Character LoRA: trained on 6 images").wait_for()
            assert page.locator("#lora-progress progress").get_attribute("value") == "1.000"
            page.click("#take-selfie")
            page.wait_for_function("document.querySelectorAll('#history img').length >= 2")
            page.screenshot(path=str(tmp_path / "character-lora.png"), full_page=True)
            if os.environ.get("UI_SCREENSHOTS"):
                Path(os.environ["UI_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(os.environ["UI_SCREENSHOTS"]) / "character-lora.png"), full_page=True)
            browser.close()
    finally:
        app.stop()
    # the second selfie used the LoRA (the UI's checkbox is on by default)
    from customizer.store import Store as _Store

    with _Store(tmp_path / "characters.db", tmp_path / "data") as store:
        with store._read() as db:
            recipes = [json.loads(r[0]) for r in db.execute(
                "SELECT recipe_json FROM selfies ORDER BY created_at")]
    assert [r["character_lora_sha256"] is not None for r in recipes] == [False, True]
    assert "Traceback" not in app.log.read_text()
