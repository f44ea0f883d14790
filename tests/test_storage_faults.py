"""Storage faults: a full disk and read-only storage, under a running Studio (tiny real pipeline).

Each fault must surface as StorageError ("storage is full" / "storage is read-only" / "storage error (...)") - a
CustomizerError the UI shows as is - never a raw sqlite3/OSError, and must leave nothing half-written: no row
without its file, no file without its row, no temp file, the characters as they were. Once the fault is gone the
same Studio keeps working.

Tests run as root, so chmod does not stop writes. Faults are made real where possible:
- SQLite itself: PRAGMA max_page_count (a real SQLITE_FULL) and a `?mode=ro` connection (a real SQLITE_READONLY);
- the kernel: a small tmpfs filled up (ENOSPC) and a read-only bind mount (EROFS) - skipped where mounting is not
  permitted; the same failures are also injected at the store's one file-write call, so they are covered anyway.
"""
from __future__ import annotations

import builtins
import contextlib
import errno
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
import sqlite_utils
from PIL import Image

import customizer.store.blobs as blobs
import customizer.store.errors as store_errors
from customizer.errors import CustomizerError, StorageError
from customizer.store import Store
from db_tables import table_counts

SPEC = {"hair_colour": "red", "eye_colour": "green", "age": 34}
SHOT = {"scene": "beach", "framing": "close-up"}


def make_studio(config_path: Path, engine, db: Path, data: Path):
    from customizer.config import load_config
    from customizer.service import Studio

    config = load_config(config_path)
    studio = Studio(config, config.profile("tiny"), Store(db, data), engine_factory=lambda profile: engine)
    studio._render = fast_render
    return studio


def fast_render(recipe, embeds=None, reference=None):
    """Rendering is not under test here (and is slow on a busy CPU): a distinct image per recipe, instantly.
    Everything else - recipes, the reference embedding, the store - is the real thing."""
    if isinstance(recipe, list):  # a design's candidates: one batch (Studio._render of a list)
        return [fast_render(r) for r in recipe]
    colour = (recipe.seed * 7919 % 256, len(recipe.prompt) % 256, int(recipe.ip_adapter_scale * 255))
    return Image.new("RGB", (recipe.width, recipe.height), colour), {}


@pytest.fixture
def studio(tmp_path, tiny_config_path, tiny_engine):
    s = make_studio(tiny_config_path, tiny_engine, tmp_path / "db" / "characters.db", tmp_path / "data")
    yield s
    s.store.close()


def locked(studio) -> str:
    out = studio.design(SPEC, seed=1, n=1, name="Before")
    cid = out["character"]["id"]
    studio.lock(cid, out["candidates"][0]["id"])
    studio.selfie(cid, SHOT, seed=2)
    return cid


def snapshot(studio) -> dict:
    with studio.store._read() as db:
        counts = table_counts(db.conn)  # every table, from sqlite_master
    return {"characters": studio.list_characters(), "counts": counts,
            "files": sorted(str(p.relative_to(studio.store.data_dir)) for p in studio.store.data_dir.rglob("*")
                            if p.is_file())}


def assert_clean(studio) -> None:
    rep = studio.store.integrity_report()
    assert rep == {"integrity_check": "ok", "foreign_key_violations": [], "rows_without_file": [],
                   "files_without_row": [], "unreferenced_image_rows": []}
    assert not [p for p in studio.store.data_dir.rglob("*.tmp")], "a temp file was left behind"


def assert_refused(fn, reason: str) -> StorageError:
    with pytest.raises(StorageError, match=reason) as err:
        fn()
    message = str(err.value)
    assert isinstance(err.value, CustomizerError)
    assert "/" not in message and "sqlite3" not in message and "Errno" not in message, message  # no paths/insides
    return err.value


def works_again(studio, cid: str) -> None:
    """After the fault: every kind of write succeeds on the same Studio, and storage is consistent."""
    out = studio.design(SPEC, seed=5, n=2, name="After")
    studio.lock(out["character"]["id"], out["candidates"][1]["id"])
    studio.selfie(cid, SHOT, seed=6)
    studio.rename(cid, "Renamed")
    studio.delete(out["character"]["id"])
    assert [c["name"] for c in studio.list_characters()] == ["Renamed"]
    assert_clean(studio)


# ---------------------------------------------------------------- fault injection at the store's file write

class _FailingWriter:
    """A real temp file that receives half the bytes and then fails the way a full disk does."""

    def __init__(self, path, err: int):
        self.f, self.err = builtins.open(path, "wb"), err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data: bytes) -> int:
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise OSError(self.err, os.strerror(self.err), self.f.name)

    def flush(self):
        self.f.flush()

    def fileno(self):
        return self.f.fileno()


