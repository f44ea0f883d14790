"""build_demo(studio) -> gr.Blocks. Thin, named handlers; no torch import (the Studio loads the engine lazily).

Three tabs: Design (controls built from the option catalogue), Selfie studio, Characters. A documented JSON API
(one request dict in, a result dict and images out) sits beside the UI for gradio_client users.
"""
from __future__ import annotations

import functools
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from . import lora_view
from .character import AGE_MAX, AGE_MIN, DEFAULT_AGE, catalogue, selfie_catalogue
from .errors import CustomizerError, SpecError, shown
from .gate import Cancelled
from .likeness import badge
from .owners import browser_secret, logged_in_username, new_token, visitor
from .packs import pack_kind
from .service import MAX_CANDIDATES, MAX_SELFIES, Studio
from .settings import SIZE

log = logging.getLogger(__name__)
KEEP_OUTFIT = "(keep designed outfit)"
CSS = """
#likeness-note {font-size: 0.9em; opacity: 0.8}
.status-line {font-size: 0.9em}
""" + badge.CSS + lora_view.CSS
LORA_POLL_S = 1.0  # how often the Selfie studio asks a training job how far it is
# Render requests (UI and API) run side by side in up to this many worker threads; their pipeline calls take turns
# at the Studio's render gate (customizer/gate.py), fairly between owners. So a request is validated - and refused
# when over the compute budget - as soon as it arrives, not after the renders queued before it.
RENDER_WORKERS = 16
RENDER = {"concurrency_id": "render", "concurrency_limit": RENDER_WORKERS}


def client_gone() -> Callable[[], bool]:
    """In a queued event handler: a check "has this event's client gone?" - it disconnected (gradio marks the
    event not alive) or cancelled it (gradio frees its worker slot). Reads gradio's queue, which has no public API
    for it; where the event cannot be found (another gradio), it never says gone."""
    try:
        from gradio.context import LocalContext

        blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
        queue = blocks._queue if blocks is not None else None

        def find():
            for job in list(queue.active_jobs):
                for event in job or ():
                    if event._id == event_id:
                        return event
            return None

        if queue is None or event_id is None or find() is None:
            return lambda: False
    except Exception:  # noqa: BLE001 - a gradio without these internals: no cancellation, nothing else lost
        return lambda: False

    def gone() -> bool:
        event = find()
        return event is None or not event.alive
    return gone


def budget_line(studio: Studio, kind: str, steps: int, width: int, height: int, upscale: bool, count: int) -> str:
    """The cost of a request with these settings against the profile's budget, one line under Advanced."""
    from . import budget

    cfg = studio.budget
    if cfg is None:
        return ""
    attempts = studio.attempts_per_selfie
    lines = []
    plans = [("candidates", count, count)] if kind == "design" else [
        ("selfies", count * attempts, 1), ("expression pack", len(pack_kind().values) * attempts, 1)]
    for label, images, per_render in plans:
        est = budget.estimate(cfg, width, height, steps, images, upscale)
        try:
            budget.check(cfg, label, width, height, steps, images, upscale, per_render=per_render)
            verdict = "fits"
        except CustomizerError:
            verdict = "**over the limit**"
        lines.append(f"{label}: up to {est.units:.3g} megapixel-steps, about {est.seconds:.2g} s - {verdict}")
    return ("Compute budget: " + "; ".join(lines) + f" (limit {cfg.max_render_seconds:g} s per render, "
            f"{cfg.max_seconds:g} s per request)")


