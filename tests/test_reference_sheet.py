"""Reference sheet: at lock the Studio renders the views of data/refsheet.yaml from the reference (IP-Adapter on the
reference, one seed derived from it), scores and stores each with its recipe; selfies are then conditioned on the
reference plus the views inside the likeness band (multi-image IP-Adapter embeddings), record exactly which images
conditioned them, and reproduce bit-for-bit. Tiny random pipeline and a random-weight identity encoder: the scores
mean nothing, the plumbing is real."""
from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from customizer import refsheet
from customizer.config import LikenessConfig
from customizer.errors import ConfigError, ImportRefused, StateError
from customizer.recipe import Recipe
from customizer.service import Studio
from customizer.store import Store
from likeness_helpers import random_identity_encoder

SPEC = {"hair_colour": "black", "eye_colour": "grey", "age": 41}
VIEWS = ["frontal", "three-quarter left", "three-quarter right", "smiling"]


@pytest.fixture(scope="module")
def identity_dir(tmp_path_factory):
    return random_identity_encoder(tmp_path_factory.mktemp("instr") / "instruments")


@pytest.fixture
def make_studio(studio, tiny_engine, identity_dir):
    """Studios over the same store and engine; band=None: no likeness entry at all."""
    def make(band=(0.0, 1.0), store: Store | None = None, **fields) -> Studio:
        likeness = LikenessConfig("identity", str(identity_dir), band, 3) if band != "none" else None
        profile = dataclasses.replace(studio.profile, likeness=likeness, **fields)
        return Studio(studio.config, profile, store or studio.store, engine_factory=lambda p: tiny_engine)

    return make


def design_and_lock(st: Studio, progress=None) -> tuple[str, dict]:
    out = st.design(SPEC, seed=8, n=1)
    cid = out["character"]["id"]
    kwargs = {"progress": progress} if progress else {}
    return cid, st.lock(cid, out["candidates"][0]["id"], **kwargs)


def rgb(path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def px(path) -> np.ndarray:
    return np.asarray(rgb(path), dtype=np.int16)


# ---------------------------------------------------------------- definition

def test_the_views_are_data_and_the_switch_is_checked(make_studio):
    sheet = refsheet.sheet()
    assert [v.name for v in sheet.views] == VIEWS
    assert {v.pose for v in sheet.views} == {None, "three-quarter left", "three-quarter right"}
    assert sheet.views[3].shot.expression == "happy" and sheet.views[0].shot.expression == "neutral"
    assert all(v.shot.likeness == sheet.likeness for v in sheet.views)
    with pytest.raises(ConfigError, match="reference_sheet"):
        make_studio(reference_sheet="no")  # a string would read as true: refused at start
    assert refsheet.seed("a" * 64) == refsheet.seed("a" * 64) != refsheet.seed("b" * 64)


# ---------------------------------------------------------------- lock

def test_a_sheet_for_viewing_only_leaves_selfies_on_the_reference(make_studio):
    """sheet_conditions: false - the sheet is made and scored as usual, but no view conditions a selfie."""
    st = make_studio(sheet_conditions=False)
    cid, ref = design_and_lock(st)
    assert [v["view"] for v in ref["sheet"]] == VIEWS
    views = st.get_character(cid)["sheet"]
    assert all(v["viewing_only"] and not v["conditions"] for v in views)
    assert all(v["likeness_state"] == "scored" for v in views)  # in band [0, 1], and still not conditioning
    s = st.selfie(cid, {"scene": "beach"}, seed=4)[0]
    assert s["recipe"]["conditioning_sha256"] == [ref["image_sha256"]]
    assert s["recipe"]["extra"]["sheet"] == {"views": [], "left_out": []}
    _, same = st.reproduce(s["image_sha256"])
    assert same
    # the same store, a profile that conditions on the sheet: the views in band join the reference
    both = make_studio(store=st.store)
    assert not any(v["viewing_only"] for v in both.get_character(cid)["sheet"])
    s2 = both.selfie(cid, {"scene": "beach"}, seed=4)[0]
    assert s2["recipe"]["conditioning_sha256"] == [ref["image_sha256"], *(v["image_sha256"] for v in views)]


def test_the_same_portrait_rendered_again_gets_the_same_sheet(make_studio, tmp_path):
    """The sheet's seed comes from the reference's pixels, not its file hash: the PNG also holds the recipe with
    this render's timings, so two runs of the same design store different files for the same pixels (an eval
    re-run drew other sheets, and other selfies, before)."""
    runs = []
    for k in range(2):
        store = Store(tmp_path / f"run{k}" / "characters.db", tmp_path / f"run{k}" / "data")
        cid, ref = design_and_lock(make_studio(store=store))
        runs.append((ref, [(v["seed"], px(v["path"])) for v in ref["sheet"]]))
        store.close()
    (ref_a, views_a), (ref_b, views_b) = runs
    assert np.array_equal(px(ref_a["path"]), px(ref_b["path"]))
    assert ref_a["image_sha256"] != ref_b["image_sha256"]  # same pixels, other timings in the embedded recipe
    assert [s for s, _ in views_a] == [s for s, _ in views_b]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(views_a, views_b))



