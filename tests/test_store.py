"""Store: real SQLite files and real PNGs under tmp_path."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
from pathlib import Path

import pytest
from PIL import Image

import customizer.store.blobs as blobs
import customizer.store.migrations as migrations
from customizer.errors import NotFound, SpecError, StateError
from customizer.store import RECIPE_CHUNK, Store


def img(color, size=16) -> Image.Image:
    return Image.new("RGB", (size, size), color)


def recipe(seed: int, kind: str = "portrait") -> dict:
    return {"kind": kind, "model_id": "test/model", "seed": seed, "prompt": f"portrait {seed}", "loras": {}}


def open_store(tmp_path: Path) -> Store:
    return Store(tmp_path / "db" / "characters.db", tmp_path / "data")


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path)
    yield s
    s.close()


def image_files(s: Store) -> list[Path]:
    return sorted(p for p in (s.data_dir / "images").rglob("*") if p.is_file())


def assert_clean(s: Store) -> None:
    rep = s.integrity_report()
    assert rep == {"integrity_check": "ok", "foreign_key_violations": [], "rows_without_file": [],
                   "files_without_row": [], "unreferenced_image_rows": []}


def locked_character(s: Store, owner: str = "local") -> tuple[dict, dict, dict]:
    c = s.create_character("Locked", {"hair": "black"}, owner=owner)
    k = s.add_candidate(c["id"], img("navy"), recipe(7), owner=owner)
    ref = s.lock(c["id"], k["id"], owner=owner)
    return c, k, ref


# ---------------------------------------------------------------- schema

def test_migrations_create_schema_and_are_idempotent(tmp_path):
    s = open_store(tmp_path)
    tables = set(s.db.table_names())
    assert {"migrations", "characters", "images", "candidates", "refs", "reference_embeddings", "selfies"} <= tables
    n = len(migrations.MIGRATIONS)
    assert s.schema_version == n == max(number for number, _ in migrations.MIGRATIONS)
    c = s.create_character("Keep", {"a": 1})
    s.close()
    s = open_store(tmp_path)  # second open: nothing re-applied, data intact
    assert s.schema_version == n
    assert s.db.execute("SELECT count(*) FROM migrations").fetchone()[0] == n
    assert s.get_character(c["id"])["spec"] == {"a": 1}
    s.close()


def test_new_migration_is_applied_exactly_once(tmp_path, monkeypatch):
    open_store(tmp_path).close()
    calls = []

    def m2(db):
        calls.append(1)
        db.execute("ALTER TABLE characters ADD COLUMN note TEXT")

    nxt = len(migrations.MIGRATIONS) + 1
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, (nxt, m2)])
    for _ in range(2):
        s = open_store(tmp_path)
        assert s.schema_version == nxt
        assert "note" in s.db["characters"].columns_dict
        s.close()
    assert calls == [1]


def test_newer_schema_is_refused(tmp_path, monkeypatch):
    open_store(tmp_path).close()
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, (len(migrations.MIGRATIONS) + 1,
                                                                          lambda db: None)])
    open_store(tmp_path).close()
    monkeypatch.undo()
    with pytest.raises(StateError, match="newer"):
        open_store(tmp_path)


def test_wal_foreign_keys_and_busy_timeout(store):
    with sqlite3.connect(store.db_path) as other:  # WAL is a property of the file, not just our connection
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


# ---------------------------------------------------------------- characters

def test_create_list_get_rename_delete(store):
    a = store.create_character("  Ann  ", {"hair": "red"})
    b = store.create_character("Bo", {"hair": "blue"})
    assert a["name"] == "Ann" and a["status"] == "draft" and a["thumbnail"] is None and a["n_selfies"] == 0
    assert len(a["id"]) == 32 and int(a["id"], 16) >= 0
    assert a["created_at"].endswith("+00:00")
    assert [c["id"] for c in store.list_characters()] == [b["id"], a["id"]]  # newest first

    got = store.get_character(a["id"])
    assert got["spec"] == {"hair": "red"} and got["owner"] == "local"
    assert got["reference"] is None and got["references"] == got["candidates"] == got["selfies"] == []

    assert store.rename_character(a["id"], " Annie ")["name"] == "Annie"
    for bad in ["", "   ", "x" * 81, "two\nlines"]:
        with pytest.raises(SpecError) as e:
            store.rename_character(a["id"], bad)
        assert e.value.field == "name"
    assert store.get_character(a["id"])["name"] == "Annie"
    with pytest.raises(SpecError):
        store.create_character("", {})
    assert store.update_draft_spec(a["id"], {"hair": "green"})["spec"] == {"hair": "green"}

    store.delete_character(a["id"])
    with pytest.raises(NotFound):
        store.get_character(a["id"])
    with pytest.raises(NotFound):
        store.delete_character(a["id"])
    assert [c["id"] for c in store.list_characters()] == [b["id"]]


def test_owner_isolation(store):
    c, k, ref = locked_character(store, owner="a")
    s = store.add_selfie(c["id"], img("pink"), recipe(8, "selfie"), {"scene": "beach"}, owner="a")
    cid = c["id"]
    blocked = [
        lambda: store.get_character(cid, owner="b"),
        lambda: store.rename_character(cid, "Mine", owner="b"),
        lambda: store.delete_character(cid, owner="b"),
        lambda: store.update_draft_spec(cid, {}, owner="b"),
        lambda: store.add_candidate(cid, img("red"), recipe(1), owner="b"),
        lambda: store.lock(cid, k["id"], owner="b"),
        lambda: store.unlock(cid, owner="b"),
        lambda: store.active_reference(cid, owner="b"),
        lambda: store.add_selfie(cid, img("red"), recipe(1), {}, owner="b"),
        lambda: store.get_candidate(k["id"], owner="b"),
        lambda: store.get_selfie(s["id"], owner="b"),
        lambda: store.get_character(cid),  # default owner 'local' is just another owner
    ]
    for call in blocked:
        with pytest.raises(NotFound):
            call()
    assert store.list_characters(owner="b") == [] and store.list_characters() == []
    mine = store.get_character(cid, owner="a")  # untouched by all of the above
    assert mine["name"] == "Locked" and mine["status"] == "locked" and len(mine["selfies"]) == 1
    assert store.get_selfie(s["id"], owner="a")["selfie"] == {"scene": "beach"}


# ---------------------------------------------------------------- lock flow

def test_lock_unlock_keeps_history(store):
    c = store.create_character("Cy", {"eyes": "green"})
    k1 = store.add_candidate(c["id"], img("red"), recipe(1))
    k2 = store.add_candidate(c["id"], img("blue"), recipe(2))
    assert store.get_candidate(k1["id"])["seed"] == 1
    assert store.list_characters()[0]["thumbnail"] == k2["path"]  # latest candidate until locked

    ref1 = store.lock(c["id"], k1["id"])
    assert ref1["image_sha256"] == k1["image_sha256"] and ref1["recipe"] == recipe(1) and ref1["unlocked_at"] is None
    assert store.active_reference(c["id"]) == ref1
    summary = store.list_characters()[0]
    assert summary["status"] == "locked" and summary["reference_sha256"] == k1["image_sha256"]
    assert summary["thumbnail"] == ref1["path"]
    with pytest.raises(StateError):
        store.lock(c["id"], k2["id"])
    with pytest.raises(StateError):
        store.update_draft_spec(c["id"], {"eyes": "red"})
    with pytest.raises(StateError):
        store.add_candidate(c["id"], img("white"), recipe(3))
    assert store.get_character(c["id"])["spec"] == {"eyes": "green"}

    old = store.unlock(c["id"])
    assert old["id"] == ref1["id"] and old["unlocked_at"] is not None
    assert store.active_reference(c["id"]) is None and store.get_character(c["id"])["status"] == "draft"
    with pytest.raises(StateError):
        store.unlock(c["id"])

    other = store.create_character("Other", {})
    foreign = store.add_candidate(other["id"], img("gray"), recipe(9))
    with pytest.raises(NotFound):
        store.lock(c["id"], foreign["id"])
    with pytest.raises(NotFound):
        store.lock(c["id"], "0" * 32)

    ref2 = store.lock(c["id"], k2["id"])
    got = store.get_character(c["id"])
    assert [r["id"] for r in got["references"]] == [ref1["id"], ref2["id"]]  # oldest first
    assert [r["id"] for r in got["references"] if r["unlocked_at"] is None] == [ref2["id"]]
    assert got["reference"]["id"] == ref2["id"] and got["reference_sha256"] == k2["image_sha256"]


def test_selfies_need_a_locked_reference(store):
    c = store.create_character("Di", {})
    k = store.add_candidate(c["id"], img("red"), recipe(1))
    with pytest.raises(StateError):
        store.add_selfie(c["id"], img("blue"), recipe(2, "selfie"), {"scene": "cafe"})
    assert image_files(store) == [Path(k["path"])]  # the refused selfie wrote nothing

    ref = store.lock(c["id"], k["id"])
    s = store.add_selfie(c["id"], img("blue"), recipe(2, "selfie"), {"scene": "cafe"}, likeness=0.71, attempts=2)
    assert s["reference_id"] == ref["id"] and s["likeness"] == pytest.approx(0.71) and s["attempts"] == 2
    assert s["selfie"] == {"scene": "cafe"} and s["recipe"]["kind"] == "selfie"
    s2 = store.add_selfie(c["id"], img("green"), recipe(3, "selfie"), {"scene": "park"})
    got = store.get_character(c["id"])
    assert [x["id"] for x in got["selfies"]] == [s2["id"], s["id"]]  # newest first
    assert store.list_characters()[0]["n_selfies"] == 2
    assert store.get_selfie(s["id"]) == s

    store.unlock(c["id"])
    with pytest.raises(StateError):
        store.add_selfie(c["id"], img("black"), recipe(4, "selfie"), {})



def statements(store: Store, call) -> list[str]:
    """The queries `call()` runs on the store's connection (transaction and savepoint statements left out)."""
    seen: list[str] = []
    store.db.conn.set_trace_callback(seen.append)
    try:
        call()
    finally:
        store.db.conn.set_trace_callback(None)
    return [q for q in seen if q.split()[0].upper() in ("SELECT", "WITH")]


