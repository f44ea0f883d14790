"""One point of the base stage's learning curve: what the model draws now, read by the eval's instruments.

train_base calls `point()` every --curve-every steps on the EMA weights, saved as the app loads them (a
StableDiffusionPipeline folder + the IP-Adapter folder), and writes the result to its log (event "curve") and to
training.json by way of the assemble stage. Two readings, both independent of the training loss:

- the adherence probe (bench/adherence.py): the designer's portrait prompt with one attribute changed at a time;
  per attribute, does the appearance instrument read the requested value back, and how far does the word move the
  UNet's noise prediction;
- an eval slice: n held-out characters (theme none: the theme is a LoRA trained after the base), each drawn as the
  designer draws a candidate (portrait prompt, no adapter), that portrait then taken as the reference of one selfie
  with the IP-Adapter at the app's default likeness, and the same selfie with the adapter off. eval.score reads
  attributes, scene, expression, framing and identity, as the full eval does.

The instruments only measure here: nothing of theirs reaches a gradient.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .curve_plot import PER_PROMPT

CURVE_SALT = "curve"
SAMPLER, STEPS, GUIDANCE = "dpmpp_2m", 8, 5.0      # the bundled profile's
FIGURES = {"attributes": "attribute_accuracy.mean", "scene": "scene_accuracy", "expression": "expression_accuracy",
           "framing": "framing_accuracy", "verification": "identity.verification_accuracy"}


def _pipeline(pipe_dir: Path, ipa_dir: Path | None):
    from diffusers import StableDiffusionPipeline

    from ..engine import schedulers
    from ..engine.ip_adapter import ENCODER_FOLDER, WEIGHT_NAME

    pipe = StableDiffusionPipeline.from_pretrained(pipe_dir, dtype=torch.float32, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.scheduler = schedulers.make(SAMPLER, dict(pipe.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    if ipa_dir is not None:
        pipe.load_ip_adapter(str(ipa_dir), subfolder="", weight_name=WEIGHT_NAME, image_encoder_folder=ENCODER_FOLDER)
    return pipe


def _draw(pipe, prompts: list[str], negative: str, seeds: list[int], size: int, scale: float,
          refs: list | None, batch: int = 16) -> list:
    """Images of prompts (one seed each) with the IP-Adapter at `scale` on refs (None: zero embedding)."""
    from ..engine.ip_adapter import embed, per_prompt_embeds

    out = []
    for i in range(0, len(prompts), batch):
        p, s = prompts[i:i + batch], seeds[i:i + batch]
        emb = None
        if getattr(pipe, "image_encoder", None) is not None:
            pipe.set_ip_adapter_scale(scale)
            if refs is None:
                d = int(pipe.image_encoder.config.projection_dim)
                emb = torch.zeros(len(p), 1, d)
            else:
                size_in = int(pipe.image_encoder.config.image_size)
                px = np.stack([np.asarray(r.convert("RGB").resize((size_in, size_in))) for r in refs[i:i + batch]])
                with torch.inference_mode():
                    emb = embed(pipe.image_encoder, torch.from_numpy(px).permute(0, 3, 1, 2), "cpu")
        # prompt j conditioned on refs[j] alone
        with torch.inference_mode(), per_prompt_embeds(pipe, emb) as kwargs:
            out += pipe(prompt=p, negative_prompt=[negative] * len(p), num_inference_steps=STEPS,
                        guidance_scale=GUIDANCE, width=size, height=size,
                        generator=[torch.Generator("cpu").manual_seed(x) for x in s], **kwargs).images
    return out


def eval_slice(pipe, instruments: Path, n: int, size: int, scale: float) -> tuple[dict[str, Any], list, list]:
    """(figures, portraits, selfies with the adapter)."""
    from ..bench.vae_roundtrip import figure, planned_characters
    from ..character import CharacterSpec, SelfieSpec
    from ..eval import calibrated_threshold, score
    from ..prompts import portrait_prompt, selfie_prompt
    from .corpus import _seed
    from ..likeness.instruments import Instruments

    instr = Instruments.load(instruments)
    calibrated = calibrated_threshold(instruments)
    chars = planned_characters(n, 1, salt=CURVE_SALT)
    for c in chars:
        c["spec"] = {**c["spec"], "theme": "none"}
    specs = [CharacterSpec.from_dict(c["spec"]) for c in chars]
    negative = portrait_prompt(specs[0]).negative
    seeds = [_seed(CURVE_SALT, c["identity_seed"]) for c in chars]
    portraits = _draw(pipe, [portrait_prompt(s).positive for s in specs], negative, seeds, size, 0.0, None)
    shots = [c["shots"][0] for c in chars]
    selfie_prompts = [selfie_prompt(s, SelfieSpec.from_dict(shot)).positive for s, shot in zip(specs, shots)]
    selfie_seeds = [x + 1 for x in seeds]
    with_ip = _draw(pipe, selfie_prompts, negative, selfie_seeds, size, scale, portraits)
    without = _draw(pipe, selfie_prompts, negative, selfie_seeds, size, 0.0, None)
    base = [{"spec": c["spec"], "portraits": [p], "reference": p} for c, p in zip(chars, portraits)]
    on = score(instr, [{**b, "selfies": [(im, shot)]} for b, im, shot in zip(base, with_ip, shots)], calibrated)
    off = score(instr, [{**b, "selfies": [(im, shot)]} for b, im, shot in zip(base, without, shots)], calibrated)
    out = {name: figure(on, k) for name, k in FIGURES.items()}
    out["attribute_each"] = {k: v for k, v in on["attribute_accuracy"].items() if k not in ("mean", "theme")}
    out["verification_no_ip_adapter"] = figure(off, "identity.verification_accuracy")
    out["same_minus_different"] = on["identity"]["margin"]
    # the same selfies prompted without hair, eyes and skin (selfie_from_reference): what the reference alone carries
    # and look agreement: how often the instruments read the same hair and skin on the selfie as on its reference
    # (a finer signal than verification while the adapter starts to carry the look)
    bare = [selfie_prompt(s, SelfieSpec.from_dict(shot), from_reference=True).positive for s, shot in zip(specs, shots)]
    ref_read = instr.classify(portraits)
    for suffix, scale_ in (("", scale), ("_no_ip_adapter", 0.0)):
        images = _draw(pipe, bare, negative, selfie_seeds, size, scale_, portraits if scale_ else None)
        read = score(instr, [{**b, "selfies": [(im, shot)]} for b, im, shot in zip(base, images, shots)], calibrated)
        out["verification_from_reference" + suffix] = figure(read, "identity.verification_accuracy")
        out["look_agreement_from_reference" + suffix] = look_agreement(ref_read, instr.classify(images))
    out["n"] = n
    out["references"] = PER_PROMPT      # each selfie conditioned on its own reference alone (curve_plot.PER_PROMPT)
    return out, portraits, with_ip


LOOK = ("hair_colour", "hair_style", "hair_length", "eye_colour", "skin_tone")


def look_agreement(a: list[dict[str, str]], b: list[dict[str, str]]) -> dict[str, float]:
    """Per look attribute, the share of pairs read alike (a[i] vs b[i]), and their mean."""
    each = {k: round(float(np.mean([x[k] == y[k] for x, y in zip(a, b)])), 4) for k in LOOK if a and k in a[0]}
    return {**each, "mean": round(float(np.mean(list(each.values()))), 4) if each else None}


def point(pipe_dir: Path, ipa_dir: Path | None, instruments: Path, n: int = 64, probe_seeds: int = 2,
          scale: float = 0.7, sheet: Path | None = None) -> dict[str, Any]:
    """Both readings of the model in pipe_dir (+ ipa_dir); sheet: also save portraits over selfies as a PNG."""
    from ..bench.adherence import measure

    t0 = time.perf_counter()
    pipe = _pipeline(pipe_dir, ipa_dir)
    size = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
    slice_, portraits, selfies = eval_slice(pipe, instruments, n, size, scale)
    if sheet is not None:
        from .common import grid

        grid([portraits[:16], selfies[:16]]).save(sheet)
    probe_dir = Path(pipe_dir)
    link = probe_dir / "instruments"
    if not link.exists():
        link.symlink_to(Path(instruments).resolve(), target_is_directory=True)
    probe = measure(probe_dir, probe_seeds, SAMPLER, STEPS, GUIDANCE, size)
    return {"eval_slice": slice_,
            "adherence": {k: v["accuracy"] for k, v in probe["attributes"].items()},
            "adherence_mean": probe["mean_accuracy"],
            "unet_response": {k: v["unet_response"] for k, v in probe["attributes"].items()},
            "curve_seconds": round(time.perf_counter() - t0, 1)}