def test_lock_renders_scores_and_stores_every_view_each_reproducible(make_studio):
    st = make_studio()
    messages = []
    cid, ref = design_and_lock(st, progress=lambda f, m: messages.append((f, m)))
    sheet = ref["sheet"]
    assert [v["view"] for v in sheet] == VIEWS and [v["position"] for v in sheet] == [0, 1, 2, 3]
    assert all(v["reference_id"] == ref["id"] for v in sheet)
    seed = refsheet.seed(refsheet.pixel_digest(rgb(ref["path"])))
    scorer = st.scorer
    ref_blob = scorer.reference_blob(rgb(ref["path"]))
    for v, view in zip(sheet, refsheet.sheet().views):
        r = v["recipe"]
        assert r["kind"] == "sheet" and v["seed"] == r["seed"] == seed
        assert r["reference_sha256"] == ref["image_sha256"] and r["conditioning_sha256"] == [ref["image_sha256"]]
        assert r["ip_adapter_scale"] == st.likeness_to_scale(refsheet.sheet().likeness) > 0
        assert r["controlnet"]["preset"] == (view.pose or "close-up")
        assert view.shot.extra in r["prompt"]
        assert r["extra"]["sheet_view"] == {"view": v["view"], "position": v["position"], "views": VIEWS}
        # scored against the reference, exactly as the instrument says
        assert v["likeness_state"] == "scored" and v["likeness_instrument"] == "identity"
        assert v["likeness"] == scorer.score(ref_blob, rgb(v["path"])).score == r["extra"]["likeness"]["score"]
        assert r["extra"]["attempts"]["count"] == 1  # views are scored, never retried: lock stays quick
        assert Path(v["path"]).is_file() and st.store.read_recipe(v["image_sha256"]) == r
        image, same = st.reproduce(v["image_sha256"])
        assert same, v["view"]
    assert len({v["image_sha256"] for v in sheet}) == 4  # four different images
    assert np.abs(px(sheet[0]["path"]) - px(sheet[1]["path"])).mean() > 0.5
    # stored: found again with the character, in order, each flagged as conditioning (band [0, 1])
    again = st.get_character(cid)["sheet"]
    assert [v["id"] for v in again] == [v["id"] for v in sheet] and all(v["conditions"] for v in again)
    steps = [m for _, m in messages]
    assert [f"reference sheet: {n} ({i + 1} of 4)" for i, n in enumerate(VIEWS)] == \
        [m for m in steps if m.startswith("reference sheet: ") and "(" in m]
    assert [f for f, _ in messages] == sorted(f for f, _ in messages) and messages[-1] == (1.0, "done")


def test_switch_off_makes_no_sheet_and_no_render_at_lock(make_studio, monkeypatch):
    st = make_studio(reference_sheet=False)
    renders = []
    real = st._render
    monkeypatch.setattr(st, "_render", lambda *a, **k: renders.append(1) or real(*a, **k))
    cid, ref = design_and_lock(st)
    assert len(renders) == 1  # the candidate only: lock renders nothing
    assert ref["sheet"] == [] and st.store.sheet_views(cid) == [] and st.get_character(cid)["sheet"] == []
    s = st.selfie(cid, {"scene": "forest"}, seed=4)[0]
    assert s["recipe"]["conditioning_sha256"] == [ref["image_sha256"]]
    assert s["recipe"]["extra"]["sheet"] == {"views": [], "left_out": []}
    assert "sheet_mean" not in s["recipe"]["extra"]["likeness"]
    assert st.reproduce(s["image_sha256"])[1]


