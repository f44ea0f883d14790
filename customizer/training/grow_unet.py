"""Grow a trained UNet deeper without changing what it computes (function-preserving depth growth).

    python -m customizer.training.grow_unet --from assets/bundled --layers 2,2,2 --out RUNS/grown

Why: the bundled UNet has plateaued (more steps and another loss weighting bought nothing; bench/
base-continuation-ab.json), and a new geometry trained from scratch costs several sessions of CPU hours. Growing the
trained one keeps everything it learned and adds capacity that starts as the identity, so training goes on from the
shipped model's quality instead of from noise.

diffusers' UNet2DConditionModel takes `layers_per_block` per level. A level grown from n to m layers gets:
- down path: m - n new resnet (+ attention) layers after the old ones. A new resnet's conv2 is zero, so it returns its
  input; a new attention's proj_out is zero, so it adds nothing. Each new layer's output (a skip) equals the last
  old layer's output.
- up path: m - n more resnet (+ attention) layers. Skips are consumed from the end, so the old first resnet (which
  read the last layer's output) stays first; the new ones follow it, each with conv2 zero and a 1x1 shortcut of
  [I | 0] (it passes the hidden state and ignores its skip); the old others move m - n places on and read the same
  skips as before.
The IP-Adapter's to_k_ip / to_v_ip are stored per processor index (every attention processor counts), so they are
moved by processor name; the new attentions' adapter weights keep diffusers' fresh initialisation (their proj_out
is zero, so they add nothing until trained).

--out holds unet/ and ip_adapter/ip_adapter.safetensors: what `train_base --init-from` reads (warm_start.py), with
`--geometry` naming an architectures.yaml entry of the grown shape; and loras/, the source's theme LoRAs under the new
module names. Only a uniform depth (e.g. 2,2,2) runs in the app: diffusers' set_ip_adapter_scale (0.42) fails on a
per-level list.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

_LAYER = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)$")


def as_levels(layers, n_levels: int) -> list[int]:
    return [int(layers)] * n_levels if isinstance(layers, int) else [int(n) for n in layers]


def old_name(new_name: str, old_layers: list[int], new_layers: list[int]) -> str | None:
    """The old model's name of a new model's parameter / module path, or None where the new one is grown."""
    m = _LAYER.match(new_name)
    if m is None:
        return new_name
    path, block, kind, k, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
    if path == "down_blocks":
        return new_name if k < old_layers[block] else None
    level = len(old_layers) - 1 - block          # up block j serves level L-1-j
    grown = new_layers[level] - old_layers[level]
    if k == 0:
        return new_name
    if k <= grown:
        return None
    return f"{path}.{block}.{kind}.{k - grown}.{rest}"


def new_name(old: str, old_layers: list[int], new_layers: list[int]) -> str:
    """Where an old model's parameter / module path sits in the grown model (the inverse of old_name)."""
    m = _LAYER.match(old)
    if m is None or m.group(1) == "down_blocks" or int(m.group(4)) == 0:
        return old
    path, block, kind, k, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
    grown = new_layers[len(old_layers) - 1 - block] - old_layers[len(old_layers) - 1 - block]
    return f"{path}.{block}.{kind}.{k + grown}.{rest}"


def grow_lora(flat: dict[str, torch.Tensor], old_layers: list[int], new_layers: list[int],
              prefix: str = "unet.") -> dict[str, torch.Tensor]:
    """A LoRA file (save_lora_weights layout, keys 'unet.<module path>.lora_A.weight') for the grown UNet: every
    adapted module keeps its LoRA under its new name; the new layers get none, so the theme works as before."""
    out = {}
    for key, value in flat.items():
        if not key.startswith(prefix):
            raise ValueError(f"LoRA key {key!r} is not a UNet key")
        out[prefix + new_name(key[len(prefix):], old_layers, new_layers)] = value
    return out


def grown_config(config: dict, layers: list[int]) -> dict:
    # one number where every level has the same depth: diffusers' set_ip_adapter_scale (0.42) fails on a list, so
    # only a uniform depth runs in the app with its IP-Adapter
    depth = layers[0] if len(set(layers)) == 1 else list(layers)
    return {k: v for k, v in config.items() if not k.startswith("_")} | {"layers_per_block": depth}


