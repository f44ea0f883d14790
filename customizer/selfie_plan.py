"""The selfie path as plain data: a Plan holds everything the pictures of one request share (conditioning, LoRAs,
ControlNet, the likeness band and attempts), a Shot is one picture to take, and take() renders, judges and retries
it. No torch, no gradio, no Studio: the Studio builds the Plan (customizer/service.py) and hands take() its render
and judge functions.

    plan = studio._plan(spec, reference, settings, owner)            # once per request
    taken = take(plan, Shot(selfie, seed, extra), make_recipe, render, judge, report)   # per picture
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from PIL import Image

from . import charlora, refsheet
from .character import CharacterSpec, SelfieSpec
from .likeness.band import Band
from .likeness.result import Likeness
from .likeness.retry import Attempt, attempt_seeds, best_of
from .prompts import selfie_prompt
from .recipe import Recipe
from .seeds import SEED_MAX
from .settings import Settings
Render = Callable[[Recipe], tuple[Image.Image, dict[str, float]]]  # one pipeline call: recipe -> (image, timings)
Judge = Callable[[Image.Image], Likeness]  # image -> its likeness to the reference


@dataclass(frozen=True)
class Conditioning:
    """What a selfie's IP-Adapter is given: the reference plus the sheet views that may condition it."""
    embeds: bytes            # combined embeddings (engine.combine_embeds), or the reference's own
    shas: list[str]          # the images behind them, in order: reference first (recipe.conditioning_sha256)
    views: list[dict]        # sheet views used
    left_out: list[dict]     # sheet views left out (outside the likeness band, or no face)

    def facts(self, band: Band | None) -> dict[str, Any]:
        def why(v: dict) -> dict[str, Any]:
            lk = refsheet.stored_likeness(v)
            return {"view": v["view"], "state": lk.state, "score": lk.score,
                    "position": band.position(lk) if band else None}

        return {"views": [v["view"] for v in self.views], "left_out": [why(v) for v in self.left_out]}


@dataclass(frozen=True)
class Plan:
    """What the pictures of one request share. kind 'sheet' takes views of the reference sheet: conditioned on the
    reference alone, one attempt, no character LoRA; 'selfie' is conditioned on the reference plus its sheet."""
    kind: str                                  # "selfie" | "sheet": the recipes' kind
    spec: CharacterSpec
    settings: Settings
    triggers: str                              # theme trigger words
    theme_loras: dict[str, float]              # adapter -> weight
    reference_sha: str
    conditioning: Conditioning | None          # None: the profile has no IP-Adapter
    ip_scale: tuple[float, float]              # IP-Adapter scale at likeness 0 and 1 (profile.ip_scale)
    controlnet: dict | None                    # {model, control, scale}; the preset comes from each shot
    reference_image: Image.Image | None        # canny ControlNet: the reference's pixels
    band: Band | None                          # the likeness band (None: score only)
    max_attempts: int                          # renders per picture at most
    lora: dict | None = None                   # the character LoRA selfies use (the store's row), or None
    lora_strength: float = 0.0                 # its strength when the shot does not set one
    sheet_facts: dict = field(default_factory=dict)  # recipe.extra["sheet"]: the views used and left out
    from_reference: bool = False               # the prompt leaves the look to the reference (profile.selfie_prompt)


@dataclass(frozen=True)
class Shot:
    """One picture to take: the selfie spec, its seed, facts for the recipe's extra, a pose preset instead of the
    spec's framing (sheet views)."""
    selfie: SelfieSpec
    seed: int
    extra: dict = field(default_factory=dict)
    pose: str | None = None


@dataclass(frozen=True)
class Taken:
    image: Image.Image
    recipe: Recipe             # the kept render's own recipe (its own seed), likeness and attempts in extra
    likeness: Likeness
    attempts: int


