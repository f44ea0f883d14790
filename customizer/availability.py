"""Is a profile's model present? Checked before any heavy import, so a missing model is a one-line message at
start instead of a traceback or a hang on a download."""
from __future__ import annotations

import os
from pathlib import Path

from .config import Profile
from .upscaler_folder import WEIGHTS as SR_WEIGHTS
from .upscaler_folder import is_sr_folder
from .errors import ModelUnavailable


def downloads_allowed(profile: Profile) -> bool:
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    return profile.allow_download and not offline


def _is_local(ref: str) -> bool:
    return os.path.isabs(ref) or ref.startswith(".") or ref.count("/") != 1


def _hub_has(repo: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, filename), str)


def _check(ref: str, filename: str, what: str, missing: list[str]) -> None:
    if _is_local(ref):
        if not (Path(ref) / filename).is_file():
            missing.append(f"{what}: {Path(ref) / filename} not found")
    elif not _hub_has(ref, filename):
        missing.append(f"{what}: {ref}/{filename} is not in the local Hugging Face cache")


def _split_lora(ref: str) -> tuple[str, str]:
    """'dir/file.safetensors' or 'owner/repo/file.safetensors' -> (folder or repo, weight file name)."""
    p = Path(ref)
    return (str(p.parent), p.name) if p.suffix == ".safetensors" else (ref, "pytorch_lora_weights.safetensors")


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """None when the hub answers; otherwise why not. A short probe so an offline start fails fast, never hangs."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    try:
        urllib.request.urlopen(constants.ENDPOINT + "/api/whoami-v2", timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # it answered (401 without a token): reachable
    except (OSError, ValueError) as e:
        return str(getattr(e, "reason", e))
    return None


def missing_parts(profile: Profile) -> list[str]:
    """Human-readable list of what this profile needs and does not have on this machine."""
    missing: list[str] = []
    _check(profile.base_model, "model_index.json", "base model", missing)
    if profile.ip_adapter:
        ipa = profile.ip_adapter
        _check(ipa.path, str(Path(ipa.subfolder or ".", ipa.weight_name)), "IP-Adapter", missing)
        enc = ipa.image_encoder_folder if "/" in ipa.image_encoder_folder else str(
            Path(ipa.subfolder or ".", ipa.image_encoder_folder))
        _check(ipa.path, str(Path(enc, "config.json")), "IP-Adapter image encoder", missing)
    if profile.controlnet:
        _check(profile.controlnet.model, "config.json", "ControlNet", missing)
    for theme in profile.themes.values():
        if theme.lora:
            folder, weight = _split_lora(theme.lora)
            _check(folder, weight, f"theme LoRA '{theme.name}'", missing)
    if profile.upscaler:   # the project's own net (engine/sr_net.py) or diffusers' latent upscaler pipeline
        own = _is_local(profile.upscaler) and is_sr_folder(profile.upscaler)
        _check(profile.upscaler, SR_WEIGHTS if own else "model_index.json", "upscaler", missing)
    return missing


def require_available(profile: Profile) -> None:
    """Raise ModelUnavailable naming the profile and each missing part, unless downloads may fetch them."""
    missing = missing_parts(profile)
    if not missing:
        return
    local_missing = [m for m in missing if "Hugging Face cache" not in m]
    if downloads_allowed(profile) and not local_missing:
        reason = hub_unreachable()
        if reason is None:
            return  # hub parts will be downloaded on load; load failures are reported as ModelUnavailable too
        missing.append(f"the Hugging Face hub cannot be reached to download them ({reason})")
    if not downloads_allowed(profile):
        hint = "Downloads are disabled for this profile (allow_download: false or HF_HUB_OFFLINE=1)."
    elif local_missing:
        hint = "Local files are missing."
    else:
        hint = "Connect this machine to the hub, or copy the weights into the Hugging Face cache beforehand."
    if profile.name == "bundled":
        hint += (" The bundled model is trained by this project (see assets/bundled/README.md once it lands); "
                 "until it is in assets/, choose another profile with --profile.")
    raise ModelUnavailable(
        f"Model profile '{profile.name}' is not available:\n  - " + "\n  - ".join(missing) + f"\n{hint}")
