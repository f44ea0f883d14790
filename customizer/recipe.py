"""Recipe: everything needed to regenerate one image bit-for-bit (same device and library versions).

Plain data (JSON-able), so the store can keep it and the UI can show it without importing torch.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import SpecError, shown


def cfg_steps(steps: int, guidance_end: float | None) -> int:
    """How many of the first `steps` steps run classifier-free guidance: ceil(guidance_end * steps), at least 1;
    all of them when guidance_end is None."""
    if guidance_end is None:
        return steps
    return max(1, min(steps, math.ceil(float(guidance_end) * steps - 1e-9)))


def recipe_guidance_end(steps: int, guidance: float, guidance_end: float) -> float | None:
    """The recipe's guidance_end for these settings: None where the interval changes nothing (CFG off, or on
    every step), so such recipes stay as they were before the interval existed."""
    return None if guidance <= 1 or cfg_steps(steps, guidance_end) >= steps else float(guidance_end)


def _whole(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class Recipe:
    kind: str                     # "portrait" | "selfie" | "sheet" (a reference sheet view)
    profile: str                  # profile name in spaces.yaml
    model_id: str                 # hub repo id or local folder of the base model
    model_revision: str           # hub commit hash, or "sha256:<hash of weight files>" for local folders
    prompt: str
    negative_prompt: str
    seed: int
    scheduler: str                # key of customizer/data/schedulers.yaml
    steps: int
    guidance: float
    width: int
    height: int
    # {"seeds": [s0, s1, ...], "index": i}: this image is image i of ONE pipeline call that rendered len(seeds) images
    # from these same inputs, generator i seeded with seeds[i] (seed == seeds[index]). A batched image differs
    # slightly from its seed rendered alone, so reproducing it renders the whole batch. None: a single render
    # (every recipe from before batching)
    batch: dict[str, Any] | None = None
    # classifier-free guidance on the first ceil(guidance_end * steps) steps only, the rest on the positive prompt
    # alone (engine/guidance.py); None: on every step (every recipe from before the interval)
    guidance_end: float | None = None
    loras: dict[str, float] = field(default_factory=dict)   # adapter name -> weight, active ones only
    # sha256 of the character LoRA file among `loras` (its adapter is charlora.adapter_name of it); None: none used
    character_lora_sha256: str | None = None
    ip_adapter_scale: float = 0.0                           # 0 for portraits
    reference_sha256: str | None = None                     # reference image the selfie is conditioned on
    # every image whose IP-Adapter embeddings condition the render, in order (the reference, then the reference
    # sheet views); None on recipes from before the sheet: the reference alone
    conditioning_sha256: list[str] | None = None
    controlnet: dict[str, Any] | None = None                # {"model", "control", "preset", "scale"}
    upscale: str | None = None                              # None | "lanczos2x" | learned upscaler id
    device: str = "cpu"
    dtype: str = "float32"
    versions: dict[str, str] = field(default_factory=dict)  # torch, diffusers, peft, transformers, customizer
    extra: dict[str, Any] = field(default_factory=dict)     # spec snapshot, timings, likeness ... (not inputs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recipe":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json(cls, s: str) -> "Recipe":
        return cls.from_dict(json.loads(s))

    def batch_seeds(self) -> tuple[list[int], int]:
        """(the seeds of the pipeline call that made this image, its position in it); ([seed], 0) when alone."""
        if self.batch is None:
            return [int(self.seed)], 0
        batch = self.batch if isinstance(self.batch, dict) else {}
        seeds, index = batch.get("seeds"), batch.get("index")
        if not (isinstance(seeds, list) and seeds and all(map(_whole, seeds)) and _whole(index)
                and 0 <= index < len(seeds) and seeds[index] == self.seed):
            raise SpecError("recipe.batch", f"must be {{'seeds': [...], 'index': i}} with seeds[i] == seed "
                                            f"({self.seed}), got {shown(self.batch)}")
        return list(seeds), index

    def cfg_steps(self) -> int:
        """Steps that run classifier-free guidance (the first ones); 0 without CFG."""
        if self.guidance <= 1:
            return 0
        end = self.guidance_end
        if end is not None and not (isinstance(end, (int, float)) and not isinstance(end, bool)
                                    and math.isfinite(end) and 0 < end <= 1):
            raise SpecError("recipe.guidance_end", f"must be a fraction in (0, 1], got {shown(end)}")
        return cfg_steps(int(self.steps), end)

    def replace(self, **changes: Any) -> "Recipe":
        d = self.to_dict()
        d.update(changes)
        return Recipe.from_dict(d)
