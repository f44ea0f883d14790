"""A whole validated character from an archive (customizer/archive.py), inserted in ONE transaction with fresh ids:
all or nothing (a Store mixin; customizer/store/repository.py)."""
from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from ..errors import SpecError
from ..likeness.result import STATES as LIKENESS_STATES
from .rows import NAME_MAX, PACK_SLOTS_MAX, check_spec, clean_name, dumps, image_columns, new_id, now


def likeness_columns(recipe: dict, score: Any) -> dict:
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


class Importing:
    """Store mixin: needs the Store's _tx, _staging, _insert_image, _rel and _summary."""

    def _import_character(self, *, owner: str, name: str, spec: dict, images: dict[str, bytes],
                          candidates: list[dict], references: list[dict], selfies: list[dict],
                          sheet: list[dict] = (), loras: list[dict] = (), lora_files: dict[str, bytes] | None = None
                          ) -> dict:
        """Insert a whole validated character (sheets and character LoRAs too) in ONE transaction with fresh ids
        (all or nothing). `images` maps sha256 -> PNG bytes, `lora_files` sha256 -> safetensors bytes; the lists
        carry the archive's old ids and sha256s, already cross-checked by archive.import_character. Keeps original
        timestamps of history rows."""
        name = clean_name(name)
        spec_json = dumps(check_spec(spec))
        at = now()
        cid = new_id()
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
                                         "status": "locked" if active else "draft", "created_at": at,
                                         "updated_at": at})
                for sha, data in images.items():
                    self._insert_image(db, sha, data)
                new_ids = self._import_history(db, cid, candidates, references, selfies, sheet, at)
                for lo in loras:
                    db["character_loras"].insert({
                        "id": new_id(), "character_id": cid, "reference_id": new_ids[lo["reference_id"]],
                        "sha256": lo["sha256"], "path": self._rel("loras", lo["sha256"]),
                        "bytes": len(lora_files[lo["sha256"]]), "facts_json": dumps(lo["facts"]),
                        "created_at": lo["created_at"]})
                return self._summary(db, cid, owner)

    def _import_history(self, db: sqlite_utils.Database, cid: str, candidates: list[dict], references: list[dict],
                        selfies: list[dict], sheet: list[dict], at: str) -> dict[str, str]:
        """The image rows of an imported character (candidates, references, selfies and their packs, sheet
        views); returns archive id -> new id."""
        new_ids: dict[str, str] = {}

        def image_row(old: dict, **extra: Any) -> dict:
            new_ids[old["id"]] = new_id()
            return {"id": new_ids[old["id"]], "character_id": cid,
                    **image_columns(old["image_sha256"], old["recipe"], dumps(old["recipe"])), **extra}

        for k in candidates:
            db["candidates"].insert(image_row(k, created_at=k["created_at"]))
        for r in references:
            db["refs"].insert(image_row(r, candidate_id=new_ids.get(r.get("candidate_id") or ""),
                                        locked_at=r["locked_at"], unlocked_at=r.get("unlocked_at")))
        packs: dict[str, dict] = {}  # archive pack id -> new pack row
        for s in selfies:
            row = image_row(s, reference_id=new_ids[s["reference_id"]], selfie_json=dumps(s["selfie"]),
                            likeness=s.get("likeness"), attempts=s.get("attempts", 1),
                            created_at=s["created_at"], accepted_at=s.get("accepted_at"),
                            **likeness_columns(s["recipe"], s.get("likeness")))
            pack = self._imported_pack(db, packs, s["recipe"], cid, row["reference_id"], s["created_at"])
            if pack is not None:
                row |= {"pack_id": pack["id"], "pack_slot": s["recipe"]["extra"]["pack"]["slot"]}
                pack["filled"].add(row["pack_slot"])
            db["selfies"].insert(row)
        for v in sheet:
            db["sheet_views"].insert(image_row(
                v, reference_id=new_ids[v["reference_id"]], view=v["view"], position=v["position"],
                likeness=v.get("likeness"), created_at=v["created_at"],
                **likeness_columns(v["recipe"], v.get("likeness"))))
        for pack in packs.values():
            if pack["filled"] == set(json.loads(pack["slots_json"])):
                db.execute("UPDATE packs SET completed_at = ? WHERE id = ?", [at, pack["id"]])
        return new_ids

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
            pack = {"id": new_id(), "character_id": character_id, "reference_id": reference_id, "kind": kind,
                    "name": name, "slots_json": dumps(slots), "created_at": created_at, "completed_at": None}
            db["packs"].insert(pack)
            packs[old_id] = pack = {**pack, "filled": set()}
        if pack["reference_id"] != reference_id or slot in pack["filled"] or json.loads(pack["slots_json"]) != slots:
            return None
        return pack
