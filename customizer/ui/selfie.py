"""The Selfie studio: a locked character's reference and sheet, the shot controls, the selfie history with its
likeness badges, and the expression pack. The character LoRA's part of it is customizer/ui/lora.py."""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from ..character import catalogue, selfie_catalogue
from ..likeness import badge
from ..packs import pack_kind
from . import lora, views
from .common import KEEP_OUTFIT, PX_CLASS, RENDER, Page, client_gone, grid, progress_cb, shown_side
from .controls import run_controls


def layout(page: Page) -> SimpleNamespace:
    studio, profile = page.studio, page.studio.profile
    shots, outfits = selfie_catalogue(), catalogue()["outfit"].choices
    side = shown_side(profile.width, profile.height)
    s = SimpleNamespace()
    with gr.Row():
        with gr.Column(scale=2):
            s.character = gr.Dropdown([], label="Locked character", elem_id="selfie-character")
            s.reference = gr.Image(label="Reference portrait", interactive=False, height=side + 40, width=side,
                                   type="filepath", elem_classes=PX_CLASS, elem_id="reference")
            # views made at lock time (data/refsheet.yaml); selfies are conditioned on them too
            s.sheet = gr.Gallery(label="Reference sheet", object_fit="contain", elem_id="reference-sheet",
                                 elem_classes=PX_CLASS, **grid(side, 500, 2))
            s.sheet_notes = gr.Markdown("", elem_id="sheet-notes")
            s.scene = gr.Dropdown(list(shots["scene"].choices), value=shots["scene"].default,
                                  label=shots["scene"].label)
            s.scene_text = gr.Textbox(label="Scene details", placeholder="free text; required for the 'custom' scene")
            s.expression = gr.Dropdown(list(shots["expression"].choices), value=shots["expression"].default,
                                       label=shots["expression"].label)
            s.framing = gr.Dropdown(list(shots["framing"].choices), value=shots["framing"].default,
                                    label=shots["framing"].label)
            s.outfit = gr.Dropdown([KEEP_OUTFIT, *outfits], value=KEEP_OUTFIT, label="Outfit")
            s.likeness = gr.Slider(0, 1, value=0.7, step=0.05, label="Likeness vs freedom",
                                   info="1 = stick to the reference, 0 = follow the prompt freely")
            lora.layout(page, s)
            s.seed, s.randomize, s.count, s.adv = run_controls(studio, "selfie", "Count", 1, "selfie-count")
        with gr.Column(scale=3):
            s.take = gr.Button("Take selfie", variant="primary", elem_id="take-selfie")
            s.info = gr.Markdown("", elem_id="selfie-info")
            s.history = gr.Gallery(label="Selfies (newest first) - click one to accept it for the character LoRA",
                                   object_fit="contain", elem_id="history", elem_classes=PX_CLASS,
                                   **grid(side, 760, 2))
            s.picked = gr.State(None)  # selfie id clicked in the history
            with gr.Row():
                s.accept_btn = gr.Button("Accept selected selfie", elem_id="accept-selfie", scale=1)
                s.picked_info = gr.Markdown("Click a selfie to select it.", elem_id="picked-info")
            # one card per selfie, same order: likeness bar (target band shaded), state, attempts
            s.cards = gr.HTML("", elem_id="likeness-cards", label="Likeness")
            pack_layout(s, side)
    return s


def pack_layout(s: SimpleNamespace, side: int) -> None:
    with gr.Accordion("Expression pack", open=True):
        kind = pack_kind()
        gr.Markdown(f"One click makes the standard set ({', '.join(kind.values)}) of the locked character for "
                    f"chat, {kind.shot.get('framing', '')} in the {kind.shot.get('scene', '')} scene, with the "
                    f"outfit, likeness and seed above; stored as a named pack.", elem_classes="status-line")
        with gr.Row():
            s.pack_name = gr.Textbox(label="Pack name", placeholder="optional - Expressions N", scale=3,
                                     elem_id="pack-name")
            s.pack_btn = gr.Button("Make expression pack", scale=1, elem_id="make-pack")
        s.pack_pick = gr.Dropdown([], label="Packs of this character", elem_id="pack-pick")
        s.pack_grid = gr.Gallery(label="Expression pack", object_fit="contain", elem_id="expression-pack",
                                 elem_classes=PX_CLASS, **grid(side, 740, 2))
        s.pack_cards = gr.HTML("", elem_id="pack-cards")


