"""Every user-written string that is stored or shown passes the safety policy: character names (design, rename,
import), expression-pack names (made and imported), scene details and extra details - with the same kind of
message as the extra details, and nothing stored or rendered for a refused request."""
from __future__ import annotations

import io
import json
import zipfile

import pytest

from customizer.errors import SafetyError
from customizer.safety import check_text

SPEC = {"hair_colour": "red", "age": 34}
BAD_NAMES = ["Taylor Swift", "a Ryan Gosling lookalike", "schoolgirl Amy", "Nude model", "Swastika Sam",
             "Gore queen", "t33n", "Sweet sixteen"]


def message(text: str, field: str) -> str:
    with pytest.raises(SafetyError) as err:
        check_text(text, field=field)
    return str(err.value)


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_design_refuses_the_name_before_loading_or_storing_anything(studio, bad):
    with pytest.raises(SafetyError) as err:
        studio.design(SPEC, seed=1, n=1, name=bad)
    assert str(err.value) == message(bad, "name")  # as clear as the extra details: field, reason, what matched
    assert str(err.value).startswith("name: ")
    assert studio.list_characters() == []
    assert studio._engine is None  # refused before the model was even loaded


def test_rename_refuses_and_keeps_the_old_name(studio):
    cid = studio.design(SPEC, seed=1, n=1, name="Rowan")["character"]["id"]
    for bad in BAD_NAMES:
        with pytest.raises(SafetyError, match="^name: "):
            studio.rename(cid, bad)
    assert studio.get_character(cid)["name"] == "Rowan"
    assert studio.rename(cid, "Victor Hugo Lima")["name"] == "Victor Hugo Lima"  # a person-like name is fine


def test_pack_name_refused_before_any_render(studio, monkeypatch):
    out = studio.design(SPEC, seed=1, n=1)
    cid = out["character"]["id"]
    studio.lock(cid, out["candidates"][0]["id"])
    rendered = []
    monkeypatch.setattr(studio, "_render", lambda *a, **k: rendered.append(1))
    for bad in ("Teen faces", "Emma Watson expressions", "nsfw set"):
        with pytest.raises(SafetyError, match="^name: "):
            studio.expression_pack(cid, name=bad, seed=2)
    assert rendered == [] and studio.get_character(cid)["packs"] == []


@pytest.mark.parametrize("field,shot", [
    ("scene_text", {"scene": "custom", "scene_text": "a 14 year old at the mall"}),
    ("scene_text", {"scene": "custom", "scene_text": "selfie with Pedro Pascal"}),
    ("extra", {"scene": "beach", "extra": "wearing nothing but a smile"}),
])
def test_selfie_free_text_refused_with_its_field(studio, field, shot):
    out = studio.design(SPEC, seed=1, n=1)
    cid = out["character"]["id"]
    studio.lock(cid, out["candidates"][0]["id"])
    before = len(studio.get_character(cid)["selfies"])
    with pytest.raises(SafetyError, match=f"^{field}: "):
        studio.selfie(cid, shot, seed=1)
    assert len(studio.get_character(cid)["selfies"]) == before


def test_extra_details_refused_at_design(studio):
    with pytest.raises(SafetyError, match="^extra: Graphic violence"):
        studio.design(dict(SPEC, extra="covered in blood, a severed head"), seed=1, n=1)


def _with_names(data: bytes, character: str | None = None, pack: str | None = None,
                prompt: str | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            blob = src.read(info.filename)
            if info.filename == "character.json":
                doc = json.loads(blob)
                if character is not None:
                    doc["name"] = character
                if prompt is not None:
                    doc["candidates"][0]["recipe"]["prompt"] = prompt
                if pack is not None:
                    for s in doc["selfies"]:
                        if (s["recipe"].get("extra") or {}).get("pack"):
                            s["recipe"]["extra"]["pack"]["name"] = pack
                blob = json.dumps(doc).encode()
            dst.writestr(info, blob)
    return out.getvalue()


def test_imported_character_and_pack_names_pass_the_policy(studio):
    out = studio.design(SPEC, seed=1, n=1, name="Rowan")
    cid = out["character"]["id"]
    studio.lock(cid, out["candidates"][0]["id"])
    studio.expression_pack(cid, name="Chat faces", seed=3)
    data = studio.export(cid)
    n = len(studio.list_characters())
    for tampered in (_with_names(data, character="Kim Kardashian"), _with_names(data, pack="loli pack")):
        with pytest.raises(SafetyError, match="^name: "):
            studio.import_(tampered)
    # recipes are shown back too: a prompt the app would never have written is refused with the rest
    with pytest.raises(SafetyError, match=r"^candidates\[0\]\.recipe\.prompt: Explicit"):
        studio.import_(_with_names(data, prompt="portrait of a woman, completely naked"))
    assert len(studio.list_characters()) == n
    assert studio.import_(_with_names(data, character="Rowan again"))["name"] == "Rowan again"
