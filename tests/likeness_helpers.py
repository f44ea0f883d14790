"""Shared bits of the likeness tests: a random-weight identity encoder in the real on-disk format, and the
availability of the optional `face` extra (CI installs it; elsewhere its tests skip)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

FACE_INSTALLED = importlib.util.find_spec("dlib") is not None and \
    importlib.util.find_spec("face_recognition_models") is not None
needs_face = pytest.mark.skipif(not FACE_INSTALLED and not os.environ.get("CI"),
                                reason="the 'face' extra is not installed (CI installs it: .ci/run)")


def random_identity_encoder(folder: Path, seed: int = 0) -> Path:
    """identity.safetensors + identity.json of an untrained IdentityEncoder (scores are meaningless, the plumbing
    is real)."""
    import torch

    from customizer.likeness.instruments import IdentityEncoder, save_instrument

    torch.manual_seed(seed)
    save_instrument(IdentityEncoder(), folder, {"note": "random weights for tests"})
    return folder
