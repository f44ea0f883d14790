"""The Studio: what a user can do (design, lock, selfie, manage characters), over Engine + Store.

No torch and no gradio here: the UI and the API call these methods; the engine is created lazily on first use so
the app starts (and the characters panel works) before the model has loaded.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable

from PIL import Image

from . import archive, cancel, charlora, refsheet
from . import budget as budgets
from .availability import downloads_allowed
from .character import CharacterSpec, SelfieSpec
from .config import AppConfig, Profile, public_ref
from .errors import SpecError, StateError, shown
from .gpu import gpu
from .likeness.band import Band
from .likeness.result import Likeness
from .likeness.retry import Attempt, attempt_seeds, best_of
from .gate import RenderGate
from .lora_jobs import LoraJobs
from .packs import DEFAULT_KIND, pack_kind
from .prompts import portrait_prompt, selfie_prompt
from .recipe import Recipe, recipe_guidance_end
from .settings import Settings, samplers
from .store import Store, clean_name

log = logging.getLogger(__name__)
MAX_CANDIDATES = 4
MAX_SELFIES = 4
SEED_MAX = 2**31 - 1
Progress = Callable[[float, str], None]
# shoot(shot, seed, report, extra, pose=None) -> (kept image, its recipe, its likeness, attempts made);
# pose: a ControlNet pose preset instead of the shot's framing (reference sheet views)
Shoot = Callable[[SelfieSpec, int, Callable[[str], None], dict], tuple[Image.Image, Recipe, Likeness, int]]
# The request a render belongs to: (owner, cancelled() or None), set by the public methods (customizer/gate.py)
_REQUEST: ContextVar[tuple[str, Callable[[], bool] | None] | None] = ContextVar("render_request", default=None)


def _one_request(method: Callable) -> Callable:
    """A public Studio method that renders: one request of its owner (Busy past the per-owner cap), its renders
    taking turns at the render gate; `cancelled()` (the UI passes "has the client gone?") stops it between steps."""
    @functools.wraps(method)
    def wrapper(self, *args, owner: str = "local", cancelled: Callable[[], bool] | None = None, **kwargs):
        if _REQUEST.get() is not None:  # already inside a request (a method calling another)
            return method(self, *args, owner=owner, **kwargs)
        with self.gate.request(owner):
            token = _REQUEST.set((owner, cancelled))
            try:
                return method(self, *args, owner=owner, **kwargs)
            finally:
                _REQUEST.reset(token)
    return wrapper


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


def _no_progress(fraction: float, message: str) -> None:
    del fraction, message


def resolve_seed(seed: Any) -> int:
    """None / -1 / '' -> a fresh random seed; otherwise a whole number 0..2^31-1."""
    if seed is None or seed == "" or seed == -1:
        return secrets.randbelow(SEED_MAX)
    if isinstance(seed, bool):
        raise SpecError("seed", "must be a whole number")
    try:
        number = float(seed)
        value = int(number)
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf, or an int too large for a float
        raise SpecError("seed", f"must be a whole number from 0 to {SEED_MAX} (or -1 for random), "
                                f"got {shown(seed)}") from None
    if value != number or not 0 <= value <= SEED_MAX:
        raise SpecError("seed", f"must be a whole number from 0 to {SEED_MAX} (or -1 for random), got {shown(seed)}")
    return value


def _count(field: str, value: Any, hi: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf
        raise SpecError(field, f"must be a whole number from 1 to {hi}, got {shown(value)}") from None
    if isinstance(value, bool) or n != value or not 1 <= n <= hi:
        raise SpecError(field, f"must be a whole number from 1 to {hi}, got {shown(value)}")
    return n


class Studio:
    def __init__(self, config: AppConfig, profile: Profile, store: Store, engine_factory: Callable | None = None,
                 enforce_budget: bool = False):
        """enforce_budget: refuse requests over the profile's compute budget (customizer/budget.py) - what the app
        does for its users (app.py); off for library use (eval, bench), which picks its own settings."""
        self.config, self.profile, self.store = config, profile, store
        self.enforce_budget = enforce_budget
        self._engine_factory = engine_factory
        self._engine = None
        self._engine_lock = threading.Lock()
        self._scorer = None
        self._scorer_lock = threading.Lock()
        self.reference_sheet = refsheet.enabled(profile)  # a bad switch value stops the app at start
        self.lora_settings = charlora.settings(profile)   # so does a bad character_lora override
        self.lora_jobs = LoraJobs(self.lora_settings["parallel"], self.lora_settings["timeout_minutes"] * 60)
        self.gate = RenderGate()
        cancel.install()  # renders stop between two steps when their client has gone

    # ---- engine --------------------------------------------------------------------------------------------
    @property
    def engine(self):
        with self._engine_lock:
            if self._engine is None:
                if self._engine_factory is None:
                    from .engine.pipeline import Engine  # heavy: torch + diffusers, once

                    self._engine_factory = Engine
                self._engine = self._engine_factory(self.profile)
            return self._engine

    @property
    def scorer(self):
        """The likeness scorer (customizer/likeness); loaded on first use; 'unavailable' rather than an error."""
        with self._scorer_lock:
            if self._scorer is None:
                from .likeness.scorer import load_scorer  # numpy, and torch/dlib for the instrument

                self._scorer = load_scorer(self.profile.likeness)
            return self._scorer

    @property
    def likeness_policy(self) -> tuple[Band | None, int]:
        """(target band or None, renders per selfie at most) from the profile's likeness entry."""
        cfg = self.profile.likeness
        if cfg is None or cfg.band is None:
            return None, 1
        return Band(*cfg.band), cfg.max_attempts

    def status(self) -> dict[str, Any]:
        info = {"profile": self.profile.name, "family": self.profile.family, "base_model": self.profile.base_model,
                "loaded": self._engine is not None}
        if self._engine is not None:
            info |= {"device": self._engine.device, "dtype": str(self._engine.dtype).replace("torch.", ""),
                     "load_seconds": round(self._engine.load_seconds, 2)}
        band, attempts = self.likeness_policy
        cfg = self.profile.likeness
        info["likeness"] = {"instrument": cfg.instrument if cfg else None, "band": band.to_list() if band else None,
                            "max_attempts": attempts, "loaded": self._scorer is not None}
        if self._scorer is not None:
            info["likeness"] |= {"available": self._scorer.available, "reason": self._scorer.reason}
        return info

    def samplers(self) -> dict[str, str]:
        return samplers()

    # ---- recipes -------------------------------------------------------------------------------------------
    def _recipe(self, kind: str, prompt, seed: int, settings: Settings, loras: dict[str, float],
                ip_scale: float = 0.0, reference_sha: str | None = None, controlnet: dict | None = None,
                extra: dict | None = None, conditioning: list[str] | None = None,
                character_lora: str | None = None, batch: dict | None = None) -> Recipe:
        engine = self.engine
        return Recipe(
            kind=kind, profile=self.profile.name, model_id=public_ref(self.profile.base_model),
            model_revision=engine.weights["base"], prompt=prompt.positive, negative_prompt=prompt.negative,
            seed=seed, scheduler=settings.sampler, steps=settings.steps, guidance=settings.guidance,
            width=settings.width, height=settings.height, batch=batch, loras=loras,
            guidance_end=recipe_guidance_end(settings.steps, settings.guidance, settings.guidance_end),
            character_lora_sha256=character_lora, ip_adapter_scale=ip_scale,
            reference_sha256=reference_sha, conditioning_sha256=conditioning, controlnet=controlnet,
            upscale=(self.profile.upscaler or "lanczos2x") if settings.upscale else None,
            device=engine.device, dtype=str(engine.dtype).replace("torch.", ""), versions=dict(engine.versions),
            extra=extra or {},
        )

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

    # ---- design and lock -----------------------------------------------------------------------------------
    @_one_request
    def design(self, spec: dict, seed: Any = None, n: Any = 1, advanced: dict | None = None,
               character_id: str | None = None, name: str | None = None, owner: str = "local",
               progress: Progress = _no_progress) -> dict[str, Any]:
        """Generate n candidate portraits for a (new or still-draft) character; seeds are seed, seed+1, ... n > 1:
        all in one batched pipeline call (each recipe records the batch; reproduce re-renders it)."""
        spec_obj = CharacterSpec.from_dict(spec)
        if name is not None and (not isinstance(name, str) or name.strip()):
            clean_name(name)  # a refused name costs nothing: before the model loads or anything is stored
        n = _count("candidates", n, MAX_CANDIDATES)
        base_seed = resolve_seed(seed)
        settings = Settings.resolve(self.profile, advanced)
        self.check_budget(settings, n, per_render=n)  # n > 1: one batched call
        progress(0.0, "loading model")
        engine = self.engine
        prompt = portrait_prompt(spec_obj, engine.theme_triggers(spec_obj.theme), settings.negative)
        loras = engine.theme_loras(spec_obj.theme, spec_obj.theme_strength)
        if character_id:
            character = self.store.update_draft_spec(character_id, spec_obj.to_dict(), owner=owner)
        else:
            character = self.store.create_character((name or "").strip() or spec_obj.summary(), spec_obj.to_dict(),
                                                    owner=owner)
        seeds = [(base_seed + i) % SEED_MAX for i in range(n)]

        def recipe_for(i: int) -> Recipe:
            # n > 1: one batched call; a batched image is only reproduced by its batch, so the recipe records it
            return self._recipe("portrait", prompt, seeds[i], settings, loras, extra={"spec": spec_obj.to_dict()},
                                batch={"seeds": seeds, "index": i} if n > 1 else None)

        def save(image: Image.Image, recipe: dict) -> dict:
            return self.store.add_candidate(character["id"], image, recipe, owner=owner)

        try:
            if n == 1:
                candidates = self._render_series("portrait", 1, progress, recipe_for, save)
            else:
                candidates = self._render_batched("candidates", [recipe_for(i) for i in range(n)], progress, save)
        except BaseException:
            # a brand-new character whose first render failed is not worth keeping as an empty draft
            if not character_id and not self.store.get_character(character["id"], owner=owner)["candidates"]:
                self.store.delete_character(character["id"], owner=owner)
            raise
        return {"character": self.store.get_character(character["id"], owner=owner), "candidates": candidates}

    @_one_request
    def lock(self, character_id: str, candidate_id: str, owner: str = "local",
             progress: Progress = _no_progress) -> dict[str, Any]:
        """Lock a candidate as the reference; its IP-Adapter embedding is computed now and cached. Then, unless
        the profile turns it off, its reference sheet (data/refsheet.yaml) is rendered, scored and stored, and the
        combined embeddings selfies will use are cached too. A failure after the lock leaves the reference locked
        (with whatever part of the sheet was stored) and is raised."""
        reference = self.store.lock(character_id, candidate_id, owner=owner)
        reference["sheet"] = []
        if self.profile.ip_adapter is not None:
            progress(0.0, "encoding the reference")
            self._reference_embeds(reference)
            if self.reference_sheet:
                self._make_sheet(character_id, reference, owner, progress)
                progress(0.95, "reference sheet: combining the embeddings")
                self._conditioning(reference, owner)  # cached now: the first selfie starts right away
                reference["sheet"] = self.get_character(character_id, owner=owner)["sheet"]
        progress(1.0, "done")
        return reference

    def unlock(self, character_id: str, owner: str = "local") -> dict[str, Any]:
        return self.store.unlock(character_id, owner=owner)

    def _reference_embeds(self, reference: dict) -> bytes:
        key = self.engine.embedding_key
        blob = self.store.get_reference_embedding(reference["id"], key)
        if blob is None:
            blob = self._encode_image(reference["image_sha256"])
            self.store.put_reference_embedding(reference["id"], key, blob)
        return blob

    def _encode_image(self, sha256: str) -> bytes:
        with Image.open(self.store.image_path(sha256)) as im:
            return self.engine.encode_reference(im.convert("RGB"))

    # ---- reference sheet -----------------------------------------------------------------------------------
    def _make_sheet(self, character_id: str, reference: dict, owner: str, progress: Progress) -> None:
        """Render the views the reference's sheet lacks (all of them at lock), each conditioned on the reference
        alone with the sheet's one seed, scored once (no retries: lock stays quick) and stored as it is made."""
        spec = CharacterSpec.from_dict(self.store.get_character(character_id, owner=owner)["spec"])
        sheet = refsheet.sheet()
        have = {v["view"] for v in self.store.sheet_views(character_id, owner, reference["id"])}
        with Image.open(self.store.image_path(reference["image_sha256"])) as im:
            seed = refsheet.seed(refsheet.pixel_digest(im.convert("RGB")))
        shoot = self._shooter(spec, reference, Settings.resolve(self.profile, None), owner, sheet_view=True)
        names = [v.name for v in sheet.views]
        for i, view in enumerate(sheet.views):
            if view.name in have:
                continue
            label = f"reference sheet: {view.name} ({i + 1} of {len(names)})"
            progress(i / len(names), label)
            info = {"sheet_view": {"view": view.name, "position": i, "views": names}}
            image, recipe, likeness, _ = shoot(view.shot, seed, lambda msg, at=i / len(names), what=label: progress(
                at, f"{what}: {msg}"), info, pose=view.pose)
            self.store.add_sheet_view(character_id, reference["id"], view.name, i, image, recipe.to_dict(),
                                      likeness.score, owner, likeness_state=likeness.state,
                                      likeness_instrument=likeness.instrument)

    def _conditioning(self, reference: dict, owner: str) -> Conditioning:
        """The reference's IP-Adapter embeddings plus those of its sheet views inside the likeness band,
        combined (engine.combine_embeds) and cached with the reference under a key naming the images."""
        ref_blob = self._reference_embeds(reference)
        views = self.store.sheet_views(reference["character_id"], owner, reference["id"]) \
            if self.reference_sheet else []
        kept, left_out = refsheet.split(views, self.likeness_policy[0])
        shas = [reference["image_sha256"], *(v["image_sha256"] for v in kept)]
        if not kept:
            return Conditioning(ref_blob, shas, [], left_out)
        key = f"{self.engine.embedding_key}|sheet:{hashlib.sha256(' '.join(shas).encode()).hexdigest()[:24]}"
        blob = self.store.get_reference_embedding(reference["id"], key)
        if blob is None:
            blob = self.engine.combine_embeds([ref_blob, *(self._encode_image(sha) for sha in shas[1:])])
            self.store.put_reference_embedding(reference["id"], key, blob)
        return Conditioning(blob, shas, kept, left_out)

    # ---- selfies -------------------------------------------------------------------------------------------
    def likeness_to_scale(self, likeness: float) -> float:
        """'Likeness vs freedom' 0..1 -> IP-Adapter scale within the profile's range (ip_scale: [lo, hi])."""
        lo, hi = self.profile.ip_scale
        return round(lo + (hi - lo) * float(likeness), 4)

    @_one_request
    def selfie(self, character_id: str, selfie: dict, seed: Any = None, count: Any = 1,
               advanced: dict | None = None, owner: str = "local",
               progress: Progress = _no_progress) -> list[dict[str, Any]]:
        """count selfies with seeds seed, seed+1, ...; each scored against the reference and retried into the
        profile's likeness band (likeness_policy); each stored as soon as it is kept."""
        reference, spec = self._locked(character_id, owner)
        shot = SelfieSpec.from_dict(selfie)
        count = _count("count", count, MAX_SELFIES)
        base_seed = resolve_seed(seed)
        settings = Settings.resolve(self.profile, advanced)
        self.check_budget(settings, count * self.attempts_per_selfie)  # every selfie may take every attempt
        progress(0.0, "loading model")
        shoot = self._shooter(spec, reference, settings, owner)
        made = []
        for i in range(count):
            label = f"selfie {i + 1} of {count}"
            progress(i / count, label)
            image, recipe, likeness, attempts = shoot(
                shot, (base_seed + i) % SEED_MAX, lambda msg, at=i / count, what=label: progress(at, f"{what}: {msg}"),
                {})
            made.append(self._store_selfie(character_id, image, recipe, shot, likeness, attempts, owner))
        progress(1.0, "done")
        return made

    @_one_request
    def expression_pack(self, character_id: str, name: str | None = None, seed: Any = None,
                        selfie: dict | None = None, advanced: dict | None = None, kind: str = DEFAULT_KIND,
                        owner: str = "local", progress: Progress = _no_progress) -> dict[str, Any]:
        """One click: the pack's standard set (data/packs.yaml; neutral, happy, ... thinking) as a named pack.
        One seed for the whole pack, so only the expression changes from image to image; every item is scored and
        retried like any selfie, and stored as soon as it is kept (a failure keeps the items already made)."""
        reference, spec = self._locked(character_id, owner)
        kind_ = pack_kind(kind)
        shots = kind_.shots(selfie)
        if name is not None and not isinstance(name, str):
            raise SpecError("name", f"must be text, got {type(name).__name__}")
        base_seed = resolve_seed(seed)
        settings = Settings.resolve(self.profile, advanced)
        self.check_budget(settings, len(shots) * self.attempts_per_selfie)
        # the pack first: a refused name must cost nothing, not even a model load
        pack = self.store.create_pack(character_id, kind_.kind, list(kind_.values), name=name, label=kind_.label,
                                      owner=owner)
        made = 0
        try:
            progress(0.0, "loading model")
            shoot = self._shooter(spec, reference, settings, owner)
            for i, (value, shot) in enumerate(zip(kind_.values, shots)):
                label = f"{value} ({i + 1} of {len(shots)})"
                progress(i / len(shots), label)
                info = {"pack": {"id": pack["id"], "kind": kind_.kind, "name": pack["name"], "slot": value,
                                 "slots": list(kind_.values)}}
                image, recipe, likeness, attempts = shoot(
                    shot, base_seed, lambda msg, at=i / len(shots), what=label: progress(at, f"{what}: {msg}"), info)
                self._store_selfie(character_id, image, recipe, shot, likeness, attempts, owner,
                                   pack_id=pack["id"], pack_slot=value)
                made += 1
        except BaseException:
            if not made:  # nothing worth keeping: no empty pack left behind
                self.store.delete_pack(pack["id"], owner=owner)
            raise
        self.store.complete_pack(pack["id"])
        progress(1.0, "done")
        return self.store.get_pack(pack["id"], owner=owner)

    def get_pack(self, pack_id: str, owner: str = "local") -> dict[str, Any]:
        return self.store.get_pack(pack_id, owner=owner)

    def _locked(self, character_id: str, owner: str) -> tuple[dict, CharacterSpec]:
        character = self.store.get_character(character_id, owner=owner)
        reference = self.store.active_reference(character_id, owner=owner)
        if reference is None:
            raise StateError(f"character '{character['name']}' has no locked reference yet: lock a portrait first")
        return reference, CharacterSpec.from_dict(character["spec"])

    def _store_selfie(self, character_id: str, image: Image.Image, recipe: Recipe, shot: SelfieSpec,
                      likeness: Likeness, attempts: int, owner: str, **pack: str) -> dict[str, Any]:
        return self.store.add_selfie(character_id, image, recipe.to_dict(), shot.to_dict(), likeness=likeness.score,
                                     attempts=attempts, owner=owner, likeness_state=likeness.state,
                                     likeness_instrument=likeness.instrument, **pack)

    def _shooter(self, spec: CharacterSpec, reference: dict, settings: Settings, owner: str,
                 sheet_view: bool = False) -> Shoot:
        """Everything shared by the selfies of one request (engine, LoRAs, conditioning embeddings, likeness
        judges), then a function that takes one selfie: render, score, retry, keep the best.
        Selfies are conditioned on the reference plus its sheet (_conditioning) and also scored against the sheet;
        sheet_view=True takes a view of the sheet itself: the reference alone, one attempt, kind 'sheet'."""
        engine = self.engine
        triggers = engine.theme_triggers(spec.theme)
        loras = engine.theme_loras(spec.theme, spec.theme_strength)
        cond = None
        if self.profile.ip_adapter:
            cond = (Conditioning(self._reference_embeds(reference), [reference["image_sha256"]], [], [])
                    if sheet_view else self._conditioning(reference, owner))
        cn = self.profile.controlnet
        ref_image = None
        if cn and cn.control == "canny":
            with Image.open(reference["path"]) as im:
                ref_image = im.convert("RGB")
        judge = self._judge(reference)
        also = self._sheet_likeness(reference, cond.views) if cond and cond.views else None
        band = self.likeness_policy[0]
        sheet_facts = {"sheet": cond.facts(band)} if cond and not sheet_view else {}
        lora = None if sheet_view else self.current_lora(reference, owner)  # views are what a LoRA learns from

        def shoot(shot: SelfieSpec, seed: int, report: Callable[[str], None], extra: dict, pose: str | None = None):
            prompt = selfie_prompt(spec, shot, triggers, settings.negative)
            controlnet = ({"model": public_ref(cn.model), "control": cn.control, "preset": pose or shot.framing,
                           "scale": cn.scale} if cn else None)
            ip_scale = self.likeness_to_scale(shot.likeness) if cond else 0.0
            strength = self.lora_settings["strength"] if shot.character_lora_strength is None \
                else shot.character_lora_strength
            use = lora if lora is not None and shot.character_lora and strength > 0 else None
            adapters = {**loras, charlora.adapter_name(use["sha256"]): round(float(strength), 4)} if use else loras
            lora_facts = {"character_lora": {"id": use["id"], "strength": round(float(strength), 4),
                                             "images": len(use["facts"].get("images", []))}} if use else {}
            facts = {"spec": spec.to_dict(), "selfie": shot.to_dict(), **sheet_facts, **lora_facts, **extra}
            return self._take(
                lambda s: self._recipe("sheet" if sheet_view else "selfie", prompt, s, settings, adapters,
                                       ip_scale=ip_scale, reference_sha=reference["image_sha256"],
                                       controlnet=controlnet, extra=facts, conditioning=cond.shas if cond else None,
                                       character_lora=use["sha256"] if use else None),
                seed, judge, cond.embeds if cond else None, ref_image, report, also=also,
                max_attempts=1 if sheet_view else None)

        return shoot

    def _take(self, recipe_at: Callable[[int], Recipe], seed: int, judge: Callable[[Image.Image], Likeness],
              embeds: bytes | None, ref_image: Image.Image | None, report: Callable[[str], None],
              also: Callable[[Image.Image], dict] | None = None,
              max_attempts: int | None = None) -> tuple[Image.Image, Recipe, Likeness, int]:
        """Render + score with the deterministic seed sequence of `seed` until the likeness is in the band (or the
        attempts run out); keep the best. The kept recipe is the one of its own render (its own seed), plus
        non-input facts in extra: likeness (state, score, band, position; `also`'s numbers for the kept image,
        e.g. the mean score against the sheet) and attempts (every seed tried)."""
        band, policy_attempts = self.likeness_policy
        max_attempts = max_attempts or policy_attempts

        def make(s: int) -> Attempt:
            recipe = recipe_at(s)
            t0 = time.perf_counter()
            image, timings = self._render(recipe, embeds, ref_image)
            rendered = time.perf_counter() - t0
            recipe = recipe.replace(extra=recipe.extra | {"seconds": round(rendered, 3), "timings": timings})
            likeness = judge(image)
            return Attempt(s, image, recipe, likeness, time.perf_counter() - t0)

        def on_attempt(attempt: Attempt, n: int) -> None:
            lk = attempt.likeness
            if band is not None and n < max_attempts and band.distance(lk) > 0:
                where = f"likeness {lk.score:.2f} {band.position(lk)} the band" if lk.score is not None \
                    else lk.reason or lk.state
                report(f"{where}; attempt {n + 1} of {max_attempts}")

        kept, tried = best_of(attempt_seeds(seed, max_attempts, SEED_MAX), make, band, on_attempt)
        likeness = kept.likeness
        facts = {
            "likeness": likeness.to_dict() | {"band": band.to_list() if band else None,
                                              "position": band.position(likeness) if band else None}
            | (also(kept.image) if also else {}),
            "attempts": {"count": len(tried), "max": max_attempts, "kept": tried.index(kept) + 1,
                         "seconds": round(sum(a.seconds for a in tried), 3),
                         "tried": [a.summary(band) for a in tried]},
        }
        return kept.image, kept.recipe.replace(extra=kept.recipe.extra | facts), likeness, len(tried)

    def _judge(self, reference: dict, sha256: str | None = None) -> Callable[[Image.Image], Likeness]:
        """image -> Likeness against this reference (or against the image sha256 of one of its sheet views). The
        descriptor is computed once and cached with the reference (like its IP-Adapter embedding), under the
        instrument's weights key."""
        scorer = self.scorer
        if not scorer.available:
            return lambda image: scorer.unavailable()
        key = scorer.cache_key if sha256 is None else f"{scorer.cache_key}|view:{sha256[:24]}"
        blob = self.store.get_reference_embedding(reference["id"], key)
        if blob is None:
            try:
                with Image.open(self.store.image_path(sha256 or reference["image_sha256"])) as im:
                    blob = scorer.reference_blob(im.convert("RGB"))
            except Exception as e:  # noqa: BLE001 - the selfie still gets made; its likeness says why not scored
                log.exception("likeness: could not describe reference %s", reference["id"])
                failed = Likeness("error", scorer.name, reason=f"the reference could not be measured "
                                                               f"({type(e).__name__})")
                return lambda image: failed
            self.store.put_reference_embedding(reference["id"], key, blob)
        return lambda image: scorer.score(blob, image)

    def _sheet_likeness(self, reference: dict, views: list[dict]) -> Callable[[Image.Image], dict] | None:
        """image -> {sheet_mean, sheet_scores}: its likeness to each sheet view that conditioned it (the score
        against the locked reference stays the one that counts)."""
        if not self.scorer.available:
            return None
        judges = [(v["view"], self._judge(reference, v["image_sha256"])) for v in views]

        def measure(image: Image.Image) -> dict[str, Any]:
            scores = {name: judge(image).score for name, judge in judges}
            got = [x for x in scores.values() if x is not None]
            return {"sheet_mean": round(sum(got) / len(got), 6) if got else None, "sheet_scores": scores}

        return measure

    # ---- character LoRA ------------------------------------------------------------------------------------------
    def accept_selfie(self, selfie_id: str, accepted: bool = True, owner: str = "local") -> dict[str, Any]:
        """Mark a selfie accepted: "this is my character". Accepted selfies join the character LoRA's training."""
        return self.store.set_selfie_accepted(selfie_id, accepted, owner=owner)

    def lora_training_set(self, character_id: str, owner: str = "local") -> tuple[dict, list[dict]]:
        """(the active reference, what a character LoRA trains on): the reference, its sheet views that condition
        selfies (those outside the likeness band drifted or only copy it), and the accepted selfies of this
        reference, oldest first; each carries its own recipe. StateError when the character is not locked."""
        reference, _ = self._locked(character_id, owner)
        views = self.store.sheet_views(character_id, owner, reference["id"]) \
            if self.reference_sheet and self.profile.ip_adapter else []
        kept, _ = refsheet.split(views, self.likeness_policy[0])
        selfies = [s for s in reversed(self.store.get_character(character_id, owner=owner)["selfies"])
                   if s["accepted"] and s["reference_id"] == reference["id"]]
        items, seen = [], set()
        for item in [reference, *kept, *selfies]:
            if item["image_sha256"] not in seen:  # the same picture twice would only weigh it double
                seen.add(item["image_sha256"])
                items.append(item)
        return reference, items

    def current_lora(self, reference: dict, owner: str = "local") -> dict | None:
        """The newest character LoRA trained on this reference (None: none yet)."""
        loras = self.store.character_loras(reference["character_id"], owner, reference["id"])
        return loras[0] if loras else None

    def character_lora(self, character_id: str, owner: str = "local") -> dict[str, Any]:
        """What the Selfie studio shows: the LoRA selfies use now, the newest job, and the training set's size."""
        reference = self.store.active_reference(character_id, owner=owner)
        images = len(self.lora_training_set(character_id, owner)[1]) if reference else 0
        return {"lora": self.current_lora(reference, owner) if reference else None, "training_images": images,
                "job": self.lora_jobs.latest_for(character_id, owner)}

    def start_character_lora(self, character_id: str, owner: str = "local", seed: Any = None) -> str:
        """Start training a character LoRA in the background (one job per character); returns the job id. The
        job trains on lora_training_set with each image's own prompt and IP-Adapter scale and the character's
        selfie conditioning; when done, the file is stored with the training facts, for this owner only."""
        if self.profile.family != "sd15":
            raise StateError(f"character LoRA training needs an sd15-family model; profile '{self.profile.name}' "
                             f"is {self.profile.family}")
        reference, items = self.lora_training_set(character_id, owner)
        s = self.lora_settings
        seed = s["seed"] if seed is None or seed == "" else resolve_seed(seed)
        cond = self._conditioning(reference, owner) if self.profile.ip_adapter else None
        files, images = {}, []
        for i, item in enumerate(items):
            r, name = item["recipe"], f"image_{i}.png"
            with open(self.store.image_path(item["image_sha256"]), "rb") as f:
                files[name] = f.read()
            images.append({"file": name, "sha256": item["image_sha256"], "kind": r.get("kind"),
                           "prompt": r["prompt"], "negative_prompt": r["negative_prompt"],
                           "ip_scale": float(r.get("ip_adapter_scale") or 0.0)})
        if cond is not None:
            files["conditioning.bin"] = cond.embeds
        ipa = self.profile.ip_adapter
        training = {k: s[k] for k in charlora.TRAINING}
        job = {"model": {"family": self.profile.family, "base_model": self.profile.base_model,
                         "device": self.profile.device, "local_only": not downloads_allowed(self.profile),
                         "ip_adapter": {"path": ipa.path, "subfolder": ipa.subfolder, "weight_name": ipa.weight_name}
                         if ipa else None},
               "settings": training, "seed": seed, "width": self.profile.width, "height": self.profile.height,
               "images": images}
        base_facts = {"images": [i["sha256"] for i in images], "kinds": [i["kind"] for i in images],
                      "conditioning_sha256": cond.shas if cond else None, "seed": seed, "steps": training["steps"],
                      "rank": training["rank"], "lr": training["lr"], "settings": training,
                      "profile": self.profile.name, "model_revision": self.engine.weights["base"]}

        def finish(job_: Any, data: bytes, facts: dict) -> dict:
            row = self.store.add_character_lora(character_id, reference["id"], data, base_facts | facts, owner=owner)
            return {k: v for k, v in row.items() if k != "path"}

        return self.lora_jobs.submit(character_id, owner, job, files, finish).id

    def character_lora_status(self, job_id: str, owner: str = "local") -> dict[str, Any]:
        return self.lora_jobs.status(job_id, owner)

    def cancel_character_lora(self, job_id: str, owner: str = "local") -> dict[str, Any]:
        return self.lora_jobs.cancel(job_id, owner)

    def wait_character_lora(self, job_id: str, owner: str = "local", timeout: float | None = None) -> dict[str, Any]:
        return self.lora_jobs.wait(job_id, owner, timeout)

    # ---- reproduce -----------------------------------------------------------------------------------------
    def reproduce(self, image_sha256: str) -> tuple[Image.Image, bool]:
        """Regenerate a stored image from the recipe in its PNG; True when pixels are identical."""
        recipe = Recipe.from_dict(self.store.read_recipe(image_sha256))
        if recipe.profile != self.profile.name:
            raise StateError(f"this image was made with profile '{recipe.profile}'; the app runs "
                             f"'{self.profile.name}'")
        embeds = reference = None
        if recipe.reference_sha256:
            with Image.open(self.store.image_path(recipe.reference_sha256)) as im:
                reference = im.convert("RGB")
            if recipe.ip_adapter_scale:
                # every conditioning image encoded on its own, then combined: what the selfie was given
                blobs = [self._encode_image(sha) for sha in recipe.conditioning_sha256 or [recipe.reference_sha256]]
                embeds = blobs[0] if len(blobs) == 1 else self.engine.combine_embeds(blobs)
        image, _ = self._render(recipe, embeds, reference)
        with Image.open(self.store.image_path(image_sha256)) as stored:
            same = stored.convert("RGB").tobytes() == image.convert("RGB").tobytes()
        return image, same

    # ---- characters ----------------------------------------------------------------------------------------
    def list_characters(self, owner: str = "local") -> list[dict]:
        return self.store.list_characters(owner=owner)

    def get_character(self, character_id: str, owner: str = "local") -> dict:
        """The stored character; its sheet views say whether they condition selfies (`conditions`)."""
        character = self.store.get_character(character_id, owner=owner)
        if character["sheet"]:
            kept, _ = refsheet.split(character["sheet"], self.likeness_policy[0])
            used = {v["id"] for v in kept} if self.reference_sheet and self.profile.ip_adapter else set()
            character["sheet"] = [v | {"conditions": v["id"] in used} for v in character["sheet"]]
        return character

    def rename(self, character_id: str, name: str, owner: str = "local") -> dict:
        return self.store.rename_character(character_id, name, owner=owner)

    def delete(self, character_id: str, owner: str = "local") -> None:
        self.lora_jobs.cancel_character(character_id, owner)  # a training of a deleted character has no home
        self.store.delete_character(character_id, owner=owner)

    def export(self, character_id: str, owner: str = "local") -> bytes:
        return archive.export_character(self.store, character_id, owner=owner)

    def import_(self, data: bytes, owner: str = "local") -> dict:
        """An archive is untrusted input: its spec and selfie specs pass the same validation (safety filter
        included) as the UI's, and are stored normalised."""
        return archive.import_character(self.store, data, owner=owner,
                                        check_spec=lambda d: CharacterSpec.from_dict(d).to_dict(),
                                        check_selfie=lambda d: SelfieSpec.from_dict(d).to_dict())
