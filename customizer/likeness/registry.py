"""Instrument names -> where their class lives. Data, so config.py can validate a profile without importing
torch or dlib; scorer.load_scorer imports the class only when a profile uses it."""
from __future__ import annotations

import importlib

INSTRUMENTS: dict[str, str] = {
    "identity": "customizer.likeness.identity:IdentityInstrument",  # bundled domain, trained on renderer truth
    "adapter": "customizer.likeness.adapter:AdapterInstrument",    # bundled domain, the IP-Adapter's encoder
    "face": "customizer.likeness.face:FaceInstrument",              # photoreal profiles: dlib 128-D descriptor
}


def instrument_class(name: str) -> type:
    module, _, attr = INSTRUMENTS[name].partition(":")
    return getattr(importlib.import_module(module), attr)
