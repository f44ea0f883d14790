"""Persistence: characters, candidates, locked references and selfies in SQLite, images as PNG files.

No torch/gradio here. The package, one capability a module:
- migrations.py: the schema, as numbered append-only migrations;
- blobs.py: content-addressed files (images, embeddings, LoRAs), written before their rows, and their GC;
- errors.py: storage failures (full, read-only, failing disk) as StorageError;
- records.py: typed records of the rows (frozen dataclasses); the public methods return their to_dict();
- repository.py (here): the Store - connection, transactions, characters, candidates, lock, embeddings;
- made.py: what is made of a locked reference - sheet views, selfies, character LoRAs, packs;
- importing.py: a whole validated character from an archive, in one transaction.
Every query is scoped by owner; another owner's character is indistinguishable from a missing one (NotFound).

Threading: ONE connection (check_same_thread=False) guarded by an RLock, not one connection per thread.
SQLite runs one writer at a time anyway; a single connection means our own handler threads can never hit
SQLITE_BUSY on a lock upgrade (which busy_timeout does not retry), close() can really close everything (per-thread
connections would be stranded in Gradio's pool threads), and the same lock guards the in-memory "pending files"
set that stops delete()/gc() from unlinking a file another thread has written but not yet committed a row for.
Slow work (PNG encoding, hashing, fsync) happens outside the lock. busy_timeout + BEGIN IMMEDIATE cover other
processes (a CLI, a second app instance) sharing the same database file.
"""
from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import sqlite_utils
from PIL import Image

from ..errors import NotFound, StateError
from . import migrations
from .blobs import EXT, Blobs, encode_png, png_size
from .errors import storage_errors
from .importing import Importing
from .made import Made
from .records import Candidate, CharacterSummary, Reference
from .rows import check_spec, clean_name, dumps, image_columns, new_id, now

BUSY_TIMEOUT_MS = 10_000

# Character summaries with their active reference, newest candidate and selfie count: one query for any number of
# characters (a list of N characters was 1 + 3N queries). {where} narrows the owner's characters (e.g. to one id).
_SUMMARY = """
WITH chosen AS (SELECT rowid AS row_order, * FROM characters WHERE owner = ? {where}),
active AS (SELECT character_id, image_sha256 FROM refs
           WHERE unlocked_at IS NULL AND character_id IN (SELECT id FROM chosen)),
latest AS (SELECT character_id, image_sha256 FROM (
             SELECT character_id, image_sha256,
                    row_number() OVER (PARTITION BY character_id ORDER BY created_at DESC, rowid DESC) AS n
             FROM candidates WHERE character_id IN (SELECT id FROM chosen)) WHERE n = 1),
counts AS (SELECT character_id, count(*) AS n FROM selfies
           WHERE character_id IN (SELECT id FROM chosen) GROUP BY character_id)
SELECT c.*, a.image_sha256 AS ref_sha, l.image_sha256 AS latest_sha, k.n AS n_selfies
FROM chosen c LEFT JOIN active a ON a.character_id = c.id LEFT JOIN latest l ON l.character_id = c.id
LEFT JOIN counts k ON k.character_id = c.id
ORDER BY c.created_at DESC, c.row_order DESC
"""


