"""One active theme LoRA fused into the UNet's weights.

peft runs a LoRA as an extra low-rank branch beside every targeted layer (two more matmuls or convs each). With one
theme active, its delta (peft's own get_delta_weight, at the scale set_adapters gave it) is added into the base
weights and the branch is switched off, so a themed step costs what an unthemed one does. Base weights are put back
by copying a pristine snapshot, never by subtracting the delta (that leaves rounding residue): every fused state is
computed from the same numbers, so the same recipe keeps giving the same pixels, whatever ran before it.
"""
from __future__ import annotations

import torch


class LoraFuser:
    def __init__(self, unet):
        from peft.tuners.lora import LoraLayer

        self.layers = [m for m in unet.modules() if isinstance(m, LoraLayer)]
        self._pristine = [m.get_base_layer().weight.detach().clone() for m in self.layers]
        self.fused: tuple[str, float] | None = None

    @torch.no_grad()
    def restore(self) -> None:
        if self.fused is None:
            return
        self.fused = None  # unknown until every layer is back
        for layer, weight in zip(self.layers, self._pristine):
            layer.get_base_layer().weight.copy_(weight)

    @torch.no_grad()
    def fuse(self, adapter: str, weight: float) -> None:
        """Base weights := pristine + delta(adapter). peft's scaling must already hold `weight` (set_adapters)."""
        if self.fused == (adapter, weight):
            return
        self.restore()
        self.fused = None
        for layer, pristine in zip(self.layers, self._pristine):
            if adapter in layer.lora_A:
                base = layer.get_base_layer().weight
                base.copy_(pristine + layer.get_delta_weight(adapter).to(base.dtype))
        self.fused = (adapter, weight)