def friendly(fn: Callable) -> Callable:
    """Library errors become gr.Error with their message; anything else is logged, never shown as a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Cancelled as e:
            log.info("%s: %s", fn.__name__, e)  # nobody is listening any more; the log says what happened
            raise gr.Error(str(e), print_exception=False) from None
        except CustomizerError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - the user gets a message, the log gets the traceback
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(e).__name__}); the server log has details.",
                           print_exception=False) from None
    return wrapper


def _progress_cb(progress: gr.Progress) -> Callable[[float, str], None]:
    return lambda fraction, message: progress(fraction, desc=message)


def _caption(item: dict) -> str:
    """seed, and for selfies the likeness bar and attempts (customizer/likeness/badge.py); accepted selfies say so."""
    return badge.caption(item) + (" · ✓ accepted" if item.get("accepted") else "")


def _accept_label(selfie: dict | None) -> str:
    return "Un-accept selected selfie" if selfie and selfie.get("accepted") else "Accept selected selfie"


def _likeness_line(studio: Studio) -> str:
    cfg = studio.profile.likeness
    if cfg is None:
        return "likeness not measured in this profile"
    band, attempts = studio.likeness_policy
    retry = (f", target band {band.lo:.2f}-{band.hi:.2f}, up to {attempts} attempts per selfie"
             if band and attempts > 1 else "")
    return f"likeness by the **{cfg.instrument}** instrument{retry}"


def _sheet_view(character: dict | None) -> list[tuple[str, str]]:
    """The reference sheet of the active reference: view, its likeness to the reference, whether it conditions."""
    return [(v["path"], badge.sheet_caption(v)) for v in (character or {}).get("sheet", [])]


def _pack_choices(character: dict) -> list[tuple[str, str]]:
    return [(f"{p['name']} ({len(p['items'])}/{len(p['slots'])})", p["id"]) for p in character.get("packs", [])]


def _pack_view(pack: dict | None) -> tuple[list[tuple[str, str]], str]:
    """Grid of a pack in slot order (captions: slot + likeness), and its likeness cards."""
    if not pack:
        return [], ""
    items = pack["items"]
    return ([(s["path"], badge.caption(s, head=s["pack_slot"])) for s in items],
            badge.cards_html(items, [s["pack_slot"] for s in items]))


def _character_choices(studio: Studio, owner: str, locked_only: bool = False) -> list[tuple[str, str]]:
    return [(f"{c['name']} ({c['status']})", c["id"]) for c in studio.list_characters(owner=owner)
            if not locked_only or c["status"] == "locked"]


def build_demo(studio: Studio) -> gr.Blocks:
    options = catalogue()
    shots = selfie_catalogue()
    profile = studio.profile
    samplers = [(label, name) for name, label in studio.samplers().items()]
    size_max = min(SIZE[1], max(1024, 2 * profile.width, 2 * profile.height),
                   studio.budget.max_side if studio.budget else SIZE[1])

    with gr.Blocks(title="Character customizer") as demo:
        # a secret per browser (localStorage, encrypted with a server secret that survives restarts): its hash owns
        # this visitor's characters
        owner_token = gr.BrowserState("", storage_key="customizer-owner",
                                      secret=browser_secret(studio.config.data_dir))
        character_id = gr.State(None)     # the character being designed (draft) or just locked
        candidate_ids = gr.State([])      # ids behind the candidate gallery, in order
        selected = gr.State(None)         # candidate id picked in the gallery

        gr.Markdown("# Character customizer\nDesign a fictional adult character, lock a reference portrait, "
                    "then take selfies that stay recognisably the same character.")
        gr.Markdown(f"Model profile **{profile.name}** ({profile.family}, {profile.width}x{profile.height}); "
                    f"{_likeness_line(studio)}", elem_classes="status-line")
        if os.environ.get("OAUTH_CLIENT_ID"):
            # a Space with `hf_oauth: true`: signed-in visitors own their characters by account, on any browser
            gr.LoginButton(value="Sign in with Hugging Face to keep your characters across browsers")

        def advanced_controls(prefix: str, kind: str, count: int) -> list[gr.components.Component]:
            """The Advanced settings; the sliders' maxima are what the compute budget allows (kept up to date by
            budget_controls below), with the estimate on the line under them."""
            fit = studio.budget_fit(kind, profile.width, profile.height, profile.steps, count)
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    sampler = gr.Dropdown(samplers, value=profile.scheduler, label="Sampler")
                    steps = gr.Slider(1, fit.steps_max, value=min(profile.steps, fit.steps_max), step=1,
                                      label="Steps", elem_id=f"{prefix}-steps")
                    guidance = gr.Slider(0, 20, value=profile.guidance, step=0.5, label="Guidance")
                    guidance_end = gr.Slider(0.1, 1.0, value=profile.guidance_end, step=0.05,
                                             label="Guidance on the first ... of the steps",
                                             info="1 = every step; less is faster, the late steps matter least")
                with gr.Row():
                    width = gr.Slider(SIZE[0], min(size_max, fit.size_max), value=profile.width, step=8,
                                      label="Width", elem_id=f"{prefix}-width")
                    height = gr.Slider(SIZE[0], min(size_max, fit.size_max), value=profile.height, step=8,
                                       label="Height", elem_id=f"{prefix}-height")
                    upscale = gr.Checkbox(False, label="Upscale 2x",
                                          info="learned upscaler if the profile has one, else Lanczos")
                negative = gr.Textbox(studio_default_negative(), label="Negative prompt", lines=2,
                                      info="safety terms are always added", elem_id=f"{prefix}-negative")
                estimates[prefix] = gr.Markdown(
                    budget_line(studio, kind, profile.steps, profile.width, profile.height, False, count),
                    elem_id=f"{prefix}-budget", elem_classes="status-line")
            return [sampler, steps, guidance, guidance_end, width, height, negative, upscale]

        def budget_controls(prefix: str, kind: str, adv: list, count: gr.Slider) -> None:
            """Whenever steps, size, upscale or the count change: the other sliders' maxima become what still fits
            the compute budget, and the estimate line is redrawn (outside the queue: no render waits on it)."""
            _, steps, _, _, width, height, _, upscale = adv

            def update(steps_, width_, height_, upscale_, count_):
                steps_, width_, height_, count_ = int(steps_), int(width_), int(height_), int(count_)
                f = studio.budget_fit(kind, width_, height_, steps_, count_, bool(upscale_))
                side = min(size_max, f.size_max)
                return (gr.update(maximum=f.steps_max), gr.update(maximum=side), gr.update(maximum=side),
                        gr.update(maximum=f.images_max),
                        budget_line(studio, kind, steps_, width_, height_, bool(upscale_), count_))

            for control in (steps, width, height, upscale, count):
                control.change(update, [steps, width, height, upscale, count],
                               [steps, width, height, count, estimates[prefix]], queue=False,
                               show_progress="hidden", api_visibility="undocumented")

        estimates: dict[str, gr.Markdown] = {}

        with gr.Tabs() as tabs:
            # ---------------------------------------------------------------- design
            with gr.Tab("Design", id="design"):
                with gr.Row():
                    with gr.Column(scale=2):
                        name = gr.Textbox(label="Name", placeholder="optional - a summary is used otherwise")
                        design_inputs: dict[str, gr.components.Component] = {}
                        for key, opt in options.items():
                            if key == "theme":
                                continue
                            design_inputs[key] = gr.Dropdown(list(opt.choices), value=opt.default, label=opt.label,
                                                             elem_id=f"design-{key.replace('_', '-')}")
                        design_inputs["age"] = gr.Slider(AGE_MIN, AGE_MAX, value=DEFAULT_AGE, step=1,
                                                         label="Age (adults only)")
                        theme_opt = options["theme"]
                        design_inputs["theme"] = gr.Radio(list(theme_opt.choices), value=theme_opt.default,
                                                          label=theme_opt.label)
                        design_inputs["theme_strength"] = gr.Slider(0, 1, value=0.8, step=0.05,
                                                                    label="Theme strength")
                        design_inputs["extra"] = gr.Textbox(label="Extra details", lines=2,
                                                            placeholder="freckles, a scar over the left eyebrow ...")
                        with gr.Row():
                            seed = gr.Number(value=1234, precision=0, label="Seed")
                            randomize = gr.Checkbox(True, label="Randomize seed")
                            n_candidates = gr.Slider(
                                1, studio.budget_fit("design", profile.width, profile.height, profile.steps,
                                                     1).images_max,
                                value=2, step=1, label="Candidates", elem_id="design-candidates")
                        design_adv = advanced_controls("design", "design", 2)
                        budget_controls("design", "design", design_adv, n_candidates)
                    with gr.Column(scale=3):
                        candidates = gr.Gallery(label="Candidate portraits - click one, then lock it", columns=2,
                                                height=420, object_fit="contain", elem_id="candidates")
                        with gr.Row():
                            generate_btn = gr.Button("Generate candidates", variant="primary", elem_id="generate")
                            lock_btn = gr.Button("Lock selected as reference", elem_id="lock")
                            new_btn = gr.Button("New character")
                        design_info = gr.Markdown("", elem_id="design-info")

            # ---------------------------------------------------------------- selfies
            with gr.Tab("Selfie studio", id="selfie"):
                with gr.Row():
                    with gr.Column(scale=2):
                        selfie_character = gr.Dropdown([],
                                                       label="Locked character", elem_id="selfie-character")
                        reference_img = gr.Image(label="Reference portrait", interactive=False, height=200,
                                                 type="filepath")
                        # views made at lock time (data/refsheet.yaml); selfies are conditioned on them too
                        sheet_gallery = gr.Gallery(label="Reference sheet (score against the reference)", columns=4,
                                                   height=150, object_fit="contain", elem_id="reference-sheet")
                        scene = gr.Dropdown(list(shots["scene"].choices), value=shots["scene"].default,
                                            label=shots["scene"].label)
                        scene_text = gr.Textbox(label="Scene details",
                                                placeholder="free text; required for the 'custom' scene")
                        expression = gr.Dropdown(list(shots["expression"].choices),
                                                 value=shots["expression"].default, label=shots["expression"].label)
                        framing = gr.Dropdown(list(shots["framing"].choices), value=shots["framing"].default,
                                              label=shots["framing"].label)
                        outfit = gr.Dropdown([KEEP_OUTFIT, *options["outfit"].choices], value=KEEP_OUTFIT,
                                             label="Outfit")
                        likeness = gr.Slider(0, 1, value=0.7, step=0.05, label="Likeness vs freedom",
                                             info="1 = stick to the reference, 0 = follow the prompt freely")
                        with gr.Accordion("Character LoRA", open=True):
                            # a LoRA trained on the reference, its sheet and the accepted selfies locks the look
                            # harder; trained in the background (customizer/lora_jobs.py), polled by a timer
                            lora_info = gr.Markdown("", elem_id="lora-info")
                            lora_progress = gr.HTML("", elem_id="lora-progress")
                            with gr.Row():
                                train_btn = gr.Button("Train character LoRA", elem_id="train-lora")
                                cancel_btn = gr.Button("Cancel training", variant="stop", elem_id="cancel-lora")
                            with gr.Row():
                                use_lora = gr.Checkbox(True, label="Use character LoRA", elem_id="use-lora",
                                                       info="when the character has one")
                                lora_strength = gr.Slider(0, 1, value=studio.lora_settings["strength"], step=0.05,
                                                          label="LoRA strength", elem_id="lora-strength")
                        lora_job = gr.State(None)     # id of the training job shown
                        lora_timer = gr.Timer(LORA_POLL_S, active=False)
                        with gr.Row():
                            selfie_seed = gr.Number(value=1234, precision=0, label="Seed")
                            selfie_randomize = gr.Checkbox(True, label="Randomize seed")
                            selfie_count = gr.Slider(
                                1, studio.budget_fit("selfie", profile.width, profile.height, profile.steps,
                                                     1).images_max,
                                value=1, step=1, label="Count", elem_id="selfie-count")
                        selfie_adv = advanced_controls("selfie", "selfie", 1)
                        budget_controls("selfie", "selfie", selfie_adv, selfie_count)
                    with gr.Column(scale=3):
                        selfie_btn = gr.Button("Take selfie", variant="primary", elem_id="take-selfie")
                        selfie_info = gr.Markdown("", elem_id="selfie-info")
                        history = gr.Gallery(label="Selfies (newest first) - click one to accept it for the "
                                                   "character LoRA", columns=3, height=520,
                                             object_fit="contain", elem_id="history")
                        picked_selfie = gr.State(None)  # selfie id clicked in the history
                        with gr.Row():
                            accept_btn = gr.Button("Accept selected selfie", elem_id="accept-selfie", scale=1)
                            picked_info = gr.Markdown("Click a selfie to select it.", elem_id="picked-info")
                        # one card per selfie, same order: likeness bar (target band shaded), state, attempts
                        history_cards = gr.HTML("", elem_id="likeness-cards", label="Likeness")
                        with gr.Accordion("Expression pack", open=True):
                            kind = pack_kind()
                            gr.Markdown(f"One click makes the standard set ({', '.join(kind.values)}) of the "
                                        f"locked character for chat, {kind.shot.get('framing', '')} in the "
                                        f"{kind.shot.get('scene', '')} scene, with the outfit, likeness and seed "
                                        f"above; stored as a named pack.", elem_classes="status-line")
                            with gr.Row():
                                pack_name = gr.Textbox(label="Pack name", placeholder="optional - Expressions N",
                                                       scale=3, elem_id="pack-name")
                                pack_btn = gr.Button("Make expression pack", scale=1, elem_id="make-pack")
                            pack_pick = gr.Dropdown([], label="Packs of this character", elem_id="pack-pick")
                            pack_grid = gr.Gallery(label="Expression pack", columns=4, height=360,
                                                   object_fit="contain", elem_id="expression-pack")
                            pack_cards = gr.HTML("", elem_id="pack-cards")

            # ---------------------------------------------------------------- characters
            with gr.Tab("Characters", id="characters"):
                with gr.Row():
                    with gr.Column(scale=2):
                        char_pick = gr.Dropdown([], label="Character",
                                                elem_id="characters-pick")
                        refresh_btn = gr.Button("Refresh list")
                        open_btn = gr.Button("Open", variant="primary")
                        with gr.Row():
                            new_name = gr.Textbox(label="New name", scale=3)
                            rename_btn = gr.Button("Rename", scale=1)
                        with gr.Row():
                            confirm_delete = gr.Checkbox(False, label="Yes, delete it and its images")
                            delete_btn = gr.Button("Delete", variant="stop")
                        with gr.Row():
                            unlock_btn = gr.Button("Unlock (keeps history)")
                            export_btn = gr.Button("Export .zip")
                        export_file = gr.File(label="Export", interactive=False)
                        import_file = gr.File(label="Import a character .zip", file_types=[".zip"],
                                              type="filepath")
                    with gr.Column(scale=3):
                        overview = gr.Gallery(label="Reference portraits", columns=4, height=300,
                                              object_fit="contain")
                        char_info = gr.JSON(label="Character", open=False)

        # ------------------------------------------------------------------------------------------ handlers
        design_keys = list(design_inputs)

        def spec_from(values: list[Any]) -> dict[str, Any]:
            spec = dict(zip(design_keys, values))
            spec["age"] = int(spec["age"])
            return spec

        def advanced_from(values: list[Any]) -> dict[str, Any]:
            sampler_, steps_, guidance_, guidance_end_, width_, height_, negative_, upscale_ = values
            return {"sampler": sampler_, "steps": int(steps_), "guidance": float(guidance_),
                    "guidance_end": float(guidance_end_), "width": int(width_), "height": int(height_),
                    "negative": negative_, "upscale": bool(upscale_)}

        n_design, n_adv = len(design_keys), len(design_adv)

        @friendly
        def on_generate(request: gr.Request, *args, progress=gr.Progress(track_tqdm=True)):
            values = list(args)
            owner = visitor(values.pop(), request)
            spec = spec_from(values[:n_design])
            name_, seed_, randomize_, n_, *rest = values[n_design:]
            adv, char_id = advanced_from(rest[:n_adv]), rest[n_adv]
            if char_id:  # a locked character is never redesigned in place: start a new one
                current = studio.get_character(char_id, owner=owner)
                char_id = char_id if current["status"] == "draft" else None
            result = studio.design(spec, seed=None if randomize_ else seed_, n=int(n_), advanced=adv,
                                   character_id=char_id, name=name_, owner=owner, progress=_progress_cb(progress),
                                   cancelled=client_gone())
            cands = result["candidates"]
            character = result["character"]
            gallery = [(c["path"], _caption(c)) for c in cands]
            info = (f"**{character['name']}** - {len(cands)} candidate(s). Click one, then **Lock** it. "
                    f"Seeds {cands[0]['seed']}..{cands[-1]['seed']}.")
            return gallery, [c["id"] for c in cands], None, character["id"], info, cands[0]["seed"]

        generate_btn.click(on_generate, [*design_inputs.values(), name, seed, randomize, n_candidates, *design_adv,
                                         character_id, owner_token],
                           [candidates, candidate_ids, selected, character_id, design_info, seed],
                           api_visibility="undocumented", **RENDER)

        def on_pick(ids: list[str], evt: gr.SelectData):
            return ids[evt.index] if ids and evt.index is not None and evt.index < len(ids) else None

        candidates.select(on_pick, [candidate_ids], [selected], api_visibility="undocumented")

        @friendly
        def on_lock(request: gr.Request, char_id, cand_id, token, progress=gr.Progress(track_tqdm=True)):
            owner = visitor(token, request)
            if not char_id:
                raise gr.Error("Generate candidates first.")
            if not cand_id:
                raise gr.Error("Click a candidate portrait in the gallery first, then lock it.")
            ref = studio.lock(char_id, cand_id, owner=owner, progress=_progress_cb(progress), cancelled=client_gone())
            character = studio.get_character(char_id, owner=owner)
            used = sum(1 for v in character["sheet"] if v.get("conditions"))
            sheet = (f" Reference sheet: {len(character['sheet'])} views, {used} of them condition selfies."
                     if character["sheet"] else "")
            info = (f"Locked **{character['name']}**. Its reference never changes; open the Selfie studio to take "
                    f"selfies.{sheet}")
            return (info, gr.update(choices=_character_choices(studio, owner, True), value=char_id), ref["path"],
                    _sheet_view(character), gr.update(choices=_character_choices(studio, owner), value=char_id),
                    gr.Tabs(selected="selfie"), *history_for(char_id, owner))

        lock_btn.click(on_lock, [character_id, selected, owner_token],
                       [design_info, selfie_character, reference_img, sheet_gallery, char_pick, tabs, history,
                        history_cards], api_visibility="undocumented", **RENDER)

        def on_new():
            return None, [], None, [], "Design a new character, then generate candidates."

        new_btn.click(on_new, None, [character_id, candidate_ids, selected, candidates, design_info],
                      api_visibility="undocumented")

        def history_for(char_id: str | None, owner: str) -> tuple[list[tuple[str, str]], str]:
            """The selfie gallery (pack items live in their pack's grid) and its likeness cards."""
            if not char_id:
                return [], ""
            character = studio.get_character(char_id, owner=owner)
            selfies = [s for s in character["selfies"] if not s.get("pack_id")]
            return [(s["path"], _caption(s)) for s in selfies], badge.cards_html(selfies)

        def packs_for(char_id: str | None, owner: str, pack_id: str | None = None):
            """Pack dropdown (newest first, pack_id or the newest selected), its grid and cards."""
            if not char_id:
                return gr.update(choices=[], value=None), [], ""
            character = studio.get_character(char_id, owner=owner)
            packs = character.get("packs", [])
            pack = next((p for p in packs if p["id"] == pack_id), packs[0] if packs else None)
            return (gr.update(choices=_pack_choices(character), value=pack["id"] if pack else None),
                    *_pack_view(pack))

        def lora_for(char_id: str | None, owner: str):
            """LoRA line, the job to follow (running or latest), its bar, and the timer (on while it runs)."""
            if not char_id:
                return "", None, "", gr.Timer(active=False)
            info = studio.character_lora(char_id, owner=owner)
            job = info["job"]
            running = bool(job and job["state"] in ("queued", "running"))
            return (lora_view.info_markdown(info), job["id"] if job else None, lora_view.status_html(job),
                    gr.Timer(active=running))

        lora_outputs = [lora_info, lora_job, lora_progress, lora_timer]

        @friendly
        def on_selfie_character(request: gr.Request, char_id, token):
            owner = visitor(token, request)
            if not char_id:
                return None, [], [], "", *packs_for(None, owner), *lora_for(None, owner), None
            character = studio.get_character(char_id, owner=owner)
            ref = character["reference"]
            return ((ref["path"] if ref else None), _sheet_view(character), *history_for(char_id, owner),
                    *packs_for(char_id, owner), *lora_for(char_id, owner), None)

        selfie_character.change(on_selfie_character, [selfie_character, owner_token],
                                [reference_img, sheet_gallery, history, history_cards, pack_pick, pack_grid,
                                 pack_cards, *lora_outputs, picked_selfie], api_visibility="undocumented")

        def history_selfies(char_id: str, owner: str) -> list[dict]:
            """The selfies in the history gallery, in its order (history_for)."""
            return [s for s in studio.get_character(char_id, owner=owner)["selfies"] if not s.get("pack_id")]

        @friendly
        def on_history_pick(request: gr.Request, char_id, token, evt: gr.SelectData):
            owner = visitor(token, request)
            shown_ = history_selfies(char_id, owner) if char_id else []
            if evt.index is None or not 0 <= evt.index < len(shown_):
                return None, "Click a selfie to select it.", gr.update(value=_accept_label(None))
            s = shown_[evt.index]
            state = "accepted for the character LoRA" if s["accepted"] else "not accepted"
            return s["id"], f"Selected: seed {s['seed']} ({state}).", gr.update(value=_accept_label(s))

        history.select(on_history_pick, [selfie_character, owner_token], [picked_selfie, picked_info, accept_btn],
                       api_visibility="undocumented")

        @friendly
        def on_accept(request: gr.Request, selfie_id, char_id, token):
            owner = visitor(token, request)
            if not selfie_id or not char_id:
                raise gr.Error("Click a selfie in the history first, then accept it.")
            current = studio.store.get_selfie(selfie_id, owner=owner)
            s = studio.accept_selfie(selfie_id, not current["accepted"], owner=owner)
            state = "accepted: the next character LoRA trains on it" if s["accepted"] else "no longer accepted"
            return (*history_for(char_id, owner), f"Selfie seed {s['seed']} {state}.",
                    gr.update(value=_accept_label(s)), lora_for(char_id, owner)[0])

        accept_btn.click(on_accept, [picked_selfie, selfie_character, owner_token],
                         [history, history_cards, picked_info, accept_btn, lora_info], api_visibility="undocumented")

        @friendly
        def on_train(request: gr.Request, char_id, token):
            owner = visitor(token, request)
            if not char_id:
                raise gr.Error("Choose a locked character first.")
            job_id = studio.start_character_lora(char_id, owner=owner)
            return job_id, lora_view.status_html(studio.character_lora_status(job_id, owner=owner)), \
                gr.Timer(active=True)

        train_btn.click(on_train, [selfie_character, owner_token], [lora_job, lora_progress, lora_timer],
                        api_visibility="undocumented")

        @friendly
        def on_lora_tick(request: gr.Request, job_id, char_id, token):
            owner = visitor(token, request)
            if not job_id:
                return "", gr.Timer(active=False), gr.update()
            job = studio.character_lora_status(job_id, owner=owner)
            if job["state"] in ("queued", "running"):
                return lora_view.status_html(job), gr.Timer(active=True), gr.update()
            info = lora_view.info_markdown(studio.character_lora(char_id, owner=owner)) if char_id else ""
            return lora_view.status_html(job), gr.Timer(active=False), info

        # outside the queue: a poll must not wait behind a render
        lora_timer.tick(on_lora_tick, [lora_job, selfie_character, owner_token],
                        [lora_progress, lora_timer, lora_info], queue=False, api_visibility="undocumented")

        @friendly
        def on_cancel_lora(request: gr.Request, job_id, char_id, token):
            owner = visitor(token, request)
            if not job_id:
                raise gr.Error("No training to cancel.")
            job = studio.cancel_character_lora(job_id, owner=owner)
            info = lora_view.info_markdown(studio.character_lora(char_id, owner=owner)) if char_id else ""
            return lora_view.status_html(job), gr.Timer(active=False), info

        cancel_btn.click(on_cancel_lora, [lora_job, selfie_character, owner_token],
                         [lora_progress, lora_timer, lora_info], queue=False, api_visibility="undocumented")

        @friendly
        def on_selfie(request: gr.Request, char_id, scene_, scene_text_, expression_, framing_, outfit_, likeness_, use_lora_,
                      lora_strength_, count_, seed_, randomize_, *adv_values, progress=gr.Progress(track_tqdm=True)):
            *adv_values, token = adv_values
            owner = visitor(token, request)
            if not char_id:
                raise gr.Error("Choose a locked character first (lock a portrait in the Design tab).")
            shot = {"scene": scene_, "scene_text": scene_text_ or "", "expression": expression_,
                    "framing": framing_, "outfit": None if outfit_ == KEEP_OUTFIT else outfit_,
                    "likeness": float(likeness_), "character_lora": bool(use_lora_),
                    "character_lora_strength": float(lora_strength_)}
            made = studio.selfie(char_id, shot, seed=None if randomize_ else seed_, count=int(count_),
                                 advanced=advanced_from(list(adv_values)), owner=owner,
                                 progress=_progress_cb(progress), cancelled=client_gone())
            info = "; ".join(badge.summary(s) for s in made)
            # the history moved: the old selection's place now shows another selfie
            return (*history_for(char_id, owner), f"New: {info}", made[0]["seed"], None,
                    "Click a selfie to select it.", gr.update(value=_accept_label(None)))

        selfie_btn.click(on_selfie, [selfie_character, scene, scene_text, expression, framing, outfit, likeness,
                                     use_lora, lora_strength, selfie_count, selfie_seed, selfie_randomize,
                                     *selfie_adv, owner_token],
                         [history, history_cards, selfie_info, selfie_seed, picked_selfie, picked_info, accept_btn],
                         api_visibility="undocumented", **RENDER)

        @friendly
        def on_pack(request: gr.Request, char_id, name_, outfit_, likeness_, use_lora_, lora_strength_, seed_, randomize_, *adv_values,
                    progress=gr.Progress(track_tqdm=True)):
            *adv_values, token = adv_values
            owner = visitor(token, request)
            if not char_id:
                raise gr.Error("Choose a locked character first (lock a portrait in the Design tab).")
            shot = {"outfit": None if outfit_ == KEEP_OUTFIT else outfit_, "likeness": float(likeness_),
                    "character_lora": bool(use_lora_), "character_lora_strength": float(lora_strength_)}
            pack = studio.expression_pack(char_id, name=name_ or None, seed=None if randomize_ else seed_,
                                          selfie=shot, advanced=advanced_from(list(adv_values)), owner=owner,
                                          progress=_progress_cb(progress), cancelled=client_gone())
            attempts = sum(s["attempts"] for s in pack["items"])
            gr.Info(f"Made '{pack['name']}': {len(pack['items'])} images in {attempts} attempts.")
            return *packs_for(char_id, owner, pack["id"]), ""

        pack_btn.click(on_pack, [selfie_character, pack_name, outfit, likeness, use_lora, lora_strength, selfie_seed,
                                 selfie_randomize, *selfie_adv, owner_token],
                       [pack_pick, pack_grid, pack_cards, pack_name], api_visibility="undocumented", **RENDER)

        @friendly
        def on_pack_pick(request: gr.Request, pack_id, token):
            if not pack_id:
                return [], ""
            return _pack_view(studio.get_pack(pack_id, owner=visitor(token, request)))

        pack_pick.input(on_pack_pick, [pack_pick, owner_token], [pack_grid, pack_cards],
                        api_visibility="undocumented")

        # characters panel
        def overview_gallery(owner: str) -> list[tuple[str, str]]:
            return [(c["thumbnail"], c["name"]) for c in studio.list_characters(owner=owner) if c["thumbnail"]]

        @friendly
        def on_refresh(request: gr.Request, token):
            owner = visitor(token, request)
            return (gr.update(choices=_character_choices(studio, owner)), overview_gallery(owner),
                    gr.update(choices=_character_choices(studio, owner, True)))

        def ensure_token(token):
            return token or new_token()

        refresh_btn.click(on_refresh, [owner_token], [char_pick, overview, selfie_character],
                          api_visibility="undocumented")
        # outside the queue: the token must exist before the visitor's first click, even when the queue is busy
        demo.load(ensure_token, [owner_token], [owner_token], queue=False, api_visibility="undocumented").then(
            on_refresh, [owner_token], [char_pick, overview, selfie_character], api_visibility="undocumented")

        @friendly
        def on_open(request: gr.Request, char_id, token):
            owner = visitor(token, request)
            if not char_id:
                raise gr.Error("Choose a character to open.")
            character = studio.get_character(char_id, owner=owner)
            spec = character["spec"]
            design_values = [spec.get(k) for k in design_keys]
            gallery = [(c["path"], _caption(c)) for c in character["candidates"]]
            ids = [c["id"] for c in character["candidates"]]
            locked = character["status"] == "locked"
            summary = {k: character[k] for k in ("id", "name", "status", "created_at", "spec")}
            summary["selfies"] = len(character["selfies"])
            summary["packs"] = [p["name"] for p in character["packs"]]
            summary["sheet"] = {v["view"]: {"likeness": v["likeness"], "conditions": v.get("conditions")}
                                for v in character["sheet"]}
            summary["character_loras"] = [{k: lo[k] for k in ("sha256", "created_at")} for lo in character["loras"]]
            return (*design_values, character["name"], gallery, ids, char_id, summary,
                    gr.update(value=char_id if locked else None, choices=_character_choices(studio, owner, True)),
                    character["reference"]["path"] if character["reference"] else None, _sheet_view(character),
                    *history_for(char_id, owner), *packs_for(char_id, owner),
                    gr.Tabs(selected="selfie" if locked else "design"))

        open_btn.click(on_open, [char_pick, owner_token],
                       [*design_inputs.values(), name, candidates, candidate_ids, character_id, char_info,
                        selfie_character, reference_img, sheet_gallery, history, history_cards, pack_pick, pack_grid,
                        pack_cards, tabs], api_visibility="undocumented")

        @friendly
        def on_rename(request: gr.Request, char_id, new, token):
            owner = visitor(token, request)
            if not char_id:
                raise gr.Error("Choose a character to rename.")
            studio.rename(char_id, new, owner=owner)
            return gr.update(choices=_character_choices(studio, owner), value=char_id), overview_gallery(owner), ""

        rename_btn.click(on_rename, [char_pick, new_name, owner_token], [char_pick, overview, new_name],
                         api_visibility="undocumented")

        @friendly
        def on_delete(request: gr.Request, char_id, confirmed, token):
            owner = visitor(token, request)
            if not char_id:
                raise gr.Error("Choose a character to delete.")
            if not confirmed:
                raise gr.Error("Tick 'Yes, delete it' first: deleting removes its images for good.")
            delete_with_served_copies(studio, char_id, owner)
            gr.Info("Character deleted.")
            return (gr.update(choices=_character_choices(studio, owner), value=None), overview_gallery(owner), False, None,
                    gr.update(choices=_character_choices(studio, owner, True), value=None))

        delete_btn.click(on_delete, [char_pick, confirm_delete, owner_token],
                         [char_pick, overview, confirm_delete, char_info, selfie_character],
                         api_visibility="undocumented")

        @friendly
        def on_unlock(request: gr.Request, char_id, token):
            owner = visitor(token, request)
            if not char_id:
                raise gr.Error("Choose a character to unlock.")
            studio.unlock(char_id, owner=owner)
            gr.Info("Unlocked: the old reference and its selfies stay in the history.")
            return gr.update(choices=_character_choices(studio, owner)), gr.update(choices=_character_choices(studio, owner, True))

        unlock_btn.click(on_unlock, [char_pick, owner_token], [char_pick, selfie_character], api_visibility="undocumented")

        @friendly
        def on_export(request: gr.Request, char_id, token):
            owner = visitor(token, request)
            if not char_id:
                raise gr.Error("Choose a character to export.")
            return write_export(studio, char_id, owner)

        export_btn.click(on_export, [char_pick, owner_token], [export_file], api_visibility="undocumented")

        @friendly
        def on_import(request: gr.Request, path, token):
            owner = visitor(token, request)
            if not path:
                return gr.update(), gr.update(), gr.update()
            imported = studio.import_(Path(path).read_bytes(), owner=owner)
            gr.Info(f"Imported '{imported['name']}'.")
            return (gr.update(choices=_character_choices(studio, owner), value=imported["id"]), overview_gallery(owner),
                    gr.update(choices=_character_choices(studio, owner, True)))

        import_file.upload(on_import, [import_file, owner_token], [char_pick, overview, selfie_character],
                           api_visibility="undocumented")

        add_api(studio)
    return demo


def studio_default_negative() -> str:
    from .prompts import default_negative

    return default_negative()


def write_export(studio: Studio, char_id: str, owner: str) -> str:
    data = studio.export(char_id, owner=owner)
    name = studio.get_character(char_id, owner=owner)["name"]
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:40] or "character"
    # the id in the name lets delete find the copy gradio serves (served_copies)
    out = Path(tempfile.mkdtemp(prefix="export-")) / f"{safe}-{char_id}.zip"
    out.write_bytes(data)
    return str(out)


