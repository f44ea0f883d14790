"""IP-Adapter image embeddings <-> bytes, so the store can cache them without knowing torch."""
from __future__ import annotations

import torch
from safetensors.torch import load, save


def to_bytes(embeds: list[torch.Tensor]) -> bytes:
    return save({f"embeds_{i}": t.detach().to("cpu", torch.float32).contiguous() for i, t in enumerate(embeds)})


def from_bytes(blob: bytes, device: str, dtype: torch.dtype) -> list[torch.Tensor]:
    tensors = load(blob)
    return [tensors[f"embeds_{i}"].to(device, dtype) for i in range(len(tensors))]


def positive_rows(t: torch.Tensor) -> torch.Tensor:
    """The positive half of a tensor batched for classifier-free guidance as [negative..., positive...]."""
    return t.chunk(2)[1]


def positive_half(embeds: list[torch.Tensor]) -> list[torch.Tensor]:
    """Cached embeds hold [negative, positive] for classifier-free guidance; without CFG only the positive."""
    return [positive_rows(t) for t in embeds]


def concat(blobs: list[bytes]) -> bytes:
    """Several images' cached embeddings -> the embeddings of all of them on one IP-Adapter, as diffusers'
    multi-image input: per adapter, [2*batch, n_images, ...] (negative half first), images along dim 1.

    Why concatenate rather than average: for a list of images diffusers projects each one separately
    (MultiIPAdapterImageProjection reshapes [batch, n, ...] -> [batch*n, ...] through ImageProjection or the
    Resampler) and the decoupled cross-attention flattens them into n x tokens keys/values (IPAdapterAttnProcessor).
    One softmax over all of them lets each query draw on the view that fits it (a turned head, a smile), and keeps
    the output the size of one image's, so the IP-Adapter scale - the likeness slider - means the same. Averaging
    CLIP embeddings would blend the poses into one vector that is none of them (and for the plus/face variants,
    average patch tokens that do not line up). Each image is encoded alone, so the result is the same whether the
    parts came from the cache or were computed again (reproduce)."""
    if not blobs:
        raise ValueError("no embeddings to combine")
    parts = [load(b) for b in blobs]
    n = len(parts[0])
    if any(len(p) != n for p in parts):
        raise ValueError("embeddings of different IP-Adapter setups cannot be combined")
    return save({f"embeds_{i}": torch.cat([p[f"embeds_{i}"] for p in parts], dim=1).contiguous() for i in range(n)})
