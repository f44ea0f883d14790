"""The Studio's side of the selfie path (a mixin of customizer.service.Studio): the reference's IP-Adapter
embeddings and its reference sheet (cached with the reference in the store), the likeness judges, and the Plan of a
request's pictures (customizer/selfie_plan.py: plain data; take() renders, judges and retries). No torch, no gradio:
the engine is the Studio's injected one."""
from __future__ import annotations

import hashlib
import logging
from typing import Any, Callable

from PIL import Image

from . import refsheet
from .character import CharacterSpec
from .config import public_ref
from .likeness.result import Likeness
from .selfie_plan import Conditioning, Plan, Shot, Taken, recipe_inputs, take
from .settings import Settings

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]


class Shooting:
    """Studio mixin: needs the Studio's engine, store, profile, scorer, likeness_policy, sheet_conditions,
    lora_settings, current_lora, _recipe and _render."""

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

    def _make_sheet(self, character_id: str, reference: dict, owner: str, progress: Progress) -> None:
        """Render the views the reference's sheet lacks (all of them at lock), each conditioned on the reference
        alone with the sheet's one seed, scored once (no retries: lock stays quick) and stored as it is made."""
        spec = CharacterSpec.from_dict(self.store.get_character(character_id, owner=owner)["spec"])
        sheet = refsheet.sheet()
        have = {v["view"] for v in self.store.sheet_views(character_id, owner, reference["id"])}
        with Image.open(self.store.image_path(reference["image_sha256"])) as im:
            seed = refsheet.seed(refsheet.pixel_digest(im.convert("RGB")))
        plan = self._plan(spec, reference, Settings.resolve(self.profile, None), owner, sheet_view=True)
        names = [v.name for v in sheet.views]
        for i, view in enumerate(sheet.views):
            if view.name in have:
                continue
            label = f"reference sheet: {view.name} ({i + 1} of {len(names)})"
            progress(i / len(names), label)
            info = {"sheet_view": {"view": view.name, "position": i, "views": names}}
            at = i / len(names)
            taken = self._shoot(plan, reference, Shot(view.shot, seed, info, pose=view.pose),
                                lambda msg, at=at, what=label: progress(at, f"{what}: {msg}"))
            lk = taken.likeness
            self.store.add_sheet_view(character_id, reference["id"], view.name, i, taken.image, taken.recipe.to_dict(),
                                      lk.score, owner, likeness_state=lk.state, likeness_instrument=lk.instrument)

    def _conditioning(self, reference: dict, owner: str) -> Conditioning:
        """The reference's IP-Adapter embeddings plus those of its sheet views inside the likeness band,
        combined (engine.combine_embeds) and cached with the reference under a key naming the images."""
        ref_blob = self._reference_embeds(reference)
        views = self.store.sheet_views(reference["character_id"], owner, reference["id"]) \
            if self.sheet_conditions else []
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

    def _plan(self, spec: CharacterSpec, reference: dict, settings: Settings, owner: str,
              sheet_view: bool = False) -> Plan:
        """Everything the pictures of one request share (selfie_plan.Plan): LoRAs, conditioning embeddings,
        ControlNet, the likeness band. Selfies are conditioned on the reference plus its sheet (_conditioning);
        sheet_view=True takes views of the sheet itself: the reference alone, one attempt, kind 'sheet'."""
        engine = self.engine
        cond = None
        if self.profile.ip_adapter:
            cond = (Conditioning(self._reference_embeds(reference), [reference["image_sha256"]], [], [])
                    if sheet_view else self._conditioning(reference, owner))
        cn = self.profile.controlnet
        ref_image = None
        if cn and cn.control == "canny":
            with Image.open(reference["path"]) as im:
                ref_image = im.convert("RGB")
        band, attempts = self.likeness_policy
        return Plan(kind="sheet" if sheet_view else "selfie", spec=spec, settings=settings,
                    triggers=engine.theme_triggers(spec.theme),
                    theme_loras=engine.theme_loras(spec.theme, spec.theme_strength),
                    reference_sha=reference["image_sha256"], conditioning=cond, ip_scale=self.profile.ip_scale,
                    controlnet={"model": public_ref(cn.model), "control": cn.control, "scale": cn.scale}
                    if cn else None,
                    reference_image=ref_image, band=band, max_attempts=1 if sheet_view else attempts,
                    lora=None if sheet_view else self.current_lora(reference, owner),  # views are what it learns
                    lora_strength=self.lora_settings["strength"],
                    sheet_facts={"sheet": cond.facts(band)} if cond and not sheet_view else {},
                    # only where a reference conditions the picture (a profile without an IP-Adapter has none)
                    from_reference=cond is not None and self.profile.selfie_prompt == "from_reference")

    def _shoot(self, plan: Plan, reference: dict, shot: Shot, report: Callable[[str], None]) -> Taken:
        """Take one picture of the plan: render, score against the reference (and the sheet views that condition
        it), retry into the band, keep the best (selfie_plan.take)."""
        inputs = recipe_inputs(plan, shot)
        cond = plan.conditioning
        return take(plan, shot, lambda s: self._recipe(seed=s, **inputs),
                    lambda recipe: self._render(recipe, cond.embeds if cond else None, plan.reference_image),
                    self._judge(reference), report,
                    also=self._sheet_likeness(reference, cond.views) if cond and cond.views else None)

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
            except Exception as e:  # the selfie still gets made; its likeness says why not scored
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
