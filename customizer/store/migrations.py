"""The database schema as numbered migrations, applied in order at open, each once, in its own write transaction.

Append only: a shipped migration is never edited, a change is a new numbered function.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, ContextManager

import sqlite_utils

from ..errors import StateError

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


def apply(db: sqlite_utils.Database, tx: Callable[[], ContextManager[Any]], db_name: str) -> None:
    """Apply the migrations this database lacks (reads MIGRATIONS at call time). A database newer than this code is
    refused (StateError) before anything is written."""
    db.execute("CREATE TABLE IF NOT EXISTS migrations (number INTEGER PRIMARY KEY, name TEXT NOT NULL, "
               "applied_at TEXT NOT NULL)")
    known = max((n for n, _ in MIGRATIONS), default=0)
    version = schema_version(db)
    if version > known:
        raise StateError(f"database {db_name} has schema version {version}, newer than this app understands "
                         f"({known}); upgrade the app")
    for number, fn in sorted(MIGRATIONS, key=lambda m: m[0]):
        with tx() as wdb:
            # Checked inside the write transaction: another process may have just applied it.
            if wdb.execute("SELECT 1 FROM migrations WHERE number = ?", [number]).fetchone():
                continue
            fn(wdb)
            wdb["migrations"].insert({"number": number, "name": fn.__name__,
                                      "applied_at": datetime.now(timezone.utc).isoformat(timespec="microseconds")})


def schema_version(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT coalesce(max(number), 0) FROM migrations").fetchone()[0]
