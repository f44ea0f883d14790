"""Measuring instruments for the eval harness: a likeness encoder and an attribute classifier.

Both are small plain-torch CNNs on 128 x 128 RGB in [0, 1] (no pretrained weights), trained only on renderer
ground truth (customizer/training/render.py) by train_instruments.py, never on model outputs:

- `IdentityEncoder`: a 128-D L2-normalised embedding; cosine similarity = likeness. Trained contrastively on
  photos of the same hidden person (render.Identity) under different scenes, expressions, framings, lighting and
  themes against other people - including people with exactly the same attributes - so it keys on the hidden
  face traits, not on hair colour.
- `AttributeClassifier`: a shared trunk with one linear head per character attribute (hair_colour ... theme) and
  per selfie field (scene, expression, framing); class lists are the app catalogues at training time.

On disk (save_instrument / load_*): DIR/identity.safetensors + DIR/identity.json and DIR/attributes.safetensors
+ DIR/attributes.json; weights are fp16, the JSON holds the architecture and class lists. `Instruments` bundles
the two for scoring PIL images, with the classifiers of their own found beside them (DIR/appearance.*,
DIR/expression.*: AttributeClassifiers with fewer heads, trained by two_stage.py), which answer their heads
instead of the joint model.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

INPUT_SIZE = 128
FORMAT_VERSION = 1
ATTRIBUTE_KEYS = ("hair_colour", "hair_style", "hair_length", "eye_colour", "skin_tone", "body_type", "outfit",
                  "theme")
SELFIE_KEYS = ("scene", "expression", "framing")
IDENTITY_FILE, ATTRIBUTES_FILE = "identity", "attributes"
# optional classifiers of their own (two_stage.py); when present their heads replace the joint model's, which read
# renderer ground truth poorly: the character attributes (train_appearance.py), then the expression
# (train_expression.py; the joint head is at chance)
APPEARANCE_FILE, EXPRESSION_FILE = "appearance", "expression"
OWN_FILES = (APPEARANCE_FILE, EXPRESSION_FILE)
# channel widths at 32, 16, 8 and 4 px (see Trunk)
DEFAULT_WIDTHS = (32, 64, 96, 160)


def catalogue_heads() -> dict[str, list[str]]:
    """head name -> class list, from the app catalogues (character attributes, then selfie fields)."""
    from ..character import catalogue, selfie_catalogue

    cat, scat = catalogue(), selfie_catalogue()
    heads = {k: list(cat[k].choices) for k in ATTRIBUTE_KEYS}
    heads |= {k: list(scat[k].choices) for k in SELFIE_KEYS}
    return heads


# ---- networks ----------------------------------------------------------------------------------------------------

def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Trunk(nn.Module):
    """128 px -> a (widths[-1], 4, 4) feature map. A 4x4 stride-4 patch stem (cheap on CPU, and it keeps every
    pixel), then per stage a residual 3x3 conv and a stride-2 conv to the next width. Input: RGB in [0, 1]."""

    def __init__(self, widths: Sequence[int] = DEFAULT_WIDTHS):
        super().__init__()
        widths = list(widths)
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 4, 4, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        self.refine = nn.ModuleList(_conv(w, w, 1) for w in widths)
        self.down = nn.ModuleList(_conv(a, b, 2) for a, b in zip(widths[:-1], widths[1:]))
        self.channels = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x * 2.0 - 1.0)
        for k, refine in enumerate(self.refine):
            if k:
                x = self.down[k - 1](x)
            x = x + refine(x)
        return x


def _pool(m: torch.Tensor) -> torch.Tensor:
    """Mean and max over the map: the max keeps small things (an eye colour, a mole) from being averaged away."""
    return torch.cat([m.mean(dim=(2, 3)), m.amax(dim=(2, 3))], dim=1)


class IdentityEncoder(nn.Module):
    """Trunk -> pooled features -> MLP -> L2-normalised embedding (position-free: framings move the face)."""
    kind = "identity"

    def __init__(self, widths: Sequence[int] = DEFAULT_WIDTHS, dim: int = 128):
        super().__init__()
        self.widths, self.dim = list(widths), int(dim)
        self.trunk = Trunk(widths)
        self.proj = nn.Sequential(nn.Linear(2 * self.trunk.channels, 256), nn.ReLU(inplace=True),
                                  nn.Linear(256, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 128, 128) in [0, 1] -> (N, dim) unit vectors."""
        return self.from_features(self.trunk(x))

    def from_features(self, m: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(_pool(m)), dim=1)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "widths": self.widths, "dim": self.dim}