def test_list_characters_costs_the_same_queries_for_any_number_of_characters(store):
    """1 + 3N queries before (each summary asked for its reference, its newest candidate and its selfie count)."""
    def add(name: str, shade: int, locked: bool, selfies: int) -> None:
        c = store.create_character(name, {"n": shade})
        ks = [store.add_candidate(c["id"], img((shade, i, 0)), recipe(shade * 10 + i)) for i in range(2)]
        if locked:
            store.lock(c["id"], ks[0]["id"])
            for i in range(selfies):
                store.add_selfie(c["id"], img((shade, 9, i)), recipe(shade * 10 + 5 + i, "selfie"), {"scene": "x"})

    add("One", 1, True, 2)
    one = statements(store, store.list_characters)
    for shade in range(2, 7):
        add(f"C{shade}", shade, shade % 2 == 0, shade % 3)
    six = statements(store, store.list_characters)
    assert len(six) == len(one) == 1, six

    # the batched summaries say what each character's own rows say
    listed = store.list_characters()
    assert [c["name"] for c in listed] == ["C6", "C5", "C4", "C3", "C2", "One"]
    for summary in listed:
        full = store.get_character(summary["id"])
        newest = full["candidates"][-1]
        assert summary["n_selfies"] == len(full["selfies"])
        assert summary["reference_sha256"] == (full["reference"] or {}).get("image_sha256")
        assert summary["thumbnail"] == (full["reference"] or newest)["path"]
        assert {k: full[k] for k in summary} == summary
    assert [s.to_dict() for s in store.summaries()] == listed and all(
        dataclasses.is_dataclass(s) for s in store.summaries())
    with pytest.raises(dataclasses.FrozenInstanceError):
        store.summaries()[0].name = "changed"


