"""Hostile archives through Studio.import_ (what the Characters tab calls), beyond tests/test_archive.py:
type confusion inside character.json, specs that fail CharacterSpec validation or the safety filter, names with
control characters, recipes of the wrong shape, huge or deeply nested JSON, more zip-slip spellings and broken
image members. Each is refused with ImportRefused and a reason naming the problem, and leaves the database and the
image folder exactly as they were. No model is needed (or loaded): importing never touches the engine."""
from __future__ import annotations

import copy
import hashlib
import io
import json
import sqlite3
import stat
import zipfile
from contextlib import closing

import pytest
from PIL import Image

from customizer.errors import ImportRefused
from customizer.service import Studio
from customizer.store import Store
from db_tables import table_counts

OWNER = "token:owner"
SPEC = {"hair_colour": "red", "eye_colour": "green", "age": 34, "theme": "fantasy", "theme_strength": 0.6,
        "extra": "freckles"}


def png(color, size=16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def no_engine(profile):
    raise AssertionError("an import must not load the model")


@pytest.fixture
def studio(tmp_path, tiny_config_path):
    from customizer.config import load_config

    config = load_config(tiny_config_path)
    store = Store(config.db_path, config.data_dir)
    yield Studio(config, config.profile("tiny"), store, engine_factory=no_engine)
    store.close()


@pytest.fixture
def export(studio) -> bytes:
    """A real export of a locked character with a selfie, made through the store like the Studio does."""
    store = studio.store
    c = store.create_character("Nora", SPEC, owner=OWNER)
    k = store.add_candidate(c["id"], Image.new("RGB", (16, 16), "red"),
                            {"kind": "portrait", "model_id": "m", "seed": 1, "prompt": "p"}, owner=OWNER)
    store.add_candidate(c["id"], Image.new("RGB", (16, 16), "blue"),
                        {"kind": "portrait", "model_id": "m", "seed": 2, "prompt": "p"}, owner=OWNER)
    store.lock(c["id"], k["id"], owner=OWNER)
    store.add_selfie(c["id"], Image.new("RGB", (16, 16), "pink"),
                     {"kind": "selfie", "model_id": "m", "seed": 3, "prompt": "p"},
                     {"scene": "beach", "scene_text": "", "expression": "neutral", "framing": "close-up",
                      "outfit": None, "likeness": 0.7, "extra": ""}, owner=OWNER)
    return studio.export(c["id"], owner=OWNER)


def state(studio) -> dict:
    """Everything an import could touch: row counts, character rows, and the files under the data folder."""
    with closing(sqlite3.connect(f"file:{studio.store.db_path}?mode=ro", uri=True)) as conn:
        counts = table_counts(conn)  # every table, from sqlite_master
        rows = conn.execute("SELECT * FROM characters ORDER BY id").fetchall()
    root = studio.store.data_dir
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return {"counts": counts, "characters": rows, "files": files,
            "outside": sorted(p.name for p in root.parent.iterdir())}


# ---------------------------------------------------------------- archive builders

def manifest(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return json.loads(zf.read("character.json"))


def rebuild(data: bytes, text: str | bytes | None = None, add: list[tuple[zipfile.ZipInfo | str, bytes]] = ()):
    """Copy an export with character.json replaced by `text` and extra members added as given."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "character.json" and text is not None:
                body = text.encode() if isinstance(text, str) else text
            dst.writestr(info.filename, body)
        for name, blob in add:
            dst.writestr(name if isinstance(name, zipfile.ZipInfo) else zipfile.ZipInfo(name), blob)
    return out.getvalue()


def edited(data: bytes, fn) -> bytes:
    m = copy.deepcopy(manifest(data))
    fn(m)
    return rebuild(data, json.dumps(m))


def setter(path: str, value):
    """m -> m with the value at a dotted path ('selfies.0.recipe.seed') replaced."""
    def fn(m):
        *parents, last = path.split(".")
        node = m
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return fn


def dropper(path: str):
    def fn(m):
        *parents, last = path.split(".")
        node = m
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        del node[last]
    return fn


# ---------------------------------------------------------------- character.json contents

MANIFEST_CASES = {
    # the spec goes through CharacterSpec: wrong values, wrong types, unknown fields, the safety filter
    "spec: a minor": (setter("spec.age", 16), "adults"),
    "spec: age as text": (setter("spec.age", "sixteen"), "age"),
    "spec: age as a list": (setter("spec.age", [30]), "age"),
    "spec: age huge": (setter("spec.age", 10**400), "age"),
    "spec: unknown colour": (setter("spec.hair_colour", "plaid"), "hair_colour"),
    "spec: colour as an object": (setter("spec.hair_colour", {"$ne": None}), "hair_colour"),
    "spec: unknown field": (setter("spec.tail", "long"), "unknown field"),
    "spec: explicit extra": (setter("spec.extra", "nude"), "explicit|nude"),
    "spec: explicit extra hidden by a zero-width space": (setter("spec.extra", "n\u200bude"), "nude"),
    "spec: a real person": (setter("spec.extra", "looks like Taylor Swift"), "real"),
    "spec: a minor in the free text": (setter("spec.extra", "15 years old"), "15"),
    "spec: extra too long": (setter("spec.extra", "x" * 301), "extra"),
    "spec: theme strength nan": (setter("spec.theme_strength", "nan"), "theme_strength"),
    "spec: theme strength a bool": (setter("spec.theme_strength", True), "theme_strength"),
    "spec: a list": (setter("spec", ["age", 30]), "spec"),
    "spec: null": (setter("spec", None), "spec"),
    # selfie specs in the history go through SelfieSpec too
    "selfie: explicit scene text": (setter("selfies.0.selfie", {"scene": "custom", "scene_text": "nude beach"}),
                                    r"selfies\[0\]\.selfie"),
    "selfie: unknown scene": (setter("selfies.0.selfie.scene", "../../etc/passwd"), r"selfies\[0\]\.selfie"),
    "selfie: likeness out of range": (setter("selfies.0.selfie.likeness", 5), "likeness"),
    "selfie: not an object": (setter("selfies.0.selfie", "beach"), r"selfies\[0\]\.selfie"),
    # names
    "name with a newline": (setter("name", "Nora\nDROP TABLE characters"), "control characters"),
    "name with NUL": (setter("name", "No\x00ra"), "control characters"),
    "name with an escape sequence": (setter("name", "\x1b[31mNora"), "control characters"),
    "name empty": (setter("name", "   "), "name"),
    "name a number": (setter("name", 42), "name"),
    "name a list": (setter("name", ["Nora"]), "name"),
    # recipes
    "recipe a string": (setter("candidates.0.recipe", "seed=1"), r"candidates\[0\]\.recipe"),
    "recipe a list": (setter("references.0.recipe", [1, 2]), r"references\[0\]\.recipe"),
    "recipe null": (setter("selfies.0.recipe", None), r"selfies\[0\]\.recipe"),
    "recipe seed an object": (setter("candidates.0.recipe.seed", {"a": 1}), "seed"),
    "recipe seed too big for sqlite": (setter("candidates.0.recipe.seed", 2**70), "seed"),
    "recipe seed a bool": (setter("candidates.1.recipe.seed", True), "seed"),
    "recipe model_id a list": (setter("references.0.recipe.model_id", ["m"]), "model_id"),
    "recipe kind a number": (setter("selfies.0.recipe.kind", 7), "kind"),
    # rows: ids, cross references, timestamps, numbers
    "rows not a list": (setter("candidates", {"0": {}}), "candidates"),
    "row not an object": (setter("candidates.0", "x"), r"candidates\[0\]"),
    "row id a number": (setter("candidates.0.id", 1), r"candidates\[0\]\.id"),
    "row id missing": (dropper("candidates.0.id"), r"candidates\[0\]\.id"),
    "candidate_id a list": (setter("references.0.candidate_id", ["x"]), "candidate_id"),
    "candidate_id an object": (setter("references.0.candidate_id", {"x": 1}), "candidate_id"),
    "reference_id a list": (setter("selfies.0.reference_id", ["x"]), "reference_id"),
    "image sha a path": (setter("candidates.0.image_sha256", "../../etc/passwd"), "sha256"),
    "image sha uppercase": (lambda m: m["candidates"][0].update(image_sha256=m["candidates"][0]["image_sha256"]
                                                                 .upper()), "sha256"),
    "created_at not a time": (setter("candidates.0.created_at", "yesterday"), "created_at"),
    "created_at a number": (setter("candidates.0.created_at", 1700000000), "created_at"),
    "locked_at an object": (setter("references.0.locked_at", {}), "locked_at"),
    "likeness huge": (setter("selfies.0.likeness", 10**400), "likeness"),
    "likeness out of range": (setter("selfies.0.likeness", 7.5), "likeness"),
    "likeness a string": (setter("selfies.0.likeness", "0.5"), "likeness"),
    "attempts zero": (setter("selfies.0.attempts", 0), "attempts"),
    "attempts too big for sqlite": (setter("selfies.0.attempts", 2**64), "attempts"),
    "attempts a float": (setter("selfies.0.attempts", 1.5), "attempts"),
    # the envelope
    "status unknown": (setter("status", "published"), "status"),
    "status a list": (setter("status", ["locked"]), "status"),
    "format something else": (setter("format", "zip-of-doom"), "not a character export"),
    "format_version text": (setter("format_version", "1"), "format version"),
    "format_version missing": (dropper("format_version"), "format version"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_hostile_manifest_is_refused_and_changes_nothing(case, studio, export):
    fn, reason = MANIFEST_CASES[case]
    before = state(studio)
    with pytest.raises(ImportRefused, match=reason) as err:
        studio.import_(edited(export, fn), owner=OWNER)
    assert "Traceback" not in str(err.value) and len(str(err.value)) < 500
    assert state(studio) == before


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


RAW_MANIFESTS = {
    "nested past the recursion limit": (lambda m: json.dumps(m)[:-1] + ', "x": ' + deep(100_000) + "}", "deep"),
    "nested just under the recursion limit": (lambda m: json.dumps(m)[:-1] + ', "x": ' + deep(900) + "}", "deep"),
    "deep inside the spec": (lambda m: json.dumps(dict(m, spec=dict(m["spec"], extra=json.loads(deep(200))))),
                             "deep"),
    "deep inside a recipe": (lambda m: json.dumps(m).replace('"recipe": {', '"recipe": {"x": ' + deep(500) + ", ",
                                                             1), "deep"),
    "NaN likeness": (lambda m: json.dumps(m).replace('"likeness": null', '"likeness": NaN'), "likeness"),
    "Infinity seed": (lambda m: json.dumps(m).replace('"seed": 1', '"seed": Infinity', 1), "seed"),
    "not UTF-8": (lambda m: json.dumps(m).encode("utf-16"), "not valid JSON"),
    "a bare string": (lambda m: '"character"', "JSON object"),
    "null": (lambda m: "null", "JSON object"),
    "empty": (lambda m: "", "not valid JSON"),
    "huge (beyond the member limit)": (lambda m: json.dumps(dict(m, pad="x" * (21 * 1024 * 1024))), "too large"),
}


@pytest.mark.parametrize("case", sorted(RAW_MANIFESTS))
def test_hostile_json_text_is_refused_and_changes_nothing(case, studio, export):
    make, reason = RAW_MANIFESTS[case]
    before = state(studio)
    body = make(manifest(export))
    with pytest.raises(ImportRefused, match=reason):
        studio.import_(rebuild(export, body), owner=OWNER)
    assert state(studio) == before


def test_big_but_honest_spec_text_is_refused_by_validation(studio, export):
    """A few MB of JSON within the size limits: parsed, then refused by the spec rules (not stored)."""
    before = state(studio)
    data = edited(export, setter("spec.extra", "freckles " * 300_000))
    with pytest.raises(ImportRefused, match="extra: must be at most 300 characters"):
        studio.import_(data, owner=OWNER)
    assert state(studio) == before


# ---------------------------------------------------------------- members: names and contents

def symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def unsupported_compression() -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(f"images/{'a' * 64}.png")
    info.compress_type = zipfile.ZIP_STORED
    return info, b"\x89PNG" + b"\0" * 64


def truncated_png() -> tuple[str, bytes]:
    data = png("orange")[:-20]
    return f"images/{hashlib.sha256(data).hexdigest()}.png", data


def bad_crc_png() -> tuple[str, bytes]:
    data = bytearray(png("purple"))
    data[40] ^= 0xFF  # inside the IDAT chunk: its CRC no longer matches
    data = bytes(data)
    return f"images/{hashlib.sha256(data).hexdigest()}.png", data


def named(data: bytes, kind: str) -> tuple[str, bytes]:
    return f"images/{hashlib.sha256(data).hexdigest()}.png", data


def gif() -> bytes:
    buf = io.BytesIO()
    Image.new("P", (4, 4)).save(buf, format="GIF")
    return buf.getvalue()


MEMBER_CASES = {
    "windows drive path": ([("C:/Windows/evil.png", b"x")], "unsafe"),
    "windows drive relative": ([("c:evil.png", b"x")], "unsafe"),
    "backslash traversal": ([("..\\..\\evil.png", b"x")], "unsafe"),
    "dot-dot in the middle": ([("images/x/../../../evil.png", b"x")], "unsafe"),
    "NUL in a name": ([("images/evil.png\x00.png", b"x")], "unsafe|unexpected"),  # zipfile cuts at the NUL
    "dot segment": ([(f"images/./{'0' * 64}.png", b"x")], "unexpected"),
    "percent-encoded traversal": ([("%2e%2e/%2e%2e/evil.png", b"x")], "unexpected"),
    "fullwidth look-alike name": ([("ｉｍａｇｅｓ/evil.png", b"x")], "unexpected"),
    "nested folder": ([("images/sub/", b"")], "unexpected"),
    "symlink to /etc/passwd": ([symlink(f"images/{'1' * 64}.png", "/etc/passwd")], "do not match|not a valid PNG"),
    "symlink named like an export": ([symlink("images/../../evil", "/etc/passwd")], "unsafe"),
    "a zip inside": ([named(b"PK\x03\x04" + b"\0" * 100, "zip")], "not a valid PNG"),
    "empty image": ([named(b"", "empty")], "not a valid PNG"),
    "truncated png": ([truncated_png()], "not a valid PNG"),
    "png with a broken CRC": ([bad_crc_png()], "not a valid PNG"),
    "gif named png": ([named(gif(), "gif")], "not a PNG"),
    "text named png": ([named(b"#!/bin/sh\nrm -rf /\n", "sh")], "not a valid PNG"),
}


@pytest.mark.parametrize("case", sorted(MEMBER_CASES))
def test_hostile_members_are_refused_and_write_nothing_anywhere(case, studio, export):
    members, reason = MEMBER_CASES[case]
    before = state(studio)
    with pytest.raises(ImportRefused, match=reason):
        studio.import_(rebuild(export, add=members), owner=OWNER)
    assert state(studio) == before


def test_unsupported_compression_is_a_damaged_archive(studio, export):
    data = bytearray(rebuild(export))
    # rewrite the compression method of character.json (local header and central directory) to 99 (AES)
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    data[local + 8:local + 10] = (99).to_bytes(2, "little")
    data[central + 10:central + 12] = (99).to_bytes(2, "little")
    before = state(studio)
    with pytest.raises(ImportRefused, match="damaged archive|not a zip"):
        studio.import_(bytes(data), owner=OWNER)
    assert state(studio) == before


def test_import_file_that_is_not_bytes_or_a_zip(studio, tmp_path):
    before = state(studio)
    for data in (b"", b"PK", b"PK\x05\x06" + b"\0" * 18, tmp_path):  # empty, stub, empty central dir, a folder
        with pytest.raises(ImportRefused):
            studio.import_(data, owner=OWNER)
    assert state(studio) == before


# ---------------------------------------------------------------- and what is fine is still fine

def test_a_valid_export_still_imports_normalised(studio, export):
    """The validation is not a blanket refusal: the untouched export imports, with the spec normalised."""
    m = manifest(export)
    m["spec"] = {"hair_colour": "red", "age": "34"}  # a form would send "34"; defaults fill the rest
    imported = studio.import_(rebuild(export, json.dumps(m)), owner=OWNER)
    got = studio.get_character(imported["id"], owner=OWNER)
    assert got["spec"]["age"] == 34 and got["spec"]["theme"] == "none" and got["status"] == "locked"
    assert len(got["selfies"]) == 1 and got["selfies"][0]["selfie"]["scene"] == "beach"
    rep = studio.store.integrity_report()
    assert rep["rows_without_file"] == rep["files_without_row"] == [] and rep["integrity_check"] == "ok"