@contextlib.contextmanager
def file_writes_fail(monkeypatch, err: int, at_open: bool = False):
    """store/blobs.py's `open` (the store's only file write: write_atomic) fails with errno err, at open or
    mid-write."""
    def fake_open(path, mode="r", *args, **kwargs):
        if "w" not in mode:
            return builtins.open(path, mode, *args, **kwargs)
        if at_open:
            raise OSError(err, os.strerror(err), str(path))
        return _FailingWriter(path, err)

    with monkeypatch.context() as m:
        m.setattr(blobs, "open", fake_open, raising=False)
        yield


# ---------------------------------------------------------------- disk full

def test_database_full_is_a_storage_error_and_leaves_nothing_half_written(studio):
    cid = locked(studio)
    store, db = studio.store, studio.store.db
    with db.conn:
        db.execute("CREATE TABLE padding (x BLOB)")
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # the database may not grow: SQLite's own SQLITE_FULL ...
    for size in (4000, 500, 50, 1):  # ... once the free room left in its pages is used up
        with contextlib.suppress(sqlite3.OperationalError):
            while True:
                with db.conn:
                    db.execute("INSERT INTO padding VALUES (zeroblob(?))", [size])
    before = snapshot(studio)

    # single writes that cannot fit anywhere: refused, and nothing at all changes (the image file is removed)
    big = {"seed": 1, "prompt": "x" * 20_000}
    assert_refused(lambda: store.create_character("Big", {"notes": "x" * 20_000}), "storage is full")
    assert_refused(lambda: store.add_selfie(cid, Image.new("RGB", (8, 8), "teal"), big, {"scene": "x"}),
                   "storage is full")
    assert snapshot(studio) == before
    assert_clean(studio)

    # Studio runs (4 images: more than any page has room for): refused part way; each image is saved whole
    # with its row or not at all, and a new character left with no portrait is not kept
    assert_refused(lambda: studio.design(SPEC, seed=3, n=4, name="Too much"), "storage is full")
    assert_refused(lambda: studio.selfie(cid, SHOT, seed=4, count=4), "storage is full")
    assert_clean(studio)
    assert all(c["thumbnail"] for c in studio.list_characters())

    db.execute("PRAGMA max_page_count = 1073741823")  # space is back
    with db.conn:
        db.execute("DROP TABLE padding")
    for c in studio.list_characters():
        if c["id"] != cid:
            studio.delete(c["id"])
    works_again(studio, cid)


def test_image_write_hits_enospc(studio, monkeypatch):
    cid = locked(studio)
    before = snapshot(studio)
    with file_writes_fail(monkeypatch, errno.ENOSPC):
        assert_refused(lambda: studio.design(SPEC, seed=3, n=1, name="No room"), "storage is full")
        assert_refused(lambda: studio.selfie(cid, SHOT, seed=4), "storage is full")
    assert snapshot(studio) == before  # no new character, no half-written temp file
    assert_clean(studio)
    works_again(studio, cid)


def test_embedding_cache_write_hits_enospc_during_lock(studio, monkeypatch):
    """The reference is locked (a database row); its embedding cache file then fails to save: the lock stands,
    no cache row points at a missing file, and the next selfie recomputes the embedding once space is back."""
    out = studio.design(SPEC, seed=1, n=1)
    cid = out["character"]["id"]
    with file_writes_fail(monkeypatch, errno.ENOSPC):
        assert_refused(lambda: studio.lock(cid, out["candidates"][0]["id"]), "storage is full")
    ref = studio.get_character(cid)["reference"]
    assert ref is not None and studio.store.get_reference_embedding(ref["id"], studio.engine.embedding_key) is None
    assert_clean(studio)
    assert studio.selfie(cid, SHOT, seed=2)[0]["reference_id"] == ref["id"]
    assert studio.store.get_reference_embedding(ref["id"], studio.engine.embedding_key) is not None
    assert_clean(studio)


# ---------------------------------------------------------------- read-only storage

def test_read_only_database_refuses_writes_and_still_reads(studio):
    cid = locked(studio)
    before = snapshot(studio)
    writable = studio.store.db
    conn = sqlite3.connect(f"file:{studio.store.db_path}?mode=ro", uri=True, check_same_thread=False)
    studio.store.db = sqlite_utils.Database(conn)  # the same file, opened read-only: a real SQLITE_READONLY
    try:
        assert_refused(lambda: studio.design(SPEC, seed=3, n=1), "storage is read-only")
        assert_refused(lambda: studio.selfie(cid, SHOT, seed=4), "storage is read-only")
        assert_refused(lambda: studio.rename(cid, "New name"), "storage is read-only")
        assert_refused(lambda: studio.unlock(cid), "storage is read-only")
        assert_refused(lambda: studio.delete(cid), "storage is read-only")
        assert_refused(lambda: studio.import_(studio.export(cid)), "storage is read-only")
        # reading still works: the characters panel and exports stay available
        assert studio.get_character(cid)["name"] == "Before" and studio.list_characters() == before["characters"]
    finally:
        studio.store.db = writable
        conn.close()
    assert snapshot(studio) == before
    assert_clean(studio)
    works_again(studio, cid)