# ---------------------------------------------------------------- files

def test_png_is_named_by_its_sha256_and_carries_the_recipe(store):
    c = store.create_character("Ed", {})
    r = recipe(42) | {"prompt": "caf\u00e9 \u2603"}  # non-latin-1 text must survive the PNG chunk
    k = store.add_candidate(c["id"], img("orange", 24), r)
    path = Path(k["path"])
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == k["image_sha256"] == path.stem
    assert path == store.data_dir / "images" / k["image_sha256"][:2] / f"{k['image_sha256']}.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (24, 24)
        assert json.loads(im.text[RECIPE_CHUNK]) == r
    assert store.read_recipe(k["image_sha256"]) == r
    row = store.db.execute("SELECT path, width, bytes FROM images WHERE sha256 = ?", [k["image_sha256"]]).fetchone()
    assert row == (f"images/{k['image_sha256'][:2]}/{k['image_sha256']}.png", 24, len(data))
    with pytest.raises(NotFound):
        store.read_recipe("f" * 64)


def test_image_path_rejects_untrusted_input(store):
    for bad in ["../etc/passwd", "a" * 63, "g" * 64, "../" + "a" * 61, "a" * 64 + "/", "", None, 123]:
        with pytest.raises(ValueError):
            store.image_path(bad)
    assert store.image_path("AB" * 32) == store.data_dir / "images" / "ab" / f"{'ab' * 32}.png"


