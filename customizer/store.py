"""Persistence: characters, candidates, locked references and selfies in SQLite, images as PNG files.

No torch/gradio here. Invariants this module keeps:
- A file is written (temp + fsync + os.replace) BEFORE the row that points at it is committed, so a crash can
  leave an orphan file (removed by gc() at the next open) but never a row without its file.
- Images are content-addressed: images/<sha[:2]>/<sha>.png where sha = sha256 of the PNG bytes, and every PNG
  embeds its recipe (text chunk "customizer_recipe"), so an image file alone is enough to regenerate it.
- Every query is scoped by owner; another owner's character is indistinguishable from a missing one (NotFound).

Threading: ONE connection (check_same_thread=False) guarded by an RLock, not one connection per thread.
SQLite runs one writer at a time anyway; a single connection means our own handler threads can never hit
SQLITE_BUSY on a lock upgrade (which busy_timeout does not retry), close() can really close everything (per-thread
connections would be stranded in Gradio's pool threads), and the same lock guards the in-memory "pending files"
set that stops delete()/gc() from unlinking a file another thread has written but not yet committed a row for.
Slow work (PNG encoding, hashing, fsync) happens outside the lock. busy_timeout + BEGIN IMMEDIATE cover other
processes (a CLI, a second app instance) sharing the same database file.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import sqlite3
import threading
import unicodedata
import uuid
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlite_utils
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from . import safety
from .errors import NotFound, SpecError, StateError, StorageError, shown
from .likeness.result import STATES as LIKENESS_STATES

RECIPE_CHUNK = "customizer_recipe"
BUSY_TIMEOUT_MS = 10_000
NAME_MAX = 80
PACK_SLOTS_MAX = 32
_SHA_RE = re.compile(r"[0-9a-fA-F]{64}")
# gc() only deletes names this module creates; anything else in the folders is left for a human.
_FILE_RE = re.compile(r"(?P<sha>[0-9a-f]{64})\.(png|bin|safetensors)")
_TMP_RE = re.compile(r"\.(?P<sha>[0-9a-f]{64})\.[0-9a-f]{32}\.tmp")
_EXT = {"images": "png", "embeddings": "bin", "loras": "safetensors"}
_TABLE = {"images": "images", "embeddings": "reference_embeddings", "loras": "character_loras"}  # rows of a file kind
_SAVING = {"images": "save the image", "embeddings": "save the reference embedding",
           "loras": "save the character LoRA"}
log = logging.getLogger(__name__)


# ---------------------------------------------------------------- migrations
# Append only: a shipped migration is never edited, a change is a new numbered function.

def _m001_initial(db: sqlite_utils.Database) -> None:
    # Raw DDL because sqlite-utils' create() cannot express ON DELETE CASCADE, CHECK or partial indexes.
    for sql in [
        """CREATE TABLE characters (
            id TEXT PRIMARY KEY, owner TEXT NOT NULL DEFAULT 'local', name TEXT NOT NULL,
            spec_json TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'locked')),
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
        "CREATE INDEX characters_owner ON characters(owner, created_at)",
        """CREATE TABLE images (
            sha256 TEXT PRIMARY KEY CHECK (length(sha256) = 64), path TEXT NOT NULL,
            width INTEGER NOT NULL, height INTEGER NOT NULL, bytes INTEGER NOT NULL, created_at TEXT NOT NULL)""",
        """CREATE TABLE candidates (
            id TEXT PRIMARY KEY, character_id TEXT NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            image_sha256 TEXT NOT NULL REFERENCES images(sha256), seed INTEGER, model_id TEXT, kind TEXT,
            recipe_json TEXT NOT NULL, created_at TEXT NOT NULL)""",
        "CREATE INDEX candidates_character ON candidates(character_id, created_at)",
        "CREATE INDEX candidates_image ON candidates(image_sha256)",
        """CREATE TABLE refs (
            id TEXT PRIMARY KEY, character_id TEXT NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            candidate_id TEXT REFERENCES candidates(id) ON DELETE SET NULL,
            image_sha256 TEXT NOT NULL REFERENCES images(sha256), seed INTEGER, model_id TEXT, kind TEXT,
            recipe_json TEXT NOT NULL, locked_at TEXT NOT NULL, unlocked_at TEXT)""",
        # The database itself refuses a second active reference, whatever the Python code does.
        "CREATE UNIQUE INDEX refs_one_active ON refs(character_id) WHERE unlocked_at IS NULL",
        "CREATE INDEX refs_image ON refs(image_sha256)",
        """CREATE TABLE reference_embeddings (
            reference_id TEXT NOT NULL REFERENCES refs(id) ON DELETE CASCADE, key TEXT NOT NULL,
            path TEXT NOT NULL, sha256 TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (reference_id, key))""",
        "CREATE INDEX reference_embeddings_sha ON reference_embeddings(sha256)",
        """CREATE TABLE selfies (
            id TEXT PRIMARY KEY, character_id TEXT NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            reference_id TEXT NOT NULL REFERENCES refs(id) ON DELETE CASCADE,
            image_sha256 TEXT NOT NULL REFERENCES images(sha256), seed INTEGER, model_id TEXT, kind TEXT,
            recipe_json TEXT NOT NULL, selfie_json TEXT NOT NULL, likeness REAL,
            attempts INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL)""",
        "CREATE INDEX selfies_character ON selfies(character_id, created_at)",
        "CREATE INDEX selfies_image ON selfies(image_sha256)",
    ]:
        db.execute(sql)


def _m002_likeness_state(db: sqlite_utils.Database) -> None:
    # m001's likeness REAL holds the score; a selfie without one now says why (customizer/likeness/result.py
    # STATES) and which instrument measured it. NULL on older rows: "not scored".
    db.execute("ALTER TABLE selfies ADD COLUMN likeness_state TEXT")
    db.execute("ALTER TABLE selfies ADD COLUMN likeness_instrument TEXT")


def _m003_packs(db: sqlite_utils.Database) -> None:
    # A pack (e.g. the expression pack) is a named set of selfies of one reference, one per slot (happy, sad ...).
    # Its selfies are ordinary selfie rows pointing at it, so they keep recipes, likeness and reproducibility.
    for sql in [
        """CREATE TABLE packs (
            id TEXT PRIMARY KEY, character_id TEXT NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            reference_id TEXT NOT NULL REFERENCES refs(id) ON DELETE CASCADE, kind TEXT NOT NULL,
            name TEXT NOT NULL, slots_json TEXT NOT NULL, created_at TEXT NOT NULL, completed_at TEXT,
            UNIQUE (character_id, name))""",
        "CREATE INDEX packs_character ON packs(character_id, created_at)",
        "ALTER TABLE selfies ADD COLUMN pack_id TEXT REFERENCES packs(id) ON DELETE CASCADE",
        "ALTER TABLE selfies ADD COLUMN pack_slot TEXT",
        "CREATE UNIQUE INDEX selfies_pack_slot ON selfies(pack_id, pack_slot) WHERE pack_id IS NOT NULL",
    ]:
        db.execute(sql)


