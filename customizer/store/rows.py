"""Small helpers shared by the store's modules: ids, timestamps, JSON as stored, names and specs as stored."""
from __future__ import annotations

import json
import unicodedata
import uuid
from datetime import datetime, timezone
from typing import Any

from .. import safety
from ..errors import SpecError

NAME_MAX = 80
PACK_SLOTS_MAX = 32


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def new_id() -> str:
    return uuid.uuid4().hex


def dumps(value: Any) -> str:
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


def check_spec(spec: Any, field: str = "spec") -> dict:
    if not isinstance(spec, dict):
        raise SpecError(field, "must be a mapping")
    return spec


def image_columns(sha: str, recipe: dict, recipe_json: str) -> dict:
    return {"image_sha256": sha, "seed": recipe.get("seed"), "model_id": recipe.get("model_id"),
            "kind": recipe.get("kind"), "recipe_json": recipe_json}
