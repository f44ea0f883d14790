"""The project's learned 2x upscaler (customizer/engine/sr_net.py): the net's shape and determinism, its folder
(upscaler.json + fp16 upscaler.safetensors) round trip, and the dispatch: a profile whose `upscaler` is such a
folder upscales through it on the engine's recipe.upscale path; any other id stays diffusers' latent upscaler."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from customizer.availability import missing_parts
from customizer.config import _profile
from customizer.engine import sr_net, upscale
from pixel_helpers import px
from tiny_profiles import tiny_profile_yaml

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models run on one thread


def random_net(channels: int = 8, layers: int = 3, seed: int = 0) -> sr_net.SRNet:
    """A net whose residual is not zero (a trained net's last layer is not; a fresh one is bicubic)."""
    torch.manual_seed(seed)
    net = sr_net.SRNet(channels, layers)
    torch.nn.init.normal_(net.tail.weight, std=0.2)
    torch.nn.init.normal_(net.tail.bias, std=0.05)
    return net.eval()


def picture(side: int = 32, seed: int = 0) -> Image.Image:
    rng = np.random.RandomState(seed)
    arr = np.zeros((side, side, 3), np.uint8) + rng.randint(0, 255, 3).astype(np.uint8)
    arr[side // 4: 3 * side // 4, side // 3: 2 * side // 3] = rng.randint(0, 255, 3)
    return Image.fromarray(arr)


@pytest.fixture
def net_folder(tmp_path):
    return sr_net.save(random_net(), tmp_path / "upscaler", {"test": True})


def test_net_doubles_any_side_in_range_and_starts_as_bicubic():
    x = torch.rand(2, 3, 24, 40)
    with torch.no_grad():
        y = random_net()(x)
    assert y.shape == (2, 3, 48, 80)
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    fresh = sr_net.SRNet(8, 3)
    with torch.no_grad():
        assert torch.equal(fresh(x), sr_net.SRNet.base(x).clamp(0, 1))
        assert (y - fresh(x)).abs().mean() > 0.01   # the residual is there


def test_upscaler_is_deterministic_and_not_classical(net_folder):
    up = sr_net.SRUpscaler(net_folder)
    image = picture()
    a, b = up.upscale(image), sr_net.SRUpscaler(net_folder)(image, "any prompt", seed=123)
    assert a.size == (64, 64) and a.mode == "RGB"
    assert np.array_equal(px(a), px(b))   # same bytes, whatever the prompt and seed
    assert np.abs(px(a) - px(upscale.lanczos2x(image))).mean() > 1


def test_folder_round_trip_is_fp16_weights_loaded_to_fp32(net_folder, tmp_path):
    net = random_net()
    meta = json.loads((net_folder / sr_net.CONFIG).read_text())
    assert meta["kind"] == sr_net.KIND and meta["channels"] == 8 and meta["layers"] == 3
    assert meta["trained_on"] == {"test": True} and meta["params"] == sum(p.numel() for p in net.parameters())
    loaded = sr_net.load(net_folder)
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in loaded.parameters())
    for name, p in loaded.state_dict().items():
        assert torch.equal(p, net.state_dict()[name].half().float()), name
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / sr_net.CONFIG).write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(ValueError, match="not a 2x"):
        sr_net.load(tmp_path / "other")


def test_kind_is_decided_from_the_files_without_loading(net_folder, tmp_path):
    from customizer.engine.architectures import build_latent_upscaler_dir

    own = upscale.LearnedUpscaler(str(net_folder), "cpu", torch.float32, True)
    assert own.kind == upscale.SR_NET and own._pipe is None
    hub = upscale.LearnedUpscaler("stabilityai/sd-x2-latent-upscaler", "cpu", torch.float32, True)
    assert hub.kind == upscale.LATENT_DIFFUSION and hub._pipe is None
    diffusers_dir = build_latent_upscaler_dir(tmp_path / "latent")
    assert upscale.kind_of(str(diffusers_dir)) == upscale.LATENT_DIFFUSION
    assert upscale.kind_of(str(tmp_path / "missing")) == upscale.LATENT_DIFFUSION
    # a hub id is never read as the net: calling it goes to diffusers (here: not in the cache, offline)
    with pytest.raises(OSError):
        hub(picture(), "prompt", 0)
    assert hub._pipe is None


def test_availability_knows_the_net_folder(net_folder, tiny_model_dir, tmp_path):
    profile = _profile("t", tiny_profile_yaml(tiny_model_dir, controlnet=None, upscaler=str(net_folder)), tmp_path)
    assert not [m for m in missing_parts(profile) if "upscaler" in m]
    (net_folder / sr_net.WEIGHTS).unlink()
    assert [m for m in missing_parts(profile) if "upscaler" in m and sr_net.WEIGHTS in m]


def test_profile_upscaler_folder_runs_on_the_recipe_upscale_path(net_folder, tiny_model_dir, tmp_path):
    from customizer.engine.pipeline import Engine
    from customizer.recipe import Recipe

    profile = _profile("tiny-sr", tiny_profile_yaml(tiny_model_dir, controlnet=None, upscaler=str(net_folder),
                                                    width=128, height=128, steps=2), tmp_path)
    engine = Engine(profile)
    assert engine.upscaler.kind == upscale.SR_NET
    assert engine.versions["weights:upscaler"].startswith("sha256:")
    recipe = Recipe(kind="portrait", profile=profile.name, model_id=profile.base_model,
                    model_revision=engine.weights["base"], prompt="portrait of a woman with red hair",
                    negative_prompt="", seed=5, scheduler=profile.scheduler, steps=2, guidance=5.0, width=128,
                    height=128, device=engine.device, dtype="float32", versions=dict(engine.versions))
    plain, _ = engine.render(recipe)
    big, timings = engine.render(dataclasses.replace(recipe, upscale=profile.upscaler))
    again, _ = engine.render(dataclasses.replace(recipe, upscale=profile.upscaler))
    assert plain.size == (128, 128) and big.size == (256, 256) and "upscale" in timings
    assert np.array_equal(px(big), px(sr_net.SRUpscaler(net_folder).upscale(plain)))  # the net, on that image
    assert np.array_equal(px(big), px(again))
    assert np.abs(px(big) - px(upscale.lanczos2x(plain))).mean() > 1


def test_a_studio_records_the_upscaler_by_name_and_reproduces_its_picture(net_folder, tiny_model_dir, tmp_path):
    import yaml

    from customizer.config import load_config
    from customizer.service import Studio
    from customizer.store import Store

    cfg = {"default_profile": "tiny-sr", "storage": {"db": "characters.db", "data_dir": "data"},
           "profiles": {"tiny-sr": tiny_profile_yaml(tiny_model_dir, controlnet=None, upscaler=str(net_folder),
                                                     steps=2)}}
    (tmp_path / "spaces.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(tmp_path / "spaces.yaml")
    store = Store(config.db_path, config.data_dir)
    try:
        from customizer.engine.pipeline import Engine

        studio = Studio(config, config.profile(), store, engine_factory=Engine)
        spec = {"hair_colour": "red", "eye_colour": "green", "age": 30}
        cand = studio.design(spec, seed=3, n=1, advanced={"upscale": True})["candidates"][0]
        # the server's disk layout stays out of recipes (they travel in PNGs, API answers and exports)
        assert cand["recipe"]["upscale"] == "local:upscaler" and str(tmp_path) not in json.dumps(cand["recipe"])
        image, exact = studio.reproduce(cand["image_sha256"])
        assert exact and image.size == (64, 64)
    finally:
        store.close()
