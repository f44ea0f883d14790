"""Scorer: the one interface the Studio uses, whatever the instrument, and whatever state it is in.

    scorer = load_scorer(profile.likeness)      # never raises: a missing instrument is an 'unavailable' scorer
    blob = scorer.reference_blob(reference)     # bytes to cache with the reference (b"" = no face in it)
    likeness = scorer.score(blob, image)        # a Likeness in one of result.STATES
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PIL import Image

from . import result
from .base import Instrument, InstrumentUnavailable
from .registry import INSTRUMENTS, instrument_class
from .result import Likeness

log = logging.getLogger(__name__)
NO_FACE_BLOB = b""  # cached "the reference has no face": deterministic for the same instrument key


class Scorer:
    def __init__(self, name: str | None, instrument: Instrument | None = None, reason: str = ""):
        self.name, self.instrument, self.reason = name, instrument, reason

    @property
    def available(self) -> bool:
        return self.instrument is not None

    @property
    def cache_key(self) -> str | None:
        return f"likeness:{self.instrument.key}" if self.instrument is not None else None

    def unavailable(self) -> Likeness:
        return Likeness(result.UNAVAILABLE, self.name, reason=self.reason)

    def reference_blob(self, reference: Image.Image) -> bytes:
        if self.instrument is None:
            raise InstrumentUnavailable(self.reason)
        vector = self.instrument.describe(reference)
        return NO_FACE_BLOB if vector is None else np.asarray(vector, np.float32).tobytes()

    def score(self, reference_blob: bytes | None, image: Image.Image) -> Likeness:
        """Never raises for a bad image: the selfie is already made and must be kept whatever the instrument says."""
        if self.instrument is None or reference_blob is None:
            return self.unavailable()
        if reference_blob == NO_FACE_BLOB:
            return Likeness(result.NO_FACE_REFERENCE, self.name,
                            reason="no face found in the reference portrait: nothing to compare with")
        try:
            vector = self.instrument.describe(image)
            if vector is None:
                return Likeness(result.NO_FACE, self.name, reason="no face found in this image")
            score, detail = self.instrument.compare(np.frombuffer(reference_blob, np.float32), vector)
        except Exception as e:  # an instrument bug must not lose the image
            log.exception("likeness instrument %s failed", self.name)
            return Likeness(result.ERROR, self.name, reason=f"the {self.name} instrument failed ({type(e).__name__})")
        return Likeness(result.SCORED, self.name, score=round(float(score), 6), detail=detail)


def load_scorer(cfg: Any) -> Scorer:
    """cfg: config.LikenessConfig or None. Never raises: problems become an unavailable scorer with the reason."""
    if cfg is None:
        return Scorer(None, reason="this profile measures no likeness (no 'likeness' entry in spaces.yaml)")
    if cfg.instrument not in INSTRUMENTS:
        return Scorer(cfg.instrument, reason=f"unknown likeness instrument {cfg.instrument!r}")
    try:
        return Scorer(cfg.instrument, instrument_class(cfg.instrument).from_config(cfg))
    except InstrumentUnavailable as e:
        log.warning("likeness unavailable: %s", e)
        return Scorer(cfg.instrument, reason=str(e))
    except Exception as e:  # damaged weights etc.: the app still runs, without likeness
        log.exception("could not load likeness instrument %s", cfg.instrument)
        return Scorer(cfg.instrument, reason=f"the {cfg.instrument} instrument could not be loaded "
                                             f"({type(e).__name__}; the server log has details)")
