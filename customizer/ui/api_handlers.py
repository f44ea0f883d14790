"""What each API endpoint does with a request dict (customizer/ui/api.py makes the dict from the typed parameters
or the v1 object, and resolves the owner). Each returns (result, images); answers pass through scrub."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..errors import SpecError, shown
from .api import images, mapping, public, public_pack, text
from .files import delete_with_served_copies

if TYPE_CHECKING:  # the UI is handed a Studio; importing service would reach the engine
    from ..service import Studio

Cancelled = Callable[[], bool]


def handlers(studio: Studio) -> dict[str, tuple[Callable, bool, bool | str]]:
    """name -> (handler, renders, mints a token)."""
    rest = plain(studio)
    return {"new_token": rest.pop("new_token"), **rendering(studio), **rest}


def rendering(studio: Studio) -> dict[str, tuple[Callable, bool, bool | str]]:
    """The endpoints that render: each takes (request, owner, cancelled)."""
    def design_candidates(req: dict, owner: str, cancelled: Cancelled):
        out = studio.design(mapping(req, "spec"), seed=req.get("seed"), n=req.get("n", 1),
                            advanced=req.get("advanced"), character_id=text(req, "character_id", required=False),
                            name=text(req, "name", required=False), owner=owner, cancelled=cancelled)
        cands = out["candidates"]
        return {"character_id": out["character"]["id"], "candidates": [public(c) for c in cands]}, images(cands)

    def lock(req: dict, owner: str, cancelled: Cancelled):
        ref = studio.lock(text(req, "character_id"), text(req, "candidate_id"), owner=owner, cancelled=cancelled)
        return public(ref) | {"sheet": [public(v) for v in ref["sheet"]]}, images([ref, *ref["sheet"]])

    def selfie(req: dict, owner: str, cancelled: Cancelled):
        made = studio.selfie(text(req, "character_id"), mapping(req, "selfie"), seed=req.get("seed"),
                             count=req.get("count", 1), advanced=req.get("advanced"), owner=owner, cancelled=cancelled)
        return [public(s) for s in made], images(made)

    def expression_pack(req: dict, owner: str, cancelled: Cancelled):
        pack = studio.expression_pack(text(req, "character_id"), name=text(req, "name", required=False),
                                      seed=req.get("seed"), selfie=req.get("selfie"), advanced=req.get("advanced"),
                                      kind=req.get("kind", "expressions"), owner=owner, cancelled=cancelled)
        return public_pack(pack), images(pack["items"])

    return {"design_candidates": (design_candidates, True, True), "lock": (lock, True, False),
            "selfie": (selfie, True, False), "expression_pack": (expression_pack, True, False)}


def plain(studio: Studio) -> dict[str, tuple[Callable, bool, bool | str]]:
    """The endpoints that read or change without rendering: each takes (request, owner)."""
    def get_pack(req: dict, owner: str):
        pack = studio.get_pack(text(req, "pack_id"), owner=owner)
        if pack["character_id"] != text(req, "character_id"):
            raise SpecError("pack_id", "is not a pack of this character")
        return public_pack(pack), images(pack["items"])

    def list_characters(req: dict, owner: str):
        return [public(c) for c in studio.list_characters(owner=owner)], []

    def get_character(req: dict, owner: str):
        c = studio.get_character(text(req, "character_id"), owner=owner)
        shots = ([c["reference"]] if c["reference"] else []) + c["selfies"] + c["sheet"]
        body = {k: v for k, v in c.items()
                if k not in ("candidates", "selfies", "reference", "references", "packs", "thumbnail", "sheet")}
        body["reference"] = public(c["reference"]) if c["reference"] else None
        body["selfies"] = [public(s) for s in c["selfies"]]
        body["candidates"] = [public(x) for x in c["candidates"]]
        # packs by selfie id (the selfies themselves are listed above, each with pack_id / pack_slot)
        body["packs"] = [{**{k: v for k, v in p.items() if k != "items"},
                          "items": [{"slot": s["pack_slot"], "selfie_id": s["id"]} for s in p["items"]]}
                         for p in c["packs"]]
        body["sheet"] = [public(v) for v in c["sheet"]]
        body["loras"] = [public(lo) for lo in c["loras"]]
        return body, images(shots)

    def rename(req: dict, owner: str):
        return public(studio.rename(text(req, "character_id"), text(req, "name"), owner=owner)), []

    def delete(req: dict, owner: str):
        char_id = text(req, "character_id")
        removed = delete_with_served_copies(studio, char_id, owner)
        return {"deleted": char_id, "served_copies_removed": removed}, []

    def new_token(req: dict, owner: str):
        return {}, []  # the token is made and added by the endpoint (mint)

    def accept_selfie(req: dict, owner: str):
        accepted = req.get("accepted", True)
        if not isinstance(accepted, bool):
            raise SpecError("accepted", f"must be true or false, got {shown(accepted)}")
        s = studio.accept_selfie(text(req, "selfie_id"), accepted, owner=owner)
        return public(s), images([s])

    def character_lora_start(req: dict, owner: str):
        job_id = studio.start_character_lora(text(req, "character_id"), owner=owner, seed=req.get("seed"))
        return studio.character_lora_status(job_id, owner=owner), []

    def character_lora_status(req: dict, owner: str):
        return studio.character_lora_status(text(req, "job_id"), owner=owner), []

    def character_lora_cancel(req: dict, owner: str):
        return studio.cancel_character_lora(text(req, "job_id"), owner=owner), []

    return {"new_token": (new_token, False, "always"), "get_pack": (get_pack, False, False),
            "list_characters": (list_characters, False, False), "get_character": (get_character, False, False),
            "rename": (rename, False, False), "accept_selfie": (accept_selfie, False, False),
            "character_lora_start": (character_lora_start, False, False),
            "character_lora_status": (character_lora_status, False, False),
            "character_lora_cancel": (character_lora_cancel, False, False), "delete": (delete, False, False)}


DOCS = {
    "new_token": "A new server-made token -> {token}. Send it as `token` with every request; your characters "
                 "belong to it (keep it secret). A first design_candidates without a token makes one too.",
    "design_candidates": "Generate candidate portraits of a new character (or of the draft `character_id`). "
                         "Returns {character_id, candidates} and the images; without a token also {token}: a new "
                         "server-made token that owns the character.",
    "lock": "Lock a candidate as the reference. Returns the reference with its reference sheet (views rendered "
            "from it, each with its likeness score and whether it conditions selfies); images: the reference, then "
            "the sheet views.",
    "selfie": "Selfies of a locked character. Returns the selfie records and images. Each record carries likeness "
              "(score 0-1 against the locked reference, or null), likeness_state (scored, unavailable, no_face, "
              "no_face_reference, error), likeness_instrument, attempts (renders it took to land in the profile's "
              "likeness band) and recipe.extra.likeness / recipe.extra.attempts (band, position, every seed tried; "
              "sheet_mean: mean score against the sheet views). recipe.conditioning_sha256 lists the images it was "
              "conditioned on (the reference, then the sheet views in the band); recipe.extra.sheet names the views "
              "used and left out; recipe.character_lora_sha256 the character LoRA it used (its adapter is in "
              "recipe.loras).",
    "expression_pack": "Make an expression pack (neutral, happy, laughing, sad, surprised, angry, thinking) of a "
                       "locked character. Returns the pack {id, name, slots, complete, items: selfie records in "
                       "slot order} and its images.",
    "get_pack": "One pack with its selfie records; images in slot order.",
    "list_characters": "List your characters (newest first).",
    "get_character": "One character with spec, reference, candidates, selfies and the reference sheet (view, "
                     "likeness, conditions). Images: reference, then selfies, then sheet views.",
    "rename": "Rename a character. Returns the character.",
    "accept_selfie": "Accept a selfie as the character (the character LoRA trains on accepted selfies), or take "
                     "that back. Returns the selfie record and its image.",
    "character_lora_start": "Train a character LoRA in the background on the locked reference, its sheet views and "
                            "the accepted selfies. One job per character. Returns the job {id, state (queued, "
                            "running, done, cancelled, failed), progress 0-1, step, steps, loss, message, images, "
                            "seconds, lora}; poll character_lora_status. Selfies then use the LoRA unless "
                            "selfie.character_lora is false (selfie.character_lora_strength 0-1 sets its weight).",
    "character_lora_status": "A character LoRA training job. When done, `lora` holds the stored LoRA (id, sha256, "
                             "facts).",
    "character_lora_cancel": "Cancel a character LoRA training job: nothing is stored; returns the job.",
    "delete": "Delete a character and its images, and the copies of them the server served. Returns {deleted, "
              "served_copies_removed}.",
}
