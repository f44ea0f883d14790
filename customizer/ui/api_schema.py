"""The typed parameters of the API endpoints as JSON schemas (what `Client.view_api()` and the "Use via API" page
show), built from the same option catalogues the UI and the validators use. The server still validates every
value itself (customizer/character.py, settings.py): a schema documents, it does not check."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..character import AGE_MAX, AGE_MIN, catalogue, selfie_catalogue

REQUIRED = object()  # a parameter the call needs


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str
    default: Any = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def value(self) -> Any:
        """The default a client sends when it leaves the parameter out. A required field other than the token
        still defaults to null in the signature (and the server says it is missing): a v1 client sends one
        object as the first value and nothing else, which gradio_client refuses if a later parameter has no
        default."""
        return None if self.required else self.default

    def api_info(self) -> dict[str, Any]:
        text = f"{self.description} (required)" if self.required and self.name != "token" else self.description
        return {**self.schema, "additional_description": text}


def _enum(values, description: str = "") -> dict[str, Any]:
    return {"type": "string", "enum": list(values), **({"description": description} if description else {})}


def spec_schema() -> dict[str, Any]:
    cat = catalogue()
    props: dict[str, Any] = {k: _enum(opt.choices) for k, opt in cat.items()}
    props["age"] = {"type": "integer", "description": f"{AGE_MIN}-{AGE_MAX}, adults only"}
    props["theme_strength"] = {"type": "number", "description": "0-1"}
    props["extra"] = {"type": "string", "description": "free text, checked by the safety policy"}
    return {"type": "object", "properties": props}


def shot_schema(pack: bool = False) -> dict[str, Any]:
    cat = selfie_catalogue()
    props: dict[str, Any] = {}
    if not pack:
        props["scene"] = _enum(cat["scene"].choices)
        props["scene_text"] = {"type": "string", "description": "free text; required for the 'custom' scene"}
        props["expression"] = _enum(cat["expression"].choices)
    props["framing"] = _enum(cat["framing"].choices)
    props["outfit"] = _enum(catalogue()["outfit"].choices, "null keeps the designed outfit")
    props["likeness"] = {"type": "number", "description": "0-1: 1 sticks to the reference"}
    props["character_lora"] = {"type": "boolean", "description": "use the character LoRA when there is one; "
                                                                 "default true"}
    props["character_lora_strength"] = {"type": "number", "description": "0-1"}
    return {"type": "object", "properties": props}


def advanced_schema(samplers: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": {
        "sampler": _enum(samplers), "steps": {"type": "integer"}, "guidance": {"type": "number"},
        "guidance_end": {"type": "number", "description": "guidance on this first fraction of the steps"},
        "width": {"type": "integer"}, "height": {"type": "integer"},
        "negative": {"type": "string", "description": "negative prompt; safety terms are always added"},
        "upscale": {"type": "boolean", "description": "2x upscale as the last step"}}}


TEXT = {"type": "string"}
INT = {"type": "integer"}


def token(required: bool = True) -> Param:
    how = ("required; a logged-in visitor may send null" if required else
           "optional: without one a new server-made token is made and returned in the result's `token`")
    return Param("token", TEXT, f"your token: owns your characters ({how}). The v1 form: one JSON object with "
                                f"every field, sent as this first value, is still accepted",
                 REQUIRED if required else None)


def character_id(what: str = "the character") -> Param:
    return Param("character_id", TEXT, f"id of {what}", REQUIRED)


def params(samplers: list[str]) -> dict[str, list[Param]]:
    """Each endpoint's parameters, in order."""
    seed = Param("seed", INT, "seed; null or -1: random", None)
    advanced = Param("advanced", advanced_schema(samplers), "advanced settings; each one left out takes the "
                                                            "profile's", None)
    return {
        "new_token": [],
        "design_candidates": [
            token(required=False), Param("spec", spec_schema(), "the design; each field left out takes its "
                                                                "default", None),
            seed, Param("n", INT, "how many candidates, 1-4", 1), Param("name", TEXT, "the character's name", None),
            Param("character_id", TEXT, "a draft to redesign (its candidates gather in it)", None), advanced],
        "lock": [token(), character_id("a draft"), Param("candidate_id", TEXT, "id of one of its candidates",
                                                         REQUIRED)],
        "selfie": [token(), character_id("a locked character"),
                   Param("selfie", shot_schema(), "the shot; each field left out takes its default", None), seed,
                   Param("count", INT, "how many selfies, 1-4", 1), advanced],
        "expression_pack": [token(), character_id("a locked character"), Param("name", TEXT, "the pack's name", None),
                            seed, Param("selfie", shot_schema(pack=True), "the shot of every image", None),
                            advanced, Param("kind", TEXT, "the pack kind", "expressions")],
        "get_pack": [token(), character_id(), Param("pack_id", TEXT, "id of one of its packs", REQUIRED)],
        "list_characters": [token()],
        "get_character": [token(), character_id()],
        "rename": [token(), character_id(), Param("name", TEXT, "the new name", REQUIRED)],
        "delete": [token(), character_id()],
        "accept_selfie": [token(), Param("selfie_id", TEXT, "id of a selfie", REQUIRED),
                          Param("accepted", {"type": "boolean"}, "true accepts, false takes it back", True)],
        "character_lora_start": [token(), character_id("a locked character"), seed],
        "character_lora_status": [token(), Param("job_id", TEXT, "id of a training job", REQUIRED)],
        "character_lora_cancel": [token(), Param("job_id", TEXT, "id of a training job", REQUIRED)],
    }
