"""The Engine over real diffusers pipelines on the tiny random model (no mocks).

Every "differs" check uses a mean absolute pixel difference well above quantisation noise; every "identical"
check is exact equality of the uint8 pixels (CPU, fixed seed: rendering is deterministic).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from customizer.engine import control, embeddings, fingerprint, schedulers, upscale
from customizer.errors import ModelUnavailable
from customizer.recipe import Recipe
from pixel_helpers import px

DIFFERS = 0.5  # mean |a - b| over uint8 RGB pixels; identical inputs give exactly 0


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models run on one thread


def diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    return float(np.abs(px(a) - px(b)).mean())


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(px(a), px(b))


def make_recipe(engine, **changes) -> Recipe:
    p = engine.profile
    base = Recipe(kind="portrait", profile=p.name, model_id=p.base_model, model_revision=engine.weights["base"],
                  prompt="portrait of a woman with red wavy hair, green eyes", negative_prompt="blurry, lowres",
                  seed=7, scheduler=p.scheduler, steps=3, guidance=5.0, width=32, height=32,
                  device=engine.device, dtype="float32", versions=dict(engine.versions))
    return base.replace(**changes)


def render(engine, recipe: Recipe, **kwargs) -> Image.Image:
    image, timings = engine.render(recipe, **kwargs)
    assert "generate" in timings
    return image


def reference_a() -> Image.Image:
    return Image.fromarray((np.random.RandomState(0).rand(64, 64, 3) * 255).astype(np.uint8))


def reference_b() -> Image.Image:
    """A white square on dark red: different content, and clear edges for the canny control."""
    img = Image.new("RGB", (64, 64), (120, 10, 10))
    img.paste((255, 255, 255), (16, 12, 48, 52))
    return img


@pytest.fixture(scope="module")
def portrait(tiny_engine) -> Image.Image:
    return render(tiny_engine, make_recipe(tiny_engine))


@pytest.fixture(scope="module")
def ref_embeds(tiny_engine) -> tuple[bytes, bytes]:
    return tiny_engine.encode_reference(reference_a()), tiny_engine.encode_reference(reference_b())


# ---- reproducibility ---------------------------------------------------------------------------------------------
def test_same_recipe_same_pixels_other_seed_other_image(tiny_engine, portrait):
    r = make_recipe(tiny_engine)
    again = render(tiny_engine, Recipe.from_json(r.to_json()))  # a stored recipe is enough to regenerate
    assert again.size == (32, 32) and again.mode == "RGB"
    assert same(portrait, again)
    assert px(portrait).std() > 5  # a real image, not a flat colour that would make comparisons vacuous
    assert diff(portrait, render(tiny_engine, r.replace(seed=8))) > DIFFERS
    assert diff(portrait, render(tiny_engine, r.replace(prompt="a knight in armour"))) > DIFFERS


# ---- theme LoRAs -------------------------------------------------------------------------------------------------
def test_lora_themes_switch_and_switch_off(tiny_engine, portrait):
    r = make_recipe(tiny_engine)
    fantasy = render(tiny_engine, r.replace(loras={"fantasy": 1.0}))
    vintage = render(tiny_engine, r.replace(loras={"vintage": 1.0}))
    half = render(tiny_engine, r.replace(loras={"fantasy": 0.5}))
    assert diff(portrait, fantasy) > DIFFERS
    assert diff(portrait, vintage) > DIFFERS
    assert diff(fantasy, vintage) > DIFFERS
    assert diff(half, fantasy) > DIFFERS and diff(half, portrait) > DIFFERS
    # the adapters are really switched off again, and a theme is re-applied exactly
    assert same(render(tiny_engine, r), portrait)
    assert same(render(tiny_engine, r.replace(loras={"fantasy": 1.0})), fantasy)


def test_theme_loras_weights(tiny_engine, monkeypatch):
    e = tiny_engine
    assert e.theme_loras("fantasy", 1.0) == {"fantasy": 1.0}
    assert e.theme_loras("vintage", 0.5) == {"vintage": 0.5}
    assert e.theme_loras("fantasy", 0.0) == {"fantasy": 0.0}
    assert e.theme_loras("none", 1.0) == {}
    assert e.theme_loras("steampunk", 1.0) == {}
    assert e.theme_triggers("fantasy") == "fantasy style" and e.theme_triggers("steampunk") is None
    # strength scales the theme's configured weight
    themes = {k: dataclasses.replace(v, weight=0.8) for k, v in e.profile.themes.items()}
    monkeypatch.setattr(e, "profile", dataclasses.replace(e.profile, themes=themes))
    assert e.theme_loras("fantasy", 0.5) == {"fantasy": 0.4}
    assert e.theme_loras("vintage", 1.0) == {"vintage": 0.8}


def test_unknown_lora_adapter_is_model_unavailable(tiny_engine):
    with pytest.raises(ModelUnavailable, match="steampunk"):
        tiny_engine.render(make_recipe(tiny_engine, loras={"steampunk": 1.0}))


# ---- IP-Adapter --------------------------------------------------------------------------------------------------
def test_reference_conditions_the_selfie(tiny_engine, portrait, ref_embeds):
    emb_a, emb_b = ref_embeds
    r = make_recipe(tiny_engine)
    selfie = r.replace(kind="selfie", ip_adapter_scale=1.0)
    with_a = render(tiny_engine, selfie, reference_embeds=emb_a)
    with_b = render(tiny_engine, selfie, reference_embeds=emb_b)
    assert diff(with_a, portrait) > DIFFERS
    assert diff(with_a, with_b) > DIFFERS
    # scale 0: the reference has no effect at all
    assert same(render(tiny_engine, r.replace(ip_adapter_scale=0.0), reference_embeds=emb_a), portrait)
    # same reference, same recipe -> same selfie
    assert same(render(tiny_engine, selfie, reference_embeds=emb_a), with_a)


def test_guidance_one_uses_positive_half(tiny_engine, ref_embeds):
    emb_a, emb_b = ref_embeds
    selfie = make_recipe(tiny_engine, kind="selfie", ip_adapter_scale=1.0, guidance=1.0)
    a = render(tiny_engine, selfie, reference_embeds=emb_a)
    b = render(tiny_engine, selfie, reference_embeds=emb_b)
    assert a.size == (32, 32)
    assert diff(a, b) > DIFFERS
    assert same(render(tiny_engine, selfie, reference_embeds=emb_a), a)


def test_reference_embeddings_round_trip(tiny_engine, ref_embeds):
    emb_a, emb_b = ref_embeds
    assert emb_a != emb_b
    assert tiny_engine.encode_reference(reference_a()) == emb_a  # deterministic: safe to cache by image hash
    tensors = embeddings.from_bytes(emb_a, "cpu", torch.float32)
    assert len(tensors) == 1 and tensors[0].shape[0] == 2  # [negative, positive] for classifier-free guidance
    assert embeddings.to_bytes(tensors) == emb_a
    pos = embeddings.positive_half(tensors)
    assert pos[0].shape[0] == 1 and torch.equal(pos[0], tensors[0][1:])
    assert embeddings.from_bytes(emb_a, "cpu", torch.float16)[0].dtype == torch.float16
    assert "ip_adapter" in tiny_engine.weights and tiny_engine.weights["ip_adapter"] in tiny_engine.embedding_key


# ---- ControlNet --------------------------------------------------------------------------------------------------
def test_every_pose_preset_renders_and_presets_differ(tiny_engine, portrait):
    r = make_recipe(tiny_engine)
    presets = list(control.pose_presets())
    assert len(presets) >= 2
    images = {}
    for preset in presets:
        images[preset] = render(tiny_engine, r.replace(controlnet={"control": "pose", "preset": preset}))
        assert images[preset].size == (32, 32)
    assert diff(images["close-up"], images["full body"]) > DIFFERS
    assert diff(images["close-up"], portrait) > DIFFERS  # the ControlNet is really in the loop
    again = render(tiny_engine, r.replace(controlnet={"control": "pose", "preset": "close-up"}))
    assert same(again, images["close-up"])
    assert same(render(tiny_engine, r), portrait)  # and out of it again


def flat_reference() -> Image.Image:
    return Image.new("RGB", (64, 64), (120, 10, 10))  # reference_b without the square: no edges at all


def test_canny_control_from_reference(tiny_engine, ref_embeds):
    r = make_recipe(tiny_engine, kind="selfie", ip_adapter_scale=1.0, controlnet={"control": "canny"})
    a = render(tiny_engine, r, reference_embeds=ref_embeds[1], reference_image=reference_b())
    assert a.size == (32, 32) and px(a).std() > 5
    assert same(render(tiny_engine, r, reference_embeds=ref_embeds[1], reference_image=reference_b()), a)
    plain = render(tiny_engine, r.replace(controlnet=None), reference_embeds=ref_embeds[1])
    assert diff(a, plain) > DIFFERS  # the ControlNet pipeline (with IP-Adapter embeds) is the one that ran
    with pytest.raises(ValueError, match="reference"):
        tiny_engine.render(r)


def test_canny_edges_at_render_size():
    # At the bundled/real sizes (>= 128) the reference's edges survive into the control image.
    edges = np.asarray(control.canny_image(reference_b(), 128, 128))
    assert edges.shape == (128, 128, 3) and edges.max() > 64
    assert np.asarray(control.canny_image(flat_reference(), 128, 128)).max() == 0


def test_canny_edges_reach_the_controlnet_at_small_size(tiny_engine):
    assert np.asarray(control.canny_image(reference_b(), 32, 32)).max() == 255
    r = make_recipe(tiny_engine, controlnet={"control": "canny"})
    assert diff(render(tiny_engine, r, reference_image=reference_b()),
                render(tiny_engine, r, reference_image=flat_reference())) > DIFFERS


def test_pose_image_size_and_content():
    img = control.pose_image("full body", 48, 40)
    assert img.size == (48, 40) and img.mode == "RGB"
    a = np.asarray(img)
    lit = (a.sum(-1) > 0).mean()
    assert a.max() > 100 and 0.02 < lit < 0.9
    assert not np.array_equal(a, np.asarray(control.pose_image("profile", 48, 40)))


def test_unknown_pose_preset_lists_presets(tiny_engine):
    with pytest.raises(ValueError) as e:
        control.pose_image("handstand", 32, 32)
    for preset in control.pose_presets():
        assert preset in str(e.value)
    with pytest.raises(ValueError, match="handstand"):
        tiny_engine.render(make_recipe(tiny_engine, controlnet={"control": "pose", "preset": "handstand"}))
    with pytest.raises(ValueError, match="pose"):
        tiny_engine.render(make_recipe(tiny_engine, controlnet={"control": "depth"}))


# ---- samplers ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", list(schedulers.catalogue()))
def test_every_sampler_renders_reproducibly(tiny_engine, sampler):
    r = make_recipe(tiny_engine, scheduler=sampler)
    a = render(tiny_engine, r)
    assert a.size == (32, 32) and px(a).std() > 5
    assert type(tiny_engine.pipe.scheduler).__name__ == schedulers.catalogue()[sampler]["class"]
    assert same(render(tiny_engine, r), a)  # ancestral samplers draw their noise from the recipe's seed too


def test_unknown_sampler_names_choices(tiny_engine):
    with pytest.raises(ValueError) as e:
        tiny_engine.render(make_recipe(tiny_engine, scheduler="plms_turbo"))
    for name in schedulers.catalogue():
        assert name in str(e.value)


# ---- upscaling ---------------------------------------------------------------------------------------------------
def test_lanczos_upscale_doubles(tiny_engine, portrait):
    big, timings = tiny_engine.render(make_recipe(tiny_engine, upscale=upscale.CLASSICAL))
    assert big.size == (64, 64) and "upscale" in timings
    assert same(big, upscale.lanczos2x(portrait))  # the last step, over the very same image


def test_unknown_upscaler_is_model_unavailable(tiny_engine):
    with pytest.raises(ModelUnavailable, match="not configured"):
        tiny_engine.render(make_recipe(tiny_engine, upscale="stabilityai/sd-x2-latent-upscaler"))


# ---- provenance ------------------------------------------------------------------------------------------------
def test_fingerprints_and_versions(tiny_engine, tiny_model_dir):
    w = tiny_engine.weights
    assert set(w) == {"base", "ip_adapter", "lora:fantasy", "lora:vintage", "controlnet"}
    for value in w.values():
        assert value.startswith("sha256:") and len(value) == len("sha256:") + 32
    assert len(set(w.values())) == len(w)  # each artefact is told apart
    assert fingerprint.fingerprint(str(tiny_model_dir)) == w["base"]  # stable across calls
    assert fingerprint.fingerprint(str(tiny_model_dir / "loras" / "fantasy.safetensors")) == w["lora:fantasy"]
    for lib in ("torch", "diffusers", "peft", "transformers", "customizer"):
        assert tiny_engine.versions[lib]
    assert tiny_engine.versions["torch"] == torch.__version__
    assert tiny_engine.versions["weights:base"] == w["base"]
    assert fingerprint.fingerprint("no-such-org/no-such-model") == "unknown"


# ---- the on-disk format is the standard one -----------------------------------------------------------------
def test_model_folder_loads_with_plain_diffusers(tiny_engine, tiny_model_dir):
    """The tiny folder (same layout as the bundled model) loads with stock diffusers calls, and the stock
    pipeline renders the very image the Engine renders for the same inputs."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    d = tiny_model_dir
    pipe = StableDiffusionPipeline.from_pretrained(d)
    pipe.load_ip_adapter(d / "ip_adapter", subfolder="", weight_name="ip_adapter.safetensors",
                         image_encoder_folder="image_encoder")
    pipe.load_lora_weights(d / "loras", weight_name="fantasy.safetensors", adapter_name="fantasy")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.image_encoder is not None and "fantasy" in pipe.get_list_adapters()["unet"]

    r = make_recipe(tiny_engine, scheduler="euler", loras={"fantasy": 1.0})
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_ip_adapter_scale(0.0)
    pipe.set_adapters(["fantasy"], adapter_weights=[1.0])
    with torch.inference_mode():
        stock = pipe(prompt=r.prompt, negative_prompt=r.negative_prompt, num_inference_steps=r.steps,
                     guidance_scale=r.guidance, width=r.width, height=r.height,
                     ip_adapter_image=Image.new("RGB", (64, 64)),
                     generator=torch.Generator("cpu").manual_seed(r.seed)).images[0]
    assert same(stock, render(tiny_engine, r))
