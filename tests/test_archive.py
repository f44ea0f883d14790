"""Export/import: round trip, and every hostile archive refused without leaving anything behind."""
from __future__ import annotations

import hashlib
import io
import json
import struct
import warnings
import zipfile
from pathlib import Path

import pytest
from PIL import Image

import customizer.archive as archive
from customizer.archive import export_character, import_character
from customizer.errors import ImportRefused, NotFound, SpecError
from customizer.store import Store


def img(color, size=16) -> Image.Image:
    return Image.new("RGB", (size, size), color)


def recipe(seed: int, kind: str = "portrait") -> dict:
    return {"kind": kind, "model_id": "test/model", "seed": seed, "prompt": f"p{seed}", "guidance": 6.5}


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "a.db", tmp_path / "a-data")
    yield s
    s.close()


@pytest.fixture
def other_store(tmp_path):  # "another machine"
    s = Store(tmp_path / "b.db", tmp_path / "b-data")
    yield s
    s.close()


@pytest.fixture
def character(store) -> dict:
    """Locked, with an unlocked reference in its history and two selfies."""
    c = store.create_character("Nora", {"hair": "silver", "eyes": "amber"})
    k1 = store.add_candidate(c["id"], img("red"), recipe(1))
    k2 = store.add_candidate(c["id"], img("blue"), recipe(2))
    store.add_candidate(c["id"], img("green"), recipe(3))
    store.lock(c["id"], k1["id"])
    store.add_selfie(c["id"], img("pink"), recipe(10, "selfie"), {"scene": "old"}, likeness=0.4, attempts=3)
    store.unlock(c["id"])
    store.lock(c["id"], k2["id"])
    store.add_selfie(c["id"], img("cyan"), recipe(11, "selfie"), {"scene": "beach"}, likeness=0.82)
    return store.get_character(c["id"])


def comparable(ch: dict) -> dict:
    """What must survive a round trip: everything except ids and absolute paths."""
    return {
        "spec": ch["spec"], "status": ch["status"],
        "reference": ch["reference"]["image_sha256"] if ch["reference"] else None,
        "references": [(r["image_sha256"], r["recipe"], r["locked_at"], r["unlocked_at"] is None)
                       for r in ch["references"]],
        "candidates": [(k["image_sha256"], k["recipe"], k["created_at"]) for k in ch["candidates"]],
        "selfies": [(s["image_sha256"], s["recipe"], s["selfie"], s["likeness"], s["attempts"], s["created_at"])
                    for s in ch["selfies"]],
    }


def test_round_trip_restores_everything(store, other_store, character):
    data = export_character(store, character["id"])
    new = import_character(other_store, data)
    got = other_store.get_character(new["id"])
    assert new["id"] != character["id"] and got["name"] == "Nora"
    assert comparable(got) == comparable(character)
    assert got["status"] == "locked" and got["reference"]["unlocked_at"] is None
    # Same reference image, byte for byte, under new ids that point at each other.
    assert Path(got["reference"]["path"]).read_bytes() == Path(character["reference"]["path"]).read_bytes()
    assert got["reference"]["candidate_id"] in {k["id"] for k in got["candidates"]}
    assert got["reference"]["candidate_id"] not in {k["id"] for k in character["candidates"]}
    assert {s["reference_id"] for s in got["selfies"]} == {r["id"] for r in got["references"]}
    assert other_store.get_reference_embedding(got["reference"]["id"], "clip") is None
    rep = other_store.integrity_report()
    assert rep["rows_without_file"] == rep["files_without_row"] == [] and rep["integrity_check"] == "ok"


