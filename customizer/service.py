"""The Studio: what a user can do (design, lock, selfie, manage characters), over Engine + Store.

No torch and no gradio here, not even through another module (the "service" import contract of pyproject.toml):
the UI and the API call these methods, and the engine comes from a factory the composition root injects (app.py
passes load_engine). It is called on first use, so the app starts (and the characters panel works) before the
model has loaded. The selfie path (conditioning, judging, retries) is plain data and one function in
customizer/selfie_plan.py; rendering.py, shooting.py and lora_service.py hold the Studio's render-and-budget,
selfie-path and character-LoRA methods (mixins).
"""
from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Callable

from PIL import Image

from . import archive, cancel, charlora, refsheet
from .character import CharacterSpec, SelfieSpec
from .config import AppConfig, Profile, public_ref
from .errors import SpecError, StateError, shown
from .likeness.band import Band
from .gate import RenderGate
from .lora_jobs import LoraJobs
from .lora_service import CharacterLoras
from .packs import DEFAULT_KIND, pack_kind
from .prompts import portrait_prompt
from .recipe import Recipe, recipe_guidance_end
from .rendering import _REQUEST, MAX_CANDIDATES, MAX_SELFIES, Progress, Rendering
from .seeds import SEED_MAX, resolve_seed
from .selfie_plan import Shot, Taken
from .settings import Settings, samplers
from .shooting import Shooting
from .store import Store, clean_name

log = logging.getLogger(__name__)


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


def _no_progress(fraction: float, message: str) -> None:
    del fraction, message


def _count(field: str, value: Any, hi: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf
        raise SpecError(field, f"must be a whole number from 1 to {hi}, got {shown(value)}") from None
    if isinstance(value, bool) or n != value or not 1 <= n <= hi:
        raise SpecError(field, f"must be a whole number from 1 to {hi}, got {shown(value)}")
    return n


class Studio(Rendering, Shooting, CharacterLoras):
    def __init__(self, config: AppConfig, profile: Profile, store: Store,
                 engine_factory: Callable[[Profile], Any], enforce_budget: bool = False):
        """engine_factory: profile -> engine, called once on first use (app.py, the composition root, passes
        load_engine; tests pass their tiny engines). enforce_budget: refuse requests over the profile's compute
        budget (customizer/budget.py) - what the app does for its users (app.py); off for library use (eval,
        bench), which picks its own settings."""
        self.config, self.profile, self.store = config, profile, store
        self.enforce_budget = enforce_budget
        self._engine_factory = engine_factory
        self._engine = None
        self._engine_lock = threading.Lock()
        self._scorer = None
        self._scorer_lock = threading.Lock()
        self.reference_sheet = refsheet.enabled(profile)  # a bad switch value stops the app at start
        self.sheet_conditions = refsheet.conditions(profile)
        self.lora_settings = charlora.settings(profile)   # so does a bad character_lora override
        self.lora_jobs = LoraJobs(self.lora_settings["parallel"], self.lora_settings["timeout_minutes"] * 60)
        self.gate = RenderGate()
        cancel.install()  # renders stop between two steps when their client has gone

    # ---- engine --------------------------------------------------------------------------------------------
    @property
    def engine(self):
        with self._engine_lock:
            if self._engine is None:
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
            upscale=(public_ref(self.profile.upscaler) or "lanczos2x") if settings.upscale else None,
            device=engine.device, dtype=str(engine.dtype).replace("torch.", ""), versions=dict(engine.versions),
            extra=extra or {},
        )

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
                if self.sheet_conditions:  # otherwise selfies use the reference's embeddings, cached above
                    progress(0.95, "reference sheet: combining the embeddings")
                    self._conditioning(reference, owner)  # cached now: the first selfie starts right away
                reference["sheet"] = self.get_character(character_id, owner=owner)["sheet"]
        progress(1.0, "done")
        return reference

    def unlock(self, character_id: str, owner: str = "local") -> dict[str, Any]:
        return self.store.unlock(character_id, owner=owner)

    # ---- selfies -------------------------------------------------------------------------------------------
    def likeness_to_scale(self, likeness: float) -> float:
        """'Likeness vs freedom' 0..1 -> IP-Adapter scale within the profile's range (ip_scale: [lo, hi])."""
        lo, hi = self.profile.ip_scale
        return round(lo + (hi - lo) * float(likeness), 4)  # selfie_plan.ip_scale, for a plan's conditioned shots

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
        plan = self._plan(spec, reference, settings, owner)
        made = []
        for i in range(count):
            label = f"selfie {i + 1} of {count}"
            progress(i / count, label)
            taken = self._shoot(plan, reference, Shot(shot, (base_seed + i) % SEED_MAX),
                                lambda msg, at=i / count, what=label: progress(at, f"{what}: {msg}"))
            made.append(self._store_selfie(character_id, taken, shot, owner))
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
            plan = self._plan(spec, reference, settings, owner)
            for i, (value, shot) in enumerate(zip(kind_.values, shots)):
                label = f"{value} ({i + 1} of {len(shots)})"
                progress(i / len(shots), label)
                info = {"pack": {"id": pack["id"], "kind": kind_.kind, "name": pack["name"], "slot": value,
                                 "slots": list(kind_.values)}}
                at = i / len(shots)
                taken = self._shoot(plan, reference, Shot(shot, base_seed, info),
                                    lambda msg, at=at, what=label: progress(at, f"{what}: {msg}"))
                self._store_selfie(character_id, taken, shot, owner, pack_id=pack["id"], pack_slot=value)
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

    def _store_selfie(self, character_id: str, taken: Taken, shot: SelfieSpec, owner: str,
                      **pack: str) -> dict[str, Any]:
        lk = taken.likeness
        return self.store.add_selfie(character_id, taken.image, taken.recipe.to_dict(), shot.to_dict(),
                                     likeness=lk.score, attempts=taken.attempts, owner=owner, likeness_state=lk.state,
                                     likeness_instrument=lk.instrument, **pack)

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
            used = {v["id"] for v in kept} if self.sheet_conditions else set()
            # viewing_only: the profile conditions selfies on the reference alone, whatever the view's score
            character["sheet"] = [v | {"conditions": v["id"] in used, "viewing_only": not self.sheet_conditions}
                                  for v in character["sheet"]]
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