# ---------------------------------------------------------------- selfies on the sheet

def test_selfie_is_conditioned_on_the_sheet_records_it_and_reproduces(make_studio, monkeypatch):
    st = make_studio()
    cid, ref = design_and_lock(st)
    shas = [ref["image_sha256"], *(v["image_sha256"] for v in ref["sheet"])]
    calls = []
    real_encode = st.engine.encode_reference
    monkeypatch.setattr(st.engine, "encode_reference", lambda im: calls.append(1) or real_encode(im))
    s = st.selfie(cid, {"scene": "beach", "expression": "laughing", "likeness": 1.0}, seed=12)[0]
    assert calls == []  # the combined embeddings were cached at lock
    r = s["recipe"]
    assert r["conditioning_sha256"] == shas and r["reference_sha256"] == ref["image_sha256"]
    assert r["extra"]["sheet"] == {"views": VIEWS, "left_out": []}
    # likeness: still against the locked reference; plus the mean against the views that conditioned it
    scorer = st.scorer
    selfie_img = rgb(s["path"])
    assert s["likeness"] == scorer.score(scorer.reference_blob(rgb(ref["path"])), selfie_img).score
    per_view = [scorer.score(scorer.reference_blob(rgb(v["path"])), selfie_img).score for v in ref["sheet"]]
    info = r["extra"]["likeness"]
    assert info["sheet_scores"] == dict(zip(VIEWS, per_view))
    assert info["sheet_mean"] == round(sum(per_view) / 4, 6)
    # the combined embeddings sit in the reference's cache under their own key
    keys = [k for (k,) in st.store.db.execute("SELECT key FROM reference_embeddings WHERE reference_id = ?",
                                              [ref["id"]]).fetchall()]
    assert st.engine.embedding_key in keys and any(k.startswith(st.engine.embedding_key + "|sheet:") for k in keys)
    monkeypatch.undo()
    # bit-for-bit from the recipe (every conditioning image encoded again) ...
    _, same = st.reproduce(s["image_sha256"])
    assert same
    # ... and the sheet really took part: the same recipe on the reference alone is another image
    recipe = Recipe.from_dict(r)
    alone, _ = st.engine.render(recipe, reference_embeds=st.engine.encode_reference(rgb(ref["path"])))
    assert np.abs(np.asarray(alone, dtype=np.int16) - px(s["path"])).mean() > 0.5
    # an expression pack is conditioned the same way
    pack = st.expression_pack(cid, seed=3)
    assert all(i["recipe"]["conditioning_sha256"] == shas for i in pack["items"])


def test_a_from_reference_profile_leaves_the_look_to_the_reference_and_reproduces(make_studio):
    st = make_studio(selfie_prompt="from_reference")
    cid, ref = design_and_lock(st)
    assert "black hair" in st.store.read_recipe(ref["image_sha256"])["prompt"]   # the design states it
    views = [v["recipe"]["prompt"] for v in ref["sheet"]]
    s = st.selfie(cid, {"scene": "beach", "likeness": 1.0}, seed=12)[0]
    for prompt in [*views, s["recipe"]["prompt"]]:          # every picture conditioned on the reference
        assert "hair" not in prompt and "grey eyes" not in prompt and "adult" in prompt, prompt
    _, same = st.reproduce(s["image_sha256"])
    assert same
    full = make_studio().selfie(cid, {"scene": "beach", "likeness": 1.0}, seed=12)[0]
    assert "black hair" in full["recipe"]["prompt"]


