"""Test tiers (tiers.yaml): every test file belongs to one tier, and each of its tests carries that tier's marker.

    python -m pytest -q                      # unit + integration: what a contributor runs (addopts deselects the rest)
    python -m pytest -q -m "e2e or slow"     # launched servers, the browser, trainings: CI runs this too

A test file missing from tiers.yaml stops the collection, so a new file cannot slip out of every tier. One test may
carry a further tier of its own (`@pytest.mark.e2e` on a launched-app test in an integration file): the default run
leaves it out, since it deselects e2e and slow.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

TIERS_FILE = Path(__file__).with_name("tiers.yaml")
TIERS = ("unit", "integration", "e2e", "slow")


def tier_of_files(path: Path = TIERS_FILE) -> dict[str, str]:
    table = yaml.safe_load(path.read_text(encoding="utf-8"))
    unknown = set(table) - set(TIERS)
    if unknown:
        raise pytest.UsageError(f"{path.name}: unknown tiers {sorted(unknown)} (known: {', '.join(TIERS)})")
    tier_of: dict[str, str] = {}
    for tier, files in table.items():
        for name in files or []:
            if name in tier_of:
                raise pytest.UsageError(f"{path.name}: {name} is in both {tier_of[name]} and {tier}")
            tier_of[name] = tier
    return tier_of


@pytest.hookimpl(tryfirst=True)   # before -m deselects by marker
def pytest_collection_modifyitems(config, items) -> None:
    tier_of = tier_of_files()
    missing = sorted({item.path.name for item in items if item.path.name not in tier_of})
    if missing:
        raise pytest.UsageError(f"no tier for {', '.join(missing)}: add them to tests/{TIERS_FILE.name}")
    for item in items:
        item.add_marker(getattr(pytest.mark, tier_of[item.path.name]))
