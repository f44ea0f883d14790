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


def test_sdxl_guidance_interval_halves_text_time_and_image_inputs(sdxl_engine):
    """After the cut the UNet gets the positive halves of prompt, pooled text, time ids and IP-Adapter embeds."""
    e = sdxl_engine
    r = Recipe(kind="selfie", profile="tiny-sdxl", model_id="m", model_revision="r", prompt="a person",
               negative_prompt="blurry", seed=3, scheduler="dpmpp_2m", steps=2, guidance=5.0, width=32, height=32,
               ip_adapter_scale=1.0)
    embeds = e.encode_reference(e.render(r.replace(ip_adapter_scale=0.0))[0])
    seen = []

    def record(module, args, kwargs, output):
        added = kwargs["added_cond_kwargs"]
        seen.append((args[0].shape[0], kwargs["encoder_hidden_states"].shape[0], added["text_embeds"].shape[0],
                     added["time_ids"].shape[0], added["image_embeds"][0].shape[0]))

    for pipe, extra in ((e.pipe, {}), (e.cn_pipe, {"controlnet": {"control": "pose", "preset": "half body"}})):
        seen.clear()
        handle = pipe.unet.register_forward_hook(record, with_kwargs=True)
        try:
            cut, _ = e.render(r.replace(guidance_end=0.5, **extra), reference_embeds=embeds)
        finally:
            handle.remove()
        assert seen == [(2, 2, 2, 2, 2), (1, 1, 1, 1, 1)]
        again, _ = e.render(r.replace(guidance_end=0.5, **extra), reference_embeds=embeds)
        full, _ = e.render(r.replace(**extra), reference_embeds=embeds)
        assert np.array_equal(arr(cut), arr(again)) and np.abs(arr(cut) - arr(full)).mean() > 0
