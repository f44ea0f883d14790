"""Control images for ControlNet: pose skeletons drawn from data presets, or edges of the reference."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

POSES = Path(__file__).resolve().parent.parent / "data" / "poses.yaml"


@lru_cache(maxsize=None)
def pose_presets() -> dict[str, list]:
    return yaml.safe_load(POSES.read_text())


def _quiet_import():
    """controlnet_aux imports every detector at package import and each warns about optional extras."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import controlnet_aux  # noqa: F401


def pose_image(preset: str, width: int, height: int) -> Image.Image:
    """An OpenPose-style skeleton for a framing preset, drawn with controlnet_aux's own renderer."""
    _quiet_import()
    from controlnet_aux.open_pose.body import Keypoint
    from controlnet_aux.open_pose.util import draw_bodypose

    presets = pose_presets()
    if preset not in presets:
        raise ValueError(f"no pose preset {preset!r}; presets: {', '.join(presets)}")
    points = [Keypoint(p[0], p[1]) if p else None for p in presets[preset]]
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    return Image.fromarray(draw_bodypose(canvas, points))


def canny_image(reference: Image.Image, width: int, height: int, low: int = 100, high: int = 200) -> Image.Image:
    """Edges of the reference portrait (keeps framing and silhouette). OpenCV's Canny - what controlnet_aux's
    CannyDetector wraps - run at the target size: the detector's 64-px rounding loses every edge at 32-128 px."""
    import cv2

    ref = np.asarray(reference.convert("RGB").resize((width, height), Image.LANCZOS))
    edges = cv2.Canny(ref, low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def control_image(kind: str, preset: str, reference: Image.Image | None, width: int, height: int) -> Image.Image:
    if kind == "pose":
        return pose_image(preset, width, height)
    if kind == "canny":
        if reference is None:
            raise ValueError("canny control needs the reference portrait")
        return canny_image(reference, width, height)
    raise ValueError(f"unknown control kind {kind!r}; use 'pose' or 'canny'")