def studio_outputs(s: SimpleNamespace) -> list:
    """What views.studio_for fills."""
    return [s.reference, s.sheet, s.sheet_notes, s.history, s.cards, s.pack_pick, s.pack_grid, s.pack_cards,
            s.lora_info, s.lora_job, s.lora_progress, s.lora_timer, s.cancel_btn, s.picked, s.picked_info,
            s.accept_btn]


def shot_from(s: SimpleNamespace, v: dict) -> dict:
    """The shot settings a selfie and a pack share."""
    outfit = v[s.outfit]
    return {"outfit": None if outfit == KEEP_OUTFIT else outfit, "likeness": float(v[s.likeness]),
            "character_lora": bool(v[s.use_lora]), "character_lora_strength": float(v[s.lora_strength])}


def locked_character(s: SimpleNamespace, v: dict) -> str:
    char_id = v[s.character]
    if not char_id:
        raise gr.Error("Choose a locked character first (lock a portrait in the Design tab).")
    return char_id


def on_selfie_character(page: Page, owner: str, v: dict) -> dict:
    return views.studio_for(page, owner, v[page.selfie.character])


def on_selfie(page: Page, owner: str, v: dict, progress: gr.Progress) -> dict:
    s, studio = page.selfie, page.studio
    char_id = locked_character(s, v)
    shot = {**shot_from(s, v), "scene": v[s.scene], "scene_text": v[s.scene_text] or "",
            "expression": v[s.expression], "framing": v[s.framing]}
    made = studio.selfie(char_id, shot, seed=None if v[s.randomize] else v[s.seed], count=int(v[s.count]),
                         advanced=s.adv.read(v), owner=owner, progress=progress_cb(progress), cancelled=client_gone())
    info = "; ".join(badge.summary(x) for x in made)
    # the history moved: the old selection's place now shows another selfie
    return {**views.history(page, studio.get_character(char_id, owner=owner)), s.info: f"New: {info}",
            s.seed: made[0]["seed"], **views.unpicked(page)}


def on_pack(page: Page, owner: str, v: dict, progress: gr.Progress) -> dict:
    s, studio = page.selfie, page.studio
    char_id = locked_character(s, v)
    pack = studio.expression_pack(char_id, name=v[s.pack_name] or None, seed=None if v[s.randomize] else v[s.seed],
                                  selfie=shot_from(s, v), advanced=s.adv.read(v), owner=owner,
                                  progress=progress_cb(progress), cancelled=client_gone())
    attempts = sum(x["attempts"] for x in pack["items"])
    gr.Info(f"Made '{pack['name']}': {len(pack['items'])} images in {attempts} attempts.")
    return {**views.packs(page, studio.get_character(char_id, owner=owner), pack["id"]), s.pack_name: ""}


def on_pack_pick(page: Page, owner: str, v: dict) -> dict:
    pack_id = v[page.selfie.pack_pick]
    return views.pack_view(page, page.studio.get_pack(pack_id, owner=owner) if pack_id else None)


def wire(page: Page) -> None:
    s = page.selfie
    page.listen(s.character.change, on_selfie_character, [s.character], studio_outputs(s))
    shot_inputs = [s.character, s.outfit, s.likeness, s.use_lora, s.lora_strength, s.seed, s.randomize,
                   *s.adv.inputs]
    page.listen(s.take.click, on_selfie, [*shot_inputs, s.scene, s.scene_text, s.expression, s.framing, s.count],
                [s.history, s.cards, s.info, s.seed, s.picked, s.picked_info, s.accept_btn], progress=True,
                **RENDER)
    page.listen(s.pack_btn.click, on_pack, [*shot_inputs, s.pack_name],
                [s.pack_pick, s.pack_grid, s.pack_cards, s.pack_name], progress=True, **RENDER)
    page.listen(s.pack_pick.input, on_pack_pick, [s.pack_pick], [s.pack_grid, s.pack_cards])
    lora.wire(page)
