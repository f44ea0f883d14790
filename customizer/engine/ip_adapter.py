"""The bundled model's IP-Adapter as a trainable part of the UNet, in exactly the form diffusers loads (in the
engine: the app's character LoRA trainer gates the adapter per sample too; training imports it from here).

The adapter is diffusers' own: `unet._load_ip_adapter_weights` installs the ImageProjection (image embedding ->
N tokens) and the decoupled cross-attention processors (to_k_ip / to_v_ip) into the training UNet, and the image
encoder is a `CLIPVisionModelWithProjection` of the geometry. All three are trained with the diffusion loss on
pairs (the reference portrait of person P -> another photo of P). What is saved is what
`pipe.load_ip_adapter(folder, subfolder="", weight_name="ip_adapter.safetensors", image_encoder_folder=
"image_encoder")` reads, and the base UNet is saved without any of it.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

# CLIPImageProcessor's defaults (OPENAI_CLIP_MEAN / STD): what load_ip_adapter's feature extractor applies.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
WEIGHT_NAME = "ip_adapter.safetensors"
ENCODER_FOLDER = "image_encoder"


def build_image_encoder(geo: dict[str, Any], seed: int = 0):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_act="quick_gelu", **geo["image_encoder"]))


def attach(unet, geo: dict[str, Any], seed: int = 0) -> None:
    """Install a freshly initialised IP-Adapter (diffusers' classes) into a training UNet, in place."""
    from .architectures import ip_adapter_state_dict

    flat = ip_adapter_state_dict(unet, int(geo["image_encoder"]["projection_dim"]), int(geo["ip_adapter_tokens"]),
                                 seed)
    unet._load_ip_adapter_weights([split_state_dict(flat)], low_cpu_mem_usage=False)


def split_state_dict(flat: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """'image_proj.x' / 'ip_adapter.x' keys -> the nested dict load_ip_adapter builds from the file."""
    out: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    for key, value in flat.items():
        head, rest = key.split(".", 1)
        out[head][rest] = value
    return out


def adapter_state_dict(unet) -> dict[str, torch.Tensor]:
    """The UNet's trained adapter in the file layout of load_ip_adapter (key ids count every processor)."""
    proj = unet.encoder_hid_proj.image_projection_layers[0]
    # diffusers renames the file's "proj" to "image_embeds" when loading (ImageProjection): undo it
    out = {f"image_proj.{k.replace('image_embeds', 'proj')}": v.detach().clone() for k, v in proj.state_dict().items()}
    for key_id, (_name, proc) in enumerate(unet.attn_processors.items()):
        if not hasattr(proc, "to_k_ip"):
            continue
        out[f"ip_adapter.{key_id}.to_k_ip.weight"] = proc.to_k_ip[0].weight.detach().clone()
        out[f"ip_adapter.{key_id}.to_v_ip.weight"] = proc.to_v_ip[0].weight.detach().clone()
    return out


def base_unet_state_dict(unet) -> dict[str, torch.Tensor]:
    """The UNet's weights without the adapter's modules (what a plain UNet2DConditionModel loads)."""
    return {k: v for k, v in unet.state_dict().items()
            if not k.startswith("encoder_hid_proj.") and ".processor." not in k}


def plain_unet(unet, geo: dict[str, Any]):
    """A fresh UNet2DConditionModel of the geometry holding the training UNet's base weights (no adapter)."""
    from .architectures import build_components

    base = build_components(geo)["unet"]
    base.load_state_dict(base_unet_state_dict(unet))
    return base


class _PerSample:
    """A scale the processor can use: it tests `scale == 0` (to skip the adapter) and computes
    `scale * ip_hidden`; a bare tensor fails the first with more than one sample."""

    __hash__ = None

    def __init__(self, gate: torch.Tensor):
        self.gate = gate

    def __eq__(self, other) -> bool:
        return False

    def __mul__(self, other):
        return self.gate * other

    __rmul__ = __mul__


@contextlib.contextmanager
def gated(unet, gate: torch.Tensor):
    """Per-sample adapter scale for one forward pass: gate (B,1,1), 0 = no adapter (what scale 0 gives the app),
    1 = scale 1. diffusers' processor computes hidden + scale * ip_hidden, so a broadcastable tensor works."""
    procs = [p for p in unet.attn_processors.values() if hasattr(p, "to_k_ip")]
    saved = [p.scale for p in procs]
    for p in procs:
        p.scale = [_PerSample(gate)]
    try:
        yield
    finally:
        for p, sc in zip(procs, saved):
            p.scale = sc


@contextlib.contextmanager
def per_prompt_embeds(pipe, embeds: torch.Tensor | None):
    """The pipeline-call kwargs for one reference per prompt in a batched call: embeds (B, 1, D) positive halves,
    prompt i conditioned on embeds[i] and the all-zero embedding as its CFG negative (what training pairs it with).
    None: no adapter input ({}).

    A pipeline's `ip_adapter_image_embeds` is ONE image set for the whole call: prepare_ip_adapter_image_embeds
    repeats it for every prompt, so a (B, 1, D) tensor there gives each prompt all B references' tokens at once
    (every image of the batch the same). Inside this context that method returns these embeddings instead, and the
    yielded kwargs carry a placeholder the pipeline's input check accepts."""
    if embeds is None:
        yield {}
        return

    def prepare(ip_adapter_image, ip_adapter_image_embeds, device, num_images_per_prompt,
                do_classifier_free_guidance):
        if num_images_per_prompt != embeds.shape[0]:
            raise ValueError(f"{embeds.shape[0]} references for a batch of {num_images_per_prompt} images")
        pos = embeds.to(device)
        return [torch.cat([torch.zeros_like(pos), pos]) if do_classifier_free_guidance else pos]

    pipe.prepare_ip_adapter_image_embeds = prepare
    try:
        yield {"ip_adapter_image_embeds": [torch.cat([torch.zeros_like(embeds[:1]), embeds[:1]])]}
    finally:
        del pipe.prepare_ip_adapter_image_embeds


def preprocess(pixels_uint8: torch.Tensor, size: int) -> torch.Tensor:
    """(B,3,H,W) uint8 RGB -> what CLIPImageProcessor(size, crop_size=size) gives for HxW == size images."""
    if tuple(pixels_uint8.shape[-2:]) != (size, size):
        raise ValueError(f"references must be {size}x{size}, got {tuple(pixels_uint8.shape[-2:])}")
    x = pixels_uint8.float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def embed(image_encoder, pixels_uint8: torch.Tensor, device) -> torch.Tensor:
    """Image embeddings (B, 1, D) as the pipeline passes them to the UNet (ip_adapter_image_embeds layout)."""
    x = preprocess(pixels_uint8, int(image_encoder.config.image_size)).to(device)
    return image_encoder(x).image_embeds.unsqueeze(1)


def save(unet, image_encoder, out_dir: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write <out>/image_encoder/ and <out>/ip_adapter.safetensors (load_ip_adapter's layout)."""
    import copy

    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    enc = copy.deepcopy(image_encoder).to("cpu", dtype)
    enc.save_pretrained(out / ENCODER_FOLDER, safe_serialization=True)
    _declare_fp32_compute(out / ENCODER_FOLDER / "config.json")
    save_file({k: v.to("cpu", dtype).contiguous() for k, v in adapter_state_dict(unet).items()}, out / WEIGHT_NAME)
    return out


def _declare_fp32_compute(config_path: Path) -> None:
    """fp16 on disk, but a plain from_pretrained on a CPU must compute in fp32 (see train_base.save_base_pipeline)."""
    import json

    cfg = json.loads(config_path.read_text(encoding="utf-8"))
    cfg["dtype"] = "float32"
    cfg.pop("torch_dtype", None)
    config_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