def test_delete_removes_unshared_files_but_keeps_shared(store):
    a, _, ref = locked_character(store)
    shared_img, shared_recipe = img("teal"), recipe(100, "selfie")
    sa = store.add_selfie(a["id"], shared_img, shared_recipe, {"scene": "x"})
    b = store.create_character("B", {})
    kb = store.add_candidate(b["id"], shared_img, shared_recipe)  # same bytes -> same file
    assert kb["image_sha256"] == sa["image_sha256"]
    store.put_reference_embedding(ref["id"], "clip", b"\x01" * 64)
    blob_files = list((store.data_dir / "embeddings").rglob("*.bin"))
    assert len(blob_files) == 1
    ref_path = Path(ref["path"])

    store.delete_character(a["id"])
    assert not ref_path.exists()
    assert not blob_files[0].exists()
    assert Path(kb["path"]).is_file()
    assert store.get_candidate(kb["id"])["image_sha256"] == sa["image_sha256"]
    assert_clean(store)

    store.delete_character(b["id"])
    assert image_files(store) == []
    assert store.db.execute("SELECT count(*) FROM images").fetchone()[0] == 0
    assert_clean(store)


# ---------------------------------------------------------------- atomicity

def test_unserializable_recipe_writes_nothing(store):
    c = store.create_character("F", {})
    with pytest.raises(TypeError):
        store.add_candidate(c["id"], img("red"), {"seed": 1, "bad": object()})
    assert image_files(store) == [] and store.get_character(c["id"])["candidates"] == []


def test_failed_insert_leaves_neither_row_nor_file(store, monkeypatch):
    c = store.create_character("G", {})

    def fail(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Store, "_insert_image", fail)
    with pytest.raises(RuntimeError):
        store.add_candidate(c["id"], img("red"), recipe(1))
    assert store.get_character(c["id"])["candidates"] == []
    assert image_files(store) == []  # the error path removed the file it had just written
    assert_clean(store)


class SimulatedCrash(BaseException):
    """Like the process dying between the file write and the commit: no cleanup code gets to run."""


