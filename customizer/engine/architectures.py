"""Build Stable-Diffusion-format pipelines, IP-Adapters, theme LoRAs and ControlNets from config.

Used by the tests (tiny random models, as diffusers' own tests do) and by the training recipes (the bundled
model starts from the same builders). Every artefact is saved in the exact on-disk format that diffusers'
from_pretrained / load_ip_adapter / load_lora_weights read, so loading goes through one code path.
"""
from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import yaml

DATA = Path(__file__).resolve().parent.parent / "data"
CLIP_CONTEXT = 77


@lru_cache(maxsize=None)
def geometry(name: str) -> dict[str, Any]:
    return yaml.safe_load((DATA / "architectures.yaml").read_text())[name]


def write_clip_tokenizer(out_dir: str | Path) -> Path:
    """Write vocab.json + merges.txt of the real CLIP BPE (shipped by open_clip) for transformers' CLIPTokenizer."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Same construction as open_clip's SimpleTokenizer, so ids match OpenAI CLIP's 49408-token vocabulary.
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (out / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    tok = CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"), model_max_length=CLIP_CONTEXT)
    tok.save_pretrained(out)
    return out


def _text_config(t: dict[str, Any]):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=49408, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
                          max_position_embeddings=CLIP_CONTEXT, hidden_act="quick_gelu", **t)


def build_components(geo: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Random-initialised components of a StableDiffusion(XL)Pipeline for a geometry."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    u, v, t = geo["unet"], geo["vae"], geo["text_encoder"]
    comps = {
        # the UNet denoises the VAE's latents: as many channels as the VAE's latent space
        "unet": UNet2DConditionModel(in_channels=v["latent_channels"], out_channels=v["latent_channels"], **u),
        "vae": AutoencoderKL(in_channels=3, out_channels=3, **v),
        "text_encoder": CLIPTextModel(_text_config(t)),
        "scheduler": DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   clip_sample=False, set_alpha_to_one=False, steps_offset=1),
    }
    if geo.get("family") == "sdxl":  # second, projecting text encoder; SDXL concatenates both hidden states
        comps["text_encoder_2"] = CLIPTextModelWithProjection(_text_config(t))
    return comps


def save_pipeline(components: dict[str, Any], out_dir: str | Path) -> Path:
    """Save as a diffusers pipeline folder (StableDiffusion or StableDiffusionXL layout, safetensors)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    out = Path(out_dir)
    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(out / "tokenizer"))
    if "text_encoder_2" in components:
        pipe = StableDiffusionXLPipeline(**components, tokenizer=tokenizer, tokenizer_2=tokenizer,
                                         image_encoder=None, feature_extractor=None)
    else:
        pipe = StableDiffusionPipeline(**components, tokenizer=tokenizer, safety_checker=None,
                                       feature_extractor=None, image_encoder=None, requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def ip_adapter_state_dict(unet, image_embed_dim: int, tokens: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A plain IP-Adapter (ImageProjection + decoupled to_k_ip/to_v_ip) in the key layout load_ip_adapter reads.

    Keys count every attention processor of the UNet; only cross-attention ones (odd ids) carry weights.
    """
    gen = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    sd: dict[str, torch.Tensor] = {
        "image_proj.proj.weight": torch.randn(tokens * cross, image_embed_dim, generator=gen) * image_embed_dim**-0.5,
        "image_proj.proj.bias": torch.zeros(tokens * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    channels = unet.config.block_out_channels
    for key_id, name in enumerate(unet.attn_processors.keys()):
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        for k in ("to_k_ip", "to_v_ip"):
            sd[f"ip_adapter.{key_id}.{k}.weight"] = torch.randn(hidden, cross, generator=gen) * cross**-0.5
    return sd


def save_ip_adapter(unet, geo: dict[str, Any], out_dir: str | Path, seed: int = 0,
                    state_dict: dict[str, torch.Tensor] | None = None, image_encoder=None) -> Path:
    """Write <out>/image_encoder (CLIPVisionModelWithProjection) and <out>/ip_adapter.safetensors."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if image_encoder is None:
        torch.manual_seed(seed)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_act="quick_gelu", **geo["image_encoder"]))
    image_encoder.save_pretrained(out / "image_encoder", safe_serialization=True)
    if state_dict is None:
        state_dict = ip_adapter_state_dict(unet, image_encoder.config.projection_dim, geo["ip_adapter_tokens"], seed)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, out / "ip_adapter.safetensors")
    return out


LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def save_random_lora(unet, path: str | Path, rank: int, seed: int, scale: float = 0.5) -> Path:
    """A peft LoRA on the UNet's attention projections with non-zero random weights (peft starts B at zero,
    which would make a theme a no-op), saved with save_lora_weights."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    name = f"random_{seed}"
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS, init_lora_weights=False),
                     adapter_name=name)
    with torch.no_grad():
        for mod_name, p in unet.named_parameters():
            if f"lora_B.{name}" in mod_name:
                p.normal_(0.0, scale)
    state = get_peft_model_state_dict(unet, adapter_name=name)
    StableDiffusionPipeline.save_lora_weights(path.parent, unet_lora_layers=state, weight_name=path.name,
                                              safe_serialization=True)
    unet.delete_adapters(name)
    return path


def save_controlnet(unet, geo: dict[str, Any], out_dir: str | Path, seed: int = 0) -> Path:
    """A ControlNet initialised from the UNet (diffusers' from_unet), random conditioning embedding."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=tuple(
        geo["controlnet"]["conditioning_embedding_out_channels"]))
    with torch.no_grad():  # from_unet zero-initialises the output convs: make the control visible in tests
        for name, p in cn.named_parameters():
            if name.startswith(("controlnet_cond_embedding", "controlnet_down_blocks", "controlnet_mid_block")):
                p.normal_(0.0, 0.2 if name.startswith("controlnet_cond_embedding") else 0.05)
    cn.save_pretrained(out_dir, safe_serialization=True)
    return Path(out_dir)


def build_random_model_dir(out_dir: str | Path, geometry_name: str = "tiny", seed: int = 0,
                           themes: tuple[str, ...] = ("fantasy", "vintage"), controlnet: bool = True) -> Path:
    """A complete random model folder in the bundled layout: pipeline, ip_adapter/, loras/<theme>.safetensors,
    controlnet/. Real diffusers formats, random weights: for tests of the whole code path."""
    geo = geometry(geometry_name)
    out = Path(out_dir)
    comps = build_components(geo, seed)
    save_pipeline(comps, out)
    save_ip_adapter(comps["unet"], geo, out / "ip_adapter", seed)
    if controlnet:  # before the LoRAs: peft leaves wrapped layers behind that from_unet cannot read
        save_controlnet(comps["unet"], geo, out / "controlnet", seed)
    for i, theme in enumerate(themes):
        save_random_lora(comps["unet"], out / "loras" / f"{theme}.safetensors", geo["lora_rank"], seed + 1 + i)
    return out


def build_latent_upscaler_dir(out_dir: str | Path, geometry_name: str = "tiny-latent-upscaler", seed: int = 0) -> Path:
    """A random StableDiffusionLatentUpscalePipeline folder (the class of stabilityai/sd-x2-latent-upscaler)."""
    from diffusers import (AutoencoderKL, EulerDiscreteScheduler, StableDiffusionLatentUpscalePipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextModel, CLIPTokenizer

    geo = geometry(geometry_name)
    out = Path(out_dir)
    torch.manual_seed(seed)
    pipe = StableDiffusionLatentUpscalePipeline(
        vae=AutoencoderKL(in_channels=3, out_channels=3, **geo["vae"]),
        text_encoder=CLIPTextModel(_text_config(geo["text_encoder"])),
        tokenizer=CLIPTokenizer.from_pretrained(write_clip_tokenizer(out / "tokenizer")),
        unet=UNet2DConditionModel(**geo["unet"]),
        scheduler=EulerDiscreteScheduler(prediction_type="sample"),
    )
    pipe.save_pretrained(out, safe_serialization=True)
    return out
