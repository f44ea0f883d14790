"""A small learned 2x upscaler: a residual CNN at the low resolution, PixelShuffle(2) to twice the side, added to a
bicubic 2x upsample of the input and clamped to [0, 1] (the net learns only what bicubic misses).

Trained by customizer/training/train_upscaler.py on the procedural renderer (input: a render through the bundled
VAE's round trip, as the model's pictures are VAE decodes; target: the same picture rendered at twice the size).
Saved as a folder: upscaler.json (kind, channels, layers, what it was trained on) + upscaler.safetensors (fp16),
loaded to fp32 on the CPU whatever the engine's device: a few tens of ms a picture, and the bytes of its output
do not depend on the accelerator (recipes reproduce bit-exactly). Torch only.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..upscaler_folder import CONFIG, WEIGHTS

KIND = "sr_residual_cnn"


class SRNet(nn.Module):
    """`layers` 3x3 convolutions at the input's resolution (the first 3 -> channels, the last channels -> 3 x 4,
    ReLU between), PixelShuffle(2), + bicubic 2x of the input. The last layer starts at zero: an untrained net is
    bicubic."""

    def __init__(self, channels: int = 32, layers: int = 4):
        super().__init__()
        if layers < 2 or channels < 1:
            raise ValueError(f"an SRNet needs at least 2 layers and 1 channel, got {layers} x {channels}")
        self.channels, self.layers = int(channels), int(layers)
        widths = [3] + [self.channels] * (self.layers - 1)
        self.body = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths[:-1], widths[1:]))
        self.tail = nn.Conv2d(self.channels, 3 * 4, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) in [0, 1] -> (B, 3, 2H, 2W) in [0, 1]."""
        return (self.base(x) + self.residual(x)).clamp(0, 1)

    @staticmethod
    def base(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.body:
            h = F.relu(conv(h))
        return self.shuffle(self.tail(h))

    def config(self) -> dict[str, Any]:
        return {"kind": KIND, "scale": 2, "channels": self.channels, "layers": self.layers}


def save(net: SRNet, folder: str | Path, trained_on: dict[str, Any] | None = None) -> Path:
    """Write folder/upscaler.json + folder/upscaler.safetensors (fp16), each via a temporary file + rename."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in net.state_dict().items()}
    tmp = folder / (WEIGHTS + ".tmp")
    save_file(weights, str(tmp), metadata={"kind": KIND})
    tmp.replace(folder / WEIGHTS)
    params = sum(v.numel() for v in weights.values())
    meta = net.config() | {"params": params, "dtype": "float16", "trained_on": trained_on or {}}
    tmp = folder / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tmp.replace(folder / CONFIG)
    return folder


def load(folder: str | Path) -> SRNet:
    """The net of a saved folder, fp32 on the CPU, in eval mode. ValueError for another kind or a weight mismatch."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    if meta.get("kind") != KIND or int(meta.get("scale", 2)) != 2:
        raise ValueError(f"{folder / CONFIG}: not a 2x {KIND} (kind {meta.get('kind')!r})")
    net = SRNet(int(meta["channels"]), int(meta["layers"]))
    state = {k: v.float() for k, v in load_file(str(folder / WEIGHTS)).items()}
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL -> (1, 3, H, W) float in [0, 1]."""
    arr = np.asarray(image.convert("RGB"), np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_image(t: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> PIL RGB (rounded to uint8)."""
    t = t[0] if t.dim() == 4 else t
    arr = (t.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


class SRUpscaler:
    """A saved SRNet as the engine's upscaler: PIL in, PIL at twice the size out. Deterministic: fp32 on the CPU,
    no randomness (prompt and seed are ignored)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.net = load(self.folder)

    def upscale(self, image: Image.Image) -> Image.Image:
        with torch.inference_mode():
            return to_image(self.net(to_tensor(image)))

    def __call__(self, image: Image.Image, prompt: str = "", seed: int = 0) -> Image.Image:
        return self.upscale(image)
