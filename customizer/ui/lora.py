"""The Selfie studio's character LoRA: accept selfies that look right, train a LoRA on them in the background
(customizer/lora_jobs.py), follow it with a polled progress bar, cancel it. Cancel shows only while a training
runs."""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from .. import lora_view
from . import views
from .common import Page, accept_label

POLL_S = 1.0  # how often the Selfie studio asks a training job how far it is


def layout(page: Page, s: SimpleNamespace) -> None:
    with gr.Accordion("Character LoRA", open=True):
        # a LoRA trained on the reference, its sheet and the accepted selfies locks the look harder
        s.lora_info = gr.Markdown("", elem_id="lora-info")
        s.lora_progress = gr.HTML("", elem_id="lora-progress")
        with gr.Row():
            s.train_btn = gr.Button("Train character LoRA", elem_id="train-lora")
            s.cancel_btn = gr.Button("Cancel training", variant="stop", elem_id="cancel-lora", visible=False)
        with gr.Row():
            s.use_lora = gr.Checkbox(True, label="Use character LoRA", elem_id="use-lora",
                                     info="when the character has one")
            s.lora_strength = gr.Slider(0, 1, value=page.studio.lora_settings["strength"], step=0.05,
                                        label="LoRA strength", elem_id="lora-strength")
    s.lora_job = gr.State(None)     # id of the training job shown
    s.lora_timer = gr.Timer(POLL_S, active=False)


def on_history_pick(page: Page, owner: str, v: dict, evt: gr.SelectData) -> dict:
    s = page.selfie
    char_id = v[s.character]
    shown = views.history_selfies(page.studio.get_character(char_id, owner=owner)) if char_id else []
    if evt.index is None or not 0 <= evt.index < len(shown):
        return views.unpicked(page)
    x = shown[evt.index]
    state = "accepted for the character LoRA" if x["accepted"] else "not accepted"
    return {s.picked: x["id"], s.picked_info: f"Selected: seed {x['seed']} ({state}).",
            s.accept_btn: gr.update(value=accept_label(x))}


def on_accept(page: Page, owner: str, v: dict) -> dict:
    s, studio = page.selfie, page.studio
    selfie_id, char_id = v[s.picked], v[s.character]
    if not selfie_id or not char_id:
        raise gr.Error("Click a selfie in the history first, then accept it.")
    current = next((x for x in studio.get_character(char_id, owner=owner)["selfies"] if x["id"] == selfie_id), None)
    if current is None:
        raise gr.Error("That selfie is not in this character's history any more; click one again.")
    x = studio.accept_selfie(selfie_id, not current["accepted"], owner=owner)
    state = "accepted: the next character LoRA trains on it" if x["accepted"] else "no longer accepted"
    info = lora_view.info_markdown(studio.character_lora(char_id, owner=owner))
    return {**views.history(page, studio.get_character(char_id, owner=owner)),
            s.picked_info: f"Selfie seed {x['seed']} {state}.", s.accept_btn: gr.update(value=accept_label(x)),
            s.lora_info: info}


def on_train(page: Page, owner: str, v: dict) -> dict:
    s, studio = page.selfie, page.studio
    char_id = v[s.character]
    if not char_id:
        raise gr.Error("Choose a locked character first.")
    job_id = studio.start_character_lora(char_id, owner=owner)
    return {s.lora_job: job_id, **views.lora_job(page, studio.character_lora_status(job_id, owner=owner))}


def on_lora_tick(page: Page, owner: str, v: dict) -> dict:
    s, studio = page.selfie, page.studio
    job_id, char_id = v[s.lora_job], v[s.character]
    if not job_id:
        return views.lora_job(page, None)
    job = studio.character_lora_status(job_id, owner=owner)
    shown = views.lora_job(page, job)
    if job["state"] not in ("queued", "running") and char_id:
        shown[s.lora_info] = lora_view.info_markdown(studio.character_lora(char_id, owner=owner))
    return shown


def on_cancel_lora(page: Page, owner: str, v: dict) -> dict:
    s, studio = page.selfie, page.studio
    job_id, char_id = v[s.lora_job], v[s.character]
    if not job_id:
        raise gr.Error("No training to cancel.")
    shown = views.lora_job(page, studio.cancel_character_lora(job_id, owner=owner))
    shown[s.lora_info] = lora_view.info_markdown(studio.character_lora(char_id, owner=owner)) if char_id else ""
    return shown


def wire(page: Page) -> None:
    s = page.selfie
    job_outputs = [s.lora_progress, s.lora_timer, s.cancel_btn]
    page.listen(s.history.select, on_history_pick, [s.character], [s.picked, s.picked_info, s.accept_btn],
                select=True)
    page.listen(s.accept_btn.click, on_accept, [s.picked, s.character],
                [s.history, s.cards, s.picked_info, s.accept_btn, s.lora_info])
    page.listen(s.train_btn.click, on_train, [s.character], [s.lora_job, *job_outputs])
    # outside the queue: a poll or a cancel must not wait behind a render
    page.listen(s.lora_timer.tick, on_lora_tick, [s.lora_job, s.character], [*job_outputs, s.lora_info],
                queue=False)
    page.listen(s.cancel_btn.click, on_cancel_lora, [s.lora_job, s.character], [*job_outputs, s.lora_info],
                queue=False)
