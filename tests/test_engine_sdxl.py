"""The sdxl family goes through the same Engine code path: a tiny random SDXL (two text encoders, text_time
conditioning) with IP-Adapter, theme LoRA and ControlNet, built from config like diffusers' own tests."""
from __future__ import annotations

import numpy as np
import pytest

from customizer.config import ControlNetConfig, IPAdapterConfig, Profile, ThemeConfig
from customizer.recipe import Recipe


@pytest.fixture(scope="module")
def sdxl_engine(tmp_path_factory):
    from customizer.engine.architectures import build_random_model_dir
    from customizer.engine.pipeline import Engine

    d = str(build_random_model_dir(tmp_path_factory.mktemp("sdxl") / "model", "tiny-sdxl", themes=("fantasy",)))
    return Engine(Profile(
        name="tiny-sdxl", family="sdxl", base_model=d,
        ip_adapter=IPAdapterConfig(path=f"{d}/ip_adapter", weight_name="ip_adapter.safetensors"),
        controlnet=ControlNetConfig(model=f"{d}/controlnet", control="pose", scale=1.0),
        themes={"fantasy": ThemeConfig(name="fantasy", adapter="fantasy", lora=f"{d}/loras/fantasy.safetensors")},
        scheduler="euler", steps=2, guidance=5.0, width=32, height=32, device="cpu", dtype="float32"))


def arr(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)


def test_sdxl_family_renders_reproducibly_with_lora_ip_adapter_and_controlnet(sdxl_engine):
    e = sdxl_engine
    assert type(e.pipe).__name__ == "StableDiffusionXLPipeline"
    assert type(e.cn_pipe).__name__ == "StableDiffusionXLControlNetPipeline"
    r = Recipe(kind="portrait", profile="tiny-sdxl", model_id="m", model_revision="r", prompt="a person",
               negative_prompt="blurry", seed=3, scheduler="dpmpp_2m", steps=2, guidance=5.0, width=32, height=32)
    a, _ = e.render(r)
    b, _ = e.render(r)
    assert np.array_equal(arr(a), arr(b))
    themed, _ = e.render(r.replace(loras={"fantasy": 1.0}))
    assert np.abs(arr(themed) - arr(a)).mean() > 0.5
    selfie, _ = e.render(r.replace(ip_adapter_scale=1.0), reference_embeds=e.encode_reference(a))
    assert np.abs(arr(selfie) - arr(a)).mean() > 0.5
    posed, _ = e.render(r.replace(controlnet={"control": "pose", "preset": "half body", "scale": 1.0}))
    assert np.abs(arr(posed) - arr(a)).mean() > 0.5
    # ControlNet shares the base pipeline's modules instead of loading a second copy
    assert e.cn_pipe.unet is e.pipe.unet and e.cn_pipe.vae is e.pipe.vae
