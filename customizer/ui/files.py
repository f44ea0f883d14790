"""Files the page hands out: export archives, and the copies gradio serves of images (its cache), which delete
takes down with the character (image URLs are capability URLs: README, Privacy)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import tempfile
from pathlib import Path

if TYPE_CHECKING:  # the UI is handed a Studio; importing service would reach the engine
    from ..service import Studio



def write_export(studio: Studio, char_id: str, owner: str) -> str:
    data = studio.export(char_id, owner=owner)
    name = studio.get_character(char_id, owner=owner)["name"]
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:40] or "character"
    # the id in the name lets delete find the copy gradio serves (served_copies)
    out = Path(tempfile.mkdtemp(prefix="export-")) / f"{safe}-{char_id}.zip"
    out.write_bytes(data)
    return str(out)


def served_copies(shas: list[str], character_id: str | None = None) -> list[Path]:
    """The copies gradio serves of these images (its cache: <cache>/<hash>/<sha>.png) and of this character's
    export archives (<cache>/<hash>/<name>-<character id>.zip)."""
    from gradio.utils import get_upload_folder

    root = Path(get_upload_folder())
    if not root.is_dir():
        return []
    found = [p for sha in shas for p in root.glob(f"*/{sha}.png")]
    if character_id:
        found += list(root.glob(f"*/*-{character_id}.zip"))
    return found


def delete_with_served_copies(studio: Studio, char_id: str, owner: str) -> int:
    """Delete a character, then the served copies of every image of it that is gone from the store (an image
    another character still holds stays, with its copies) and of its exports. Returns the copies removed."""
    character = studio.get_character(char_id, owner=owner)
    images = {i["image_sha256"]: i["path"] for group in ("candidates", "selfies", "sheet", "references")
              for i in character.get(group) or []}
    if character.get("reference"):
        images[character["reference"]["image_sha256"]] = character["reference"]["path"]
    studio.delete(char_id, owner=owner)
    gone = [sha for sha, path in images.items() if not Path(path).exists()]
    removed = 0
    for path in served_copies(gone, char_id):
        try:
            path.unlink()
            removed += 1
            path.parent.rmdir()  # gradio's per-file folder, when it is empty now
        except OSError:
            pass
    return removed