def _m004_reference_sheet(db: sqlite_utils.Database) -> None:
    # The reference sheet: views of one reference (frontal, three-quarter ...) rendered at lock time, each with its
    # recipe and likeness against the reference; selfies of that reference are conditioned on them too.
    for sql in [
        """CREATE TABLE sheet_views (
            id TEXT PRIMARY KEY, character_id TEXT NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            reference_id TEXT NOT NULL REFERENCES refs(id) ON DELETE CASCADE, view TEXT NOT NULL,
            position INTEGER NOT NULL, image_sha256 TEXT NOT NULL REFERENCES images(sha256), seed INTEGER,
            model_id TEXT, kind TEXT, recipe_json TEXT NOT NULL, likeness REAL, likeness_state TEXT,
            likeness_instrument TEXT, created_at TEXT NOT NULL, UNIQUE (reference_id, view))""",
        "CREATE INDEX sheet_views_character ON sheet_views(character_id)",
        "CREATE INDEX sheet_views_image ON sheet_views(image_sha256)",
    ]:
        db.execute(sql)


def _m005_accepted_selfies(db: sqlite_utils.Database) -> None:
    # A selfie the user accepted as the character (the character LoRA trains on them); NULL: not accepted.
    db.execute("ALTER TABLE selfies ADD COLUMN accepted_at TEXT")


def _m006_character_loras(db: sqlite_utils.Database) -> None:
    # Character LoRAs: peft weights trained on one reference's images (customizer/engine/character_lora.py), stored
    # content-addressed like images (loras/<sha[:2]>/<sha>.safetensors) with their training facts. Several per
    # character over time: a selfie's recipe names the one it used, so older ones stay for reproduction.
    for sql in [
        """CREATE TABLE character_loras (
            id TEXT PRIMARY KEY, character_id TEXT NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            reference_id TEXT NOT NULL REFERENCES refs(id) ON DELETE CASCADE,
            sha256 TEXT NOT NULL CHECK (length(sha256) = 64), path TEXT NOT NULL, bytes INTEGER NOT NULL,
            facts_json TEXT NOT NULL, created_at TEXT NOT NULL)""",
        "CREATE INDEX character_loras_character ON character_loras(character_id, created_at)",
        "CREATE INDEX character_loras_sha ON character_loras(sha256)",
    ]:
        db.execute(sql)


MIGRATIONS: list[tuple[int, Callable[[sqlite_utils.Database], None]]] = [
    (1, _m001_initial),
    (2, _m002_likeness_state),
    (3, _m003_packs),
    (4, _m004_reference_sheet),
    (5, _m005_accepted_selfies),
    (6, _m006_character_loras),
]


# ---------------------------------------------------------------- helpers

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _new_id() -> str:
    return uuid.uuid4().hex


def _dumps(value: Any) -> str:
    # sort_keys: the same recipe always gives the same PNG bytes, hence the same sha256.
    return json.dumps(value, sort_keys=True)


def clean_name(name: Any) -> str:
    """A character or pack name as stored: text, 1-80 characters, no control characters, and through the same
    safety policy as the prompt text (customizer/safety.py), since names are stored, listed and exported."""
    if not isinstance(name, str):
        raise SpecError("name", "must be text")
    name = name.strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise SpecError("name", f"must be 1 to {NAME_MAX} characters long (got {len(name)})")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise SpecError("name", "must not contain control characters such as line breaks")
    safety.check_text(name, field="name")
    return name


def _check_spec(spec: Any, field: str = "spec") -> dict:
    if not isinstance(spec, dict):
        raise SpecError(field, "must be a mapping")
    return spec


