"""FLOPs of a call (torch.utils.flop_counter) and the machine's fp32 matmul rate: together, the floor time.

torch's counter has no formula for the CPU flash-attention kernel that SDPA picks on CPU; it gets the same formula
as the GPU kernels, so attention is counted on every device.
"""
from __future__ import annotations

import time
from typing import Any, Callable


def _sdpa_cpu(query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)


def count(fn: Callable[[], Any]) -> tuple[Any, int, dict[str, int]]:
    """Run fn under the FLOP counter: (its result, total FLOPs, FLOPs per top-level module class)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        result = fn()
    per_module = {name: int(sum(ops.values())) for name, ops in counter.get_flop_counts().items()
                  if name != "Global" and "." not in name}
    return result, int(counter.get_total_flops()), per_module


def matmul_rate(n: int = 2048, repeats: int = 5, device: str = "cpu") -> dict[str, Any]:
    """Best-of-N rate of one large fp32 matmul: the machine's practical peak for the floor."""
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    best = float("inf")
    with torch.inference_mode():
        a @ b  # first call allocates and picks kernels
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            a @ b
            sync()
            best = min(best, time.perf_counter() - t0)
    return {"n": n, "dtype": "float32", "threads": torch.get_num_threads(), "best_s": best,
            "flops_per_s": 2 * n**3 / best}


def floor(flops: int, rate: dict[str, Any], latency_s: float) -> dict[str, float]:
    floor_s = flops / rate["flops_per_s"]
    return {"flops": flops, "floor_s": floor_s, "latency_s": latency_s, "ratio_to_floor": latency_s / floor_s}
