"""build_demo(studio) -> gr.Blocks. The UI talks only to the Studio (customizer/service.py) and never imports
torch or the engine (the Studio loads it lazily; pyproject.toml [tool.importlinter]).

    common.py      error handling, the owner decorator (Page.listen), captions, picture sizes
    controls.py    the Advanced settings and the compute budget line
    design.py      the Design tab          selfie.py, lora.py   the Selfie studio
    characters.py  the Characters tab      views.py             a character as each panel shows it
    api.py         the typed API endpoints and their request checks (api_schema.py, api_handlers.py)
    files.py       export archives, and the served copies of images that delete takes down
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import os

import gradio as gr

from ..owners import browser_secret
from . import characters, design, selfie
from .api import add_api, scrub
from .common import CSS, RENDER, RENDER_WORKERS, Page, friendly, likeness_line, size_css

if TYPE_CHECKING:  # the UI is handed a Studio; importing service would reach the engine
    from ..service import Studio

__all__ = ["CSS", "RENDER", "RENDER_WORKERS", "build_demo", "css_for", "friendly", "scrub"]


def css_for(studio: Studio) -> str:
    """The page's CSS: the shared rules, and the picture sizes of this profile."""
    return CSS + size_css(studio.profile.width, studio.profile.height)


def build_demo(studio: Studio) -> gr.Blocks:
    profile = studio.profile
    with gr.Blocks(title="Character customizer") as demo:
        # a secret per browser (localStorage, encrypted with a server secret that survives restarts): its hash owns
        # this visitor's characters
        token = gr.BrowserState("", storage_key="customizer-owner", secret=browser_secret(studio.config.data_dir))
        gr.Markdown("# Character customizer\nDesign a fictional adult character, lock a reference portrait, "
                    "then take selfies that stay recognisably the same character.")
        gr.Markdown(f"Model profile **{profile.name}** ({profile.family}, {profile.width}x{profile.height}); "
                    f"{likeness_line(studio)}", elem_classes="status-line")
        if os.environ.get("OAUTH_CLIENT_ID"):
            # a Space with `hf_oauth: true`: signed-in visitors own their characters by account, on any browser
            gr.LoginButton(value="Sign in with Hugging Face to keep your characters across browsers")
        with gr.Tabs() as tabs:
            page = Page(studio, token, tabs)
            with gr.Tab("Design", id="design"):
                page.design = design.layout(page)
            with gr.Tab("Selfie studio", id="selfie"):
                page.selfie = selfie.layout(page)
            with gr.Tab("Characters", id="characters"):
                page.chars = characters.layout(page)
        design.wire(page)
        selfie.wire(page)
        characters.wire(page)
        characters.wire_load(page, demo)
        add_api(studio)
    return demo
