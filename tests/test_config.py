"""spaces.yaml -> profiles, environment overrides, clear ConfigErrors; model availability checks; advanced settings."""
from __future__ import annotations

import dataclasses
import socket
import time
from pathlib import Path

import pytest
import yaml

from customizer import availability
from customizer.availability import missing_parts, require_available
from customizer.config import DEFAULT_CONFIG, REPO_ROOT, _profile, load_config
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
    # its own learned 2x upscaler (engine/sr_net.py), shipped beside the model
    assert b.controlnet is None and b.upscaler == str(REPO_ROOT / "assets" / "bundled" / "upscaler")
    assert b.budget.upscale_factor == 1.1
    assert (b.ip_scale, b.fuse_lora, b.reference_sheet, b.character_lora) == ((0.0, 1.0), True, True, {})

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
    write_config(cfg_dir / "spaces.yaml", {
        "p": {"base_model": "./model", "ip_adapter": {"path": "weights", "weight_name": "ip.safetensors"},
              "controlnet": {"model": "owner/controlnet"},
              "themes": {"fantasy": {"lora": "assets/loras/f.safetensors"}}}},
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
    assert (p.ip_scale, p.fuse_lora, p.reference_sheet, p.character_lora) == ((0.0, 1.0), True, True, {})
    assert not hasattr(p, "extra")  # no free mapping left: a key the code does not know is refused at load
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
    cfg = load_config(write_config(tmp_path / "s.yaml",
                                   {"beta": {"base_model": "./b"}, "alpha": {"base_model": "./a"}}))
    with pytest.raises(ConfigError) as e:
        cfg.profile("gamma")
    assert "unknown profile 'gamma'" in str(e.value) and "known profiles: alpha, beta" in str(e.value)


# ---- the closed profile schema -----------------------------------------------------------------------------------
def test_every_profile_key_is_a_typed_field(tmp_path):
    cfg = load_config(write_config(tmp_path / "s.yaml", {"p": {
        "base_model": "./m", "ip_scale": [0.2, 0.8], "fuse_lora": False, "reference_sheet": False,
        "character_lora": {"steps": 30, "lr": 1, "targets": ["to_q"]}}}))
    p = cfg.profile("p")
    assert p.ip_scale == (0.2, 0.8) and p.fuse_lora is False and p.reference_sheet is False
    assert p.sheet_conditions is True                                 # views in band condition, by default
    assert dataclasses.replace(p, sheet_conditions=False).sheet_conditions is False
    with pytest.raises(ConfigError, match="profile 'p': sheet_conditions must be true or false"):
        dataclasses.replace(p, sheet_conditions="off")
    assert p.selfie_prompt == "full"                                  # the default restates the look
    assert dataclasses.replace(p, selfie_prompt="from_reference").selfie_prompt == "from_reference"
    with pytest.raises(ConfigError, match="profile 'p': selfie_prompt must be one of full, from_reference"):
        dataclasses.replace(p, selfie_prompt="short")
    assert p.character_lora == {"steps": 30, "lr": 1.0, "targets": ["to_q"]} and isinstance(p.character_lora["lr"],
                                                                                             float)
    # a Profile built in code is checked like the file
    q = dataclasses.replace(p, ip_scale=[0.0, 0.0])
    assert q.ip_scale == (0.0, 0.0) and q.fuse_lora is False
    with pytest.raises(ConfigError, match="profile 'p': reference_sheet must be true or false"):
        dataclasses.replace(p, reference_sheet="no")
    with pytest.raises(ConfigError, match="profile 'p': ip_scale must be"):
        dataclasses.replace(p, ip_scale=(0.5,))
    with pytest.raises(ConfigError, match="profile 'p': character_lora: unknown or fixed keys"):
        dataclasses.replace(p, character_lora={"parallel": 2})


@pytest.mark.parametrize("profile, key", [
    ({"base_model": "./m", "fuse_lroa": False}, "'fuse_lroa'"),
    ({"base_model": "./m", "ip_adapter": {"path": "./ip", "weight_name": "w", "wieght": 1}}, "'wieght'"),
    ({"base_model": "./m", "controlnet": {"model": "./cn", "strength": 1}}, "'strength'"),
    ({"base_model": "./m", "themes": {"fantasy": {"lora": None, "trigger": "x"}}}, "'trigger'"),
    ({"base_model": "./m", "likeness": {"instrument": "face", "retries": 3}}, "'retries'"),
    ({"base_model": "./m", "budget": {"seconds_per_unit": 1, "max_seconds": 2, "max_render_seconds": 1,
                                      "max_sides": 64}}, "'max_sides'"),
    ({"base_model": "./m", "character_lora": {"parallel": 4}}, "'parallel'"),
])
def test_an_unknown_key_is_refused_with_the_profile_and_the_key(tmp_path, profile, key):
    with pytest.raises(ConfigError) as e:
        load_config(write_config(tmp_path / "s.yaml", {"good": {"base_model": "./g"}, "typo": profile}))
    assert "profile 'typo'" in str(e.value) and key in str(e.value)


@pytest.mark.parametrize("profile, message", [
    ({"base_model": "./m", "ip_scale": [0.9, 0.1]}, "ip_scale must be [low, high]"),
    ({"base_model": "./m", "ip_scale": 0.5}, "ip_scale must be [low, high]"),
    ({"base_model": "./m", "fuse_lora": "yes"}, "fuse_lora must be true or false"),
    ({"base_model": "./m", "selfie_prompt": "bare"}, "selfie_prompt must be one of full, from_reference"),
    ({"base_model": "./m", "character_lora": {"steps": 0}}, "at least 1"),
    ({"base_model": "./m", "character_lora": "fast"}, "mapping"),
    ({"base_model": "./m", "steps": 2.5}, "steps must be a whole number"),
    ({"base_model": "./m", "steps": True}, "steps must be a whole number"),
    ({"base_model": "./m", "width": 100}, "width must be a multiple of 8"),
    ({"base_model": "./m", "scheduler": "dpm_fast"}, "scheduler must be one of"),
    ({"base_model": "./m", "family": "sd3"}, "family must be one of sd15, sdxl"),
    ({"base_model": "./m", "dtype": "fp16"}, "dtype must be one of"),
    ({"base_model": "./m", "allow_download": "true"}, "allow_download must be true or false"),
    ({"base_model": "./m", "controlnet": {"model": "./cn", "control": "depth"}}, "controlnet.control"),
])
def test_a_bad_value_is_refused_with_the_profile_and_the_field(tmp_path, profile, message):
    with pytest.raises(ConfigError) as e:
        load_config(write_config(tmp_path / "s.yaml", {"bad": profile}))
    assert "profile 'bad'" in str(e.value) and message in str(e.value)


def test_unknown_top_level_and_storage_keys_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown top-level key 'default'"):
        load_config(write_config(tmp_path / "s.yaml", {"a": {"base_model": "./a"}}, default="a"))
    with pytest.raises(ConfigError, match=r"storage: unknown keys \['database'\]"):
        load_config(write_config(tmp_path / "s.yaml", {"a": {"base_model": "./a"}}, storage={"database": "x.db"}))


# What sd15-zerogpu was before `extends:` (a copy of sd15 with four changes), verbatim from spaces.yaml.
SD15_ZEROGPU_COPY = """
family: sd15
base_model: stable-diffusion-v1-5/stable-diffusion-v1-5
ip_adapter:
  path: h94/IP-Adapter
  subfolder: models
  weight_name: ip-adapter-plus-face_sd15.safetensors
  image_encoder_folder: models/image_encoder
controlnet:
  model: lllyasviel/control_v11p_sd15_openpose
  control: pose
  scale: 0.7
themes:
  fantasy: {lora: null, adapter: fantasy, triggers: "high fantasy art, ethereal, intricate", weight: 1.0}
  vintage: {lora: null, adapter: vintage, triggers: "vintage 1950s photograph, film grain, sepia", weight: 1.0}
scheduler: dpmpp_2m
steps: 25
guidance: 6.5
width: 512
height: 512
device: cuda
dtype: float16
allow_download: true
likeness: {instrument: face, band: [0.5, 0.9], max_attempts: 3}
budget: {seconds_per_unit: 0.3, max_render_seconds: 20, max_seconds: 60, max_side: 1024,
         measured: "estimate, not measured here"}
"""


def test_extends_gives_what_the_copied_profile_had():
    cfg = load_config()
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())["profiles"]
    assert raw["sd15-zerogpu"]["extends"] == "sd15" and "ip_adapter" not in raw["sd15-zerogpu"]  # no copy left
    copy = _profile("sd15-zerogpu", yaml.safe_load(SD15_ZEROGPU_COPY), DEFAULT_CONFIG.parent)
    inherited = cfg.profile("sd15-zerogpu")
    assert inherited == copy
    assert (inherited.device, inherited.dtype, inherited.upscaler) == ("cuda", "float16", None)
    assert inherited.budget.upscale_factor == 1.0 != cfg.profile("sd15").budget.upscale_factor  # replaced whole
    assert inherited.ip_adapter == cfg.profile("sd15").ip_adapter and inherited.themes == cfg.profile("sd15").themes


