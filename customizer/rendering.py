"""Studio mixin: the one place the Studio renders (the fair render gate, cancellation, a GPU lease per call; one by
one or as one batch, each image stored as soon as it exists) and the compute budget a request is held to.

Needs the Studio's engine, store, profile, gate, enforce_budget and likeness_policy.
"""
from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any, Callable

from PIL import Image

from . import budget as budgets
from . import cancel
from .gpu import gpu
from .packs import pack_kind
from .recipe import Recipe
from .settings import Settings

MAX_CANDIDATES = 4
MAX_SELFIES = 4
Progress = Callable[[float, str], None]
# The request a render belongs to: (owner, cancelled() or None), set by the public methods (customizer/gate.py)
_REQUEST: ContextVar[tuple[str, Callable[[], bool] | None] | None] = ContextVar("render_request", default=None)


class Rendering:
    def _render(self, recipe: Recipe | list[Recipe], embeds: bytes | None = None,
                reference: Image.Image | None = None):
        """One pipeline call, when this request's turn at the render gate comes (customizer/gate.py); stopped
        between steps if the request's client goes away."""
        owner, cancelled = _REQUEST.get() or ("local", None)
        with self.gate.slot(owner, cancelled), cancel.watching(cancelled):
            return self._render_gpu(recipe, embeds, reference)

    @gpu(duration=120)
    def _render_gpu(self, recipe: Recipe | list[Recipe], embeds: bytes | None = None,
                    reference: Image.Image | None = None):
        """One pipeline call: a recipe -> (image, timings); the recipes of one batch -> [(image, timings), ...]
        (Engine.render_batch). The one place the Studio renders, so a GPU lease covers a whole batch."""
        first = recipe[0] if isinstance(recipe, list) else recipe
        sha = first.character_lora_sha256
        kwargs = {"reference_embeds": embeds, "reference_image": reference,
                  "character_lora": self.store.lora_path(sha) if sha else None}
        if isinstance(recipe, list):
            return self.engine.render_batch(recipe, **kwargs)
        return self.engine.render(recipe, **kwargs)

    def _render_series(self, kind: str, count: int, progress: Progress, recipe_for: Callable[[int], Recipe],
                       save: Callable[[Image.Image, dict], dict], embeds: bytes | None = None,
                       reference: Image.Image | None = None) -> list[dict[str, Any]]:
        """Render recipe_for(0..count-1) one by one, storing each as soon as it exists (nothing lost on a crash)."""
        saved = []
        for i in range(count):
            progress(i / count, f"{kind} {i + 1} of {count}")
            recipe = recipe_for(i)
            t0 = time.perf_counter()
            image, timings = self._render(recipe, embeds, reference)
            recipe = recipe.replace(extra=recipe.extra | {"seconds": round(time.perf_counter() - t0, 3),
                                                          "timings": timings})
            saved.append(save(image, recipe.to_dict()))
        progress(1.0, "done")
        return saved

    def _render_batched(self, label: str, recipes: list[Recipe], progress: Progress,
                        save: Callable[[Image.Image, dict], dict]) -> list[dict[str, Any]]:
        """Render the recipes of one batch (Recipe.batch) in one pipeline call, then store each. Each recipe's
        timings are the whole batch's: extra["batch_seconds"] instead of a per-image "seconds"."""
        progress(0.0, f"{len(recipes)} {label} in one batch")
        t0 = time.perf_counter()
        rendered = self._render(recipes)
        facts = {"batch_seconds": round(time.perf_counter() - t0, 3)}
        saved = [save(image, recipe.replace(extra=recipe.extra | facts | {"timings": timings}).to_dict())
                 for recipe, (image, timings) in zip(recipes, rendered)]
        progress(1.0, "done")
        return saved

    # ---- compute budget ------------------------------------------------------------------------------------
    @property
    def budget(self) -> budgets.BudgetConfig | None:
        """The compute budget requests are held to (None: no limit)."""
        return self.profile.budget if self.enforce_budget else None

    def check_budget(self, settings: Settings, images: int, per_render: int = 1) -> budgets.Estimate:
        """The request's cost estimate; BudgetError (estimate and limit) over the profile's budget. images: every
        render the request may take; per_render: images in one pipeline call."""
        return budgets.check(self.budget, "request", settings.width, settings.height, settings.steps, images,
                            settings.upscale, per_render=per_render)

    def budget_fit(self, kind: str, width: int, height: int, steps: int, images: int,
                   upscale: bool = False) -> budgets.Fit:
        """What the Advanced controls may offer for a `kind` request ("design": images are one batched call;
        "selfie": each image may take every likeness attempt; "pack": the pack's slots, each one attempt-bounded)."""
        from .settings import SIZE, STEPS

        per_image = 1 if kind == "design" else self.attempts_per_selfie
        if kind == "pack":
            images = len(pack_kind().values)
        cap = MAX_CANDIDATES if kind == "design" else MAX_SELFIES
        return budgets.fit(self.budget, width, height, steps, images, STEPS[1], SIZE[1], cap,
                          per_image=per_image, batched=kind == "design", upscale=upscale)

    @property
    def attempts_per_selfie(self) -> int:
        return self.likeness_policy[1]
