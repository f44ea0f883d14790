"""IP-Adapter image embeddings <-> bytes, so the store can cache them without knowing torch."""
from __future__ import annotations

import torch
from safetensors.torch import load, save


def to_bytes(embeds: list[torch.Tensor]) -> bytes:
    return save({f"embeds_{i}": t.detach().to("cpu", torch.float32).contiguous() for i, t in enumerate(embeds)})


def from_bytes(blob: bytes, device: str, dtype: torch.dtype) -> list[torch.Tensor]:
    tensors = load(blob)
    return [tensors[f"embeds_{i}"].to(device, dtype) for i in range(len(tensors))]


def positive_half(embeds: list[torch.Tensor]) -> list[torch.Tensor]:
    """Cached embeds hold [negative, positive] for classifier-free guidance; without CFG only the positive."""
    return [t.chunk(2)[1] for t in embeds]
