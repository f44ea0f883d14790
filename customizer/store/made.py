"""What is made of a locked reference: reference sheet views, selfies, character LoRAs and packs (a Store mixin;
customizer/store/repository.py). Files first, then the rows that point at them (customizer/store/blobs.py)."""
from __future__ import annotations

from typing import Any

import sqlite_utils
from PIL import Image

from ..errors import NotFound, SpecError, StateError, shown
from ..likeness.result import STATES as LIKENESS_STATES
from .blobs import encode_png
from .records import CharacterLora, Pack, Selfie, SheetView
from .rows import NAME_MAX, PACK_SLOTS_MAX, check_spec, clean_name, dumps, image_columns, new_id, now


class Made:
    """Store mixin: needs the Store's _tx, _read, _lock, _staging, _char_row, _owned_row, _insert_image, paths."""

    # ------------------------------------------------------------ reference sheet

    def add_sheet_view(self, character_id: str, reference_id: str, view: str, position: int, image: Image.Image,
                       recipe: dict, likeness: float | None = None, owner: str = "local", *,
                       likeness_state: str | None = None, likeness_instrument: str | None = None) -> dict:
        """One view of the reference sheet of the character's active reference (file first, then the row)."""
        recipe_json = dumps(recipe)
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
                row = {"id": new_id(), "character_id": character_id, "reference_id": reference_id, "view": view,
                       "position": position, **image_columns(sha, recipe, recipe_json),
                       "likeness": None if likeness is None else float(likeness), "likeness_state": likeness_state,
                       "likeness_instrument": likeness_instrument, "created_at": now()}
                db["sheet_views"].insert(row)
        return SheetView.from_row(row, self.image_path).to_dict()

    def sheet_views(self, character_id: str, owner: str = "local", reference_id: str | None = None) -> list[dict]:
        """The sheet of one reference (or of every reference of the character), in sheet order."""
        where, args = ("AND reference_id = ?", [reference_id]) if reference_id else ("", [])
        with self._read() as db:
            self._char_row(db, character_id, owner)
            return [SheetView.from_row(r, self.image_path).to_dict() for r in db.query(
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
        recipe_json, selfie_json = dumps(recipe), dumps(check_spec(selfie, "selfie"))
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
                row = {"id": new_id(), "character_id": character_id, "reference_id": ref[0],
                       **image_columns(sha, recipe, recipe_json), "selfie_json": selfie_json,
                       "likeness": likeness, "attempts": attempts, "created_at": now(),
                       "likeness_state": likeness_state, "likeness_instrument": likeness_instrument,
                       "pack_id": pack_id, "pack_slot": pack_slot}
                db["selfies"].insert(row)
        return Selfie.from_row(row, self.image_path).to_dict()

    def _selfie_records(self, db: sqlite_utils.Database, where: str, args: list[Any]) -> list[Selfie]:
        return [Selfie.from_row(r, self.image_path) for r in db.query(f"SELECT * FROM selfies WHERE {where}", args)]

    def set_selfie_accepted(self, selfie_id: str, accepted: bool, owner: str = "local") -> dict:
        """Mark a selfie accepted (the character LoRA trains on it) or not; returns the selfie."""
        if not isinstance(accepted, bool):
            raise SpecError("accepted", f"must be true or false, got {shown(accepted)}")
        with self._tx() as db:
            row = self._owned_row(db, "selfies", "selfie", selfie_id, owner)
            if accepted != (row.get("accepted_at") is not None):  # keep the first acceptance time
                row["accepted_at"] = now() if accepted else None
                db.execute("UPDATE selfies SET accepted_at = ? WHERE id = ?", [row["accepted_at"], selfie_id])
        return Selfie.from_row(row, self.image_path).to_dict()

    def get_selfie(self, selfie_id: str, owner: str = "local") -> dict:
        with self._read() as db:
            row = self._owned_row(db, "selfies", "selfie", selfie_id, owner)
        return Selfie.from_row(row, self.image_path).to_dict()

    # ------------------------------------------------------------ character LoRAs

    def add_character_lora(self, character_id: str, reference_id: str, data: bytes, facts: dict,
                           owner: str = "local") -> dict:
        """A trained character LoRA (safetensors bytes) for one reference of the character: file first, then the
        row. The reference may have been unlocked meanwhile (the LoRA stays with it), not deleted."""
        facts_json = dumps(check_spec(facts, "facts"))
        data = bytes(data)
        with self._staging() as stage:
            sha = stage("loras", data)
            with self._tx() as db:
                self._char_row(db, character_id, owner)
                if not db.execute("SELECT 1 FROM refs WHERE id = ? AND character_id = ?",
                                  [reference_id, character_id]).fetchone():
                    raise NotFound(f"reference {str(reference_id)[:64]} not found for this character")
                row = {"id": new_id(), "character_id": character_id, "reference_id": reference_id, "sha256": sha,
                       "path": self._rel("loras", sha), "bytes": len(data), "facts_json": facts_json,
                       "created_at": now()}
                db["character_loras"].insert(row)
        return CharacterLora.from_row(row, self.lora_path).to_dict()

    def character_loras(self, character_id: str, owner: str = "local", reference_id: str | None = None) -> list[dict]:
        """The character's LoRAs (of one reference, or all), newest first."""
        where, args = ("AND reference_id = ?", [reference_id]) if reference_id else ("", [])
        with self._read() as db:
            self._char_row(db, character_id, owner)
            return [CharacterLora.from_row(r, self.lora_path).to_dict() for r in db.query(
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
            row = {"id": new_id(), "character_id": character_id, "reference_id": ref[0], "kind": kind,
                   "name": chosen, "slots_json": dumps(slots), "created_at": now(), "completed_at": None}
            db["packs"].insert(row)
        return self._pack(row, [])

    def complete_pack(self, pack_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE packs SET completed_at = ? WHERE id = ?", [now(), pack_id])

    def get_pack(self, pack_id: str, owner: str = "local") -> dict:
        with self._read() as db:
            p = self._owned_row(db, "packs", "pack", pack_id, owner)
            return self._pack(p, self._selfie_records(db, "pack_id = ?", [p["id"]]))

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
        if slot not in Pack.from_row(rows[0], []).slots:
            raise ValueError(f"{slot!r} is not a slot of pack {rows[0]['name']!r}")

    @staticmethod
    def _pack(p: dict, items: list[Selfie]) -> dict:
        return Pack.from_row(p, items).to_dict()
