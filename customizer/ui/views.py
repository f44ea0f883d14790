"""A character as the page shows it: each function returns {component: value} for one panel, so that every
handler that changes the character (lock, open, a selfie, a pack, a training) redraws the same way."""
from __future__ import annotations

from typing import Any

import gradio as gr

from .. import lora_view
from ..likeness import badge
from .common import Page, accept_label, caption


def sheet_items(character: dict | None) -> list[tuple[str, str]]:
    """The reference sheet in its gallery: a short caption (the view) that fits under a small picture; the full
    line (likeness, whether it conditions selfies) is in sheet_notes below it."""
    return [(v["path"], str(v.get("view", ""))) for v in (character or {}).get("sheet", [])]


def sheet_notes(character: dict | None) -> str:
    views = (character or {}).get("sheet", [])
    if not views:
        return ""
    return "\n".join(f"- {badge.sheet_caption(v)}" for v in views)


def history_selfies(character: dict) -> list[dict]:
    """The selfies in the history gallery, in its order (pack items live in their pack's grid)."""
    return [s for s in character["selfies"] if not s.get("pack_id")]


def history(page: Page, character: dict | None) -> dict:
    s = page.selfie
    selfies = history_selfies(character) if character else []
    return {s.history: [(x["path"], caption(x)) for x in selfies], s.cards: badge.cards_html(selfies)}


def pack_view(page: Page, pack: dict | None) -> dict:
    """Grid of a pack in slot order (captions: slot + likeness), and its likeness cards."""
    s = page.selfie
    if not pack:
        return {s.pack_grid: [], s.pack_cards: ""}
    items = pack["items"]
    return {s.pack_grid: [(x["path"], badge.caption(x, head=x["pack_slot"])) for x in items],
            s.pack_cards: badge.cards_html(items, [x["pack_slot"] for x in items])}


def packs(page: Page, character: dict | None, pack_id: str | None = None) -> dict:
    """Pack dropdown (newest first, pack_id or the newest selected), its grid and cards."""
    if not character:
        return {page.selfie.pack_pick: gr.update(choices=[], value=None), **pack_view(page, None)}
    found = character.get("packs", [])
    pack = next((p for p in found if p["id"] == pack_id), found[0] if found else None)
    choices = [(f"{p['name']} ({len(p['items'])}/{len(p['slots'])})", p["id"]) for p in found]
    return {page.selfie.pack_pick: gr.update(choices=choices, value=pack["id"] if pack else None),
            **pack_view(page, pack)}


def lora_job(page: Page, job: dict | None) -> dict:
    """The training job's bar, the timer that polls it and the Cancel button: both only while it runs."""
    s = page.selfie
    running = bool(job and job["state"] in ("queued", "running"))
    return {s.lora_progress: lora_view.status_html(job), s.lora_timer: gr.Timer(active=running),
            s.cancel_btn: gr.update(visible=running)}


def lora(page: Page, owner: str, char_id: str | None) -> dict:
    """LoRA line, the job to follow (running or latest), its bar, the timer and Cancel (on while it runs)."""
    s = page.selfie
    if not char_id:
        return {s.lora_info: "", s.lora_job: None, **lora_job(page, None)}
    info = page.studio.character_lora(char_id, owner=owner)
    job = info["job"]
    return {s.lora_info: lora_view.info_markdown(info), s.lora_job: job["id"] if job else None,
            **lora_job(page, job)}


def unpicked(page: Page) -> dict:
    """No selfie selected in the history (its places moved, or another character is shown)."""
    s = page.selfie
    return {s.picked: None, s.picked_info: "Click a selfie to select it.",
            s.accept_btn: gr.update(value=accept_label(None))}


def studio_for(page: Page, owner: str, char_id: str | None) -> dict:
    """Everything the Selfie studio shows of a character (or of none)."""
    s = page.selfie
    character = page.studio.get_character(char_id, owner=owner) if char_id else None
    ref = (character or {}).get("reference")
    return {s.reference: ref["path"] if ref else None, s.sheet: sheet_items(character),
            s.sheet_notes: sheet_notes(character), **history(page, character), **packs(page, character),
            **lora(page, owner, char_id), **unpicked(page)}


_KEEP = object()


def character_lists(page: Page, owner: str, value: Any = _KEEP, locked_value: Any = _KEEP) -> dict:
    """The Characters tab's pick list, its overview of reference portraits and the Selfie studio's list of locked
    characters; `value` / `locked_value` select one in them (left as they are when not given)."""
    listed = page.studio.list_characters(owner=owner)
    everyone = [(f"{x['name']} ({x['status']})", x["id"]) for x in listed]
    locked = [(label, cid) for (label, cid), x in zip(everyone, listed) if x["status"] == "locked"]
    thumbs = [(x["thumbnail"], x["name"]) for x in listed if x["thumbnail"]]
    pick = {"choices": everyone} | ({} if value is _KEEP else {"value": value})
    locked_pick = {"choices": locked} | ({} if locked_value is _KEEP else {"value": locked_value})
    return {page.chars.pick: gr.update(**pick), page.chars.overview: gr.update(value=thumbs, visible=bool(thumbs)),
            page.selfie.character: gr.update(**locked_pick)}


def summary(character: dict) -> dict[str, Any]:
    """The Characters tab's JSON panel."""
    out = {k: character[k] for k in ("id", "name", "status", "created_at", "spec")}
    out["selfies"] = len(character["selfies"])
    out["packs"] = [p["name"] for p in character["packs"]]
    out["sheet"] = {v["view"]: {"likeness": v["likeness"], "conditions": v.get("conditions")}
                    for v in character["sheet"]}
    out["character_loras"] = [{k: lo[k] for k in ("sha256", "created_at")} for lo in character["loras"]]
    return out
