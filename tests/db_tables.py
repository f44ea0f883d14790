"""Row counts of every table of a characters.db, as the schema has them now (read from sqlite_master, so a table a
new migration adds is counted without anyone listing it)."""
from __future__ import annotations

import sqlite3

# tables of the newest migrations: a count that lacks one of them is reading the wrong database
NEWEST = {"characters", "selfies", "packs", "sheet_views", "character_loras", "migrations"}


def table_names(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    names = table_names(conn)
    missing = NEWEST - set(names)
    assert not missing, f"not a current characters.db: no {sorted(missing)}"
    return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in names}
