"""Pick device and dtype: cuda bf16/fp16, else mps fp16, else cpu fp32 (half precision is slow or wrong on CPU)."""
from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick(device: str = "auto", dtype: str = "auto") -> tuple[str, torch.dtype]:
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if dtype == "auto":
        if device == "cuda":
            return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return device, torch.float16 if device == "mps" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)} or auto")
    return device, DTYPES[dtype]
