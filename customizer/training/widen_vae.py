"""Widen a VAE without changing what it computes (Net2Net), so its decoder can be trained wider on the same latents.

    python -m customizer.training.widen_vae --vae assets/bundled/vae --channels 32,64,128,256 --out runs/vae_wide

Every channel of a widened block is duplicated (new channel n copies old channel n // 2); a weight that reads a
duplicated input is split between the two copies at a random fraction (so the twins learn apart), and every sum is
the old one. The duplicates of one old GroupNorm group land in one new group (the group count is kept), so the
normalisation statistics are the old ones too. The encoder (no attention: the bundled VAE has none) therefore gives
the same latents, and the UNet trained on them stays valid; the decoder starts as the old decoder with twice the
room: `train_vae --init-from OUT --freeze-encoder` then trains the decoder alone.
"""
from __future__ import annotations

from . import common  # first: sets OMP_WAIT_POLICY before torch loads

import argparse
import sys
from pathlib import Path

import torch


def widen_tensor(old: torch.Tensor, shape: torch.Size, generator: torch.Generator | None = None) -> torch.Tensor:
    """old grown to shape by duplicating along every doubled dimension. Along dimension 1 (a weight's input
    channels) each weight is split between its two copies at a random fraction f and 1 - f, so the sum over the
    duplicates is unchanged while the copies' gradients differ (halves would keep the twins identical for ever)."""
    out = old
    for dim, (a, b) in enumerate(zip(old.shape, shape)):
        if a == b:
            continue
        if b != 2 * a:
            raise ValueError(f"cannot widen {tuple(old.shape)} to {tuple(shape)}: only doubling is function-preserving")
        out = out.repeat_interleave(2, dim=dim)
        if dim == 1:
            f = torch.empty(out[:, 0::2].shape).uniform_(0.2, 0.8, generator=generator).to(out.dtype)
            out = out.clone()
            out[:, 0::2] *= f
            out[:, 1::2] *= 1 - f
    return out


def widen(src, channels: list[int], seed: int = 0):
    """A new AutoencoderKL of src's config with block_out_channels = channels (each the same as src's or twice it)
    that computes what src computes."""
    from diffusers import AutoencoderKL

    config = {k: v for k, v in src.config.items() if not k.startswith("_")}
    old = list(config["block_out_channels"])
    if len(channels) != len(old) or any(c not in (o, 2 * o) for c, o in zip(channels, old)):
        raise ValueError(f"channels {channels} must keep or double each of {old}")
    if config.get("mid_block_add_attention", True):    # doubled channels double its dot products: not preserved
        raise ValueError("only a VAE without mid-block attention widens exactly (mid_block_add_attention: false)")
    wide = AutoencoderKL(**{**config, "block_out_channels": list(channels)})
    src_state, wide_state = src.state_dict(), wide.state_dict()
    if set(src_state) != set(wide_state):   # e.g. a block made as wide as the next loses its shortcut conv
        raise ValueError(f"channels {channels} change the VAE's layers, not only their width: double every block "
                         "or a run of blocks that keeps which ones change width")
    gen = torch.Generator().manual_seed(seed)
    wide.load_state_dict({k: widen_tensor(src_state[k], v.shape, gen).to(v.dtype)
                          for k, v in wide_state.items()})
    return wide


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.training.widen_vae", description=__doc__.split("\n\n")[0])
    ap.add_argument("--vae", type=Path, required=True, help="AutoencoderKL folder to widen")
    ap.add_argument("--channels", required=True, help="new block_out_channels, comma-separated (each kept or doubled)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from diffusers import AutoencoderKL

    src = AutoencoderKL.from_pretrained(args.vae, dtype=torch.float32)
    try:
        wide = widen(src, [int(c) for c in args.channels.split(",")])
    except ValueError as e:
        raise SystemExit(f"widen_vae: {e}") from None
    wide.save_pretrained(args.out, safe_serialization=True)
    print(f"widen_vae: {common.param_count(src):,} -> {common.param_count(wide):,} parameters in {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