def test_the_unet_gets_every_conditioning_image(make_studio, tiny_engine, monkeypatch):
    """The multi-image path changes what the UNet is given: [2, 1 + views, dim] image embeddings whose first
    image is the reference's own embedding and whose others are the views'."""
    st = make_studio()
    cid, ref = design_and_lock(st)
    single = st._reference_embeds(ref)
    combined = st._conditioning(ref, "local").embeds
    seen = []
    unet = tiny_engine.pipe.unet
    real_forward = unet.forward

    def spy(*args, **kwargs):
        seen.append([t.clone() for t in kwargs["added_cond_kwargs"]["image_embeds"]])
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(unet, "forward", spy)
    recipe = Recipe.from_dict(st.selfie(cid, {}, seed=2)[0]["recipe"])
    seen.clear()
    multi_img, _ = tiny_engine.render(recipe, reference_embeds=combined)
    multi = seen[0][0]
    seen.clear()
    one_img, _ = tiny_engine.render(recipe, reference_embeds=single)
    one = seen[0][0]
    assert one.shape[:2] == (2, 1) and multi.shape[:2] == (2, 5) and multi.shape[2:] == one.shape[2:]
    assert torch.equal(multi[:, :1], one)          # the reference, unchanged
    assert not torch.equal(multi[1, 1], multi[1, 0])  # a view is not the reference
    assert torch.count_nonzero(multi[0]) == 0      # negative half: zeros (plain IP-Adapter)
    # the projection turns 5 images into 5 x tokens keys for the decoupled attention
    projected = unet.encoder_hid_proj([multi])[0]
    assert projected.shape[:2] == (2, 5)
    assert np.abs(np.asarray(multi_img, np.int16) - np.asarray(one_img, np.int16)).mean() > 0.5


def test_views_outside_the_band_are_left_out_and_say_so(make_studio):
    st = make_studio(band=(0.0, 0.0))  # every random-encoder score is above: all views "copies"
    cid, ref = design_and_lock(st)
    assert not any(v["conditions"] for v in ref["sheet"])
    s = st.selfie(cid, {}, seed=5)[0]
    assert s["recipe"]["conditioning_sha256"] == [ref["image_sha256"]]
    left = s["recipe"]["extra"]["sheet"]["left_out"]
    assert [x["view"] for x in left] == VIEWS and {x["position"] for x in left} == {"above"}
    assert [x["score"] for x in left] == [v["likeness"] for v in ref["sheet"]]
    assert st.reproduce(s["image_sha256"])[1]
    # a band around one view's exact score: that view alone joins the reference
    pick = ref["sheet"][2]
    st2 = make_studio(band=(pick["likeness"], pick["likeness"]))
    assert [v["conditions"] for v in st2.get_character(cid)["sheet"]] == [v["id"] == pick["id"]
                                                                           for v in ref["sheet"]]
    s2 = st2.selfie(cid, {}, seed=5)[0]
    assert s2["recipe"]["conditioning_sha256"] == [ref["image_sha256"], pick["image_sha256"]]
    assert s2["recipe"]["extra"]["sheet"]["views"] == [pick["view"]]
    assert s2["recipe"]["extra"]["likeness"]["sheet_scores"].keys() == {pick["view"]}
    assert st2.reproduce(s2["image_sha256"])[1]
    # no instrument: nothing is scored, so nothing is left out
    st3 = make_studio(band="none")
    s3 = st3.selfie(cid, {}, seed=5)[0]
    assert len(s3["recipe"]["conditioning_sha256"]) == 5 and "sheet_mean" not in s3["recipe"]["extra"]["likeness"]


# ---------------------------------------------------------------- lifecycle

def test_unlock_keeps_relock_remakes_delete_removes_the_files(make_studio):
    st = make_studio()
    cid, ref = design_and_lock(st)
    first = ref["sheet"]
    st.unlock(cid)
    assert st.get_character(cid)["sheet"] == []  # no active reference, no active sheet ...
    assert [v["id"] for v in st.store.sheet_views(cid)] == [v["id"] for v in first]  # ... the history keeps it
    again = st.lock(cid, ref["candidate_id"])
    # a new reference gets its own sheet; the same portrait gives the same pixels (seed from the reference; the
    # PNGs differ: their recipes carry timings)
    assert again["id"] != ref["id"] and [v["reference_id"] for v in again["sheet"]] == [again["id"]] * 4
    assert [rgb(v["path"]).tobytes() for v in again["sheet"]] == [rgb(v["path"]).tobytes() for v in first]
    assert [v["seed"] for v in again["sheet"]] == [v["seed"] for v in first]
    assert len(st.store.sheet_views(cid)) == 8
    paths = [Path(v["path"]) for v in first]
    assert all(p.is_file() for p in paths)
    st.delete(cid)
    assert not any(p.exists() for p in paths)
    assert st.store.db.execute("SELECT count(*) FROM sheet_views").fetchone()[0] == 0
    rep = st.store.integrity_report()
    assert rep["rows_without_file"] == rep["files_without_row"] == rep["unreferenced_image_rows"] == []
    assert rep["foreign_key_violations"] == []


