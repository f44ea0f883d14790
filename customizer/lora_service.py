"""Character LoRAs, the Studio's side (a mixin of customizer.service.Studio): accepted selfies make the training
set; a background job (customizer/lora_jobs.py, a subprocess running customizer/engine/character_lora.py) trains
on it and the store keeps the file for the reference it was trained on. No torch, no gradio."""
from __future__ import annotations

from typing import Any

from . import charlora, refsheet
from .availability import downloads_allowed
from .errors import StateError
from .seeds import resolve_seed


class CharacterLoras:
    """Studio mixin: needs the Studio's engine, store, profile, lora_settings, lora_jobs, reference_sheet,
    likeness_policy, _locked and _conditioning."""

    def accept_selfie(self, selfie_id: str, accepted: bool = True, owner: str = "local") -> dict[str, Any]:
        """Mark a selfie accepted: "this is my character". Accepted selfies join the character LoRA's training."""
        return self.store.set_selfie_accepted(selfie_id, accepted, owner=owner)

    def lora_training_set(self, character_id: str, owner: str = "local") -> tuple[dict, list[dict]]:
        """(the active reference, what a character LoRA trains on): the reference, its sheet views inside the
        likeness band (those outside it drifted or only copy it), and the accepted selfies of this
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
