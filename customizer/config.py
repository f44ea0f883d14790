"""spaces.yaml -> AppConfig with typed Profiles. No torch here: this runs before any heavy import."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .budget import BudgetConfig
from .budget import parse as _budget
from . import schema
from .errors import ConfigError
from .likeness.registry import INSTRUMENTS

MAX_ATTEMPTS = 10  # per selfie: each attempt is a full render

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "spaces.yaml"


@dataclass(frozen=True)
class IPAdapterConfig:
    path: str  # local folder or hub repo id
    weight_name: str
    subfolder: str = ""
    image_encoder_folder: str = "image_encoder"


@dataclass(frozen=True)
class ControlNetConfig:
    model: str  # local folder or hub repo id
    control: str = "pose"  # "pose" (preset skeletons) or "canny" (edges of the reference)
    scale: float = 0.7


@dataclass(frozen=True)
class ThemeConfig:
    name: str
    adapter: str
    triggers: str = ""
    weight: float = 1.0
    lora: str | None = None  # local .safetensors file, or "repo_id" / "repo_id/weight_name.safetensors"


@dataclass(frozen=True)
class LikenessConfig:
    """How selfies are scored against the locked reference, and retried into a band (customizer/likeness)."""
    instrument: str                        # a name in likeness.registry.INSTRUMENTS: "identity" | "adapter" | "face"
    path: str | None = None                # identity: folder with identity.safetensors + .json; adapter: the
                                           # IP-Adapter's image_encoder folder; face: models dir
    band: tuple[float, float] | None = None  # target score range; None = score only, never retry
    max_attempts: int = 1                  # renders per selfie at most (1 = no retries)


def _likeness(raw: Any, base: Path) -> LikenessConfig | None:
    if raw is None:
        return None
    schema.closed("likeness", raw, {"instrument", "path", "band", "max_attempts"}, required=("instrument",))
    name = schema.choice("likeness.instrument", raw["instrument"], sorted(INSTRUMENTS))
    band = raw.get("band")
    if band is not None:
        band = schema.span("likeness.band", band)
    attempts = schema.whole("likeness.max_attempts", raw.get("max_attempts", 1), 1, MAX_ATTEMPTS)
    path = schema.text("likeness.path", raw.get("path"), optional=True)
    return LikenessConfig(instrument=name, path=_resolve(base, path) if path else None, band=band,
                          max_attempts=attempts)


# The defaults of the fields that were keys of a free `Profile.extra` mapping before every key got a typed field.
EXTENSION_DEFAULTS: dict[str, Any] = {"ip_scale": (0.0, 1.0), "fuse_lora": True, "reference_sheet": True,
                                      "sheet_conditions": True,
                                      "character_lora": {}, "selfie_prompt": "full"}
SELFIE_PROMPTS = ("full", "from_reference")   # the prompts.yaml template of a selfie with a reference


@dataclass(frozen=True)
class Profile:
    """One model profile of spaces.yaml. Every key is a typed field, checked when the config loads (_profile);
    an unknown key is refused there."""
    name: str
    family: str  # "sd15" | "sdxl"
    base_model: str
    ip_adapter: IPAdapterConfig | None = None
    controlnet: ControlNetConfig | None = None
    themes: dict[str, ThemeConfig] = field(default_factory=dict)
    scheduler: str = "dpmpp_2m"
    steps: int = 20
    guidance: float = 6.0
    guidance_end: float = 1.0  # CFG on this fraction of the steps (the first ones), 1.0 = all (engine/guidance.py)
    width: int = 512
    height: int = 512
    device: str = "auto"
    dtype: str = "auto"
    upscaler: str | None = None
    allow_download: bool = False
    likeness: LikenessConfig | None = None  # None: selfies carry likeness 'unavailable'
    budget: BudgetConfig | None = None  # compute budget per request (customizer/budget.py); None: no limit
    ip_scale: tuple[float, float] = (0.0, 1.0)  # IP-Adapter scale at likeness 0 and 1 (the likeness slider)
    fuse_lora: bool = True  # fuse theme/character LoRAs into the UNet weights (engine/lora_fuse.py)
    reference_sheet: bool = True  # render the reference sheet at lock (customizer/refsheet.py)
    sheet_conditions: bool = True  # selfies are conditioned on the sheet's views in band too (False: the reference)
    character_lora: dict[str, Any] = field(default_factory=dict)  # training overrides (customizer/charlora.py)
    # "from_reference": selfies with a reference leave hair, eyes and skin to it (prompts.yaml); "full" restates them
    selfie_prompt: str = "full"

    def __post_init__(self) -> None:
        """The extension fields above are checked here too, so a Profile built in code (dataclasses.replace) is held to
        what the config file is held to."""
        for key, value in _extension_fields(self.name, {k: getattr(self, k) for k in EXTENSION_DEFAULTS}).items():
            object.__setattr__(self, key, value)


def _extension_fields(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The checked values of ip_scale, fuse_lora, reference_sheet, sheet_conditions, selfie_prompt and character_lora
    (a ConfigError naming the profile and the key)."""
    from . import charlora  # charlora reads data files; it imports nothing of config

    out = {}
    try:
        out["ip_scale"] = schema.span("ip_scale", raw.get("ip_scale", EXTENSION_DEFAULTS["ip_scale"]), 0.0, 2.0)
        out["fuse_lora"] = schema.flag("fuse_lora", raw.get("fuse_lora", True))
        out["reference_sheet"] = schema.flag("reference_sheet", raw.get("reference_sheet", True))
        out["sheet_conditions"] = schema.flag("sheet_conditions", raw.get("sheet_conditions", True))
        out["selfie_prompt"] = schema.choice("selfie_prompt", raw.get("selfie_prompt", "full"), SELFIE_PROMPTS)
    except ValueError as e:
        raise ConfigError(f"profile {name!r}: {e}") from None
    overrides = raw.get("character_lora") or {}
    out["character_lora"] = charlora.check_overrides(overrides, f"profile {name!r}: character_lora")
    return out


