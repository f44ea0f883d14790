"""Recipe: everything needed to regenerate one image bit-for-bit (same device and library versions).

Plain data (JSON-able), so the store can keep it and the UI can show it without importing torch.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import SpecError, shown


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

    def replace(self, **changes: Any) -> "Recipe":
        d = self.to_dict()
        d.update(changes)
        return Recipe.from_dict(d)