def test_import_into_same_store_with_new_name_and_from_a_file(store, character, tmp_path):
    path = tmp_path / "nora.zip"
    path.write_bytes(export_character(store, character["id"]))
    copy = import_character(store, path, name="Nora II")
    copy2 = import_character(store, str(path), owner="someone")
    assert copy["name"] == "Nora II" and copy2["name"] == "Nora"
    assert [c["name"] for c in store.list_characters()] == ["Nora II", "Nora"]
    assert [c["id"] for c in store.list_characters("someone")] == [copy2["id"]]
    store.delete_character(character["id"])  # the copy shares the files and must keep them
    assert Path(store.get_character(copy["id"])["reference"]["path"]).is_file()
    with pytest.raises(SpecError):  # a bad name from the caller is the caller's error
        import_character(store, path, name="  ")


def test_draft_round_trip(store, other_store):
    c = store.create_character("Drafty", {"hair": "red"})
    store.add_candidate(c["id"], img("red"), recipe(1))
    new = import_character(other_store, export_character(store, c["id"]))
    got = other_store.get_character(new["id"])
    assert got["status"] == "draft" and got["reference"] is None and len(got["candidates"]) == 1
    assert comparable(got) == comparable(store.get_character(c["id"]))


def test_export_respects_owner(store, character):
    with pytest.raises(NotFound):
        export_character(store, character["id"], owner="intruder")


# ---------------------------------------------------------------- hostile archives