def ip_scale(plan: Plan, likeness: float) -> float:
    """'Likeness vs freedom' 0..1 -> IP-Adapter scale within the plan's range; 0 without conditioning."""
    if plan.conditioning is None:
        return 0.0
    lo, hi = plan.ip_scale
    return round(lo + (hi - lo) * float(likeness), 4)


def recipe_inputs(plan: Plan, shot: Shot) -> dict[str, Any]:
    """The inputs of the shot's recipe (Studio._recipe's keyword arguments, all but the seed)."""
    sel = shot.selfie
    strength = plan.lora_strength if sel.character_lora_strength is None else sel.character_lora_strength
    use = plan.lora if plan.lora is not None and sel.character_lora and strength > 0 else None
    adapters = dict(plan.theme_loras)
    lora_facts = {}
    if use:
        adapters[charlora.adapter_name(use["sha256"])] = round(float(strength), 4)
        lora_facts = {"character_lora": {"id": use["id"], "strength": round(float(strength), 4),
                                         "images": len(use["facts"].get("images", []))}}
    cond = plan.conditioning
    return {
        "kind": plan.kind, "prompt": selfie_prompt(plan.spec, sel, plan.triggers, plan.settings.negative,
                                                       plan.from_reference),
        "settings": plan.settings, "loras": adapters, "ip_scale": ip_scale(plan, sel.likeness),
        "reference_sha": plan.reference_sha,
        "controlnet": {"model": plan.controlnet["model"], "control": plan.controlnet["control"],
                       "preset": shot.pose or sel.framing, "scale": plan.controlnet["scale"]}
        if plan.controlnet else None,
        "extra": {"spec": plan.spec.to_dict(), "selfie": sel.to_dict(), **plan.sheet_facts, **lora_facts,
                  **shot.extra},
        "conditioning": cond.shas if cond else None, "character_lora": use["sha256"] if use else None,
    }


def take(plan: Plan, shot: Shot, make_recipe: Callable[[int], Recipe], render: Render, judge: Judge,
         report: Callable[[str], None], also: Callable[[Image.Image], dict] | None = None) -> Taken:
    """Render + score with the deterministic seed sequence of the shot's seed until the likeness is in the band
    (or the attempts run out); keep the best. The kept recipe is the one of its own render (its own seed), plus
    non-input facts in extra: likeness (state, score, band, position; `also`'s numbers for the kept image, e.g.
    the mean score against the sheet) and attempts (every seed tried)."""
    band, max_attempts = plan.band, plan.max_attempts

    def make(s: int) -> Attempt:
        recipe = make_recipe(s)
        t0 = time.perf_counter()
        image, timings = render(recipe)
        rendered = time.perf_counter() - t0
        recipe = recipe.replace(extra=recipe.extra | {"seconds": round(rendered, 3), "timings": timings})
        return Attempt(s, image, recipe, judge(image), time.perf_counter() - t0)

    def on_attempt(attempt: Attempt, n: int) -> None:
        lk = attempt.likeness
        if band is not None and n < max_attempts and band.distance(lk) > 0:
            where = f"likeness {lk.score:.2f} {band.position(lk)} the band" if lk.score is not None \
                else lk.reason or lk.state
            report(f"{where}; attempt {n + 1} of {max_attempts}")

    kept, tried = best_of(attempt_seeds(shot.seed, max_attempts, SEED_MAX), make, band, on_attempt)
    likeness = kept.likeness
    facts = {
        "likeness": likeness.to_dict() | {"band": band.to_list() if band else None,
                                          "position": band.position(likeness) if band else None}
        | (also(kept.image) if also else {}),
        "attempts": {"count": len(tried), "max": max_attempts, "kept": tried.index(kept) + 1,
                     "seconds": round(sum(a.seconds for a in tried), 3),
                     "tried": [a.summary(band) for a in tried]},
    }
    return Taken(kept.image, kept.recipe.replace(extra=kept.recipe.extra | facts), likeness, len(tried))
