"""Named exceptions: every user-facing failure carries a message a person can act on."""


class CustomizerError(Exception):
    """Base class; str(e) is shown to the user as is."""


class SpecError(CustomizerError, ValueError):
    """A character or selfie spec failed validation."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
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
