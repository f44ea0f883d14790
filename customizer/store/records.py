"""Typed records of the store's rows (frozen dataclasses), one mapping from a row each.

The Store's public methods hand them out as plain dicts (`to_dict()`, the keys the service, the UI, the API and
archives read, unchanged); `Store.summaries()` gives the typed records themselves.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

PathOf = Callable[[str], Path]  # sha256 -> the file's absolute path


class Record:
    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


def _image(r: dict, path_of: PathOf) -> dict[str, Any]:
    return {"image_sha256": r["image_sha256"], "path": str(path_of(r["image_sha256"])), "seed": r["seed"],
            "model_id": r["model_id"], "kind": r["kind"], "recipe": json.loads(r["recipe_json"])}


@dataclass(frozen=True)
class CharacterSummary(Record):
    id: str
    name: str
    owner: str
    spec: dict
    status: str  # "draft" | "locked"
    created_at: str
    updated_at: str
    n_selfies: int
    reference_sha256: str | None  # the active reference's image
    thumbnail: str | None  # the active reference's image file, else the newest candidate's

    @classmethod
    def from_row(cls, c: dict, path_of: PathOf) -> "CharacterSummary":
        """c: a characters row plus ref_sha, latest_sha and n_selfies (repository._SUMMARY)."""
        thumb = c["ref_sha"] or c["latest_sha"]
        return cls(id=c["id"], name=c["name"], owner=c["owner"], spec=json.loads(c["spec_json"]),
                   status=c["status"], created_at=c["created_at"], updated_at=c["updated_at"],
                   n_selfies=c["n_selfies"] or 0, reference_sha256=c["ref_sha"],
                   thumbnail=str(path_of(thumb)) if thumb else None)


@dataclass(frozen=True)
class Candidate(Record):
    id: str
    character_id: str
    image_sha256: str
    path: str
    seed: int | None
    model_id: str | None
    kind: str | None
    recipe: dict
    created_at: str

    @classmethod
    def from_row(cls, r: dict, path_of: PathOf) -> "Candidate":
        return cls(id=r["id"], character_id=r["character_id"], **_image(r, path_of), created_at=r["created_at"])


@dataclass(frozen=True)
class Reference(Record):
    id: str
    character_id: str
    candidate_id: str | None
    image_sha256: str
    path: str
    seed: int | None
    model_id: str | None
    kind: str | None
    recipe: dict
    locked_at: str
    unlocked_at: str | None

    @classmethod
    def from_row(cls, r: dict, path_of: PathOf) -> "Reference":
        return cls(id=r["id"], character_id=r["character_id"], candidate_id=r["candidate_id"],
                   **_image(r, path_of), locked_at=r["locked_at"], unlocked_at=r["unlocked_at"])


@dataclass(frozen=True)
class SheetView(Record):
    id: str
    character_id: str
    reference_id: str
    view: str
    position: int
    image_sha256: str
    path: str
    seed: int | None
    model_id: str | None
    kind: str | None
    recipe: dict
    likeness: float | None
    likeness_state: str | None
    likeness_instrument: str | None
    created_at: str

    @classmethod
    def from_row(cls, r: dict, path_of: PathOf) -> "SheetView":
        return cls(id=r["id"], character_id=r["character_id"], reference_id=r["reference_id"], view=r["view"],
                   position=r["position"], **_image(r, path_of), likeness=r["likeness"],
                   likeness_state=r["likeness_state"], likeness_instrument=r["likeness_instrument"],
                   created_at=r["created_at"])


@dataclass(frozen=True)
class Selfie(Record):
    id: str
    character_id: str
    reference_id: str
    image_sha256: str
    path: str
    seed: int | None
    model_id: str | None
    kind: str | None
    recipe: dict
    selfie: dict
    likeness: float | None
    likeness_state: str | None
    likeness_instrument: str | None
    attempts: int
    pack_id: str | None
    pack_slot: str | None
    accepted: bool
    accepted_at: str | None
    created_at: str

    @classmethod
    def from_row(cls, r: dict, path_of: PathOf) -> "Selfie":
        # .get: rows of a database before migrations 2, 3 and 5 lack those columns
        return cls(id=r["id"], character_id=r["character_id"], reference_id=r["reference_id"], **_image(r, path_of),
                   selfie=json.loads(r["selfie_json"]), likeness=r["likeness"],
                   likeness_state=r.get("likeness_state"), likeness_instrument=r.get("likeness_instrument"),
                   attempts=r["attempts"], pack_id=r.get("pack_id"), pack_slot=r.get("pack_slot"),
                   accepted=r.get("accepted_at") is not None, accepted_at=r.get("accepted_at"),
                   created_at=r["created_at"])


@dataclass(frozen=True)
class CharacterLora(Record):
    id: str
    character_id: str
    reference_id: str
    sha256: str
    path: str
    bytes: int
    facts: dict
    created_at: str

    @classmethod
    def from_row(cls, r: dict, path_of: PathOf) -> "CharacterLora":
        return cls(id=r["id"], character_id=r["character_id"], reference_id=r["reference_id"], sha256=r["sha256"],
                   path=str(path_of(r["sha256"])), bytes=r["bytes"], facts=json.loads(r["facts_json"]),
                   created_at=r["created_at"])


@dataclass(frozen=True)
class Pack(Record):
    id: str
    character_id: str
    reference_id: str
    kind: str
    name: str
    slots: list[str]
    created_at: str
    completed_at: str | None
    complete: bool
    items: tuple[Selfie, ...]  # in slot order

    @classmethod
    def from_row(cls, p: dict, items: list[Selfie]) -> "Pack":
        slots = json.loads(p["slots_json"])
        ordered = sorted(items, key=lambda s: slots.index(s.pack_slot) if s.pack_slot in slots else len(slots))
        return cls(id=p["id"], character_id=p["character_id"], reference_id=p["reference_id"], kind=p["kind"],
                   name=p["name"], slots=slots, created_at=p["created_at"], completed_at=p["completed_at"],
                   complete=len(items) == len(slots), items=tuple(ordered))

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"items": [s.to_dict() for s in self.items]}
