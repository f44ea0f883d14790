"""spaces.yaml -> AppConfig with typed Profiles. No torch here: this runs before any heavy import."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .budget import BudgetConfig
from .budget import parse as _budget
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
    instrument: str                        # a name in likeness.registry.INSTRUMENTS: "identity" | "face"
    path: str | None = None                # identity: folder with identity.safetensors + .json; face: models dir
    band: tuple[float, float] | None = None  # target score range; None = score only, never retry
    max_attempts: int = 1                  # renders per selfie at most (1 = no retries)


def _likeness(raw: Any, base: Path) -> LikenessConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError("likeness must be a mapping {instrument, path?, band?, max_attempts?}")
    unknown = set(raw) - {"instrument", "path", "band", "max_attempts"}
    if unknown:
        raise ValueError(f"likeness: unknown keys {sorted(unknown)}")
    name = raw.get("instrument")
    if name not in INSTRUMENTS:
        raise ValueError(f"likeness.instrument must be one of {sorted(INSTRUMENTS)}, got {name!r}")
    band = raw.get("band")
    if band is not None:
        if (not isinstance(band, (list, tuple)) or len(band) != 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in band)
                or not 0 <= band[0] <= band[1] <= 1):
            raise ValueError(f"likeness.band must be [lo, hi] with 0 <= lo <= hi <= 1, got {band!r}")
        band = (float(band[0]), float(band[1]))
    attempts = raw.get("max_attempts", 1)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
        raise ValueError(f"likeness.max_attempts must be a whole number from 1 to {MAX_ATTEMPTS}, got {attempts!r}")
    path = raw.get("path")
    return LikenessConfig(instrument=name, path=_resolve(base, str(path)) if path else None, band=band,
                          max_attempts=attempts)


@dataclass(frozen=True)
class Profile:
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
    extra: dict[str, Any] = field(default_factory=dict)  # keys this code does not know (yet)


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


def _profile(name: str, raw: dict[str, Any], base: Path) -> Profile:
    try:
        ipa = raw.get("ip_adapter")
        cn = raw.get("controlnet")
        themes = {
            t: ThemeConfig(
                name=t,
                adapter=str(v.get("adapter", t)),
                triggers=str(v.get("triggers") or ""),
                weight=float(v.get("weight", 1.0)),
                lora=_resolve(base, v.get("lora")),
            )
            for t, v in (raw.get("themes") or {}).items()
        }
        guidance_end = float(raw.get("guidance_end", 1.0))
        if not 0 < guidance_end <= 1:
            raise ValueError(f"guidance_end must be in (0, 1] (a fraction of the steps), got {guidance_end}")
        known = {"family", "base_model", "ip_adapter", "controlnet", "themes", "scheduler", "steps", "guidance",
                 "guidance_end", "width", "height", "device", "dtype", "upscaler", "allow_download", "likeness",
                 "budget"}
        return Profile(
            name=name,
            family=str(raw.get("family", "sd15")),
            base_model=_resolve(base, raw["base_model"]),
            ip_adapter=IPAdapterConfig(
                path=_resolve(base, ipa["path"]),
                weight_name=ipa["weight_name"],
                subfolder=ipa.get("subfolder", "") or "",
                image_encoder_folder=ipa.get("image_encoder_folder", "image_encoder"),
            ) if ipa else None,
            controlnet=ControlNetConfig(
                model=_resolve(base, cn["model"]), control=cn.get("control", "pose"), scale=float(cn.get("scale", 0.7))
            ) if cn else None,
            themes=themes,
            scheduler=str(raw.get("scheduler", "dpmpp_2m")),
            steps=int(raw.get("steps", 20)),
            guidance=float(raw.get("guidance", 6.0)),
            guidance_end=guidance_end,
            width=int(raw.get("width", 512)),
            height=int(raw.get("height", 512)),
            device=str(raw.get("device", "auto")),
            dtype=str(raw.get("dtype", "auto")),
            upscaler=_resolve(base, raw.get("upscaler")),
            allow_download=bool(raw.get("allow_download", False)),
            likeness=_likeness(raw.get("likeness"), base),
            budget=_budget(raw.get("budget")),
            extra={k: v for k, v in raw.items() if k not in known},
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"profile {name!r} is malformed: {type(e).__name__}: {e}") from e


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
    base = path.parent
    profiles = {n: _profile(n, p or {}, base) for n, p in raw["profiles"].items()}
    storage = raw.get("storage") or {}
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
