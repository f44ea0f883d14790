"""Upscale 2x as the last step: Lanczos by default, the profile's learned upscaler when it names one (a tiny
random StableDiffusionLatentUpscalePipeline here, the class of stabilityai/sd-x2-latent-upscaler)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from customizer.config import _profile
from customizer.engine.upscale import lanczos2x
from customizer.service import Studio
from customizer.store import Store
from tiny_profiles import tiny_profile_yaml


def test_lanczos2x_doubles_and_keeps_content():
    gradient = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))
    image = Image.fromarray(np.stack([gradient] * 3, axis=-1))
    big = lanczos2x(image)
    assert big.size == (32, 32)
    back = np.asarray(big.resize((16, 16), Image.BOX), dtype=np.float32)
    assert np.abs(back - np.asarray(image, dtype=np.float32)).mean() < 6


def test_profile_with_learned_upscaler_uses_it_and_reproduces(tmp_path, tiny_model_dir):
    from customizer.config import load_config
    from customizer.engine.architectures import build_latent_upscaler_dir
    from customizer.engine.pipeline import Engine

    upscaler = build_latent_upscaler_dir(tmp_path / "upscaler")
    profile = _profile("tiny-up", tiny_profile_yaml(tiny_model_dir, controlnet=None, upscaler=str(upscaler),
                                                    width=64, height=64), tmp_path)
    cfg_path = tmp_path / "spaces.yaml"
    cfg_path.write_text("profiles: {x: {base_model: .}}\n")
    store = Store(tmp_path / "characters.db", tmp_path / "data")
    studio = Studio(load_config(cfg_path), profile, store, engine_factory=Engine)
    cand = studio.design({"age": 40}, seed=3, n=1, advanced={"upscale": True, "steps": 2})["candidates"][0]
    # a local folder is recorded by name, as the base model is (config.public_ref): no server path in recipes
    assert cand["recipe"]["upscale"] == "local:upscaler"
    assert "upscale" in cand["recipe"]["extra"]["timings"]
    with Image.open(cand["path"]) as im:
        assert im.size == (128, 128)
    _, same = studio.reproduce(cand["image_sha256"])
    assert same
    store.close()