def test_extends_chains_and_refuses_unknown_parents_and_cycles(tmp_path):
    cfg = load_config(write_config(tmp_path / "s.yaml", {
        "a": {"base_model": "./a", "steps": 7, "ip_scale": [0.1, 0.9]},
        "b": {"extends": "a", "steps": 9},
        "c": {"extends": "b", "fuse_lora": False}}))
    assert (cfg.profile("c").steps, cfg.profile("c").ip_scale, cfg.profile("c").fuse_lora) == (9, (0.1, 0.9), False)
    assert cfg.profile("b").base_model == cfg.profile("a").base_model and cfg.profile("b").fuse_lora is True
    with pytest.raises(ConfigError, match="profile 'b': extends 'nope', which is not a profile"):
        load_config(write_config(tmp_path / "s.yaml", {"b": {"extends": "nope", "base_model": "./b"}}))
    with pytest.raises(ConfigError, match="cycle: a -> b -> a"):
        load_config(write_config(tmp_path / "s.yaml", {"a": {"extends": "b", "base_model": "./a"},
                                                        "b": {"extends": "a"}}))
    with pytest.raises(ConfigError, match="profile 'b': unknown key 'stesp'"):  # inherited keys are checked too
        load_config(write_config(tmp_path / "s.yaml", {"a": {"base_model": "./a"}, "b": {"extends": "a",
                                                                                           "stesp": 3}}))


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
