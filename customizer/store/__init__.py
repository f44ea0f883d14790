"""The store: SQLite rows + content-addressed files (see repository.py for the layout of the package).
`from customizer.store import Store` is the entry point."""
from __future__ import annotations

from .blobs import RECIPE_CHUNK, encode_png
from .records import Candidate, CharacterLora, CharacterSummary, Pack, Reference, Selfie, SheetView
from .repository import BUSY_TIMEOUT_MS, Store
from .rows import NAME_MAX, PACK_SLOTS_MAX, clean_name

__all__ = ["BUSY_TIMEOUT_MS", "NAME_MAX", "PACK_SLOTS_MAX", "RECIPE_CHUNK", "Candidate", "CharacterLora",
           "CharacterSummary", "Pack", "Reference", "Selfie", "SheetView", "Store", "clean_name", "encode_png"]
