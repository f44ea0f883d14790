"""The Design tab: the character's controls (built from the option catalogue), candidate portraits, lock.

Generate keeps working on the open draft (its candidates gather in one character) until it is locked or the
visitor presses New character; a returning visitor finds their newest draft open again."""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from ..character import AGE_MAX, AGE_MIN, DEFAULT_AGE, catalogue
from . import views
from .common import PX_CLASS, RENDER, Page, caption, client_gone, grid, progress_cb, shown_side
from .controls import run_controls
from .selfie import studio_outputs


def layout(page: Page) -> SimpleNamespace:
    studio, profile = page.studio, page.studio.profile
    options = catalogue()
    side = shown_side(profile.width, profile.height)
    d = SimpleNamespace(inputs={})
    d.character_id = gr.State(None)     # the character being designed (draft) or just locked
    d.candidate_ids = gr.State([])      # ids behind the candidate gallery, in order
    d.selected = gr.State(None)         # candidate id picked in the gallery
    with gr.Row():
        with gr.Column(scale=2):
            d.name = gr.Textbox(label="Name", placeholder="optional - a summary is used otherwise")
            for key, opt in options.items():
                if key != "theme":
                    d.inputs[key] = gr.Dropdown(list(opt.choices), value=opt.default, label=opt.label,
                                                elem_id=f"design-{key.replace('_', '-')}")
            d.inputs["age"] = gr.Slider(AGE_MIN, AGE_MAX, value=DEFAULT_AGE, step=1, label="Age (adults only)")
            theme = options["theme"]
            d.inputs["theme"] = gr.Radio(list(theme.choices), value=theme.default, label=theme.label)
            d.inputs["theme_strength"] = gr.Slider(0, 1, value=0.8, step=0.05, label="Theme strength")
            d.inputs["extra"] = gr.Textbox(label="Extra details", lines=2,
                                           placeholder="freckles, a scar over the left eyebrow ...")
            d.seed, d.randomize, d.count, d.adv = run_controls(studio, "design", "Candidates", 2, "design-candidates")
        with gr.Column(scale=3):
            d.draft = gr.Markdown("New character: **Generate candidates** starts it.", elem_id="design-draft",
                                  elem_classes="status-line")
            d.candidates = gr.Gallery(label="Candidate portraits - click one, then lock it", object_fit="contain",
                                      elem_id="candidates", elem_classes=PX_CLASS, **grid(side, 760, 2))
            with gr.Row():
                d.generate = gr.Button("Generate candidates", variant="primary", elem_id="generate")
                d.lock = gr.Button("Lock selected as reference", elem_id="lock")
                d.new = gr.Button("New character", elem_id="new-character")
            d.info = gr.Markdown("", elem_id="design-info")
    return d


def draft_line(character: dict | None) -> str:
    if not character:
        return "New character: **Generate candidates** starts it."
    if character["status"] == "draft":
        return (f"Designing draft **{character['name']}**: Generate adds candidates to it; **New character** "
                f"starts another.")
    return f"**{character['name']}** is locked: Generate starts a new character."


def open_draft(page: Page, character: dict | None, controls: bool = True) -> dict:
    """The Design tab showing a character: its candidates, and with `controls` its spec and name (or a blank new
    character)."""
    d = page.design
    if character is None:
        return {d.character_id: None, d.candidate_ids: [], d.selected: None, d.candidates: [],
                d.draft: draft_line(None)}
    spec = character["spec"]
    shown = {**{comp: spec[key] for key, comp in d.inputs.items() if key in spec}, d.name: character["name"]}
    return {**(shown if controls else {}), d.character_id: character["id"],
            d.candidates: [(c["path"], caption(c)) for c in character["candidates"]],
            d.candidate_ids: [c["id"] for c in character["candidates"]], d.selected: None,
            d.draft: draft_line(character)}


def on_generate(page: Page, owner: str, v: dict, progress: gr.Progress) -> dict:
    d, studio = page.design, page.studio
    spec = {key: v[comp] for key, comp in d.inputs.items()}
    spec["age"] = int(spec["age"])
    char_id = v[d.character_id]
    if char_id and studio.get_character(char_id, owner=owner)["status"] != "draft":
        char_id = None  # a locked character is never redesigned in place: start a new one
    result = studio.design(spec, seed=None if v[d.randomize] else v[d.seed], n=int(v[d.count]),
                           advanced=d.adv.read(v), character_id=char_id, name=v[d.name], owner=owner,
                           progress=progress_cb(progress), cancelled=client_gone())
    cands, character = result["candidates"], result["character"]
    info = (f"**{character['name']}** - {len(cands)} new candidate(s). Click one, then **Lock** it. "
            f"Seeds {cands[0]['seed']}..{cands[-1]['seed']}.")
    return {**open_draft(page, character, controls=False), d.info: info, d.seed: cands[0]["seed"]}


def on_lock(page: Page, owner: str, v: dict, progress: gr.Progress) -> dict:
    d, studio = page.design, page.studio
    char_id, cand_id = v[d.character_id], v[d.selected]
    if not char_id:
        raise gr.Error("Generate candidates first.")
    if not cand_id:
        raise gr.Error("Click a candidate portrait in the gallery first, then lock it.")
    studio.lock(char_id, cand_id, owner=owner, progress=progress_cb(progress), cancelled=client_gone())
    character = studio.get_character(char_id, owner=owner)
    sheet_views = character["sheet"]
    sheet = ""
    if any(view.get("viewing_only") for view in sheet_views):
        sheet = (f" Reference sheet: {len(sheet_views)} views to look at; selfies are conditioned on the reference "
                 f"alone.")
    elif sheet_views:
        used = sum(1 for view in sheet_views if view.get("conditions"))
        sheet = f" Reference sheet: {len(sheet_views)} views, {used} of them condition selfies."
    info = (f"Locked **{character['name']}**. Its reference never changes; open the Selfie studio to take "
            f"selfies.{sheet}")
    return {d.info: info, d.draft: draft_line(character), page.tabs: gr.Tabs(selected="selfie"),
            **views.character_lists(page, owner, value=char_id, locked_value=char_id),
            **views.studio_for(page, owner, char_id)}


def wire(page: Page) -> None:
    d, s = page.design, page.selfie
    design_outputs = [*d.inputs.values(), d.name, d.character_id, d.candidates, d.candidate_ids, d.selected,
                      d.draft]
    page.listen(d.generate.click, on_generate,
                [*d.inputs.values(), d.name, d.seed, d.randomize, d.count, *d.adv.inputs, d.character_id],
                [*design_outputs, d.info, d.seed], progress=True, **RENDER)

    def on_pick(ids: list[str], evt: gr.SelectData):
        return ids[evt.index] if ids and evt.index is not None and evt.index < len(ids) else None

    d.candidates.select(on_pick, [d.candidate_ids], [d.selected], api_visibility="undocumented")
    page.listen(d.lock.click, on_lock, [d.character_id, d.selected],
                [d.info, d.draft, page.tabs, page.chars.pick, page.chars.overview, s.character, *studio_outputs(s)],
                progress=True, **RENDER)

    def on_new() -> dict:
        return {**open_draft(page, None), d.info: "Design a new character, then generate candidates."}

    d.new.click(on_new, None, [*design_outputs, d.info], api_visibility="undocumented")