def _head_key(name: str) -> str:
    return name.replace(" ", "_").replace(".", "_")


class AttributeClassifier(nn.Module):
    """Trunk -> (pooled features + the 4 x 4 map squeezed to 48 channels, so where a colour is counts: hair on top,
    outfit below) -> shared hidden layer -> one linear head per attribute / selfie field."""
    kind = "attributes"
    SQUEEZE = 48

    def __init__(self, heads: dict[str, list[str]] | None = None, widths: Sequence[int] = DEFAULT_WIDTHS):
        super().__init__()
        self.heads = {k: list(v) for k, v in (heads or catalogue_heads()).items()}
        self.widths = list(widths)
        self.trunk = Trunk(widths)
        c = self.trunk.channels
        self.squeeze = _conv1(c, self.SQUEEZE)
        cells = (INPUT_SIZE // 32) ** 2
        self.hidden = nn.Sequential(nn.Linear(2 * c + self.SQUEEZE * cells, 192), nn.ReLU(inplace=True))
        self.out = nn.ModuleDict({_head_key(k): nn.Linear(192, len(v)) for k, v in self.heads.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, 128, 128) in [0, 1] -> {head: (N, classes) logits}."""
        return self.from_features(self.trunk(x))

    def from_features(self, m: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.hidden(torch.cat([_pool(m), self.squeeze(m).flatten(1)], dim=1))
        return {k: self.out[_head_key(k)](h) for k in self.heads}

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "widths": self.widths, "heads": self.heads}


def _conv1(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- images -> tensors -------------------------------------------------------------------------------------------

def to_tensor(images: Sequence[Image.Image] | np.ndarray, size: int = INPUT_SIZE) -> torch.Tensor:
    """PIL images (any size; resized with LANCZOS) or a uint8 (N, H, W, 3) array -> float (N, 3, size, size)."""
    if isinstance(images, np.ndarray):
        arr = images
    else:
        arr = np.stack([np.asarray(_fit(im, size), np.uint8) for im in images])
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)
    if t.shape[-1] != size or t.shape[-2] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t.contiguous()


def _fit(im: Image.Image, size: int) -> Image.Image:
    im = im.convert("RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.LANCZOS)
    return im


# ---- save / load -------------------------------------------------------------------------------------------------

def quantise_(model: nn.Module) -> nn.Module:
    """Round floating parameters and buffers to fp16 precision in place: the in-memory model is the saved one."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())
    return model


def save_instrument(model: IdentityEncoder | AttributeClassifier, out_dir: str | Path,
                    meta: dict[str, Any] | None = None, name: str | None = None) -> Path:
    """Write DIR/<name>.safetensors (fp16) + DIR/<name>.json (name: by default the kind's file name); quantises
    `model` to fp16 precision in place."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    quantise_(model)
    state = {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in model.state_dict().items()}
    name = name or (IDENTITY_FILE if model.kind == "identity" else ATTRIBUTES_FILE)
    save_file(state, str(out / f"{name}.safetensors"), metadata={"format": "customizer-instrument",
                                                                 "kind": model.kind})
    cfg = {"format_version": FORMAT_VERSION, "input_size": INPUT_SIZE, **model.config(),
           "params": n_params(model), "meta": meta or {}}
    (out / f"{name}.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out / f"{name}.safetensors"


def _load(path: Path, name: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    cfg_path, weights = path / f"{name}.json", path / f"{name}.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"instrument '{name}' not found in {path} (need {name}.json and {name}.safetensors;"
                                f" train with python -m customizer.training.train_instruments --out DIR)")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{cfg_path}: format_version {cfg.get('format_version')!r}, expected {FORMAT_VERSION}")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(weights)).items()}
    return cfg, state


def load_identity(path: str | Path, device: str = "cpu") -> IdentityEncoder:
    cfg, state = _load(Path(path), IDENTITY_FILE)
    model = IdentityEncoder(cfg["widths"], cfg["dim"])
    model.load_state_dict(state)
    return model.to(device).eval()


def load_attributes(path: str | Path, device: str = "cpu", name: str = ATTRIBUTES_FILE) -> AttributeClassifier:
    cfg, state = _load(Path(path), name)
    model = AttributeClassifier(cfg["heads"], cfg["widths"])
    model.load_state_dict(state)
    return model.to(device).eval()


# ---- scoring -----------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Instruments:
    identity: IdentityEncoder
    attributes: AttributeClassifier
    device: str = "cpu"
    batch_size: int = 64
    # classifiers of their own by file name (OWN_FILES order): their heads replace the joint model's
    own: dict[str, AttributeClassifier] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Instruments:
        own = {name: load_attributes(path, device, name) for name in OWN_FILES
               if (Path(path) / f"{name}.safetensors").is_file()}
        return cls(load_identity(path, device), load_attributes(path, device), device, own=own)

    def heads(self) -> dict[str, list[str]]:
        """Every head the instruments answer, with its classes (the answering model's)."""
        out = dict(self.attributes.heads)
        for model in self.own.values():
            out |= model.heads
        return out

    def source(self, head: str) -> str:
        """Which file's model answers `head` (the last one that has it)."""
        return next((name for name in reversed(list(self.own)) if head in self.own[name].heads), ATTRIBUTES_FILE)

    @torch.inference_mode()
    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, dim) float32 unit vectors."""
        self.identity.eval()
        out = [self.identity(to_tensor(images[i:i + self.batch_size]).to(self.device)).float().cpu()
               for i in range(0, len(images), self.batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.identity.dim), np.float32)

    @torch.inference_mode()
    def classify(self, images: Sequence[Image.Image]) -> list[dict[str, str]]:
        """Per image {head: predicted class}."""
        models = [self.attributes, *self.own.values()]
        preds: list[dict[str, str]] = []
        for i in range(0, len(images), self.batch_size):
            x = to_tensor(images[i:i + self.batch_size]).to(self.device)
            out: list[dict[str, str]] = [{} for _ in range(x.shape[0])]
            for model in models:  # later models' heads replace earlier ones of the same name
                model.eval()
                idx = {k: v.argmax(dim=1).cpu().tolist() for k, v in model(x).items()}
                for j, pred in enumerate(out):
                    pred |= {k: model.heads[k][idx[k][j]] for k in idx}
            preds += out
        return preds


# ---- verification threshold --------------------------------------------------------------------------------------

def verification(same: Sequence[float], different: Sequence[float], max_far: float = 0.05) -> dict[str, Any]:
    """Accept a pair when score >= threshold; the threshold is the lowest one whose false-accept rate on the
    `different` scores is <= max_far (so it maximises true accepts under that constraint).

    Returns threshold, far (false accepts / different pairs), tar (true accepts / same pairs), accuracy (the mean of
    tar and 1 - far: balanced, so many more different pairs than same pairs do not dominate) and the pair counts.
    """
    s = np.asarray(list(same), np.float64)
    d = np.sort(np.asarray(list(different), np.float64))[::-1]
    if s.size == 0 and d.size == 0:
        return {"threshold": None, "far": None, "tar": None, "accuracy": None, "n_same": 0, "n_different": 0,
                "max_far": max_far}
    allowed = int(math.floor(max_far * d.size + 1e-9))  # false accepts we may make
    if d.size == 0:
        threshold = float(s.min())
    elif allowed >= d.size:
        threshold = float(min(d.min(), s.min() if s.size else d.min()))
    else:
        threshold = float(np.nextafter(d[allowed], np.inf))  # strictly above the (allowed+1)-th highest
    far = float((d >= threshold).mean()) if d.size else 0.0
    tar = float((s >= threshold).mean()) if s.size else None
    acc = (tar + (1.0 - far)) / 2 if tar is not None else 1.0 - far
    return {"threshold": threshold, "far": far, "tar": tar, "accuracy": acc, "n_same": int(s.size),
            "n_different": int(d.size), "max_far": max_far}
