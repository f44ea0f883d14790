"""The Characters tab: open, rename, delete (with confirmation), unlock, export and import. Its panels show only
what there is: the overview once there are reference portraits, the character once one is open, the export once
one is made."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from . import design, views
from .common import PX_CLASS, Page, grid, shown_side
from .files import delete_with_served_copies, write_export
from .selfie import studio_outputs


def layout(page: Page) -> SimpleNamespace:
    c = SimpleNamespace()
    with gr.Row():
        with gr.Column(scale=2):
            c.pick = gr.Dropdown([], label="Character", elem_id="characters-pick")
            c.refresh = gr.Button("Refresh list")
            c.open = gr.Button("Open", variant="primary")
            with gr.Row():
                c.new_name = gr.Textbox(label="New name", scale=3)
                c.rename = gr.Button("Rename", scale=1)
            with gr.Row():
                c.confirm_delete = gr.Checkbox(False, label="Yes, delete it and its images")
                c.delete = gr.Button("Delete", variant="stop")
            with gr.Row():
                c.unlock = gr.Button("Unlock (keeps history)")
                c.export = gr.Button("Export .zip")
            c.export_file = gr.File(label="Export", interactive=False, visible=False, elem_id="export-file")
            c.import_file = gr.File(label="Import a character .zip", file_types=[".zip"], type="filepath")
        with gr.Column(scale=3):
            c.hint = gr.Markdown("Pick a character and press **Open**: it opens in the Design tab (a draft) or the "
                                 "Selfie studio (locked).", elem_id="characters-hint", elem_classes="status-line")
            side = shown_side(page.studio.profile.width, page.studio.profile.height)
            c.overview = gr.Gallery(label="Reference portraits", object_fit="contain", visible=False,
                                    elem_id="overview", elem_classes=PX_CLASS, **grid(side, 760, 2))
            c.info = gr.JSON(label="Character", open=False, visible=False, elem_id="character-info")
    return c


def chosen(page: Page, v: dict, doing: str) -> str:
    char_id = v[page.chars.pick]
    if not char_id:
        raise gr.Error(f"Choose a character to {doing}.")
    return char_id


def on_load(page: Page, owner: str, v: dict) -> dict:
    """A page (re)load: the visitor's lists, and their newest character back in the Design tab if it is a draft
    (so Generate goes on adding to it instead of starting another)."""
    shown = views.character_lists(page, owner)
    listed = page.studio.list_characters(owner=owner)
    if listed and listed[0]["status"] == "draft":
        shown.update(design.open_draft(page, page.studio.get_character(listed[0]["id"], owner=owner)))
    return shown


def on_refresh(page: Page, owner: str, v: dict) -> dict:
    return views.character_lists(page, owner)


def on_open(page: Page, owner: str, v: dict) -> dict:
    char_id = chosen(page, v, "open")
    character = page.studio.get_character(char_id, owner=owner)
    locked = character["status"] == "locked"
    return {**design.open_draft(page, character), page.chars.info: gr.update(value=views.summary(character),
                                                                             visible=True),
            **views.character_lists(page, owner, locked_value=char_id if locked else None),
            **views.studio_for(page, owner, char_id if locked else None),
            page.tabs: gr.Tabs(selected="selfie" if locked else "design")}


def on_rename(page: Page, owner: str, v: dict) -> dict:
    char_id = chosen(page, v, "rename")
    page.studio.rename(char_id, v[page.chars.new_name], owner=owner)
    return {**views.character_lists(page, owner, value=char_id), page.chars.new_name: ""}


def on_delete(page: Page, owner: str, v: dict) -> dict:
    c = page.chars
    char_id = chosen(page, v, "delete")
    if not v[c.confirm_delete]:
        raise gr.Error("Tick 'Yes, delete it' first: deleting removes its images for good.")
    delete_with_served_copies(page.studio, char_id, owner)
    gr.Info("Character deleted.")
    return {**views.character_lists(page, owner, value=None, locked_value=None), c.confirm_delete: False,
            c.info: gr.update(value=None, visible=False), c.export_file: gr.update(value=None, visible=False)}


def on_unlock(page: Page, owner: str, v: dict) -> dict:
    page.studio.unlock(chosen(page, v, "unlock"), owner=owner)
    gr.Info("Unlocked: the old reference and its selfies stay in the history.")
    return views.character_lists(page, owner)


def on_export(page: Page, owner: str, v: dict) -> dict:
    path = write_export(page.studio, chosen(page, v, "export"), owner)
    return {page.chars.export_file: gr.update(value=path, visible=True)}


def on_import(page: Page, owner: str, v: dict) -> dict:
    path = v[page.chars.import_file]
    if not path:
        return {}
    imported = page.studio.import_(Path(path).read_bytes(), owner=owner)
    gr.Info(f"Imported '{imported['name']}'.")
    return views.character_lists(page, owner, value=imported["id"])


def wire(page: Page) -> None:
    c, d = page.chars, page.design
    lists = [c.pick, c.overview, page.selfie.character]
    page.listen(c.refresh.click, on_refresh, [], lists)
    page.listen(c.open.click, on_open, [c.pick],
                [*d.inputs.values(), d.name, d.character_id, d.candidates, d.candidate_ids, d.selected, d.draft,
                 c.info, *lists, *studio_outputs(page.selfie), page.tabs])
    page.listen(c.rename.click, on_rename, [c.pick, c.new_name], [*lists, c.new_name])
    page.listen(c.delete.click, on_delete, [c.pick, c.confirm_delete],
                [*lists, c.confirm_delete, c.info, c.export_file])
    page.listen(c.unlock.click, on_unlock, [c.pick], lists)
    page.listen(c.export.click, on_export, [c.pick], [c.export_file])
    page.listen(c.import_file.upload, on_import, [c.import_file], lists)


def wire_load(page: Page, demo: gr.Blocks) -> None:
    """The page's load: the token exists first (outside the queue, even when the queue is busy), then the lists
    and the open draft."""
    from ..owners import new_token

    d = page.design

    def ensure_token(token):
        return token or new_token()

    loaded = demo.load(ensure_token, [page.token], [page.token], queue=False, api_visibility="undocumented")
    page.listen(loaded.then, on_load, [],
                [page.chars.pick, page.chars.overview, page.selfie.character, *d.inputs.values(), d.name,
                 d.character_id, d.candidates, d.candidate_ids, d.selected, d.draft])
