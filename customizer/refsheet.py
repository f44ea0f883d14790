"""The reference sheet (data/refsheet.yaml): views of the locked reference rendered at lock time (frontal,
three-quarter left/right, smiling ...), and which of them may condition selfies.

Data and pure rules only - no torch, no gradio: the Studio renders and stores the views, the UI shows them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable

import yaml

from .character import DATA_DIR, SelfieSpec
from .likeness.band import Band
from .likeness.result import NO_FACE, UNAVAILABLE, Likeness

SEED_MODULUS = 2**31 - 1  # the app's seed range (service.SEED_MAX)
SWITCH = "reference_sheet"  # profile key in spaces.yaml (true by default)


@dataclass(frozen=True)
class View:
    name: str
    shot: SelfieSpec
    pose: str | None = None  # ControlNet pose preset; None = the framing's own


@dataclass(frozen=True)
class Sheet:
    likeness: float
    views: tuple[View, ...]


def _load() -> Sheet:
    raw = yaml.safe_load((DATA_DIR / "refsheet.yaml").read_text(encoding="utf-8"))
    poses = yaml.safe_load((DATA_DIR / "poses.yaml").read_text(encoding="utf-8"))
    likeness = float(raw.get("likeness", 0.9))
    views = []
    for name, body in (raw.get("views") or {}).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"refsheet.yaml: view names must be text, got {name!r}")
        body = body or {}
        pose = body.get("pose")
        if pose is not None and pose not in poses:
            raise ValueError(f"refsheet.yaml: {name}: pose {pose!r} is not a preset of poses.yaml")
        # validated like any selfie (catalogue choices, safety filter on the extra words)
        shot = SelfieSpec.from_dict({**(body.get("shot") or {}), "likeness": likeness})
        views.append(View(name, shot, pose))
    if not views:
        raise ValueError("refsheet.yaml: no views")
    return Sheet(likeness, tuple(views))


@lru_cache(maxsize=None)
def sheet() -> Sheet:
    return _load()


def enabled(profile: Any) -> bool:
    """The profile's switch (`reference_sheet: false` turns it off; a typed field checked when the config loads); a
    sheet needs the IP-Adapter."""
    return profile.reference_sheet and profile.ip_adapter is not None


def conditions(profile: Any) -> bool:
    """Whether selfies are conditioned on the sheet's views in band besides the reference (`sheet_conditions: false`:
    the sheet is still made, for viewing and the character LoRA, and selfies see the reference alone)."""
    return enabled(profile) and profile.sheet_conditions


def seed(reference_pixels: str) -> int:
    """One seed for the whole sheet (only the view changes from image to image), derived from the reference's
    pixels (pixel_digest): relocking the same portrait, or the same portrait rendered again, gives the same sheet."""
    digest = hashlib.sha256(f"customizer-sheet:{reference_pixels}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_MODULUS


def pixel_digest(image: Any) -> str:
    """sha256 of a PIL image's mode, size and pixels. Not the file's sha256: the stored PNG also holds its recipe,
    whose timings differ from render to render, so the same pixels rendered twice get two file hashes."""
    h = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def leaves_out(likeness: Likeness, band: Band | None) -> bool:
    """A view that conditions selfies must look like the reference: one scored outside the band (drifted below,
    or a near copy above that adds nothing the reference does not) is left out, and so is one where the instrument
    found no face although the reference has one. Unscored views (no instrument) are kept."""
    if likeness.state == NO_FACE:
        return True
    return band is not None and band.position(likeness) not in (None, "in")


def stored_likeness(view: dict) -> Likeness:
    """A stored view's likeness (row columns); anything inconsistent (a hand-made archive) reads as unavailable."""
    try:
        return Likeness(view.get("likeness_state") or UNAVAILABLE, view.get("likeness_instrument"),
                        view.get("likeness"))
    except (TypeError, ValueError):
        return Likeness(UNAVAILABLE, view.get("likeness_instrument"))


def split(views: Iterable[dict], band: Band | None) -> tuple[list[dict], list[dict]]:
    """Stored sheet views -> (those that condition selfies, those left out), each in sheet order."""
    kept, out = [], []
    for v in views:
        (out if leaves_out(stored_likeness(v), band) else kept).append(v)
    return kept, out
