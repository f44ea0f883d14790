"""The Studio: what a user can do (design, lock, selfie, manage characters), over Engine + Store.

No torch and no gradio here: the UI and the API call these methods; the engine is created lazily on first use so
the app starts (and the characters panel works) before the model has loaded.
"""
from __future__ import annotations

import secrets
import threading
import time
from typing import Any, Callable

from PIL import Image

from . import archive
from .character import CharacterSpec, SelfieSpec
from .config import AppConfig, Profile
from .errors import SpecError, StateError, shown
from .gpu import gpu
from .prompts import portrait_prompt, selfie_prompt
from .recipe import Recipe
from .settings import Settings, samplers
from .store import Store

MAX_CANDIDATES = 4
MAX_SELFIES = 4
SEED_MAX = 2**31 - 1
Progress = Callable[[float, str], None]


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
    def __init__(self, config: AppConfig, profile: Profile, store: Store, engine_factory: Callable | None = None):
        self.config, self.profile, self.store = config, profile, store
        self._engine_factory = engine_factory
        self._engine = None
        self._engine_lock = threading.Lock()

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

    def status(self) -> dict[str, Any]:
        info = {"profile": self.profile.name, "family": self.profile.family, "base_model": self.profile.base_model,
                "loaded": self._engine is not None}
        if self._engine is not None:
            info |= {"device": self._engine.device, "dtype": str(self._engine.dtype).replace("torch.", ""),
                     "load_seconds": round(self._engine.load_seconds, 2)}
        return info

    def samplers(self) -> dict[str, str]:
        return samplers()

    # ---- recipes -------------------------------------------------------------------------------------------
    def _recipe(self, kind: str, prompt, seed: int, settings: Settings, loras: dict[str, float],
                ip_scale: float = 0.0, reference_sha: str | None = None, controlnet: dict | None = None,
                extra: dict | None = None) -> Recipe:
        engine = self.engine
        return Recipe(
            kind=kind, profile=self.profile.name, model_id=self.profile.base_model,
            model_revision=engine.weights["base"], prompt=prompt.positive, negative_prompt=prompt.negative,
            seed=seed, scheduler=settings.sampler, steps=settings.steps, guidance=settings.guidance,
            width=settings.width, height=settings.height, loras=loras, ip_adapter_scale=ip_scale,
            reference_sha256=reference_sha, controlnet=controlnet,
            upscale=(self.profile.upscaler or "lanczos2x") if settings.upscale else None,
            device=engine.device, dtype=str(engine.dtype).replace("torch.", ""), versions=dict(engine.versions),
            extra=extra or {},
        )

    @gpu(duration=120)
    def _render(self, recipe: Recipe, embeds: bytes | None = None, reference: Image.Image | None = None):
        return self.engine.render(recipe, reference_embeds=embeds, reference_image=reference)

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

    # ---- design and lock -----------------------------------------------------------------------------------
    def design(self, spec: dict, seed: Any = None, n: Any = 1, advanced: dict | None = None,
               character_id: str | None = None, name: str | None = None, owner: str = "local",
               progress: Progress = _no_progress) -> dict[str, Any]:
        """Generate n candidate portraits for a (new or still-draft) character; seeds are seed, seed+1, ..."""
        spec_obj = CharacterSpec.from_dict(spec)
        n = _count("candidates", n, MAX_CANDIDATES)
        base_seed = resolve_seed(seed)
        settings = Settings.resolve(self.profile, advanced)
        progress(0.0, "loading model")
        engine = self.engine
        prompt = portrait_prompt(spec_obj, engine.theme_triggers(spec_obj.theme), settings.negative)
        loras = engine.theme_loras(spec_obj.theme, spec_obj.theme_strength)
        if character_id:
            character = self.store.update_draft_spec(character_id, spec_obj.to_dict(), owner=owner)
        else:
            character = self.store.create_character((name or "").strip() or spec_obj.summary(), spec_obj.to_dict(),
                                                    owner=owner)
        try:
            candidates = self._render_series(
                "portrait", n, progress,
                lambda i: self._recipe("portrait", prompt, (base_seed + i) % SEED_MAX, settings, loras,
                                       extra={"spec": spec_obj.to_dict()}),
                lambda image, recipe: self.store.add_candidate(character["id"], image, recipe, owner=owner))
        except BaseException:
            # a brand-new character whose first render failed is not worth keeping as an empty draft
            if not character_id and not self.store.get_character(character["id"], owner=owner)["candidates"]:
                self.store.delete_character(character["id"], owner=owner)
            raise
        return {"character": self.store.get_character(character["id"], owner=owner), "candidates": candidates}

    def lock(self, character_id: str, candidate_id: str, owner: str = "local") -> dict[str, Any]:
        """Lock a candidate as the reference; its IP-Adapter embedding is computed now and cached."""
        reference = self.store.lock(character_id, candidate_id, owner=owner)
        if self.profile.ip_adapter is not None:
            self._reference_embeds(reference)
        return reference

    def unlock(self, character_id: str, owner: str = "local") -> dict[str, Any]:
        return self.store.unlock(character_id, owner=owner)

    def _reference_embeds(self, reference: dict) -> bytes:
        key = self.engine.embedding_key
        blob = self.store.get_reference_embedding(reference["id"], key)
        if blob is None:
            with Image.open(reference["path"]) as im:
                blob = self.engine.encode_reference(im.convert("RGB"))
            self.store.put_reference_embedding(reference["id"], key, blob)
        return blob

    # ---- selfies -------------------------------------------------------------------------------------------
    def likeness_to_scale(self, likeness: float) -> float:
        """'Likeness vs freedom' 0..1 -> IP-Adapter scale within the profile's range (ip_scale: [lo, hi])."""
        lo, hi = self.profile.extra.get("ip_scale", [0.0, 1.0])
        return round(float(lo) + (float(hi) - float(lo)) * float(likeness), 4)

    def selfie(self, character_id: str, selfie: dict, seed: Any = None, count: Any = 1,
               advanced: dict | None = None, owner: str = "local",
               progress: Progress = _no_progress) -> list[dict[str, Any]]:
        character = self.store.get_character(character_id, owner=owner)
        reference = self.store.active_reference(character_id, owner=owner)
        if reference is None:
            raise StateError(f"character '{character['name']}' has no locked reference yet: lock a portrait first")
        spec = CharacterSpec.from_dict(character["spec"])
        shot = SelfieSpec.from_dict(selfie)
        count = _count("count", count, MAX_SELFIES)
        base_seed = resolve_seed(seed)
        settings = Settings.resolve(self.profile, advanced)
        progress(0.0, "loading model")
        engine = self.engine
        prompt = selfie_prompt(spec, shot, engine.theme_triggers(spec.theme), settings.negative)
        loras = engine.theme_loras(spec.theme, spec.theme_strength)
        embeds = self._reference_embeds(reference) if self.profile.ip_adapter else None
        cn = self.profile.controlnet
        controlnet = ({"model": cn.model, "control": cn.control, "preset": shot.framing, "scale": cn.scale}
                      if cn else None)
        ref_image = Image.open(reference["path"]).convert("RGB") if cn and cn.control == "canny" else None
        ip_scale = self.likeness_to_scale(shot.likeness) if embeds else 0.0
        return self._render_series(
            "selfie", count, progress,
            lambda i: self._recipe("selfie", prompt, (base_seed + i) % SEED_MAX, settings, loras, ip_scale=ip_scale,
                                   reference_sha=reference["image_sha256"], controlnet=controlnet,
                                   extra={"spec": spec.to_dict(), "selfie": shot.to_dict()}),
            lambda image, recipe: self.store.add_selfie(character_id, image, recipe, shot.to_dict(), owner=owner),
            embeds, ref_image)

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
            embeds = self.engine.encode_reference(reference) if recipe.ip_adapter_scale else None
        image, _ = self._render(recipe, embeds, reference)
        with Image.open(self.store.image_path(image_sha256)) as stored:
            same = stored.convert("RGB").tobytes() == image.convert("RGB").tobytes()
        return image, same

    # ---- characters ----------------------------------------------------------------------------------------
    def list_characters(self, owner: str = "local") -> list[dict]:
        return self.store.list_characters(owner=owner)

    def get_character(self, character_id: str, owner: str = "local") -> dict:
        return self.store.get_character(character_id, owner=owner)

    def rename(self, character_id: str, name: str, owner: str = "local") -> dict:
        return self.store.rename_character(character_id, name, owner=owner)

    def delete(self, character_id: str, owner: str = "local") -> None:
        self.store.delete_character(character_id, owner=owner)

    def export(self, character_id: str, owner: str = "local") -> bytes:
        return archive.export_character(self.store, character_id, owner=owner)

    def import_(self, data: bytes, owner: str = "local") -> dict:
        """An archive is untrusted input: its spec and selfie specs pass the same validation (safety filter
        included) as the UI's, and are stored normalised."""
        return archive.import_character(self.store, data, owner=owner,
                                        check_spec=lambda d: CharacterSpec.from_dict(d).to_dict(),
                                        check_selfie=lambda d: SelfieSpec.from_dict(d).to_dict())