def test_the_store_keeps_sheet_images_through_gc_and_refuses_views_of_an_old_reference(make_studio):
    st = make_studio(band="none")
    cid, ref = design_and_lock(st)
    reopened = Store(st.store.db_path, st.store.data_dir)  # opening runs gc(): sheet images are in use
    try:
        assert reopened.gc() == [] and all(Path(v["path"]).is_file() for v in ref["sheet"])
        assert reopened.integrity_report()["unreferenced_image_rows"] == []
    finally:
        reopened.close()
    st.unlock(cid)
    with pytest.raises(StateError, match="unlocked"):
        st.store.add_sheet_view(cid, ref["id"], "late", 9, Image.new("RGB", (8, 8)), {"kind": "sheet", "seed": 1})
    assert len(st.store.sheet_views(cid)) == 4


def test_export_import_round_trips_the_sheet(make_studio, tmp_path):
    st = make_studio()
    cid, ref = design_and_lock(st)
    selfie = st.selfie(cid, {"scene": "cafe"}, seed=9)[0]
    data = st.export(cid)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("character.json"))
        names = set(zf.namelist())
    assert [v["view"] for v in manifest["sheet"]] == VIEWS
    assert {f"images/{v['image_sha256']}.png" for v in ref["sheet"]} <= names
    other = Store(tmp_path / "other.db", tmp_path / "other")
    try:
        st2 = make_studio(store=other)
        new = st2.import_(data)
        got = st2.get_character(new["id"])
        assert [(v["view"], v["position"], v["image_sha256"], v["likeness"], v["likeness_state"], v["recipe"])
                for v in got["sheet"]] == \
            [(v["view"], v["position"], v["image_sha256"], v["likeness"], v["likeness_state"], v["recipe"])
             for v in ref["sheet"]]
        assert {v["reference_id"] for v in got["sheet"]} == {got["reference"]["id"]}
        assert all(Path(v["path"]).is_file() for v in got["sheet"]) and all(v["conditions"] for v in got["sheet"])
        # the imported selfie reproduces: every image that conditioned it came along
        assert st2.reproduce(selfie["image_sha256"])[1]
        assert st2.reproduce(got["sheet"][1]["image_sha256"])[1]
        # and new selfies of the imported character use the imported sheet
        assert len(st2.selfie(new["id"], {}, seed=1)[0]["recipe"]["conditioning_sha256"]) == 5
    finally:
        other.close()


def rezip(data: bytes, change) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            blob = src.read(info)
            if info.filename == "character.json":
                m = json.loads(blob)
                change(m)
                blob = json.dumps(m).encode()
            dst.writestr(info.filename, blob)
    return out.getvalue()


def test_archives_without_a_sheet_import_and_bad_sheets_are_refused(make_studio):
    st = make_studio(band="none")
    cid, ref = design_and_lock(st)
    data = st.export(cid)
    old = st.import_(rezip(data, lambda m: m.pop("sheet")))  # an archive from before the sheet
    assert st.get_character(old["id"])["sheet"] == [] and st.get_character(old["id"])["status"] == "locked"

    def dup(m):
        m["sheet"][1]["view"] = m["sheet"][0]["view"]

    def orphan(m):
        m["sheet"][0]["reference_id"] = "nope"

    def bad_name(m):
        m["sheet"][0]["view"] = "x\ny"

    for change, reason in ((dup, "repeats"), (orphan, r"sheet\[0\].reference_id"), (bad_name, r"sheet\[0\].view")):
        before = len(st.list_characters())
        with pytest.raises(ImportRefused, match=reason):
            st.import_(rezip(data, change))
        assert len(st.list_characters()) == before