# ------------------------------------------------------------------------------------------------ API
def _images(items: list[dict]) -> list[tuple[str, str]]:
    return [(i["path"], i.get("id", "")) for i in items]


PRIVATE_KEYS = ("path", "thumbnail", "owner")  # server paths and owner hashes never leave the server


def _public(item: dict) -> dict:
    """Clients get ids, seeds, recipes and the profile name (images come separately); server file paths, owner
    hashes and local model folders stay on the server (scrub)."""
    return scrub({k: v for k, v in item.items() if k not in PRIVATE_KEYS})


def scrub(value: Any) -> Any:
    """A JSON answer without the server's insides: keys in PRIVATE_KEYS dropped at any depth, and any text that is
    an absolute path on this server's disk (a local model folder in an old recipe) reduced to "local:<name>"."""
    from .config import public_ref

    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in PRIVATE_KEYS}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str) and value.startswith("/") and len(value) < 4096 and Path(value).exists():
        return public_ref(value)
    return value


def served_copies(shas: list[str], character_id: str | None = None) -> list[Path]:
    """The copies gradio serves of these images (its cache: <cache>/<hash>/<sha>.png) and of this character's
    export archives (<cache>/<hash>/<name>-<character id>.zip)."""
    from gradio.utils import get_upload_folder

    root = Path(get_upload_folder())
    if not root.is_dir():
        return []
    found = [p for sha in shas for p in root.glob(f"*/{sha}.png")]
    if character_id:
        found += list(root.glob(f"*/*-{character_id}.zip"))
    return found