class Store(Made, Importing, Blobs):
    def __init__(self, db_path: str | Path, data_dir: str | Path):
        self.db_path = Path(db_path).resolve()
        self.data_dir = Path(data_dir).resolve()
        self._lock = threading.RLock()
        self._pending: Counter[tuple[str, str]] = Counter()  # (kind, sha) written but row not committed yet
        with storage_errors("open the database and the image folder"):
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            for sub in EXT:
                (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.db_path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
            try:
                self.db.execute("PRAGMA foreign_keys = ON")  # per connection, off by default in SQLite
                self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                self.db.enable_wal()  # readers never block the writer; persistent in the file
                migrations.apply(self.db, self._tx, self.db_path.name)
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
        with self._lock, storage_errors("save the changes"):
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
        with self._lock, storage_errors("read the database"):
            if self.db.conn.in_transaction:
                yield self.db
                return
            self.db.conn.execute("BEGIN")
            try:
                yield self.db
            finally:
                self.db.rollback()  # read-only: ending it is all that is needed

    @property
    def schema_version(self) -> int:
        with self._lock:
            return migrations.schema_version(self.db)

    # ------------------------------------------------------------ rows

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

    def _summaries(self, db: sqlite_utils.Database, owner: str,
                   character_id: str | None = None) -> list[CharacterSummary]:
        """The owner's characters (or the one of them), newest first, in one query (_SUMMARY)."""
        where, args = ("AND id = ?", [owner, character_id]) if character_id is not None else ("", [owner])
        return [CharacterSummary.from_row(r, self.image_path) for r in db.query(_SUMMARY.format(where=where), args)]

    def _summary(self, db: sqlite_utils.Database, character_id: str, owner: str) -> dict:
        found = self._summaries(db, owner, character_id)
        if not found:
            raise NotFound(f"character {str(character_id)[:64]} not found")
        return found[0].to_dict()

    def _insert_image(self, db: sqlite_utils.Database, sha: str, data: bytes, created_at: str | None = None) -> None:
        width, height = png_size(data)
        db["images"].insert(
            {"sha256": sha, "path": self._rel("images", sha), "width": width, "height": height,
             "bytes": len(data), "created_at": created_at or now()},
            ignore=True,  # the same PNG already stored (shared between characters): keep the first row
        )

    # ------------------------------------------------------------ characters

    def create_character(self, name: str, spec: dict, owner: str = "local") -> dict:
        row = {"id": new_id(), "owner": owner, "name": clean_name(name), "spec_json": dumps(check_spec(spec)),
               "status": "draft", "created_at": now()}
        row["updated_at"] = row["created_at"]
        with self._tx() as db:
            db["characters"].insert(row)
            return self._summary(db, row["id"], owner)

    def _touch(self, db: sqlite_utils.Database, character_id: str, **changes: Any) -> None:
        changes["updated_at"] = now()
        sets = ", ".join(f"{k} = ?" for k in changes)
        db.execute(f"UPDATE characters SET {sets} WHERE id = ?", [*changes.values(), character_id])

    def update_draft_spec(self, character_id: str, spec: dict, owner: str = "local") -> dict:
        spec_json = dumps(check_spec(spec))
        with self._tx() as db:
            if self._char_row(db, character_id, owner)["status"] != "draft":
                raise StateError("the character is locked; unlock it before changing its look")
            self._touch(db, character_id, spec_json=spec_json)
            return self._summary(db, character_id, owner)

    def rename_character(self, character_id: str, name: str, owner: str = "local") -> dict:
        name = clean_name(name)
        with self._tx() as db:
            self._char_row(db, character_id, owner)
            self._touch(db, character_id, name=name)
            return self._summary(db, character_id, owner)

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

    def summaries(self, owner: str = "local") -> list[CharacterSummary]:
        """The owner's characters as typed records, newest first (a constant number of queries)."""
        with self._read() as db:
            return self._summaries(db, owner)

    def list_characters(self, owner: str = "local") -> list[dict]:
        return [s.to_dict() for s in self.summaries(owner)]

    def get_character(self, character_id: str, owner: str = "local") -> dict:
        with self._read() as db:
            out = self._summary(db, character_id, owner)
            refs = [Reference.from_row(r, self.image_path).to_dict() for r in db.query(
                "SELECT * FROM refs WHERE character_id = ? ORDER BY locked_at, rowid", [character_id])]
            cands = [Candidate.from_row(r, self.image_path).to_dict() for r in db.query(
                "SELECT * FROM candidates WHERE character_id = ? ORDER BY created_at, rowid", [character_id])]
            selfies = self._selfie_records(db, "character_id = ? ORDER BY created_at DESC, rowid DESC", [character_id])
            packs = [self._pack(p, [s for s in selfies if s.pack_id == p["id"]]) for p in db.query(
                "SELECT * FROM packs WHERE character_id = ? ORDER BY created_at DESC, rowid DESC", [character_id])]
            reference = next((r for r in refs if r["unlocked_at"] is None), None)
            sheet = self.sheet_views(character_id, owner, reference["id"]) if reference else []
            loras = self.character_loras(character_id, owner)
        out.update(
            reference=reference,
            references=refs,
            candidates=cands,
            selfies=[s.to_dict() for s in selfies],
            packs=packs,
            sheet=sheet,  # the active reference's; sheet_views() has those of earlier references too
            loras=loras,  # character LoRAs of every reference, newest first
        )
        return out

    # ------------------------------------------------------------ candidates, lock

    def add_candidate(self, character_id: str, image: Image.Image, recipe: dict, owner: str = "local") -> dict:
        recipe_json = dumps(recipe)  # fails before any file is written
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
                row = {"id": new_id(), "character_id": character_id,
                       **image_columns(sha, recipe, recipe_json), "created_at": now()}
                db["candidates"].insert(row)
        return Candidate.from_row(row, self.image_path).to_dict()

    def get_candidate(self, candidate_id: str, owner: str = "local") -> dict:
        with self._read() as db:
            row = self._owned_row(db, "candidates", "candidate", candidate_id, owner)
        return Candidate.from_row(row, self.image_path).to_dict()

    def lock(self, character_id: str, candidate_id: str, owner: str = "local") -> dict:
        with self._tx() as db:
            if self._char_row(db, character_id, owner)["status"] == "locked":
                raise StateError("the character is already locked; unlock it first to pick another portrait")
            cand = list(db.query("SELECT * FROM candidates WHERE id = ? AND character_id = ?",
                                 [candidate_id, character_id]))
            if not cand:
                raise NotFound(f"candidate {str(candidate_id)[:64]} not found for this character")
            k = cand[0]
            row = {"id": new_id(), "character_id": character_id, "candidate_id": candidate_id,
                   **{c: k[c] for c in ("image_sha256", "seed", "model_id", "kind", "recipe_json")},
                   "locked_at": now(), "unlocked_at": None}
            db["refs"].insert(row)
            self._touch(db, character_id, status="locked")
        return Reference.from_row(row, self.image_path).to_dict()

    def unlock(self, character_id: str, owner: str = "local") -> dict:
        with self._tx() as db:
            if self._char_row(db, character_id, owner)["status"] != "locked":
                raise StateError("the character is not locked")
            at = now()
            db.execute("UPDATE refs SET unlocked_at = ? WHERE character_id = ? AND unlocked_at IS NULL",
                       [at, character_id])
            self._touch(db, character_id, status="draft")
            ref = list(db.query("SELECT * FROM refs WHERE character_id = ? AND unlocked_at = ?", [character_id, at]))
        return Reference.from_row(ref[0], self.image_path).to_dict()

    def active_reference(self, character_id: str, owner: str = "local") -> dict | None:
        with self._read() as db:
            self._char_row(db, character_id, owner)
            rows = list(db.query("SELECT * FROM refs WHERE character_id = ? AND unlocked_at IS NULL", [character_id]))
        return Reference.from_row(rows[0], self.image_path).to_dict() if rows else None

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
                         "sha256": sha, "created_at": now()}, replace=True)
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
