"""Pack definitions (data/packs.yaml): which selfie field a pack varies, over which values, with which fixed shot.

Checked against the selfie catalogue at load, so a pack can only ask for expressions (or scenes ...) the app knows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import yaml

from .character import DATA_DIR, SelfieSpec, selfie_catalogue
from .errors import SpecError, shown

DEFAULT_KIND = "expressions"


@dataclass(frozen=True)
class PackKind:
    kind: str
    label: str
    field: str
    values: tuple[str, ...]
    shot: dict[str, Any] = field(default_factory=dict)

    def shots(self, overrides: dict | None = None) -> list[SelfieSpec]:
        """One validated SelfieSpec per value; `overrides` (scene, framing, outfit, likeness ...) may not set the
        field the pack varies."""
        overrides = {} if overrides is None else overrides
        if not isinstance(overrides, dict):
            raise SpecError("selfie", f"expected a mapping of field -> value, got {type(overrides).__name__}")
        if self.field in overrides:
            raise SpecError(self.field, f"is what the {self.label.lower()} pack varies; leave it out")
        base = {**self.shot, **overrides}
        return [SelfieSpec.from_dict({**base, self.field: value}) for value in self.values]


def _load() -> dict[str, PackKind]:
    raw = yaml.safe_load((DATA_DIR / "packs.yaml").read_text(encoding="utf-8"))
    catalogue = selfie_catalogue()
    kinds = {}
    for kind, body in raw.items():
        fld, values = body["field"], [str(v) for v in body["values"]]
        if fld not in catalogue:
            raise ValueError(f"packs.yaml: {kind}: field {fld!r} is not a selfie catalogue field")
        unknown = [v for v in values if v not in catalogue[fld].choices]
        if unknown or len(set(values)) != len(values) or not values:
            raise ValueError(f"packs.yaml: {kind}: values must be distinct {fld} choices; unknown: {unknown}")
        kinds[kind] = PackKind(kind, str(body.get("label", kind)), fld, tuple(values), dict(body.get("shot") or {}))
    return kinds


@lru_cache(maxsize=None)
def pack_kinds() -> dict[str, PackKind]:
    return _load()


def pack_kind(kind: Any = DEFAULT_KIND) -> PackKind:
    kinds = pack_kinds()
    if not isinstance(kind, str) or kind not in kinds:
        raise SpecError("kind", f"{shown(kind)} is not a pack kind; choose one of: {', '.join(kinds)}")
    return kinds[kind]
