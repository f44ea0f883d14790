"""Start a base run from an assembled model's UNet and IP-Adapter (train_base --init-from).

Why: a run folder with its checkpoint lives outside the repository and can be lost between working sessions; the
assembled model (assets/bundled) is committed. Continuing from it with a fresh schedule costs the latents (about
8 minutes) instead of every stage again. Its frozen encoders and VAE are the model's own (train_base --text-encoder
DIR --image-encoder DIR/ip_adapter --vae DIR/vae), so the UNet meets the conditioning it was trained on.
"""
from __future__ import annotations

from pathlib import Path

UNET_FILE = Path("unet") / "diffusion_pytorch_model.safetensors"
ADAPTER_FILE = Path("ip_adapter") / "ip_adapter.safetensors"


def load_into(unet, model_dir: Path, use_ip: bool) -> dict:
    """Copy model_dir's UNet (and adapter when use_ip) weights into the training UNet, in fp32, in place.

    A model that differs only in having fewer layers per level is grown to this one's depth first (grow_unet.py: the
    new layers start as the identity, so training goes on from what the model computes). Refuses a model of any
    other shape (a key missing or left over, or another tensor shape), so a warm start never silently trains half a
    model from scratch. Returns what was loaded, for the run's log."""
    from safetensors.torch import load_file

    from ..engine import ip_adapter
    from . import grow_unet

    model_dir = Path(model_dir)
    # an assembled model has unet/ beside ip_adapter/; a train_base run folder has pipeline/unet/ beside it
    unet_file = model_dir / "pipeline" / UNET_FILE if (model_dir / "pipeline" / UNET_FILE).is_file() \
        else model_dir / UNET_FILE
    for path in (unet_file, *((model_dir / ADAPTER_FILE,) if use_ip else ())):
        if not path.is_file():
            raise SystemExit(f"--init-from {model_dir}: no {path.relative_to(model_dir)} (an assembled model folder, "
                             "e.g. assets/bundled, or a train_base run folder)")
    saved = {k: v.float() for k, v in load_file(unet_file).items()}
    grown = _grow_if_shallower(saved, unet_file.parent / "config.json", unet)
    if grown is not None:
        saved = ip_adapter.base_unet_state_dict(grown[1])
    own = ip_adapter.base_unet_state_dict(unet)
    missing, extra = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    wrong = [k for k in set(own) & set(saved) if own[k].shape != saved[k].shape]
    if missing or extra or wrong:
        raise SystemExit(f"--init-from {model_dir}: its UNet has another shape (missing {missing[:3]}, "
                         f"unexpected {extra[:3]}, other shapes {wrong[:3]}): same geometry and --global-text needed")
    unet.load_state_dict(saved, strict=False)   # the adapter's keys are not in this file; nothing else is missing
    loaded = {"unet_tensors": len(saved)}
    if grown is not None:
        loaded["grown_from_layers"] = grow_unet.as_levels(grown[0].config.layers_per_block,
                                                          len(unet.config.block_out_channels))
    if use_ip:
        flat = {k: v.float() for k, v in load_file(model_dir / ADAPTER_FILE).items()}
        if grown is not None:
            flat = grow_unet.grow_adapter(flat, grown[0], unet)
        before = ip_adapter.adapter_state_dict(unet)
        if set(flat) != set(before) or any(flat[k].shape != before[k].shape for k in flat):
            raise SystemExit(f"--init-from {model_dir}: its IP-Adapter has another shape")
        unet._load_ip_adapter_weights([ip_adapter.split_state_dict(flat)], low_cpu_mem_usage=False)
        loaded["adapter_tensors"] = len(flat)
    return loaded


def _grow_if_shallower(saved: dict, config_file: Path, unet):
    """(saved UNet, the saved weights grown to unet's depth) when the saved model differs from unet only in having
    fewer layers per level (grow_unet.py: the grown one computes what the saved one computes), else None."""
    import json

    from diffusers import UNet2DConditionModel

    from . import grow_unet

    if not config_file.is_file():
        return None
    config = {k: v for k, v in json.loads(config_file.read_text()).items() if not k.startswith("_")}
    want = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    levels = len(want["block_out_channels"])
    old_layers = grow_unet.as_levels(config.get("layers_per_block", 2), levels)
    new_layers = grow_unet.as_levels(want["layers_per_block"], levels)
    same_otherwise = all(json.dumps(config.get(k)) == json.dumps(v) for k, v in want.items()
                         if k not in ("layers_per_block", "encoder_hid_dim_type", "encoder_hid_dim"))
    if old_layers == new_layers or not same_otherwise or any(b < a for a, b in zip(old_layers, new_layers)):
        return None
    old = UNet2DConditionModel(**config)
    if set(old.state_dict()) != set(saved):
        return None
    old.load_state_dict(saved)
    return old, grow_unet.grow(old, new_layers)
