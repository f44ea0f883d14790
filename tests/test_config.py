"""spaces.yaml -> profiles, environment overrides, clear ConfigErrors; model availability checks; advanced settings."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import yaml

from customizer import availability
from customizer.availability import missing_parts, require_available
from customizer.config import DEFAULT_CONFIG, REPO_ROOT, load_config
from customizer.errors import ConfigError, ModelUnavailable, SpecError
from customizer.settings import Settings, samplers

ENV = ("CUSTOMIZER_PROFILE", "CUSTOMIZER_DB", "CUSTOMIZER_DATA_DIR", "CUSTOMIZER_CONFIG")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def write_config(path: Path, profiles: dict, **top) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({**top, "profiles": profiles}))
    return path


def local_profile(d: Path, **overrides) -> dict:
    """Every part a profile can name, all under folder d."""
    profile = {
        "family": "sd15", "base_model": str(d),
        "ip_adapter": {"path": f"{d}/ip_adapter", "subfolder": "", "weight_name": "ip_adapter.safetensors",
                       "image_encoder_folder": "image_encoder"},
        "controlnet": {"model": f"{d}/controlnet"},
        "themes": {t: {"lora": f"{d}/loras/{t}.safetensors", "adapter": t} for t in ("fantasy", "vintage")},
        "upscaler": f"{d}/upscaler",
        "scheduler": "euler", "steps": 3, "guidance": 5.0, "width": 32, "height": 48,
    }
    profile.update(overrides)
    return profile


# ---- the repo's spaces.yaml --------------------------------------------------------------------------------------
def test_repo_config_profiles(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # relative paths resolve against the file, not the working directory
    cfg = load_config()
    assert cfg.path == DEFAULT_CONFIG.resolve()
    assert set(cfg.profiles) == {"bundled", "sd15", "sd15-zerogpu", "sdxl"}
    assert cfg.default_profile == "bundled" and cfg.profile().name == "bundled"
    assert cfg.db_path == REPO_ROOT / "characters.db" and cfg.data_dir == REPO_ROOT / "data"

    b = cfg.profile("bundled")
    assert b.family == "sd15" and not b.allow_download
    assert b.base_model == str(REPO_ROOT / "assets" / "bundled")
    assert b.ip_adapter.path == str(REPO_ROOT / "assets" / "bundled" / "ip_adapter")
    assert b.ip_adapter.weight_name == "ip_adapter.safetensors" and b.ip_adapter.subfolder == ""
    assert b.themes["fantasy"].lora == str(REPO_ROOT / "assets/bundled/loras/fantasy.safetensors")
    # the bundled LoRAs were trained on captions without theme words: the adapter weight alone sets the look
    assert b.themes["vintage"].triggers == "" and b.themes["vintage"].adapter == "vintage"
    assert (b.steps, b.guidance, b.width, b.height, b.scheduler) == (8, 5.0, 128, 128, "dpmpp_2m")
    assert b.controlnet is None and b.upscaler is None and b.extra == {}

    s = cfg.profile("sd15")
    assert s.family == "sd15" and s.allow_download
    assert s.base_model == "stable-diffusion-v1-5/stable-diffusion-v1-5"  # hub ids are left alone
    assert (s.ip_adapter.path, s.ip_adapter.subfolder) == ("h94/IP-Adapter", "models")
    assert s.ip_adapter.image_encoder_folder == "models/image_encoder"
    assert s.controlnet.model == "lllyasviel/control_v11p_sd15_openpose"
    assert (s.controlnet.control, s.controlnet.scale) == ("pose", 0.7)
    assert s.upscaler == "stabilityai/sd-x2-latent-upscaler"
    assert s.themes["fantasy"].lora is None and "fantasy" in s.themes["fantasy"].triggers

    x = cfg.profile("sdxl")
    assert x.family == "sdxl" and x.base_model == "stabilityai/stable-diffusion-xl-base-1.0"
    assert x.ip_adapter.subfolder == "sdxl_models" and (x.width, x.height) == (1024, 1024)
    assert x.controlnet is None


def test_relative_paths_resolve_against_the_file(tmp_path, monkeypatch):
    cfg_dir = tmp_path / "conf"
    (cfg_dir / "weights").mkdir(parents=True)
    path = write_config(cfg_dir / "spaces.yaml", {
        "p": {"base_model": "./model", "ip_adapter": {"path": "weights", "weight_name": "ip.safetensors"},
              "controlnet": {"model": "owner/controlnet"},
              "themes": {"fantasy": {"lora": "assets/loras/f.safetensors"}}, "future_key": 3}},
        storage={"db": "db/chars.db", "data_dir": "/abs/data"})
    monkeypatch.chdir(tmp_path)
    cfg = load_config(Path("conf/spaces.yaml"))  # a relative config path works too
    p = cfg.profile()
    assert cfg.default_profile == "p"  # no default_profile: the first profile
    assert p.base_model == str(cfg_dir / "model")
    assert p.ip_adapter.path == str(cfg_dir / "weights")  # existing folder without ./ prefix
    assert p.ip_adapter.subfolder == "" and p.ip_adapter.image_encoder_folder == "image_encoder"
    assert p.controlnet.model == "owner/controlnet"  # looks like a hub id and does not exist here
    assert p.themes["fantasy"].lora == str(cfg_dir / "assets/loras/f.safetensors")
    assert p.themes["fantasy"].adapter == "fantasy" and p.themes["fantasy"].weight == 1.0
    assert p.extra == {"future_key": 3}
    assert cfg.db_path == cfg_dir / "db/chars.db" and cfg.data_dir == Path("/abs/data")


# ---- environment overrides ---------------------------------------------------------------------------------------
def test_env_overrides(tmp_path, monkeypatch):
    path = write_config(tmp_path / "spaces.yaml", {"a": {"base_model": "./a"}, "b": {"base_model": "./b"}},
                        default_profile="a")
    cfg = load_config(path)
    assert cfg.profile().name == "a"
    monkeypatch.setenv("CUSTOMIZER_PROFILE", "b")
    assert cfg.profile().name == "b"
    assert cfg.profile("a").name == "a"  # an explicit name (--profile) wins over the environment
    monkeypatch.setenv("CUSTOMIZER_PROFILE", "zzz")
    with pytest.raises(ConfigError, match="zzz"):
        cfg.profile()

    monkeypatch.setenv("CUSTOMIZER_DB", str(tmp_path / "vol" / "x.db"))
    monkeypatch.setenv("CUSTOMIZER_DATA_DIR", str(tmp_path / "vol" / "files"))
    cfg = load_config(path)
    assert cfg.db_path == tmp_path / "vol" / "x.db" and cfg.data_dir == tmp_path / "vol" / "files"
    monkeypatch.setenv("CUSTOMIZER_DB", "rel.db")  # relative overrides are relative to the config file
    monkeypatch.setenv("CUSTOMIZER_DATA_DIR", "reldata")
    cfg = load_config(path)
    assert cfg.db_path == tmp_path / "rel.db" and cfg.data_dir == tmp_path / "reldata"

    monkeypatch.setenv("CUSTOMIZER_CONFIG", str(path))
    assert load_config().path == path.resolve()


# ---- config errors -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("profiles: [unclosed\n  base_model: x", "is not valid YAML"),
    ("storage: {db: x.db}\n", "must define a 'profiles' mapping"),
    ("profiles: [a, b]\n", "must define a 'profiles' mapping"),
    ("- just\n- a list\n", "must define a 'profiles' mapping"),
    ("default_profile: nope\nprofiles: {a: {base_model: ./a}}\n", "default_profile 'nope' is not one of"),
    ("profiles: {a: {family: sd15}}\n", "profile 'a' is malformed"),
    ("profiles: {a: {base_model: ./a, steps: many}}\n", "profile 'a' is malformed"),
    ("profiles: {a: {base_model: ./a, ip_adapter: {path: ./ip}}}\n", "profile 'a' is malformed"),
])
def test_bad_config_is_a_config_error(tmp_path, text, message):
    path = tmp_path / "spaces.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert message in str(e.value)


def test_missing_file_and_unknown_profile(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    cfg = load_config(write_config(tmp_path / "s.yaml", {"beta": {"base_model": "./b"}, "alpha": {"base_model": "./a"}}))
    with pytest.raises(ConfigError) as e:
        cfg.profile("gamma")
    assert "unknown profile 'gamma'" in str(e.value) and "known profiles: alpha, beta" in str(e.value)


# ---- availability ------------------------------------------------------------------------------------------------
def test_empty_dir_lists_every_missing_part(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    profile = load_config(write_config(tmp_path / "s.yaml", {"hollow": local_profile(empty)})).profile()
    missing = missing_parts(profile)
    expected = [f"base model: {empty / 'model_index.json'} not found",
                f"IP-Adapter: {empty / 'ip_adapter' / 'ip_adapter.safetensors'} not found",
                f"IP-Adapter image encoder: {empty / 'ip_adapter' / 'image_encoder' / 'config.json'} not found",
                f"ControlNet: {empty / 'controlnet' / 'config.json'} not found",
                f"theme LoRA 'fantasy': {empty / 'loras' / 'fantasy.safetensors'} not found",
                f"theme LoRA 'vintage': {empty / 'loras' / 'vintage.safetensors'} not found",
                f"upscaler: {empty / 'upscaler' / 'model_index.json'} not found"]
    assert missing == expected
    with pytest.raises(ModelUnavailable) as e:
        require_available(profile)
    text = str(e.value)
    assert "Model profile 'hollow' is not available" in text
    for line in expected:
        assert line in text
    assert "Local files are missing" in text or "Downloads are disabled" in text


def test_tiny_profile_is_available(tiny_config_path):
    cfg = load_config(tiny_config_path)
    for name in ("tiny", "tiny-nocn"):
        assert missing_parts(cfg.profile(name)) == []
        require_available(cfg.profile(name))  # does not raise


def test_hub_profile_offline_fails_fast_without_network(tmp_path, monkeypatch):
    import huggingface_hub  # noqa: F401 - a cold import is not what the time limit is about

    def no_network(*args, **kwargs):
        raise AssertionError("the availability check tried the network")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(availability, "hub_unreachable", no_network)
    profile = load_config(write_config(tmp_path / "s.yaml", {"hubby": {
        "base_model": "example-org/no-such-model-7f3a",
        "ip_adapter": {"path": "example-org/no-such-ip-adapter-7f3a", "subfolder": "models",
                       "weight_name": "ip.safetensors", "image_encoder_folder": "models/image_encoder"},
        "allow_download": True}})).profile()
    t0 = time.perf_counter()
    missing = missing_parts(profile)
    with pytest.raises(ModelUnavailable) as e:
        require_available(profile)
    assert time.perf_counter() - t0 < 2
    assert missing == [
        "base model: example-org/no-such-model-7f3a/model_index.json is not in the local Hugging Face cache",
        "IP-Adapter: example-org/no-such-ip-adapter-7f3a/models/ip.safetensors is not in the local Hugging Face cache",
        "IP-Adapter image encoder: example-org/no-such-ip-adapter-7f3a/models/image_encoder/config.json is not in "
        "the local Hugging Face cache"]
    assert not availability.downloads_allowed(profile)
    assert "'hubby'" in str(e.value) and "not in the local Hugging Face cache" in str(e.value)
    assert "HF_HUB_OFFLINE=1" in str(e.value)


# ---- advanced settings -------------------------------------------------------------------------------------------
@pytest.fixture
def profile(tmp_path):
    return load_config(write_config(tmp_path / "s.yaml", {"p": local_profile(tmp_path)})).profile()


def test_settings_defaults_from_profile(profile):
    s = Settings.resolve(profile, None)
    assert s == Settings(sampler="euler", steps=3, guidance=5.0, width=32, height=48, negative=None, upscale=False)
    assert Settings.resolve(profile, {"steps": "", "sampler": None}) == s  # blank fields mean "default"


def test_settings_overrides(profile):
    s = Settings.resolve(profile, {"sampler": "ddim", "steps": 30, "guidance": 7.5, "width": 64, "height": 2048,
                                   "negative": "  blurry,\n lowres ", "upscale": True})
    assert s == Settings(sampler="ddim", steps=30, guidance=7.5, width=64, height=2048, negative="blurry, lowres",
                         upscale=True)
    assert isinstance(s.steps, int) and s.to_dict()["sampler"] == "ddim"
    assert Settings.resolve(profile, {"steps": 100, "guidance": 0, "width": 32}).steps == 100
    assert list(samplers()) == ["ddim", "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras"]


@pytest.mark.parametrize("raw, field", [
    ({"steps": 0}, "steps"),
    ({"steps": 101}, "steps"),
    ({"steps": 2.5}, "steps"),
    ({"steps": "many"}, "steps"),
    ({"steps": True}, "steps"),
    ({"guidance": -1}, "guidance"),
    ({"guidance": 20.5}, "guidance"),
    ({"guidance": float("nan")}, "guidance"),
    ({"width": 100}, "width"),
    ({"height": 16}, "height"),
    ({"width": 4096}, "width"),
    ({"sampler": "plms_turbo"}, "sampler"),
    ({"seed": 3}, "seed"),
    ({"upscale": "yes"}, "upscale"),
    ({"negative": 5}, "negative"),
    ({"negative": "x" * 601}, "negative"),
])
def test_bad_settings_name_the_field(profile, raw, field):
    with pytest.raises(SpecError) as e:
        Settings.resolve(profile, raw)
    assert e.value.field == field and str(e.value).startswith(f"{field}: ")


def test_bad_setting_messages_are_actionable(profile):
    with pytest.raises(SpecError, match="multiple of 8, got 100"):
        Settings.resolve(profile, {"width": 100})
    with pytest.raises(SpecError, match="between 1 and 100"):
        Settings.resolve(profile, {"steps": 0})
    with pytest.raises(SpecError, match="whole number"):
        Settings.resolve(profile, {"steps": 2.5})
    with pytest.raises(SpecError) as e:
        Settings.resolve(profile, {"sampler": "plms_turbo"})
    for name in samplers():
        assert name in str(e.value)
    with pytest.raises(SpecError, match="valid: sampler, steps"):
        Settings.resolve(profile, {"cfg": 3})