def test_crash_after_file_write_leaves_only_an_orphan_that_gc_removes(tmp_path, monkeypatch):
    s = open_store(tmp_path)
    c = s.create_character("H", {})

    def crash(*a, **k):
        raise SimulatedCrash()

    with monkeypatch.context() as m:
        m.setattr(Store, "_insert_image", crash)
        with pytest.raises(SimulatedCrash):
            s.add_candidate(c["id"], img("red"), recipe(1))
    rep = s.integrity_report()
    assert rep["rows_without_file"] == [] and len(rep["files_without_row"]) == 1
    orphan = s.data_dir / rep["files_without_row"][0]
    assert orphan.is_file()
    stale_tmp = orphan.parent / f".{orphan.stem}.{'0' * 32}.tmp"  # a write that died before os.replace
    stale_tmp.write_bytes(b"partial")
    s.close()

    s = open_store(tmp_path)  # gc runs at open
    assert not orphan.exists() and not stale_tmp.exists()
    assert s.get_character(c["id"])["candidates"] == []
    assert_clean(s)
    s.close()


def test_file_being_written_survives_concurrent_delete_and_gc(store, monkeypatch):
    a, b = store.create_character("A", {}), store.create_character("B", {})
    shared, r = img("olive"), recipe(5)
    store.add_candidate(a["id"], shared, r)
    real_write = blobs.write_atomic

    def write_then_interfere(path, data):
        real_write(path, data)
        # Another handler runs between our file write and our row insert: it drops the only row using the
        # same sha256 and runs gc. Neither may unlink the file we are about to reference.
        store.delete_character(a["id"])
        assert store.gc() == []

    monkeypatch.setattr(blobs, "write_atomic", write_then_interfere)
    k = store.add_candidate(b["id"], shared, r)
    assert Path(k["path"]).is_file()
    assert_clean(store)


# ---------------------------------------------------------------- concurrency

def test_concurrent_handlers(store):
    n, per = 8, 3
    draft = store.create_character("Draft", {})
    locked, _, _ = locked_character(store)
    shared, shared_recipe = img("gold"), recipe(999)
    victims = [store.create_character(f"V{t}", {}) for t in range(n)]
    shared_path = [store.add_candidate(v["id"], shared, shared_recipe)["path"] for v in victims][0]
    barrier, errors = threading.Barrier(n), []

    def handler(t: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(per):
                store.add_candidate(draft["id"], img((t * 30, i * 60, 10)), recipe(t * 100 + i))
                store.add_selfie(locked["id"], img((t * 30, i * 60, 200)), recipe(t * 100 + i, "selfie"),
                                 {"scene": f"{t}-{i}"}, likeness=0.5)
                store.list_characters()
            store.add_candidate(draft["id"], shared, shared_recipe)  # same file other threads are deleting
            store.delete_character(victims[t]["id"])
        except BaseException as e:  # noqa: BLE001 - reported below with the thread's failure
            errors.append(e)

    threads = [threading.Thread(target=handler, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors, errors
    got_draft, got_locked = store.get_character(draft["id"]), store.get_character(locked["id"])
    assert len(got_draft["candidates"]) == n * per + n
    assert len(got_locked["selfies"]) == n * per
    assert {s["selfie"]["scene"] for s in got_locked["selfies"]} == {f"{t}-{i}" for t in range(n) for i in range(per)}
    assert {c["name"] for c in store.list_characters()} == {"Draft", "Locked"}
    assert Path(shared_path).is_file()  # every victim is gone, the draft still uses it
    assert_clean(store)


# ---------------------------------------------------------------- embeddings

def test_reference_embeddings_round_trip(store):
    _, _, ref = locked_character(store)
    assert store.get_reference_embedding(ref["id"], "clip") is None
    blob = bytes(range(256)) * 4
    store.put_reference_embedding(ref["id"], "clip", blob)
    assert store.get_reference_embedding(ref["id"], "clip") == blob
    store.put_reference_embedding(ref["id"], "clip", b"newer")  # replace: old blob file goes away
    assert store.get_reference_embedding(ref["id"], "clip") == b"newer"
    assert [p.read_bytes() for p in (store.data_dir / "embeddings").rglob("*.bin")] == [b"newer"]
    with pytest.raises(NotFound):
        store.put_reference_embedding("0" * 32, "clip", b"x")
    assert_clean(store)
