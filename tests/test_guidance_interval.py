"""Classifier-free guidance on the first steps only (recipe.guidance_end, engine/guidance.py), on the tiny real
pipeline: the late steps run the positive half of the batch alone, with every doubled input (prompt embeddings,
IP-Adapter image embeddings, ControlNet image) halved to match; recipes without the interval render as before."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from customizer import settings as settings_mod
from customizer.config import ConfigError, _profile
from customizer.engine import embeddings
from customizer.errors import SpecError
from customizer.recipe import Recipe, cfg_steps, recipe_guidance_end
from pixel_helpers import px
from tiny_profiles import tiny_profile_yaml

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models run on one thread

DIFFERS = 0.5  # mean |a - b| over uint8 RGB pixels


def make_recipe(engine, **changes) -> Recipe:
    p = engine.profile
    base = Recipe(kind="selfie", profile=p.name, model_id=p.base_model, model_revision=engine.weights["base"],
                  prompt="portrait of a woman with red wavy hair, green eyes", negative_prompt="blurry, lowres",
                  seed=7, scheduler="dpmpp_2m", steps=4, guidance=5.0, width=32, height=32,
                  device=engine.device, dtype="float32", versions=dict(engine.versions))
    return base.replace(**changes)


def reference():
    from PIL import Image

    return Image.fromarray((np.random.RandomState(0).rand(64, 64, 3) * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def ref_embeds(tiny_engine) -> bytes:
    return tiny_engine.encode_reference(reference())


class Recorder:
    """What each UNet / ControlNet call really received (after every pre-hook): a forward hook."""

    def __init__(self, module):
        self.calls: list[dict] = []
        self.handle = module.register_forward_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs, output):
        sample = args[0] if args else kwargs["sample"]
        added = kwargs.get("added_cond_kwargs") or {}
        self.calls.append({"batch": sample.shape[0], "text": kwargs["encoder_hidden_states"].clone(),
                           "image": [e.clone() for e in added.get("image_embeds") or []],
                           "control": kwargs.get("controlnet_cond")})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def pixels(engine, recipe, **kw):
    return px(engine.render(recipe, **kw)[0])


# ---- which steps run CFG ---------------------------------------------------------------------------------------
def test_cfg_steps_rounds_up_and_keeps_at_least_one():
    assert cfg_steps(8, None) == 8 and cfg_steps(8, 1.0) == 8
    assert cfg_steps(8, 0.5) == 4 and cfg_steps(8, 0.375) == 3 and cfg_steps(8, 0.4) == 4
    assert cfg_steps(4, 0.1) == 1 and cfg_steps(1, 0.5) == 1
    # the recipe names an interval only where it changes something
    assert recipe_guidance_end(8, 5.0, 0.5) == 0.5
    assert recipe_guidance_end(8, 5.0, 1.0) is None
    assert recipe_guidance_end(1, 5.0, 0.5) is None  # one step: it runs CFG anyway
    assert recipe_guidance_end(8, 1.0, 0.5) is None  # no CFG at all


def test_malformed_guidance_end_in_a_recipe_is_refused(tiny_engine):
    for bad in (0, 1.5, -0.5, "half", float("nan"), True):
        with pytest.raises(SpecError, match="guidance_end"):
            tiny_engine.render(make_recipe(tiny_engine, guidance_end=bad))


# ---- the render ------------------------------------------------------------------------------------------------
def test_late_steps_run_the_positive_half_alone(tiny_engine, ref_embeds):
    r = make_recipe(tiny_engine, ip_adapter_scale=1.0)
    with Recorder(tiny_engine.pipe.unet) as full:
        a = pixels(tiny_engine, r, reference_embeds=ref_embeds)
    with Recorder(tiny_engine.pipe.unet) as cut:
        b = pixels(tiny_engine, r.replace(guidance_end=0.5), reference_embeds=ref_embeds)
    assert [c["batch"] for c in full.calls] == [2, 2, 2, 2]
    assert [c["batch"] for c in cut.calls] == [2, 2, 1, 1]
    # before the cut the same inputs as full CFG; after it the positive halves of them, never a mix of batch sizes
    neg_pos_text, neg_pos_image = full.calls[0]["text"], full.calls[0]["image"][0]
    for c in cut.calls[:2]:
        assert torch.equal(c["text"], neg_pos_text) and torch.equal(c["image"][0], neg_pos_image)
    positive = embeddings.from_bytes(ref_embeds, tiny_engine.device, tiny_engine.dtype)[0].chunk(2)[1]
    for c in cut.calls[2:]:
        assert torch.equal(c["text"], neg_pos_text.chunk(2)[1])
        assert c["image"][0].shape[0] == 1 and torch.equal(c["image"][0], positive)
    # the first two steps are identical, so the images differ only by the late steps: some, not everything
    assert 0.0 < float(np.abs(a - b).mean()) < 40
    assert np.array_equal(pixels(tiny_engine, r.replace(guidance_end=0.5), reference_embeds=ref_embeds), b)
    # the next call is a full-CFG render again: the pipeline's guidance is reset by its own call
    assert np.array_equal(pixels(tiny_engine, r, reference_embeds=ref_embeds), a)


def test_no_interval_renders_exactly_as_before(tiny_engine):
    r = make_recipe(tiny_engine, kind="portrait")
    base = pixels(tiny_engine, r)
    assert np.array_equal(pixels(tiny_engine, r.replace(guidance_end=1.0)), base)
    assert np.array_equal(pixels(tiny_engine, Recipe.from_json(r.to_json())), base)
    assert "guidance_end" in r.to_dict() and r.guidance_end is None
    # an old stored recipe (no such key) loads as "CFG on every step"
    old = {k: v for k, v in r.to_dict().items() if k != "guidance_end"}
    assert Recipe.from_dict(old).guidance_end is None and Recipe.from_dict(old).cfg_steps() == 4


def test_a_batch_of_candidates_is_cut_per_image(tiny_engine):
    seeds = [3, 4, 5]
    r = make_recipe(tiny_engine, kind="portrait", guidance_end=0.25)
    recipes = [r.replace(seed=s, batch={"seeds": seeds, "index": i}) for i, s in enumerate(seeds)]
    with Recorder(tiny_engine.pipe.unet) as rec:
        images = [px(im) for im, _ in tiny_engine.render_batch(recipes)]
    assert [c["batch"] for c in rec.calls] == [6, 3, 3, 3]
    assert torch.equal(rec.calls[1]["text"], rec.calls[0]["text"][3:])  # the positive rows of every image
    assert len({im.tobytes() for im in images}) == 3
    again, _ = tiny_engine.render(recipes[1])
    assert np.array_equal(px(again), images[1])


def test_controlnet_gets_the_positive_half_of_its_control_image(tiny_engine, ref_embeds):
    r = make_recipe(tiny_engine, ip_adapter_scale=1.0, controlnet={"control": "pose", "preset": "half body"},
                    guidance_end=0.5)
    with Recorder(tiny_engine.cn_pipe.controlnet) as cn, Recorder(tiny_engine.cn_pipe.unet) as unet:
        a = pixels(tiny_engine, r, reference_embeds=ref_embeds)
    assert [c["batch"] for c in cn.calls] == [2, 2, 1, 1] == [c["batch"] for c in unet.calls]
    assert [c["control"].shape[0] for c in cn.calls] == [2, 2, 1, 1]
    assert torch.equal(cn.calls[2]["control"], cn.calls[0]["control"].chunk(2)[1])
    full = pixels(tiny_engine, r.replace(guidance_end=None), reference_embeds=ref_embeds)
    assert float(np.abs(a - full).mean()) > 0


# ---- settings and profile ----------------------------------------------------------------------------------------
def test_settings_take_the_profile_default_and_validate(tiny_model_dir):
    profile = _profile("p", {**tiny_profile_yaml(tiny_model_dir), "guidance_end": 0.5}, tiny_model_dir)
    assert profile.guidance_end == 0.5
    assert settings_mod.Settings.resolve(profile, None).guidance_end == 0.5
    assert settings_mod.Settings.resolve(profile, {"guidance_end": 1}).guidance_end == 1.0
    for bad in (0, 0.05, 1.5, "x"):
        with pytest.raises(SpecError, match="guidance_end"):
            settings_mod.Settings.resolve(profile, {"guidance_end": bad})
    assert _profile("p", tiny_profile_yaml(tiny_model_dir), tiny_model_dir).guidance_end == 1.0
    with pytest.raises(ConfigError, match="guidance_end"):
        _profile("p", {**tiny_profile_yaml(tiny_model_dir), "guidance_end": 0}, tiny_model_dir)


def test_studio_records_the_interval_and_reproduces_it(studio):
    out = studio.design({"hair_colour": "red"}, seed=11, advanced={"guidance_end": 0.5, "steps": 4})
    c = out["candidates"][0]
    assert c["recipe"]["guidance_end"] == 0.5
    image, same = studio.reproduce(c["image_sha256"])
    assert same
    full = studio.design({"hair_colour": "red"}, seed=11, advanced={"steps": 4})["candidates"][0]
    assert full["recipe"]["guidance_end"] is None and full["image_sha256"] != c["image_sha256"]