@dataclass(frozen=True)
class AppConfig:
    path: Path
    default_profile: str
    profiles: dict[str, Profile]
    db_path: Path
    data_dir: Path

    def profile(self, name: str | None = None) -> Profile:
        name = name or os.environ.get("CUSTOMIZER_PROFILE") or self.default_profile
        if name not in self.profiles:
            known = ", ".join(sorted(self.profiles))
            raise ConfigError(f"unknown profile {name!r} in {self.path.name}; known profiles: {known}")
        return self.profiles[name]


def public_ref(ref: str | None) -> str | None:
    """What a recipe records of a model reference: a hub id as it is, a local folder or file as "local:<its
    name>" - the weights are identified by their hash (recipe.model_revision), the server's disk layout is nobody's
    business (recipes travel in PNGs, API answers and exports)."""
    if ref is None:
        return None
    p = Path(ref)
    if p.is_absolute() or ref.startswith((".", "~")) or p.exists():
        return f"local:{p.name}"
    return ref


def _resolve(base: Path, ref: str | None) -> str | None:
    """Make relative local paths absolute against the config file; leave hub ids alone."""
    if ref is None:
        return None
    p = Path(ref)
    if p.is_absolute():
        return ref
    candidate = base / p
    if ref.startswith((".", "assets/")) or candidate.exists():
        return str(candidate)
    return ref


PROFILE_KEYS = ("family", "base_model", "ip_adapter", "controlnet", "themes", "scheduler", "steps", "guidance",
                "guidance_end", "width", "height", "device", "dtype", "upscaler", "allow_download", "likeness",
                "budget", *EXTENSION_DEFAULTS)
FAMILIES = ("sd15", "sdxl")
DTYPES = ("auto", "float32", "float16", "bfloat16")
EXTENDS = "extends"  # a profile key: start from another profile's keys, then apply this profile's own


def _schedulers() -> list[str]:
    return list(yaml.safe_load((Path(__file__).resolve().parent / "data" / "schedulers.yaml").read_text()))


def _ip_adapter(raw: Any, base: Path) -> IPAdapterConfig | None:
    if raw is None:
        return None
    schema.closed("ip_adapter", raw, {"path", "weight_name", "subfolder", "image_encoder_folder"},
                  required=("path", "weight_name"))
    return IPAdapterConfig(path=_resolve(base, schema.text("ip_adapter.path", raw["path"])),
                           weight_name=schema.text("ip_adapter.weight_name", raw["weight_name"]),
                           subfolder=str(raw.get("subfolder") or ""),
                           image_encoder_folder=schema.text("ip_adapter.image_encoder_folder",
                                                            raw.get("image_encoder_folder", "image_encoder")))


def _controlnet(raw: Any, base: Path) -> ControlNetConfig | None:
    if raw is None:
        return None
    schema.closed("controlnet", raw, {"model", "control", "scale"}, required=("model",))
    return ControlNetConfig(model=_resolve(base, schema.text("controlnet.model", raw["model"])),
                            control=schema.choice("controlnet.control", raw.get("control", "pose"), ("pose", "canny")),
                            scale=schema.number("controlnet.scale", raw.get("scale", 0.7), 0.0, 2.0))


def _themes(raw: Any, base: Path) -> dict[str, ThemeConfig]:
    themes = {}
    for t, v in schema.closed("themes", raw or {}, set(raw or {})).items():
        where = f"themes.{t}"
        v = schema.closed(where, v or {}, {"lora", "adapter", "triggers", "weight"})
        themes[t] = ThemeConfig(name=t, adapter=schema.text(f"{where}.adapter", v.get("adapter", t)),
                                triggers=str(v.get("triggers") or ""),
                                weight=schema.number(f"{where}.weight", v.get("weight", 1.0), 0.0, 10.0),
                                lora=_resolve(base, schema.text(f"{where}.lora", v.get("lora"), optional=True)))
    return themes


