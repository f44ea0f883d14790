"""Shared bits of the likeness tests: random-weight identity and adapter encoders in the real on-disk format, and the
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


def random_adapter_encoder(folder: Path, seed: int = 0) -> Path:
    """A tiny untrained CLIPVisionModelWithProjection saved as the IP-Adapter's image_encoder folder."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
        patch_size=8, projection_dim=16, hidden_act="quick_gelu"))
    model.save_pretrained(folder, safe_serialization=True)
    return folder
