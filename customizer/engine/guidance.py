"""Classifier-free guidance on the first part of the denoising steps only (a "guidance interval").

With CFG every UNet call runs twice the batch (negative + positive prompt). The late, low-noise steps refine detail
that the prompt no longer steers much, so they can run on the positive half alone: on the bundled model a step of
batch 1 costs about 0.6 of a step of batch 2 (BENCHMARKS.md). Kynkaanniemi et al. 2024, "Applying guidance in a
limited interval improves sample and distribution quality", found guidance at the low-noise end unnecessary.

diffusers' own SDCFGCutoffCallback keeps `prompt_embeds[-1:]`, right only for one image per prompt, and leaves the
IP-Adapter image embeddings (and a ControlNet's control image) doubled: the UNet would then attend to the negative
AND positive image tokens of a batch-1 step without any error. GuidanceCut halves every doubled input instead.
"""
from __future__ import annotations

from typing import Any

from .embeddings import positive_rows

# callback tensors that carry [negative, positive] halves while CFG is on (sd15: the first; sdxl: all three)
DOUBLED_TENSORS = ("prompt_embeds", "add_text_embeds", "add_time_ids")


class GuidanceCut:
    """callback_on_step_end for a diffusers pipeline: after step `keep - 1` switch CFG off for the remaining steps.

    Use as a context manager around the pipeline call: while it is open, and only after the cut, forward pre-hooks
    on the UNet (and ControlNet) hand them the positive half of the IP-Adapter embeddings / control image, which
    the pipeline prepared doubled for CFG before the loop.
    """

    def __init__(self, pipe, keep: int):
        self.pipe, self.keep, self.cut = pipe, int(keep), False
        self.tensor_inputs = [n for n in DOUBLED_TENSORS if n in getattr(pipe, "_callback_tensor_inputs", ())]
        self._hooks: list[Any] = []

    @classmethod
    def for_call(cls, pipe, keep: int, steps: int) -> "GuidanceCut | None":
        """The cut for a call of `steps` steps with CFG on the first `keep`; None where it would change nothing."""
        return cls(pipe, keep) if 0 < keep < steps else None

    @property
    def call_kwargs(self) -> dict[str, Any]:
        """What the pipeline call needs to run this cut."""
        return {"callback_on_step_end": self, "callback_on_step_end_tensor_inputs": self.tensor_inputs}

    def __enter__(self) -> "GuidanceCut":
        self._hooks.append(self.pipe.unet.register_forward_pre_hook(self._unet_inputs, with_kwargs=True))
        controlnet = getattr(self.pipe, "controlnet", None)
        if controlnet is not None:
            self._hooks.append(controlnet.register_forward_pre_hook(self._controlnet_inputs, with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def __call__(self, pipe, step_index: int, timestep, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        if step_index == self.keep - 1 and not self.cut:
            self.cut = True
            pipe._guidance_scale = 1.0  # do_classifier_free_guidance is `_guidance_scale > 1`: off from here on
            return {k: positive_rows(v) for k, v in callback_kwargs.items() if k in self.tensor_inputs}
        return {}

    @staticmethod
    def _batch(args: tuple, kwargs: dict[str, Any]) -> int:
        sample = args[0] if args else kwargs["sample"]
        return int(sample.shape[0])

    def _unet_inputs(self, module, args: tuple, kwargs: dict[str, Any]):
        added = kwargs.get("added_cond_kwargs")
        if not self.cut or not added or added.get("image_embeds") is None:
            return None
        n = self._batch(args, kwargs)
        embeds = [positive_rows(e) if e.shape[0] == 2 * n else e for e in added["image_embeds"]]
        return args, {**kwargs, "added_cond_kwargs": {**added, "image_embeds": embeds}}

    def _controlnet_inputs(self, module, args: tuple, kwargs: dict[str, Any]):
        cond = kwargs.get("controlnet_cond")
        if not self.cut or cond is None or isinstance(cond, (list, tuple)):
            return None
        if cond.shape[0] == 2 * self._batch(args, kwargs):
            return args, {**kwargs, "controlnet_cond": positive_rows(cond)}
        return None
