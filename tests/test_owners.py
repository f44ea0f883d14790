"""Owner identities and the browser-state secret that must survive restarts and crashes."""
from __future__ import annotations

import pytest

from customizer.errors import SpecError
from customizer.owners import SECRET_FILE, browser_secret, new_token, owner_from
from customizer.store import Store


def test_owner_ids_are_stable_hashes_that_never_contain_the_token():
    token = new_token()
    assert owner_from(token) == owner_from(token) != owner_from(new_token())
    assert token not in owner_from(token)
    assert owner_from(token, username="ann").startswith("user:")
    with pytest.raises(SpecError, match="no owner"):
        owner_from(None)  # API clients never own by their client session
    for bad in ("short", "x" * 201, "has space in it ok", 12345):
        with pytest.raises(SpecError):
            owner_from(bad)


def test_browser_secret_is_created_once_private_and_survives_an_empty_leftover(tmp_path):
    first = browser_secret(tmp_path)
    assert len(first) >= 32 and browser_secret(tmp_path) == first
    assert (tmp_path / SECRET_FILE).stat().st_mode & 0o777 == 0o600
    (tmp_path / SECRET_FILE).write_text("")  # what a crash mid-write used to leave behind
    fresh = browser_secret(tmp_path)
    assert fresh and browser_secret(tmp_path) == fresh
    assert not list(tmp_path.glob("*.tmp"))


def test_prune_empty_drafts_removes_only_crash_leftovers(tmp_path):
    from PIL import Image

    store = Store(tmp_path / "c.db", tmp_path / "data")
    empty = store.create_character("crashed mid-design", {"age": 30})
    kept = store.create_character("has a portrait", {"age": 30})
    store.add_candidate(kept["id"], Image.new("RGB", (8, 8), "red"), {"seed": 1})
    assert store.prune_empty_drafts() == 1
    assert [c["id"] for c in store.list_characters()] == [kept["id"]]
    assert empty["id"] not in {c["id"] for c in store.list_characters()}
    store.close()