@torch.no_grad()
def grow(unet, layers: list[int]):
    """A new UNet2DConditionModel (no IP-Adapter) with `layers` per level that computes what `unet` computes."""
    from diffusers import UNet2DConditionModel

    from ..engine import ip_adapter

    n = len(unet.config.block_out_channels)
    old_layers, new_layers = as_levels(unet.config.layers_per_block, n), as_levels(layers, n)
    if len(new_layers) != n or any(b < a for a, b in zip(old_layers, new_layers)):
        raise ValueError(f"layers {new_layers} must name {n} levels, none fewer than {old_layers}")
    torch.manual_seed(0)
    new = UNet2DConditionModel(**grown_config(dict(unet.config), new_layers))
    old_state = ip_adapter.base_unet_state_dict(unet)
    state, fresh_modules = new.state_dict(), set()
    for key in state:
        source = old_name(key, old_layers, new_layers)
        if source is None:
            fresh_modules.add(".".join(key.split(".")[:4]))    # e.g. up_blocks.1.resnets.1
            continue
        state[key] = old_state.pop(source)
    if old_state:
        raise ValueError(f"weights of the old UNet with no place in the grown one: {sorted(old_state)[:3]}")
    new.load_state_dict(state)
    for name in sorted(fresh_modules):
        module = new.get_submodule(name)
        if name.split(".")[2] == "resnets":
            module.conv2.weight.zero_()
            module.conv2.bias.zero_()
            if module.conv_shortcut is not None:       # up path: [hidden | skip] -> hidden
                w = module.conv_shortcut.weight
                w.zero_()
                w[:, : w.shape[0], 0, 0] = torch.eye(w.shape[0])
                module.conv_shortcut.bias.zero_()
        else:
            module.proj_out.weight.zero_()
            module.proj_out.bias.zero_()
    return new


def grow_adapter(flat: dict[str, torch.Tensor], old_unet, new_unet) -> dict[str, torch.Tensor]:
    """An IP-Adapter file's tensors (load_ip_adapter's layout, ids = enumerate(attn_processors)) moved from old_unet
    onto the grown new_unet by processor name; the new attentions get a fresh adapter initialisation."""
    from ..engine.architectures import ip_adapter_state_dict

    n = len(old_unet.config.block_out_channels)
    old_layers = as_levels(old_unet.config.layers_per_block, n)
    new_layers = as_levels(new_unet.config.layers_per_block, n)
    old_ids = {name: i for i, name in enumerate(old_unet.attn_processors)}
    cross = int(new_unet.config.cross_attention_dim)
    out = ip_adapter_state_dict(new_unet, flat["image_proj.proj.weight"].shape[1],
                                flat["image_proj.proj.weight"].shape[0] // cross, seed=0)
    out |= {k: v for k, v in flat.items() if k.startswith("image_proj.")}
    for new_id, name in enumerate(new_unet.attn_processors):
        source = old_name(name, old_layers, new_layers)
        for part in ("to_k_ip", "to_v_ip"):
            key = f"ip_adapter.{new_id}.{part}.weight"
            if key in out and source is not None:
                out[key] = flat[f"ip_adapter.{old_ids[source]}.{part}.weight"]
    return out


def main(argv: list[str] | None = None) -> None:
    from diffusers import UNet2DConditionModel
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from .warm_start import ADAPTER_FILE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="source", type=Path, required=True,
                    help="an assembled model (e.g. assets/bundled): unet/ and ip_adapter/")
    ap.add_argument("--layers", required=True, help="layers per level, comma separated (e.g. 1,2,2)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    old = UNet2DConditionModel.from_pretrained(args.source / "unet", torch_dtype=torch.float32)
    try:
        new = grow(old, [int(x) for x in args.layers.split(",")])
    except ValueError as e:
        raise SystemExit(f"--layers: {e}") from e
    new.save_pretrained(args.out / "unet")
    adapter = args.source / ADAPTER_FILE
    if adapter.is_file():
        flat = {k: v.float() for k, v in load_file(adapter).items()}
        (args.out / ADAPTER_FILE).parent.mkdir(parents=True, exist_ok=True)
        save_file(grow_adapter(flat, old, new), args.out / ADAPTER_FILE)
    n = len(old.config.block_out_channels)
    old_layers, new_layers = as_levels(old.config.layers_per_block, n), as_levels(new.config.layers_per_block, n)
    loras = sorted((args.source / "loras").glob("*.safetensors"))
    for lora in loras:    # theme LoRAs, so a candidate renders its themes as the source did until they are retrained
        (args.out / "loras").mkdir(parents=True, exist_ok=True)
        with safe_open(lora, "pt") as f:
            metadata = f.metadata()
        save_file(grow_lora(load_file(lora), old_layers, new_layers), args.out / "loras" / lora.name, metadata)
    (args.out / "grown.json").write_text(json.dumps(
        {"from": str(args.source), "layers_per_block": new_layers,
         "unet_params": sum(p.numel() for p in new.parameters()),
         "loras": [p.name for p in loras]}, indent=1) + "\n")
    print(f"grown UNet {new_layers} -> {args.out}")


if __name__ == "__main__":
    main()
