"""Widening the VAE (Net2Net) keeps what it computes, so a wider decoder can train on the same latents."""
from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL

from customizer.engine.architectures import build_components, geometry
from customizer.training import widen_vae


@pytest.fixture(scope="module")
def tiny_vae():
    geo = geometry("tiny")
    geo = {**geo, "vae": {**geo["vae"], "mid_block_add_attention": False}}   # as the bundled VAE
    vae = build_components(geo, seed=3)["vae"].eval()
    with torch.no_grad():   # a freshly built VAE has zero-ish norms; give every tensor a value of its own
        for p in vae.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return vae


def test_a_doubled_vae_encodes_and_decodes_as_the_original(tiny_vae, tmp_path):
    old = list(tiny_vae.config.block_out_channels)
    assert widen_vae.main(["--vae", str(_saved(tiny_vae, tmp_path)), "--channels", ",".join(str(2 * c) for c in old),
                           "--out", str(tmp_path / "wide")]) == 0
    wide = AutoencoderKL.from_pretrained(tmp_path / "wide").eval()
    assert list(wide.config.block_out_channels) == [2 * c for c in old]
    assert sum(p.numel() for p in wide.parameters()) > 3 * sum(p.numel() for p in tiny_vae.parameters())
    size = tiny_vae.config.sample_size
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        z_old, z_new = tiny_vae.encode(x).latent_dist.mean, wide.encode(x).latent_dist.mean
        assert z_old.abs().mean() > 1e-3
        torch.testing.assert_close(z_new, z_old, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(wide.decode(z_old).sample, tiny_vae.decode(z_old).sample, atol=1e-4, rtol=1e-4)
    # the twins of a channel read their inputs with different weights, or training could never tell them apart
    w = wide.decoder.conv_out.weight
    assert not torch.allclose(w[:, 0::2], w[:, 1::2])


def test_a_width_that_changes_the_layers_is_refused(tiny_vae):
    old = list(tiny_vae.config.block_out_channels)
    with pytest.raises(ValueError, match="double"):
        widen_vae.widen(tiny_vae, [old[0] * 3, *old[1:]])
    if len(old) > 1 and len(set(old)) > 1:     # doubling one block only makes it as wide as the next: no shortcut
        with pytest.raises(ValueError, match="change the VAE's layers"):
            widen_vae.widen(tiny_vae, [*old[:-2], 2 * old[-2], old[-1]])


def test_a_vae_with_attention_is_refused():
    with pytest.raises(ValueError, match="attention"):
        widen_vae.widen(build_components(geometry("tiny"), seed=3)["vae"], [32, 64])


def _saved(vae, tmp_path):
    vae.save_pretrained(tmp_path / "src")
    return tmp_path / "src"
