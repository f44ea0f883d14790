"""Named exceptions: every user-facing failure carries a message a person can act on."""
from __future__ import annotations

import reprlib

_SHOWN = reprlib.Repr()
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 60, 60, 40
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 4
_SHOWN.maxlevel = 2


def shown(value: object) -> str:
    """repr() for error messages, bounded: a 100k-character or deeply nested input is not echoed back whole."""
    return _SHOWN.repr(value)


class CustomizerError(Exception):
    """Base class; str(e) is shown to the user as is."""


class SpecError(CustomizerError, ValueError):
    """A character or selfie spec failed validation."""

    def __init__(self, field: str, message: str):
        name = field if len(field) <= 60 else field[:57] + "..."  # field names can come from the request
        super().__init__(f"{name}: {message}")
        self.field = field


class SafetyError(CustomizerError):
    """Input refused by the safety rules; the message says why."""

    def __init__(self, category: str, reason: str, match: str):
        super().__init__(f"{reason} (matched: {match!r})")
        self.category = category
        self.match = match


class ConfigError(CustomizerError):
    """spaces.yaml is malformed or names an unknown profile."""


class ModelUnavailable(CustomizerError):
    """A profile's weights are missing (offline, not yet trained, or not downloaded)."""


class NotFound(CustomizerError, KeyError):
    """A character, candidate, reference or selfie id does not exist."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else "not found"


class StateError(CustomizerError):
    """The operation does not fit the character's state (e.g. selfie before lock)."""


class ImportRefused(CustomizerError):
    """An export archive was refused on import."""


class StorageError(CustomizerError):
    """The database or the image folder cannot be written (disk full, read-only, I/O error); nothing was saved."""