def rezip(data: bytes, drop: tuple[str, ...] = (), replace: dict | None = None,
          add: list[tuple[str, bytes]] = ()) -> bytes:
    """Copy an export, dropping/replacing/adding members (names are written exactly as given)."""
    replace = replace or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename not in drop:
                dst.writestr(info.filename, replace.get(info.filename, src.read(info)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about duplicate names, which we want here
            for name, blob in add:
                dst.writestr(zipfile.ZipInfo(name), blob)
    return out.getvalue()


def manifest(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return json.loads(zf.read("character.json"))


def png_bytes(color) -> bytes:
    buf = io.BytesIO()
    img(color).save(buf, format="PNG")
    return buf.getvalue()


def image_members(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [n for n in zf.namelist() if n.startswith("images/")]


def lying_bomb() -> bytes:
    """21 MB of zeros whose headers claim 1,000 bytes: only a bounded read can catch it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("character.json", b"\0" * (21 * 1024 * 1024))
    raw = bytearray(buf.getvalue())
    struct.pack_into("<I", raw, 22, 1000)  # local header: uncompressed size
    cd = raw.rfind(b"PK\x01\x02")
    struct.pack_into("<I", raw, cd + 24, 1000)  # central directory: uncompressed size
    return bytes(raw)


def edit_manifest(data: bytes, **changes) -> bytes:
    m = manifest(data)
    for key, fn in changes.items():
        m[key] = fn(m[key]) if callable(fn) else fn
    return rezip(data, replace={"character.json": json.dumps(m).encode()})


def bad_selfie_ref(selfies: list) -> list:
    selfies[0]["reference_id"] = "nope"
    return selfies


HOSTILE = {
    "not a zip": (lambda d: b"definitely not a zip file", "not a zip"),
    "truncated zip": (lambda d: d[: len(d) // 2], "not a zip|damaged"),
    "zip slip": (lambda d: rezip(d, add=[("../evil.png", png_bytes("red"))]), "unsafe"),
    "nested zip slip": (lambda d: rezip(d, add=[("images/../../evil.png", b"x")]), "unsafe"),
    "absolute name": (lambda d: rezip(d, add=[("/tmp/evil.png", b"x")]), "unsafe"),
    "backslash name": (lambda d: rezip(d, add=[("images\\evil.png", b"x")]), "unsafe"),
    "unexpected member": (lambda d: rezip(d, add=[("run_me.sh", b"rm -rf /")]), "unexpected"),
    "duplicate member": (lambda d: rezip(d, add=[("character.json", b"{}")]), "duplicate"),
    "too many members": (lambda d: rezip(d, add=[(f"images/{i:064x}.png", b"") for i in range(500)]), "too many"),
    "zip bomb": (lambda d: rezip(d, add=[(f"images/{'0' * 64}.png", b"\0" * (50 * 1024 * 1024))]), "too large"),
    "lying zip bomb": (lambda d: lying_bomb(), "zip bomb|damaged"),
    "missing character.json": (lambda d: rezip(d, drop=("character.json",)), "character.json is missing"),
    "bad json": (lambda d: rezip(d, replace={"character.json": b"{not json"}), "not valid JSON"),
    "json not an object": (lambda d: rezip(d, replace={"character.json": b"[1, 2]"}), "JSON object"),
    "unsupported version": (lambda d: edit_manifest(d, format_version=99), "unsupported format version 99"),
    "spec not an object": (lambda d: edit_manifest(d, spec="hair: red"), "spec"),
    "selfie of unknown reference": (lambda d: edit_manifest(d, selfies=bad_selfie_ref), r"selfies\[0\]"),
    "status lies": (lambda d: edit_manifest(d, status="draft"), "status"),
    "name too long": (lambda d: edit_manifest(d, name="x" * 200), "name"),
    "non-image png": (lambda d: rezip(d, add=[(f"images/{hashlib.sha256(b'hi').hexdigest()}.png", b"hi")]),
                      "not a valid PNG"),
    "jpeg named png": (lambda d: (lambda j: rezip(d, add=[(f"images/{hashlib.sha256(j).hexdigest()}.png", j)]))(
        _jpeg()), "not a PNG"),
    "huge canvas": (lambda d: (lambda p: rezip(d, add=[(f"images/{hashlib.sha256(p).hexdigest()}.png", p)]))(
        _png(Image.new("1", (8193, 1)))), "too large"),
    "wrong sha": (lambda d: rezip(d, replace={image_members(d)[0]: png_bytes("white")}), "do not match"),
    "missing image": (lambda d: rezip(d, drop=(image_members(d)[0],)), "missing from the archive"),
}


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg() -> bytes:
    buf = io.BytesIO()
    img("red").save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused(case, store, character):
    good = export_character(store, character["id"])
    make, reason = HOSTILE[case]
    before = store.list_characters()
    files_before = sorted(p for p in store.data_dir.rglob("*") if p.is_file())
    with pytest.raises(ImportRefused, match=reason):
        import_character(store, make(good))
    assert store.list_characters() == before
    assert sorted(p for p in store.data_dir.rglob("*") if p.is_file()) == files_before
    assert not (store.data_dir.parent / "evil.png").exists()


def test_bounded_read_stops_past_the_limit(monkeypatch):
    """Declared sizes can lie; the reader itself must stop, not trust zipfile to."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("character.json", b"\0" * 5000)
    monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 1000)
    with zipfile.ZipFile(buf) as zf:
        with pytest.raises(ImportRefused, match="zip bomb"):
            archive._read_member(zf, zf.infolist()[0], budget=10**9)
        with pytest.raises(ImportRefused, match="zip bomb"):  # the remaining total budget counts too
            archive._read_member(zf, zf.infolist()[0], budget=10)
        monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 5000)
        assert len(archive._read_member(zf, zf.infolist()[0], budget=5000)) == 5000


def test_missing_file_is_refused(store, tmp_path):
    with pytest.raises(ImportRefused, match="no such file"):
        import_character(store, tmp_path / "nope.zip")


def test_declared_total_size_limit(store, character, monkeypatch):
    data = export_character(store, character["id"])
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", 1000)
    with pytest.raises(ImportRefused, match="more than 1000 bytes"):
        import_character(store, data)
    assert len(store.list_characters()) == 1


def test_failure_inside_the_store_leaves_nothing(other_store, store, character, monkeypatch):
    """Validation passed but the database write fails half way: no character, no files."""
    data = export_character(store, character["id"])
    real = Store._insert_image
    calls = []

    def fail_on_third(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(self, *a, **k)

    monkeypatch.setattr(Store, "_insert_image", fail_on_third)
    with pytest.raises(RuntimeError):
        import_character(other_store, data)
    assert other_store.list_characters() == []
    assert [p for p in other_store.data_dir.rglob("*") if p.is_file()] == []