def encode_png(image: Image.Image, recipe_json: str) -> bytes:
    """PNG bytes with the recipe embedded; deterministic for the same pixels and recipe."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
    info = PngInfo()
    info.add_text(RECIPE_CHUNK, recipe_json)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return im.size


def _fsync_dir(path: Path) -> None:
    # Makes the os.replace rename itself durable; not available everywhere (e.g. Windows), hence best effort.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _likeness_columns(recipe: dict, score: Any) -> dict:
    """likeness_state / likeness_instrument for an imported selfie: from the recipe's extra.likeness (written by
    the Studio), checked; older archives without it get 'scored' when they carry a score, else NULL."""
    info = recipe.get("extra", {}).get("likeness") if isinstance(recipe.get("extra"), dict) else None
    info = info if isinstance(info, dict) else {}
    state, instrument = info.get("state"), info.get("instrument")
    if state not in LIKENESS_STATES or (state == "scored") != (score is not None):
        state = "scored" if score is not None else None
    if not (isinstance(instrument, str) and 0 < len(instrument) <= 40):
        instrument = None
    return {"likeness_state": state, "likeness_instrument": instrument}


# ---------------------------------------------------------------- storage failures
# A full or read-only disk (or a failing one) is not a bug: it becomes a StorageError with a message a person can
# act on, never a raw sqlite3/OSError (whose text may hold server paths). Errors of other kinds pass unchanged.
_SQLITE_FULL, _SQLITE_READONLY, _SQLITE_PERM = 13, 8, 3
_SQLITE_IO = {10: "disk I/O error", 14: "cannot open the database file", 11: "the database file is damaged",
              26: "the database file is not a database"}  # IOERR, CANTOPEN, CORRUPT, NOTADB
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_READONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}
_IO_ERRNOS = {errno.EIO, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG, errno.EMFILE,
              errno.ENFILE, errno.ENXIO, errno.ENODEV}


def _full(what: str) -> StorageError:
    return StorageError(f"storage is full: could not {what}; free some disk space and try again")


def _read_only(what: str) -> StorageError:
    return StorageError(f"storage is read-only: could not {what}; the data folder must be writable")


def _as_storage_error(e: BaseException, what: str) -> StorageError | None:
    """The StorageError for a storage failure, or None for anything else (constraint, programming errors)."""
    if isinstance(e, sqlite3.DatabaseError):
        code = getattr(e, "sqlite_errorcode", None)  # Python 3.11+; the message otherwise
        code = code & 0xFF if code is not None else next(
            (c for c, text in ((_SQLITE_FULL, "disk is full"), (_SQLITE_READONLY, "readonly database"),
                               (10, "disk i/o error"), (14, "unable to open database"), (11, "malformed"),
                               (26, "not a database")) if text in str(e).lower()), None)
        if code == _SQLITE_FULL:
            return _full(what)
        if code in (_SQLITE_READONLY, _SQLITE_PERM):
            return _read_only(what)
        if code in _SQLITE_IO:
            return StorageError(f"storage error ({_SQLITE_IO[code]}): could not {what}")
        return None
    if isinstance(e, OSError) and e.errno is not None:
        if e.errno in _FULL_ERRNOS:
            return _full(what)
        if e.errno in _READONLY_ERRNOS:
            return _read_only(what)
        if e.errno in _IO_ERRNOS:  # strerror only: str(e) would show the server's path
            return StorageError(f"storage error ({e.strerror or 'I/O error'}): could not {what}")
    return None


@contextmanager
def _storage_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (sqlite3.DatabaseError, OSError) as e:
        err = _as_storage_error(e, what)
        if err is None:
            raise
        raise err from e


class Store:
    def __init__(self, db_path: str | Path, data_dir: str | Path):
        self.db_path = Path(db_path).resolve()
        self.data_dir = Path(data_dir).resolve()
        self._lock = threading.RLock()
        self._pending: Counter[tuple[str, str]] = Counter()  # (kind, sha) written but row not committed yet
        with _storage_errors("open the database and the image folder"):
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            for sub in _EXT:
                (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.db_path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
            try:
                self.db.execute("PRAGMA foreign_keys = ON")  # per connection, off by default in SQLite
                self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                self.db.enable_wal()  # readers never block the writer; persistent in the file
                self._migrate()
                self.gc()
            except BaseException:
                conn.close()
                raise

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # ------------------------------------------------------------ transactions

    @contextmanager
    def _tx(self) -> Iterator[sqlite_utils.Database]:
        """Write transaction. IMMEDIATE takes the write lock up front so another process makes us wait
        (busy_timeout) at BEGIN instead of failing later on a read->write lock upgrade."""
        with self._lock, _storage_errors("save the changes"):
            if self.db.conn.in_transaction:  # nested: a savepoint inside the outer transaction
                with self.db.atomic():
                    yield self.db
                return
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.rollback()
                raise
            try:
                self.db.conn.execute("COMMIT")
            except BaseException:
                self.db.rollback()
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite_utils.Database]:
        """Several SELECTs that must agree with each other (one snapshot even if another process writes)."""
        with self._lock, _storage_errors("read the database"):
            if self.db.conn.in_transaction:
                yield self.db
                return
            self.db.conn.execute("BEGIN")
            try:
                yield self.db
            finally:
                self.db.rollback()  # read-only: ending it is all that is needed

    def _migrate(self) -> None:
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS migrations (number INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at TEXT NOT NULL)"
        )
        known = max((n for n, _ in MIGRATIONS), default=0)
        if self.schema_version > known:
            raise StateError(
                f"database {self.db_path.name} has schema version {self.schema_version}, newer than this app "
                f"understands ({known}); upgrade the app"
            )
        for number, fn in sorted(MIGRATIONS, key=lambda m: m[0]):
            with self._tx() as db:
                # Checked inside the write transaction: another process may have just applied it.
                if db.execute("SELECT 1 FROM migrations WHERE number = ?", [number]).fetchone():
                    continue
                fn(db)
                db["migrations"].insert({"number": number, "name": fn.__name__, "applied_at": _now()})

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self.db.execute("SELECT coalesce(max(number), 0) FROM migrations").fetchone()[0]

    # ------------------------------------------------------------ files

    def image_path(self, sha256: str) -> Path:
        return self._abs("images", sha256)

    def _abs(self, kind: str, sha256: str) -> Path:
        # The only place paths are built from a hash: validate before it can touch the filesystem.
        if not isinstance(sha256, str) or not _SHA_RE.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {str(sha256)[:80]!r}")
        sha = sha256.lower()
        return self.data_dir / kind / sha[:2] / f"{sha}.{_EXT[kind]}"

    def _rel(self, kind: str, sha256: str) -> str:
        return self._abs(kind, sha256).relative_to(self.data_dir).as_posix()

    def read_recipe(self, sha256: str) -> dict:
        path = self.image_path(sha256)
        try:
            with Image.open(path) as im:
                text = im.text.get(RECIPE_CHUNK)  # type: ignore[attr-defined]
        except FileNotFoundError:
            raise NotFound(f"image {sha256} not found") from None
        if text is None:
            raise NotFound(f"image {sha256} carries no recipe")
        return json.loads(text)

    @staticmethod
    def _write_atomic(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.stem}.{uuid.uuid4().hex}.tmp"  # same dir: os.replace stays atomic
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):  # best effort (a read-only disk refuses even this): the real
                tmp.unlink(missing_ok=True)     # error is the one to report; gc() removes stale .tmp files
            raise
        _fsync_dir(path.parent)

    @contextmanager
    def _staging(self) -> Iterator[Callable[[str, bytes], str]]:
        """Yields stage(kind, data) -> sha which writes a content-addressed file and marks it pending until the
        block ends, so concurrent delete()/gc() leave it alone while its row is not committed yet.
        On an ordinary error the staged files are removed again unless something else references them; on a
        BaseException (process going down) they are left for gc() at the next open."""
        staged: list[tuple[str, str]] = []

        def stage(kind: str, data: bytes) -> str:
            sha = hashlib.sha256(data).hexdigest()
            with self._lock:
                self._pending[(kind, sha)] += 1
            staged.append((kind, sha))
            with _storage_errors(_SAVING[kind]):
                self._write_atomic(self._abs(kind, sha), data)
            return sha

        failed = False
        try:
            yield stage
        except Exception:
            failed = True
            raise
        finally:
            with self._lock:
                self._pending.subtract(staged)
                self._pending = +self._pending  # drop zero counts
                if failed:
                    for kind, sha in staged:
                        self._remove_if_orphan(kind, sha)

    def _referenced(self, kind: str, sha: str) -> bool:
        table = _TABLE[kind]
        return self.db.execute(f"SELECT 1 FROM {table} WHERE sha256 = ? LIMIT 1", [sha]).fetchone() is not None

    def _remove_if_orphan(self, kind: str, sha: str) -> bool:
        """Caller holds the lock and has committed: unlink the file if no row and no writer needs it."""
        if self._pending[(kind, sha)] or self._referenced(kind, sha):
            return False
        try:
            self._abs(kind, sha).unlink(missing_ok=True)
        except OSError as e:  # e.g. a read-only disk: the row is gone, so gc() removes the file at the next open
            log.warning("could not remove unreferenced %s %s: %s", kind, sha[:12], e.strerror)
            return False
        return True

    def _unreferenced_images(self, db: sqlite_utils.Database, shas: list[str] | None = None) -> list[str]:
        sql = (
            "SELECT sha256 FROM images i WHERE NOT EXISTS (SELECT 1 FROM candidates WHERE image_sha256 = i.sha256)"
            " AND NOT EXISTS (SELECT 1 FROM refs WHERE image_sha256 = i.sha256)"
            " AND NOT EXISTS (SELECT 1 FROM selfies WHERE image_sha256 = i.sha256)"
            " AND NOT EXISTS (SELECT 1 FROM sheet_views WHERE image_sha256 = i.sha256)"
        )
        if shas is None:
            return [r[0] for r in db.execute(sql).fetchall()]
        if not shas:
            return []
        marks = ",".join("?" * len(shas))
        return [r[0] for r in db.execute(f"{sql} AND sha256 IN ({marks})", shas).fetchall()]

    def _delete_unreferenced_images(self, db: sqlite_utils.Database, shas: list[str]) -> list[str]:
        """Inside the transaction: delete the rows of those of `shas` nothing references any more; returns their
        shas, whose files the caller removes (_remove_if_orphan) after the commit, still holding the lock."""
        dead = self._unreferenced_images(db, shas)
        for sha in dead:
            db.execute("DELETE FROM images WHERE sha256 = ?", [sha])
        return dead

    def _scan_files(self) -> Iterator[tuple[str, Path]]:
        for kind in _EXT:
            root = self.data_dir / kind
            for shard in sorted(root.iterdir()) if root.exists() else []:
                if shard.is_dir():
                    for f in sorted(shard.iterdir()):
                        if f.is_file():
                            yield kind, f

    def gc(self) -> list[str]:
        """Remove unreferenced image rows and files with no row (crash leftovers). Returns removed paths,
        relative to data_dir. Files some thread is writing right now (pending) are kept."""
        removed: list[str] = []
        with self._lock:
            with self._tx() as db:
                dead = [s for s in self._unreferenced_images(db) if not self._pending[("images", s)]]
                for sha in dead:
                    db.execute("DELETE FROM images WHERE sha256 = ?", [sha])
            for kind, f in self._scan_files():
                m = _FILE_RE.fullmatch(f.name) or _TMP_RE.fullmatch(f.name)
                if not m or self._pending[(kind, m["sha"])]:
                    continue
                if f.name.endswith(".tmp") or (f.suffix == f".{_EXT[kind]}" and not self._referenced(kind, m["sha"])):
                    f.unlink(missing_ok=True)
                    removed.append(f.relative_to(self.data_dir).as_posix())
        return removed

    def integrity_report(self) -> dict:
        with self._read() as db:
            check = db.execute("PRAGMA integrity_check").fetchone()[0]
            fk = [list(r) for r in db.execute("PRAGMA foreign_key_check").fetchall()]
            rows = [("images", r[0], r[1]) for r in db.execute("SELECT sha256, path FROM images").fetchall()]
            rows += [("embeddings", r[0], r[1])
                     for r in db.execute("SELECT DISTINCT sha256, path FROM reference_embeddings").fetchall()]
            rows += [("loras", r[0], r[1])
                     for r in db.execute("SELECT DISTINCT sha256, path FROM character_loras").fetchall()]
            unreferenced = self._unreferenced_images(db)
            files = {f.relative_to(self.data_dir).as_posix() for _, f in self._scan_files()}
        row_paths = {p for _, _, p in rows}
        return {
            "integrity_check": check,
            "foreign_key_violations": fk,
            "rows_without_file": sorted(p for _, _, p in rows if not (self.data_dir / p).is_file()),
            "files_without_row": sorted(files - row_paths),
            "unreferenced_image_rows": sorted(unreferenced),
        }

    # ------------------------------------------------------------ row -> dict

    def _char_row(self, db: sqlite_utils.Database, character_id: str, owner: str) -> dict:
        rows = list(db.query("SELECT * FROM characters WHERE id = ? AND owner = ?", [character_id, owner]))
        if not rows:
            raise NotFound(f"character {str(character_id)[:64]} not found")
        return rows[0]

    def _owned_row(self, db: sqlite_utils.Database, table: str, what: str, row_id: str, owner: str) -> dict:
        """The row of `table` (one with a character_id) by id, if its character is the owner's: another owner's
        row is indistinguishable from a missing one (NotFound "<what> <id> not found")."""
        rows = list(db.query(f"SELECT t.* FROM {table} t JOIN characters c ON c.id = t.character_id "
                             "WHERE t.id = ? AND c.owner = ?", [row_id, owner]))
        if not rows:
            raise NotFound(f"{what} {str(row_id)[:64]} not found")
        return rows[0]

    def _summary(self, db: sqlite_utils.Database, c: dict) -> dict:
        ref_sha = db.execute(
            "SELECT image_sha256 FROM refs WHERE character_id = ? AND unlocked_at IS NULL", [c["id"]]
        ).fetchone()
        latest = db.execute(
            "SELECT image_sha256 FROM candidates WHERE character_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
            [c["id"]],
        ).fetchone()
        thumb = (ref_sha or latest or [None])[0]
        return {
            "id": c["id"],
            "name": c["name"],
            "owner": c["owner"],
            "spec": json.loads(c["spec_json"]),
            "status": c["status"],
            "created_at": c["created_at"],
            "updated_at": c["updated_at"],
            "n_selfies": db.execute("SELECT count(*) FROM selfies WHERE character_id = ?", [c["id"]]).fetchone()[0],
            "reference_sha256": ref_sha[0] if ref_sha else None,
            "thumbnail": str(self.image_path(thumb)) if thumb else None,
        }

    def _image_fields(self, r: dict) -> dict:
        return {
            "image_sha256": r["image_sha256"],
            "path": str(self.image_path(r["image_sha256"])),
            "seed": r["seed"],
            "model_id": r["model_id"],
            "kind": r["kind"],
            "recipe": json.loads(r["recipe_json"]),
        }

    def _candidate_dict(self, r: dict) -> dict:
        return {"id": r["id"], "character_id": r["character_id"], **self._image_fields(r),
                "created_at": r["created_at"]}

    def _reference_dict(self, r: dict) -> dict:
        return {"id": r["id"], "character_id": r["character_id"], "candidate_id": r["candidate_id"],
                **self._image_fields(r), "locked_at": r["locked_at"], "unlocked_at": r["unlocked_at"]}

    def _sheet_dict(self, r: dict) -> dict:
        return {"id": r["id"], "character_id": r["character_id"], "reference_id": r["reference_id"],
                "view": r["view"], "position": r["position"], **self._image_fields(r), "likeness": r["likeness"],
                "likeness_state": r["likeness_state"], "likeness_instrument": r["likeness_instrument"],
                "created_at": r["created_at"]}

    def _selfie_dict(self, r: dict) -> dict:
        return {"id": r["id"], "character_id": r["character_id"], "reference_id": r["reference_id"],
                **self._image_fields(r), "selfie": json.loads(r["selfie_json"]), "likeness": r["likeness"],
                "likeness_state": r.get("likeness_state"), "likeness_instrument": r.get("likeness_instrument"),
                "attempts": r["attempts"], "pack_id": r.get("pack_id"), "pack_slot": r.get("pack_slot"),
                "accepted": r.get("accepted_at") is not None, "accepted_at": r.get("accepted_at"),
                "created_at": r["created_at"]}

    def _lora_dict(self, r: dict) -> dict:
        return {"id": r["id"], "character_id": r["character_id"], "reference_id": r["reference_id"],
                "sha256": r["sha256"], "path": str(self.lora_path(r["sha256"])), "bytes": r["bytes"],
                "facts": json.loads(r["facts_json"]), "created_at": r["created_at"]}

    @staticmethod
    def _image_columns(sha: str, recipe: dict, recipe_json: str) -> dict:
        return {"image_sha256": sha, "seed": recipe.get("seed"), "model_id": recipe.get("model_id"),
                "kind": recipe.get("kind"), "recipe_json": recipe_json}

    def _insert_image(self, db: sqlite_utils.Database, sha: str, data: bytes, created_at: str | None = None) -> None:
        width, height = _png_size(data)
        db["images"].insert(
            {"sha256": sha, "path": self._rel("images", sha), "width": width, "height": height,
             "bytes": len(data), "created_at": created_at or _now()},
            ignore=True,  # the same PNG already stored (shared between characters): keep the first row
        )

    # ------------------------------------------------------------ characters

    def create_character(self, name: str, spec: dict, owner: str = "local") -> dict:
        row = {"id": _new_id(), "owner": owner, "name": clean_name(name), "spec_json": _dumps(_check_spec(spec)),
               "status": "draft", "created_at": _now()}
        row["updated_at"] = row["created_at"]
        with self._tx() as db:
            db["characters"].insert(row)
            return self._summary(db, row)

    def _touch(self, db: sqlite_utils.Database, character_id: str, **changes: Any) -> None:
        changes["updated_at"] = _now()
        sets = ", ".join(f"{k} = ?" for k in changes)
        db.execute(f"UPDATE characters SET {sets} WHERE id = ?", [*changes.values(), character_id])

    def update_draft_spec(self, character_id: str, spec: dict, owner: str = "local") -> dict:
        spec_json = _dumps(_check_spec(spec))
        with self._tx() as db:
            if self._char_row(db, character_id, owner)["status"] != "draft":
                raise StateError("the character is locked; unlock it before changing its look")
            self._touch(db, character_id, spec_json=spec_json)
            return self._summary(db, self._char_row(db, character_id, owner))

    def rename_character(self, character_id: str, name: str, owner: str = "local") -> dict:
        name = clean_name(name)
        with self._tx() as db:
            self._char_row(db, character_id, owner)
            self._touch(db, character_id, name=name)
            return self._summary(db, self._char_row(db, character_id, owner))

    def delete_character(self, character_id: str, owner: str = "local") -> None:
        with self._lock:  # held across commit + unlink so no writer slips in between (see _staging)
            with self._tx() as db:
                self._char_row(db, character_id, owner)
                shas = sorted({r[0] for t in ("candidates", "refs", "selfies", "sheet_views") for r in db.execute(
                    f"SELECT image_sha256 FROM {t} WHERE character_id = ?", [character_id]).fetchall()})
                blobs = [r[0] for r in db.execute(
                    "SELECT e.sha256 FROM reference_embeddings e JOIN refs r ON r.id = e.reference_id "
                    "WHERE r.character_id = ?", [character_id]).fetchall()]
                loras = [r[0] for r in db.execute("SELECT sha256 FROM character_loras WHERE character_id = ?",
                                                  [character_id]).fetchall()]
                db.execute("DELETE FROM characters WHERE id = ?", [character_id])  # cascades to children
                dead = self._delete_unreferenced_images(db, shas)
            for sha in dead:
                self._remove_if_orphan("images", sha)
            for sha in blobs:
                self._remove_if_orphan("embeddings", sha)
            for sha in set(loras):
                self._remove_if_orphan("loras", sha)

    def prune_empty_drafts(self) -> int:
        """Delete drafts with no candidate and no reference: only left behind when the process died between
        creating a character and saving its first portrait. Run at start-up, when no design is in flight."""
        with self._lock:
            with self._tx() as db:
                cur = db.execute(
                    "DELETE FROM characters WHERE status = 'draft' "
                    "AND NOT EXISTS (SELECT 1 FROM candidates c WHERE c.character_id = characters.id) "
                    "AND NOT EXISTS (SELECT 1 FROM refs r WHERE r.character_id = characters.id)")
                return cur.rowcount

    def list_characters(self, owner: str = "local") -> list[dict]:
        with self._read() as db:
            rows = list(db.query(
                "SELECT * FROM characters WHERE owner = ? ORDER BY created_at DESC, rowid DESC", [owner]))
            return [self._summary(db, c) for c in rows]

    def get_character(self, character_id: str, owner: str = "local") -> dict:
        with self._read() as db:
            c = self._char_row(db, character_id, owner)
            refs = [self._reference_dict(r) for r in db.query(
                "SELECT * FROM refs WHERE character_id = ? ORDER BY locked_at, rowid", [character_id])]
            cands = [self._candidate_dict(r) for r in db.query(
                "SELECT * FROM candidates WHERE character_id = ? ORDER BY created_at, rowid", [character_id])]
            selfies = [self._selfie_dict(r) for r in db.query(
                "SELECT * FROM selfies WHERE character_id = ? ORDER BY created_at DESC, rowid DESC",
                [character_id])]
            packs = [self._pack_with_items(db, p) for p in db.query(
                "SELECT * FROM packs WHERE character_id = ? ORDER BY created_at DESC, rowid DESC", [character_id])]
            reference = next((r for r in refs if r["unlocked_at"] is None), None)
            sheet = self.sheet_views(character_id, owner, reference["id"]) if reference else []
            loras = self.character_loras(character_id, owner)
            out = self._summary(db, c)
        out.update(
            reference=reference,
            references=refs,
            candidates=cands,
            selfies=selfies,
            packs=packs,
            sheet=sheet,  # the active reference's; sheet_views() has those of earlier references too
            loras=loras,  # character LoRAs of every reference, newest first
        )
        return out

    # ------------------------------------------------------------ candidates, lock

    def add_candidate(self, character_id: str, image: Image.Image, recipe: dict, owner: str = "local") -> dict:
        recipe_json = _dumps(recipe)  # fails before any file is written
        png = encode_png(image, recipe_json)
        with self._read() as db:  # fail fast without writing a file; re-checked inside the transaction
            if self._char_row(db, character_id, owner)["status"] != "draft":
                raise StateError("the character is locked; unlock it to generate new portraits")
        with self._staging() as stage:
            sha = stage("images", png)
            with self._tx() as db:
                if self._char_row(db, character_id, owner)["status"] != "draft":
                    raise StateError("the character is locked; unlock it to generate new portraits")
                self._insert_image(db, sha, png)
                row = {"id": _new_id(), "character_id": character_id,
                       **self._image_columns(sha, recipe, recipe_json), "created_at": _now()}
                db["candidates"].insert(row)
        return self._candidate_dict(row)

    def get_candidate(self, candidate_id: str, owner: str = "local") -> dict:
        with self._read() as db:
            row = self._owned_row(db, "candidates", "candidate", candidate_id, owner)
        return self._candidate_dict(row)

    def lock(self, character_id: str, candidate_id: str, owner: str = "local") -> dict:
        with self._tx() as db:
            if self._char_row(db, character_id, owner)["status"] == "locked":
                raise StateError("the character is already locked; unlock it first to pick another portrait")
            cand = list(db.query("SELECT * FROM candidates WHERE id = ? AND character_id = ?",
                                 [candidate_id, character_id]))
            if not cand:
                raise NotFound(f"candidate {str(candidate_id)[:64]} not found for this character")
            k = cand[0]
            row = {"id": _new_id(), "character_id": character_id, "candidate_id": candidate_id,
                   **{c: k[c] for c in ("image_sha256", "seed", "model_id", "kind", "recipe_json")},
                   "locked_at": _now(), "unlocked_at": None}
            db["refs"].insert(row)
            self._touch(db, character_id, status="locked")
        return self._reference_dict(row)

    def unlock(self, character_id: str, owner: str = "local") -> dict:
        with self._tx() as db:
            if self._char_row(db, character_id, owner)["status"] != "locked":
                raise StateError("the character is not locked")
            now = _now()
            db.execute("UPDATE refs SET unlocked_at = ? WHERE character_id = ? AND unlocked_at IS NULL",
                       [now, character_id])
            self._touch(db, character_id, status="draft")
            ref = list(db.query("SELECT * FROM refs WHERE character_id = ? AND unlocked_at = ?", [character_id, now]))
        return self._reference_dict(ref[0])

    def active_reference(self, character_id: str, owner: str = "local") -> dict | None:
        with self._read() as db:
            self._char_row(db, character_id, owner)
            rows = list(db.query("SELECT * FROM refs WHERE character_id = ? AND unlocked_at IS NULL", [character_id]))
        return self._reference_dict(rows[0]) if rows else None

    # ------------------------------------------------------------ embeddings (recomputable caches)

    def put_reference_embedding(self, reference_id: str, key: str, blob: bytes) -> None:
        if not isinstance(key, str) or not 1 <= len(key) <= 200:
            raise ValueError("embedding key must be 1 to 200 characters of text")
        data = bytes(blob)
        with self._staging() as stage:
            sha = stage("embeddings", data)  # outside the lock: fsync is slow
            with self._lock:  # commit + unlink of the replaced blob as one step (see delete_character)
                with self._tx() as db:
                    if not db.execute("SELECT 1 FROM refs WHERE id = ?", [reference_id]).fetchone():
                        raise NotFound(f"reference {str(reference_id)[:64]} not found")
                    old = db.execute("SELECT sha256 FROM reference_embeddings WHERE reference_id = ? AND key = ?",
                                     [reference_id, key]).fetchone()
                    db["reference_embeddings"].insert(
                        {"reference_id": reference_id, "key": key, "path": self._rel("embeddings", sha),
                         "sha256": sha, "created_at": _now()}, replace=True)
                if old and old[0] != sha:
                    self._remove_if_orphan("embeddings", old[0])

    def get_reference_embedding(self, reference_id: str, key: str) -> bytes | None:
        with self._lock:
            row = self.db.execute("SELECT sha256 FROM reference_embeddings WHERE reference_id = ? AND key = ?",
                                  [reference_id, key]).fetchone()
        if not row:
            return None
        try:
            data = self._abs("embeddings", row[0]).read_bytes()
        except FileNotFoundError:
            return None
        # A damaged cache entry reads as a miss: the caller recomputes instead of using garbage.
        return data if hashlib.sha256(data).hexdigest() == row[0] else None

    # ------------------------------------------------------------ reference sheet

    def add_sheet_view(self, character_id: str, reference_id: str, view: str, position: int, image: Image.Image,
                       recipe: dict, likeness: float | None = None, owner: str = "local", *,
                       likeness_state: str | None = None, likeness_instrument: str | None = None) -> dict:
        """One view of the reference sheet of the character's active reference (file first, then the row)."""
        recipe_json = _dumps(recipe)
        if not isinstance(view, str) or not 0 < len(view) <= NAME_MAX:
            raise ValueError(f"a sheet view name must be 1 to {NAME_MAX} characters of text")
        if isinstance(position, bool) or not isinstance(position, int) or position < 0:
            raise ValueError("position must be a whole number >= 0")
        if likeness_state is not None and likeness_state not in LIKENESS_STATES:
            raise ValueError(f"unknown likeness state {likeness_state!r}")
        png = encode_png(image, recipe_json)
        with self._staging() as stage:
            sha = stage("images", png)
            with self._tx() as db:
                self._char_row(db, character_id, owner)
                if not db.execute("SELECT 1 FROM refs WHERE id = ? AND character_id = ? AND unlocked_at IS NULL",
                                  [reference_id, character_id]).fetchone():
                    raise StateError("the reference was unlocked while its sheet was being made")
                self._insert_image(db, sha, png)
                row = {"id": _new_id(), "character_id": character_id, "reference_id": reference_id, "view": view,
                       "position": position, **self._image_columns(sha, recipe, recipe_json),
                       "likeness": None if likeness is None else float(likeness), "likeness_state": likeness_state,
                       "likeness_instrument": likeness_instrument, "created_at": _now()}
                db["sheet_views"].insert(row)
        return self._sheet_dict(row)

    def sheet_views(self, character_id: str, owner: str = "local", reference_id: str | None = None) -> list[dict]:
        """The sheet of one reference (or of every reference of the character), in sheet order."""
        where, args = ("AND reference_id = ?", [reference_id]) if reference_id else ("", [])
        with self._read() as db:
            self._char_row(db, character_id, owner)
            return [self._sheet_dict(r) for r in db.query(
                f"SELECT * FROM sheet_views WHERE character_id = ? {where} "
                "ORDER BY (SELECT locked_at FROM refs WHERE refs.id = reference_id), position, rowid",
                [character_id, *args])]

    # ------------------------------------------------------------ selfies

    def add_selfie(self, character_id: str, image: Image.Image, recipe: dict, selfie: dict,
                   likeness: float | None = None, attempts: int = 1, owner: str = "local", *,
                   likeness_state: str | None = None, likeness_instrument: str | None = None,
                   pack_id: str | None = None, pack_slot: str | None = None) -> dict:
        """likeness: the score in [0, 1] or None; likeness_state says why there is none (likeness.result.STATES).
        pack_id/pack_slot: this selfie fills one slot of a pack of the character's active reference."""
        recipe_json, selfie_json = _dumps(recipe), _dumps(_check_spec(selfie, "selfie"))
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError("attempts must be a positive integer")
        likeness = None if likeness is None else float(likeness)
        if likeness_state is not None and likeness_state not in LIKENESS_STATES:
            raise ValueError(f"unknown likeness state {likeness_state!r}")
        if (pack_id is None) != (pack_slot is None):
            raise ValueError("pack_id and pack_slot go together")
        png = encode_png(image, recipe_json)
        with self._read() as db:
            if self._char_row(db, character_id, owner)["status"] != "locked":
                raise StateError("lock a reference portrait before taking selfies")
        with self._staging() as stage:
            sha = stage("images", png)
            with self._tx() as db:
                self._char_row(db, character_id, owner)
                ref = db.execute("SELECT id FROM refs WHERE character_id = ? AND unlocked_at IS NULL",
                                 [character_id]).fetchone()
                if not ref:
                    raise StateError("lock a reference portrait before taking selfies")
                if pack_id is not None:
                    self._check_pack_slot(db, pack_id, character_id, ref[0], pack_slot)
                self._insert_image(db, sha, png)
                row = {"id": _new_id(), "character_id": character_id, "reference_id": ref[0],
                       **self._image_columns(sha, recipe, recipe_json), "selfie_json": selfie_json,
                       "likeness": likeness, "attempts": attempts, "created_at": _now(),
                       "likeness_state": likeness_state, "likeness_instrument": likeness_instrument,
                       "pack_id": pack_id, "pack_slot": pack_slot}
                db["selfies"].insert(row)
        return self._selfie_dict(row)

    def set_selfie_accepted(self, selfie_id: str, accepted: bool, owner: str = "local") -> dict:
        """Mark a selfie accepted (the character LoRA trains on it) or not; returns the selfie."""
        if not isinstance(accepted, bool):
            raise SpecError("accepted", f"must be true or false, got {shown(accepted)}")
        with self._tx() as db:
            row = self._owned_row(db, "selfies", "selfie", selfie_id, owner)
            if accepted != (row.get("accepted_at") is not None):  # keep the first acceptance time
                row["accepted_at"] = _now() if accepted else None
                db.execute("UPDATE selfies SET accepted_at = ? WHERE id = ?", [row["accepted_at"], selfie_id])
        return self._selfie_dict(row)

    def get_selfie(self, selfie_id: str, owner: str = "local") -> dict:
        with self._read() as db:
            row = self._owned_row(db, "selfies", "selfie", selfie_id, owner)
        return self._selfie_dict(row)

    # ------------------------------------------------------------ character LoRAs

    def lora_path(self, sha256: str) -> Path:
        return self._abs("loras", sha256)

    def add_character_lora(self, character_id: str, reference_id: str, data: bytes, facts: dict,
                           owner: str = "local") -> dict:
        """A trained character LoRA (safetensors bytes) for one reference of the character: file first, then the
        row. The reference may have been unlocked meanwhile (the LoRA stays with it), not deleted."""
        facts_json = _dumps(_check_spec(facts, "facts"))
        data = bytes(data)
        with self._staging() as stage:
            sha = stage("loras", data)
            with self._tx() as db:
                self._char_row(db, character_id, owner)
                if not db.execute("SELECT 1 FROM refs WHERE id = ? AND character_id = ?",
                                  [reference_id, character_id]).fetchone():
                    raise NotFound(f"reference {str(reference_id)[:64]} not found for this character")
                row = {"id": _new_id(), "character_id": character_id, "reference_id": reference_id, "sha256": sha,
                       "path": self._rel("loras", sha), "bytes": len(data), "facts_json": facts_json,
                       "created_at": _now()}
                db["character_loras"].insert(row)
        return self._lora_dict(row)

    def character_loras(self, character_id: str, owner: str = "local", reference_id: str | None = None) -> list[dict]:
        """The character's LoRAs (of one reference, or all), newest first."""
        where, args = ("AND reference_id = ?", [reference_id]) if reference_id else ("", [])
        with self._read() as db:
            self._char_row(db, character_id, owner)
            return [self._lora_dict(r) for r in db.query(
                f"SELECT * FROM character_loras WHERE character_id = ? {where} ORDER BY created_at DESC, rowid DESC",
                [character_id, *args])]

    # ------------------------------------------------------------ packs

    def create_pack(self, character_id: str, kind: str, slots: list[str], name: str | None = None,
                    label: str = "Pack", owner: str = "local") -> dict:
        """An empty named pack for the active reference; slots in grid order. Without a name: '<label> N'."""
        if (not isinstance(slots, list) or not 1 <= len(slots) <= PACK_SLOTS_MAX
                or not all(isinstance(x, str) and x for x in slots) or len(set(slots)) != len(slots)):
            raise ValueError(f"pack slots must be 1 to {PACK_SLOTS_MAX} distinct non-empty strings")
        chosen = None if name is None or (isinstance(name, str) and not name.strip()) else clean_name(name)
        with self._tx() as db:
            self._char_row(db, character_id, owner)
            ref = db.execute("SELECT id FROM refs WHERE character_id = ? AND unlocked_at IS NULL",
                             [character_id]).fetchone()
            if not ref:
                raise StateError("lock a reference portrait before making a pack")
            taken = {r[0] for r in db.execute("SELECT name FROM packs WHERE character_id = ?", [character_id])}
            if chosen is None:
                n = 1 + db.execute("SELECT count(*) FROM packs WHERE character_id = ? AND kind = ?",
                                   [character_id, kind]).fetchone()[0]
                while f"{label} {n}" in taken:
                    n += 1
                chosen = clean_name(f"{label} {n}")
            elif chosen in taken:
                raise SpecError("name", f"this character already has a pack named {chosen!r}")
            row = {"id": _new_id(), "character_id": character_id, "reference_id": ref[0], "kind": kind,
                   "name": chosen, "slots_json": _dumps(slots), "created_at": _now(), "completed_at": None}
            db["packs"].insert(row)
        return self._pack_dict(row, [])

    def complete_pack(self, pack_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE packs SET completed_at = ? WHERE id = ?", [_now(), pack_id])

    def get_pack(self, pack_id: str, owner: str = "local") -> dict:
        with self._read() as db:
            return self._pack_with_items(db, self._owned_row(db, "packs", "pack", pack_id, owner))

    def delete_pack(self, pack_id: str, owner: str = "local") -> None:
        """The pack and its selfies (their images too, unless something else uses them)."""
        with self._lock:
            with self._tx() as db:
                self._owned_row(db, "packs", "pack", pack_id, owner)
                shas = [r[0] for r in db.execute("SELECT image_sha256 FROM selfies WHERE pack_id = ?", [pack_id])]
                db.execute("DELETE FROM packs WHERE id = ?", [pack_id])  # cascades to its selfies
                dead = self._delete_unreferenced_images(db, sorted(set(shas)))
            for sha in dead:
                self._remove_if_orphan("images", sha)

    def _check_pack_slot(self, db: sqlite_utils.Database, pack_id: str, character_id: str, reference_id: str,
                         slot: str) -> None:
        rows = list(db.query("SELECT * FROM packs WHERE id = ? AND character_id = ?", [pack_id, character_id]))
        if not rows:
            raise NotFound(f"pack {str(pack_id)[:64]} not found for this character")
        if rows[0]["reference_id"] != reference_id:
            raise StateError("this pack belongs to an earlier reference of the character; make a new pack")
        if slot not in json.loads(rows[0]["slots_json"]):
            raise ValueError(f"{slot!r} is not a slot of pack {rows[0]['name']!r}")

    def _pack_with_items(self, db: sqlite_utils.Database, p: dict) -> dict:
        items = [self._selfie_dict(r) for r in db.query("SELECT * FROM selfies WHERE pack_id = ?", [p["id"]])]
        return self._pack_dict(p, items)

    @staticmethod
    def _pack_dict(p: dict, items: list[dict]) -> dict:
        slots = json.loads(p["slots_json"])
        items = sorted(items, key=lambda s: slots.index(s["pack_slot"]) if s["pack_slot"] in slots else len(slots))
        return {"id": p["id"], "character_id": p["character_id"], "reference_id": p["reference_id"],
                "kind": p["kind"], "name": p["name"], "slots": slots, "created_at": p["created_at"],
                "completed_at": p["completed_at"], "complete": len(items) == len(slots), "items": items}

    # ------------------------------------------------------------ import (used by archive.py only)

    def _import_character(self, *, owner: str, name: str, spec: dict, images: dict[str, bytes],
                          candidates: list[dict], references: list[dict], selfies: list[dict],
                          sheet: list[dict] = (), loras: list[dict] = (), lora_files: dict[str, bytes] | None = None
                          ) -> dict:
        """Insert a whole validated character (sheets and character LoRAs too) in ONE transaction with fresh ids
        (all or nothing). `images` maps sha256 -> PNG bytes, `lora_files` sha256 -> safetensors bytes; the lists
        carry the archive's old ids and sha256s, already cross-checked by archive.import_character. Keeps original
        timestamps of history rows."""
        name = clean_name(name)
        spec_json = _dumps(_check_spec(spec))
        now = _now()
        cid = _new_id()
        new_ids: dict[str, str] = {}
        with self._staging() as stage:
            for sha, data in images.items():
                if stage("images", data) != sha:  # never trust a name for a content address
                    raise ValueError(f"image bytes do not match sha256 {sha}")
            for sha, data in (lora_files or {}).items():
                if stage("loras", data) != sha:
                    raise ValueError(f"LoRA bytes do not match sha256 {sha}")
            with self._tx() as db:
                active = any(r.get("unlocked_at") is None for r in references)
                db["characters"].insert({"id": cid, "owner": owner, "name": name, "spec_json": spec_json,
                                         "status": "locked" if active else "draft",
                                         "created_at": now, "updated_at": now})
                for sha, data in images.items():
                    self._insert_image(db, sha, data)

                def image_row(old: dict, **extra: Any) -> dict:
                    new_ids[old["id"]] = _new_id()
                    return {"id": new_ids[old["id"]], "character_id": cid,
                            **self._image_columns(old["image_sha256"], old["recipe"], _dumps(old["recipe"])),
                            **extra}

                for k in candidates:
                    db["candidates"].insert(image_row(k, created_at=k["created_at"]))
                for r in references:
                    db["refs"].insert(image_row(r, candidate_id=new_ids.get(r.get("candidate_id") or ""),
                                                locked_at=r["locked_at"], unlocked_at=r.get("unlocked_at")))
                packs: dict[str, dict] = {}  # archive pack id -> new pack row
                for s in selfies:
                    row = image_row(s, reference_id=new_ids[s["reference_id"]], selfie_json=_dumps(s["selfie"]),
                                    likeness=s.get("likeness"), attempts=s.get("attempts", 1),
                                    created_at=s["created_at"], accepted_at=s.get("accepted_at"),
                                    **_likeness_columns(s["recipe"], s.get("likeness")))
                    pack = self._imported_pack(db, packs, s["recipe"], cid, row["reference_id"], s["created_at"])
                    if pack is not None:
                        row |= {"pack_id": pack["id"], "pack_slot": s["recipe"]["extra"]["pack"]["slot"]}
                        pack["filled"].add(row["pack_slot"])
                    db["selfies"].insert(row)
                for v in sheet:
                    db["sheet_views"].insert(image_row(
                        v, reference_id=new_ids[v["reference_id"]], view=v["view"], position=v["position"],
                        likeness=v.get("likeness"), created_at=v["created_at"],
                        **_likeness_columns(v["recipe"], v.get("likeness"))))
                for lo in loras:
                    db["character_loras"].insert({
                        "id": _new_id(), "character_id": cid, "reference_id": new_ids[lo["reference_id"]],
                        "sha256": lo["sha256"], "path": self._rel("loras", lo["sha256"]),
                        "bytes": len(lora_files[lo["sha256"]]), "facts_json": _dumps(lo["facts"]),
                        "created_at": lo["created_at"]})
                for pack in packs.values():
                    if pack["filled"] == set(json.loads(pack["slots_json"])):
                        db.execute("UPDATE packs SET completed_at = ? WHERE id = ?", [now, pack["id"]])
                return self._summary(db, self._char_row(db, cid, owner))

    @staticmethod
    def _imported_pack(db: sqlite_utils.Database, packs: dict[str, dict], recipe: dict, character_id: str,
                       reference_id: str, created_at: str) -> dict | None:
        """Pack membership travels in the recipe (extra.pack, written by the Studio): rebuild the pack on import.
        Anything malformed (a hostile archive) just leaves the selfie outside any pack."""
        info = recipe.get("extra", {}).get("pack") if isinstance(recipe.get("extra"), dict) else None
        if not isinstance(info, dict):
            return None
        old_id, kind, name, slot, slots = (info.get(k) for k in ("id", "kind", "name", "slot", "slots"))
        if not (isinstance(old_id, str) and isinstance(kind, str) and 0 < len(kind) <= NAME_MAX
                and isinstance(slot, str) and isinstance(slots, list) and 0 < len(slots) <= PACK_SLOTS_MAX
                and all(isinstance(x, str) and 0 < len(x) <= NAME_MAX for x in slots)
                and len(set(slots)) == len(slots) and slot in slots):
            return None
        pack = packs.get(old_id)
        if pack is None:
            try:
                name = clean_name(name)
            except SpecError:
                return None
            taken = {r[0] for r in db.execute("SELECT name FROM packs WHERE character_id = ?", [character_id])}
            if name in taken:
                return None
            pack = {"id": _new_id(), "character_id": character_id, "reference_id": reference_id, "kind": kind,
                    "name": name, "slots_json": _dumps(slots), "created_at": created_at, "completed_at": None}
            db["packs"].insert(pack)
            packs[old_id] = pack = {**pack, "filled": set()}
        if pack["reference_id"] != reference_id or slot in pack["filled"] or json.loads(pack["slots_json"]) != slots:
            return None
        return pack
