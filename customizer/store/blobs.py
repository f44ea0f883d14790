"""Content-addressed files and their garbage collection (a mixin of Store; customizer/store/repository.py).

images/<sha[:2]>/<sha>.png (sha = sha256 of the PNG bytes; every PNG embeds its recipe in the text chunk
"customizer_recipe", so an image file alone is enough to regenerate it), embeddings/../<sha>.bin and
loras/../<sha>.safetensors. A file is written (temp + fsync + os.replace) BEFORE the row that points at it is
committed, so a crash can leave an orphan file (removed by gc() at the next open) but never a row without its file.
The Store's lock guards the in-memory "pending files" set that stops delete()/gc() from unlinking a file another
thread has written but not yet committed a row for.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import sqlite_utils
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ..errors import NotFound
from .errors import storage_errors

RECIPE_CHUNK = "customizer_recipe"
_SHA_RE = re.compile(r"[0-9a-fA-F]{64}")
# gc() only deletes names this module creates; anything else in the folders is left for a human.
_FILE_RE = re.compile(r"(?P<sha>[0-9a-f]{64})\.(png|bin|safetensors)")
_TMP_RE = re.compile(r"\.(?P<sha>[0-9a-f]{64})\.[0-9a-f]{32}\.tmp")
EXT = {"images": "png", "embeddings": "bin", "loras": "safetensors"}
_TABLE = {"images": "images", "embeddings": "reference_embeddings", "loras": "character_loras"}  # rows of a file kind
_SAVING = {"images": "save the image", "embeddings": "save the reference embedding",
           "loras": "save the character LoRA"}
# the tables whose rows point at an image; an image row none of them references is garbage
IMAGE_USERS = ("candidates", "refs", "selfies", "sheet_views")
log = logging.getLogger(__name__)


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


def png_size(data: bytes) -> tuple[int, int]:
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


def write_atomic(path: Path, data: bytes) -> None:
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


class Blobs:
    """Store mixin: needs self.db, self.data_dir, self._lock (an RLock), self._pending (a Counter) and self._tx."""

    def image_path(self, sha256: str) -> Path:
        return self._abs("images", sha256)

    def lora_path(self, sha256: str) -> Path:
        return self._abs("loras", sha256)

    def _abs(self, kind: str, sha256: str) -> Path:
        # The only place paths are built from a hash: validate before it can touch the filesystem.
        if not isinstance(sha256, str) or not _SHA_RE.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {str(sha256)[:80]!r}")
        sha = sha256.lower()
        return self.data_dir / kind / sha[:2] / f"{sha}.{EXT[kind]}"

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
            with storage_errors(_SAVING[kind]):
                write_atomic(self._abs(kind, sha), data)
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

    @staticmethod
    def _unreferenced_images(db: sqlite_utils.Database, shas: list[str] | None = None) -> list[str]:
        sql = "SELECT sha256 FROM images i WHERE " + " AND ".join(
            f"NOT EXISTS (SELECT 1 FROM {t} WHERE image_sha256 = i.sha256)" for t in IMAGE_USERS)
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
        for kind in EXT:
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
                if f.name.endswith(".tmp") or (f.suffix == f".{EXT[kind]}" and not self._referenced(kind, m["sha"])):
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