def test_read_only_image_folder_refuses_writes(studio, monkeypatch):
    cid = locked(studio)
    before = snapshot(studio)
    with file_writes_fail(monkeypatch, errno.EROFS, at_open=True):
        assert_refused(lambda: studio.design(SPEC, seed=3, n=1), "storage is read-only")
        assert_refused(lambda: studio.selfie(cid, SHOT, seed=4), "storage is read-only")
    assert snapshot(studio) == before
    assert_clean(studio)
    works_again(studio, cid)


def test_image_folder_replaced_by_a_file(studio):
    cid = locked(studio)
    before = snapshot(studio)
    images = studio.store.data_dir / "images"
    moved = images.with_name("images-moved")
    images.rename(moved)
    images.write_bytes(b"not a folder")
    try:
        err = assert_refused(lambda: studio.selfie(cid, SHOT, seed=4), "storage error")
        assert "could not save the image" in str(err)
    finally:
        images.unlink()
        moved.rename(images)
    assert snapshot(studio) == before
    assert_clean(studio)
    works_again(studio, cid)


def test_store_that_cannot_open_its_database_says_so(tmp_path):
    (tmp_path / "characters.db").mkdir()  # a folder where the database file should be
    with pytest.raises(StorageError, match="storage error .*could not open the database") as err:
        Store(tmp_path / "characters.db", tmp_path / "data")
    assert str(tmp_path) not in str(err.value)


def test_the_ui_shows_storage_errors_as_messages():
    import gradio as gr

    from customizer.ui import friendly

    @friendly
    def handler():
        raise store_errors.full("save the image")

    with pytest.raises(gr.Error, match="storage is full: could not save the image; free some disk space"):
        handler()


# ---------------------------------------------------------------- the same, on real filesystems (root + mount)

def _run(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def can_mount(tmp_path_factory) -> bool:
    probe = tmp_path_factory.mktemp("mount-probe")
    if os.geteuid() != 0 or not _run("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)):
        return False
    return _run("umount", str(probe))


@contextlib.contextmanager
def mounted(*args: str, target: Path):
    if not _run("mount", *args, str(target)):
        pytest.skip(f"mount {' '.join(args)} is not permitted here")
    try:
        yield target
    finally:
        if not _run("umount", str(target)):
            _run("umount", "-l", str(target))


@pytest.fixture
def tmpfs_studio(tmp_path, tiny_config_path, tiny_engine, can_mount):
    if not can_mount:
        pytest.skip("mounting a tmpfs needs root and CAP_SYS_ADMIN")
    root = tmp_path / "fs"
    root.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=8m", "tmpfs", target=root):
        s = make_studio(tiny_config_path, tiny_engine, root / "characters.db", root / "data")
        try:
            yield s, root
        finally:
            s.store.close()


def test_real_full_disk(tmpfs_studio):
    studio, root = tmpfs_studio
    cid = locked(studio)
    before = snapshot(studio)
    filler = root / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # take every free byte
        for block in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * block)
    finally:
        os.close(fd)
    assert_refused(lambda: studio.design(SPEC, seed=3, n=1, name="No room"), "storage is full")
    assert_refused(lambda: studio.selfie(cid, SHOT, seed=4), "storage is full")
    assert studio.list_characters() == before["characters"]  # reading still works on a full disk
    filler.unlink()  # space is back
    assert snapshot(studio) == before
    assert_clean(studio)
    works_again(studio, cid)


def test_real_read_only_image_folder(tmpfs_studio):
    studio, root = tmpfs_studio
    cid = locked(studio)
    before = snapshot(studio)
    images = studio.store.data_dir / "images"
    with mounted("--bind", str(images), target=images):  # the folder over itself ...
        assert _run("mount", "-o", "remount,bind,ro", str(images))  # ... read-only
        assert_refused(lambda: studio.design(SPEC, seed=3, n=1), "storage is read-only")
        assert_refused(lambda: studio.selfie(cid, SHOT, seed=4), "storage is read-only")
        assert studio.get_character(cid)["selfies"] == studio.get_character(cid)["selfies"]
    assert snapshot(studio) == before
    assert_clean(studio)
    works_again(studio, cid)


def test_real_read_only_storage_at_start(tmpfs_studio, tmp_path):
    """An app started on read-only storage stops with one clear message instead of a sqlite traceback."""
    studio, root = tmpfs_studio
    locked(studio)
    studio.store.close()
    view = tmp_path / "ro-view"
    view.mkdir()
    with mounted("--bind", str(root), target=view):
        assert _run("mount", "-o", "remount,bind,ro", str(view))
        with pytest.raises(StorageError, match="storage is read-only|storage error") as err:
            Store(view / "characters.db", view / "data")
        assert str(view) not in str(err.value)
    studio.store = Store(root / "characters.db", root / "data")  # writable again: for the fixture's close()
    assert_clean(studio)
