"""The tier table (tiers.yaml) covers every test file once, with known tiers only."""
from __future__ import annotations

from pathlib import Path

import pytest

from tiers import TIERS, tier_of_files

HERE = Path(__file__).parent


def test_every_test_file_has_exactly_one_known_tier():
    tier_of = tier_of_files()
    assert set(tier_of) == {p.name for p in HERE.glob("test_*.py")}
    assert set(tier_of.values()) == set(TIERS)


def test_a_file_in_two_tiers_or_an_unknown_tier_is_refused(tmp_path):
    two = tmp_path / "two.yaml"
    two.write_text("unit: [test_a.py]\ne2e: [test_a.py]\n")
    with pytest.raises(pytest.UsageError, match="test_a.py is in both unit and e2e"):
        tier_of_files(two)
    odd = tmp_path / "odd.yaml"
    odd.write_text("fast: [test_a.py]\n")
    with pytest.raises(pytest.UsageError, match="unknown tiers"):
        tier_of_files(odd)