def delete_with_served_copies(studio: Studio, char_id: str, owner: str) -> int:
    """Delete a character, then the served copies of every image of it that is gone from the store (an image
    another character still holds stays, with its copies) and of its exports. Returns the copies removed."""
    character = studio.get_character(char_id, owner=owner)
    shas = {i["image_sha256"] for group in ("candidates", "selfies", "sheet", "references") for i in
            character.get(group) or []}
    if character.get("reference"):
        shas.add(character["reference"]["image_sha256"])
    studio.delete(char_id, owner=owner)
    gone = [sha for sha in shas if not studio.store.image_path(sha).exists()]
    removed = 0
    for path in served_copies(gone, char_id):
        try:
            path.unlink()
            removed += 1
            path.parent.rmdir()  # gradio's per-file folder, when it is empty now
        except OSError:
            pass
    return removed


def _public_pack(pack: dict) -> dict:
    return {**{k: v for k, v in pack.items() if k != "items"}, "items": [_public(s) for s in pack["items"]]}


def _unencodable(value: Any) -> bool:
    """True if any string in a parsed JSON value holds an unpaired surrogate (valid JSON escape, not text).
    Iterative: a deeply nested request must not hit the recursion limit here."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(v, dict):
            stack.extend(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def _text(req: dict, key: str, required: bool = True) -> str | None:
    """A request field that must be text (an id, a name): never str()-ed into "None" or "['x']"."""
    value = req.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise SpecError(key, "is missing" if value is None else f"must be text, got {type(value).__name__}")
    return value


def _mapping(req: dict, key: str) -> Any:
    """An optional object field: absent/null -> {}; anything else goes to its validator (which names the type)."""
    value = req.get(key)
    return {} if value is None else value


def add_api(studio: Studio) -> None:
    """JSON endpoints: one request dict in -> (result dict, images). See README 'API'."""
    def endpoint(api_name: str, fn: Callable[..., tuple[dict | list, list]], doc: str, render: bool = False,
                 mint: bool | str = False) -> None:
        """One JSON endpoint. render: it renders - run beside the others (RENDER), its renders taking turns at the
        render gate, and stopped when the client goes away (fn gets `cancelled`). mint: a request without a token
        gets a server-made one, returned in the result's `token` (the first call of a new API client); "always":
        every call gets a new one (new_token)."""
        request = gr.JSON(visible=False)
        result = gr.JSON(visible=False)
        images = gr.Gallery(visible=False)
        trigger = gr.Button(visible=False)

        @friendly
        def run(req, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
            if not isinstance(req, dict):
                raise gr.Error("the request must be a JSON object", print_exception=False)
            if _unencodable(req):
                raise gr.Error("the request holds text that is not valid Unicode (an unpaired surrogate)",
                               print_exception=False)
            token = req.get("token")
            if token is not None and not isinstance(token, str):
                raise SpecError("token", f"must be text, got {type(token).__name__}")
            minted = None
            if mint == "always" or (not token and logged_in_username(request) is None):
                if not mint:
                    raise SpecError("token", "is missing: send the token a first design_candidates (or new_token) "
                                             "call returned, or your own secret of 16-200 letters, digits, '-' "
                                             "or '_'; it owns your characters")
                token = minted = new_token()
            owner = visitor(token, request)
            result, images = fn(req, owner, client_gone()) if render else fn(req, owner)
            result = scrub(result)
            if minted is not None and isinstance(result, dict):
                result["token"] = minted  # keep it: it is the only key to what this call made
            return result, images

        run.__doc__ = doc
        trigger.click(run, [request], [result, images], api_name=api_name, api_description=doc,
                      **(RENDER if render else {}))

    def design_candidates(req: dict, owner: str, cancelled: Callable[[], bool]):
        out = studio.design(_mapping(req, "spec"), seed=req.get("seed"), n=req.get("n", 1),
                            advanced=req.get("advanced"), character_id=_text(req, "character_id", required=False),
                            name=_text(req, "name", required=False), owner=owner, cancelled=cancelled)
        cands = out["candidates"]
        return {"character_id": out["character"]["id"], "candidates": [_public(c) for c in cands]}, _images(cands)

    def lock(req: dict, owner: str, cancelled: Callable[[], bool]):
        ref = studio.lock(_text(req, "character_id"), _text(req, "candidate_id"), owner=owner, cancelled=cancelled)
        return _public(ref) | {"sheet": [_public(v) for v in ref["sheet"]]}, _images([ref, *ref["sheet"]])

    def selfie(req: dict, owner: str, cancelled: Callable[[], bool]):
        made = studio.selfie(_text(req, "character_id"), _mapping(req, "selfie"), seed=req.get("seed"),
                             count=req.get("count", 1), advanced=req.get("advanced"), owner=owner, cancelled=cancelled)
        return [_public(s) for s in made], _images(made)

    def expression_pack(req: dict, owner: str, cancelled: Callable[[], bool]):
        pack = studio.expression_pack(_text(req, "character_id"), name=_text(req, "name", required=False),
                                      seed=req.get("seed"), selfie=req.get("selfie"), advanced=req.get("advanced"),
                                      kind=req.get("kind", "expressions"), owner=owner, cancelled=cancelled)
        return _public_pack(pack), _images(pack["items"])

    def get_pack(req: dict, owner: str):
        pack = studio.get_pack(_text(req, "pack_id"), owner=owner)
        if pack["character_id"] != _text(req, "character_id"):
            raise SpecError("pack_id", "is not a pack of this character")
        return _public_pack(pack), _images(pack["items"])

    def list_characters(req: dict, owner: str):
        return [_public(c) for c in studio.list_characters(owner=owner)], []

    def get_character(req: dict, owner: str):
        c = studio.get_character(_text(req, "character_id"), owner=owner)
        images = ([c["reference"]] if c["reference"] else []) + c["selfies"] + c["sheet"]
        body = {k: v for k, v in c.items()
                if k not in ("candidates", "selfies", "reference", "references", "packs", "thumbnail", "sheet")}
        body["reference"] = _public(c["reference"]) if c["reference"] else None
        body["selfies"] = [_public(s) for s in c["selfies"]]
        body["candidates"] = [_public(x) for x in c["candidates"]]
        # packs by selfie id (the selfies themselves are listed above, each with pack_id / pack_slot)
        body["packs"] = [{**{k: v for k, v in p.items() if k != "items"},
                          "items": [{"slot": s["pack_slot"], "selfie_id": s["id"]} for s in p["items"]]}
                         for p in c["packs"]]
        body["sheet"] = [_public(v) for v in c["sheet"]]
        body["loras"] = [_public(lo) for lo in c["loras"]]
        return body, _images(images)

    def rename(req: dict, owner: str):
        return _public(studio.rename(_text(req, "character_id"), _text(req, "name"), owner=owner)), []

    def delete(req: dict, owner: str):
        char_id = _text(req, "character_id")
        removed = delete_with_served_copies(studio, char_id, owner)
        return {"deleted": char_id, "served_copies_removed": removed}, []

    def new_token_(req: dict, owner: str):
        return {}, []  # the token is made and added by the endpoint (mint)

    def accept_selfie(req: dict, owner: str):
        accepted = req.get("accepted", True)
        if not isinstance(accepted, bool):
            raise SpecError("accepted", f"must be true or false, got {shown(accepted)}")
        s = studio.accept_selfie(_text(req, "selfie_id"), accepted, owner=owner)
        return _public(s), _images([s])

    def character_lora_start(req: dict, owner: str):
        job_id = studio.start_character_lora(_text(req, "character_id"), owner=owner, seed=req.get("seed"))
        return studio.character_lora_status(job_id, owner=owner), []

    def character_lora_status(req: dict, owner: str):
        return studio.character_lora_status(_text(req, "job_id"), owner=owner), []

    def character_lora_cancel(req: dict, owner: str):
        return studio.cancel_character_lora(_text(req, "job_id"), owner=owner), []

    endpoint("new_token", new_token_,
             "A new server-made token: {} -> {token}. Send it as `token` with every request; your characters "
             "belong to it (keep it secret). A first design_candidates without a token makes one too.",
             mint="always")
    endpoint("design_candidates", design_candidates,
             "Generate candidate portraits. Request: {token?, spec: {hair_colour, ..., age, theme, theme_strength, "
             "extra}, "
             "seed (-1 random), n (1-4), name?, character_id? (a draft to redesign), advanced?: {sampler, steps, "
             "guidance, guidance_end, width, height, negative, upscale}}. Returns {character_id, candidates} and "
             "the images; without a token also {token}: a new server-made token that owns the character.",
             render=True, mint=True)
    endpoint("lock", lock, "Lock a candidate as the reference: {character_id, candidate_id}. Returns the reference "
             "with its reference sheet (views rendered from it, each with its likeness score and whether it "
             "conditions selfies); images: the reference, then the sheet views.", render=True)
    endpoint("selfie", selfie,
             "Selfies of a locked character: {character_id, selfie: {scene, scene_text, expression, framing, "
             "outfit, likeness, character_lora (default true: use the character LoRA when there is one), "
             "character_lora_strength (0-1)}, seed, count (1-4), advanced?}. Returns the selfie records and "
             "images. Each record carries likeness (score 0-1 against the locked reference, or null), "
             "likeness_state (scored, unavailable, no_face, no_face_reference, error), likeness_instrument, "
             "attempts (renders it took to land in the profile's likeness band) and recipe.extra.likeness / "
             "recipe.extra.attempts (band, position, every seed tried; sheet_mean: mean score against the sheet "
             "views). "
             "recipe.conditioning_sha256 lists the images it was conditioned on (the reference, then the sheet "
             "views in the band); recipe.extra.sheet names the views used and left out; "
             "recipe.character_lora_sha256 the character LoRA it used (its adapter is in recipe.loras).", render=True)
    endpoint("expression_pack", expression_pack,
             "Make an expression pack (neutral, happy, laughing, sad, surprised, angry, thinking) of a locked "
             "character: {character_id, name?, seed?, selfie?: {scene, framing, outfit, likeness}, advanced?}. "
             "Returns the pack {id, name, slots, complete, items: selfie records in slot order} and its images.",
             render=True)
    endpoint("get_pack", get_pack,
             "One pack with its selfie records: {character_id, pack_id}; images in slot order.")
    endpoint("list_characters", list_characters, "List characters (newest first): {}.")
    endpoint("get_character", get_character,
             "One character with spec, reference, candidates, selfies and the reference sheet (view, likeness, "
             "conditions): {character_id}. Images: reference, then selfies, then sheet views.")
    endpoint("rename", rename, "Rename: {character_id, name}.")
    endpoint("accept_selfie", accept_selfie,
             "Accept a selfie as the character (the character LoRA trains on accepted selfies), or take that back: "
             "{selfie_id, accepted: true|false (default true)}. Returns the selfie record and its image.")
    endpoint("character_lora_start", character_lora_start,
             "Train a character LoRA in the background on the locked reference, its sheet views and the accepted "
             "selfies: {character_id, seed?}. One job per character. Returns the job {id, state (queued, running, "
             "done, cancelled, failed), progress 0-1, step, steps, loss, message, images, seconds, lora}; poll "
             "character_lora_status. Selfies then use the LoRA unless selfie.character_lora is false "
             "(selfie.character_lora_strength 0-1 sets its weight).")
    endpoint("character_lora_status", character_lora_status,
             "A character LoRA training job: {job_id}. When done, `lora` holds the stored LoRA (id, sha256, facts).")
    endpoint("character_lora_cancel", character_lora_cancel,
             "Cancel a character LoRA training job: {job_id}. Nothing is stored; returns the job.")
    endpoint("delete", delete, "Delete a character and its images, and the copies of them the server served: "
             "{character_id}. Returns {deleted, served_copies_removed}.")