def _profile(name: str, raw: dict[str, Any], base: Path) -> Profile:
    """One profile's keys (after `extends`) -> a Profile; every key typed and checked, an unknown key refused."""
    if not isinstance(raw, dict):
        raise ConfigError(f"profile {name!r} must be a mapping of keys, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(PROFILE_KEYS), key=str)
    if unknown:
        raise ConfigError(f"profile {name!r}: unknown key {unknown[0]!r}; known keys: {', '.join(PROFILE_KEYS)}")
    try:
        return Profile(
            name=name,
            family=schema.choice("family", raw.get("family", "sd15"), FAMILIES),
            base_model=_resolve(base, schema.text("base_model", raw["base_model"])),
            ip_adapter=_ip_adapter(raw.get("ip_adapter"), base),
            controlnet=_controlnet(raw.get("controlnet"), base),
            themes=_themes(raw.get("themes"), base),
            scheduler=schema.choice("scheduler", raw.get("scheduler", "dpmpp_2m"), _schedulers()),
            steps=schema.whole("steps", raw.get("steps", 20), 1, 1000),
            guidance=schema.number("guidance", raw.get("guidance", 6.0), 0.0, 50.0),
            guidance_end=schema.number("guidance_end", raw.get("guidance_end", 1.0), 0.0, 1.0, open_lo=True),
            width=schema.whole("width", raw.get("width", 512), 8, 8192, multiple=8),
            height=schema.whole("height", raw.get("height", 512), 8, 8192, multiple=8),
            device=schema.text("device", raw.get("device", "auto")),
            dtype=schema.choice("dtype", raw.get("dtype", "auto"), DTYPES),
            upscaler=_resolve(base, schema.text("upscaler", raw.get("upscaler"), optional=True)),
            allow_download=schema.flag("allow_download", raw.get("allow_download", False)),
            likeness=_likeness(raw.get("likeness"), base),
            budget=_budget(raw.get("budget")),
            **{k: raw[k] for k in EXTENSION_DEFAULTS if k in raw},  # checked in Profile.__post_init__
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"profile {name!r} is malformed: {type(e).__name__}: {e}") from e


def _extended(profiles: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each profile's own keys on top of those of the profile it `extends` (recursively; a key given replaces the
    parent's value whole, mappings included). An unknown parent or a cycle is a ConfigError."""
    out: dict[str, dict[str, Any]] = {}

    def resolve(name: str, seen: tuple[str, ...]) -> dict[str, Any]:
        if name in out:
            return out[name]
        raw = profiles[name] or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"profile {name!r} must be a mapping of keys, got {type(raw).__name__}")
        raw = dict(raw)
        parent = raw.pop(EXTENDS, None)
        if parent is not None:
            if parent not in profiles:
                raise ConfigError(f"profile {name!r}: extends {parent!r}, which is not a profile")
            if parent in seen:
                raise ConfigError(f"profile {name!r}: extends makes a cycle: {' -> '.join((*seen, parent))}")
            raw = {**resolve(parent, (*seen, parent)), **raw}
        out[name] = raw
        return raw

    for name in profiles:
        resolve(name, (name,))
    return out


def load_config(path: str | Path | None = None) -> AppConfig:
    path = Path(path or os.environ.get("CUSTOMIZER_CONFIG") or DEFAULT_CONFIG).resolve()
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path.name} is not valid YAML: {e}") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("profiles"), dict):
        raise ConfigError(f"{path.name} must define a 'profiles' mapping")
    unknown = sorted(set(raw) - {"default_profile", "storage", "profiles"}, key=str)
    if unknown:
        raise ConfigError(f"{path.name}: unknown top-level key {unknown[0]!r}; known: default_profile, storage, "
                          f"profiles")
    base = path.parent
    profiles = {n: _profile(n, p, base) for n, p in _extended(raw["profiles"]).items()}
    storage = raw.get("storage") or {}
    try:
        schema.closed("storage", storage, {"db", "data_dir"})
    except ValueError as e:
        raise ConfigError(f"{path.name}: {e}") from None
    db = Path(os.environ.get("CUSTOMIZER_DB") or storage.get("db", "characters.db"))
    data_dir = Path(os.environ.get("CUSTOMIZER_DATA_DIR") or storage.get("data_dir", "data"))
    default = str(raw.get("default_profile") or next(iter(profiles)))
    if default not in profiles:
        raise ConfigError(f"default_profile {default!r} is not one of the profiles in {path.name}")
    return AppConfig(
        path=path,
        default_profile=default,
        profiles=profiles,
        db_path=db if db.is_absolute() else base / db,
        data_dir=data_dir if data_dir.is_absolute() else base / data_dir,
    )
