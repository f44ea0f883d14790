"""What every tab of the UI shares: error handling (`friendly`), the owner decorator (`Page.listen`: one place
resolves who is asking), client-gone checks for renders, captions, and how big images are shown. No torch."""
from __future__ import annotations

import functools
import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr

from .. import lora_view
from ..errors import CustomizerError
from ..gate import Cancelled
from ..likeness import badge
from ..owners import visitor

if TYPE_CHECKING:  # the UI is handed a Studio; importing service would reach the engine
    from ..service import Studio

log = logging.getLogger("customizer.ui")
KEEP_OUTFIT = "(keep designed outfit)"
CSS = """
#likeness-note {font-size: 0.9em; opacity: 0.8}
.status-line {font-size: 0.9em}
#sheet-notes {font-size: 0.85em}
#reference-sheet .caption, #reference-sheet .caption-label {white-space: normal !important;
  overflow-wrap: anywhere; text-overflow: clip !important; max-width: 100% !important}
""" + badge.CSS + lora_view.CSS
# Render requests (UI and API) run side by side in up to this many worker threads; their pipeline calls take turns
# at the Studio's render gate (customizer/gate.py), fairly between owners. So a request is validated - and refused
# when over the compute budget - as soon as it arrives, not after the renders queued before it.
RENDER_WORKERS = 16
RENDER = {"concurrency_id": "render", "concurrency_limit": RENDER_WORKERS}
PX_CLASS = "px-shown"  # image components whose pictures are shown at most at shown_side() pixels


def shown_side(width: int, height: int) -> int:
    """How many pixels a picture of the profile's size takes on the page: its own size up to twice it, at most
    512 (a 128 px picture shows at 256 px, not blown up to a 500 px panel; a 512 px SD picture at 512)."""
    return min(2 * max(width, height), 512)


def grid(side: int, panel: int, rows: int) -> dict[str, Any]:
    """Gallery columns and height for pictures shown at `side` px in a panel about `panel` px wide: as many
    columns as fit (2-8), and room for `rows` rows with their captions - no tall empty box under small pictures."""
    columns = max(2, min(8, panel // (side + 16)))
    cell = min(side, panel // columns)
    return {"columns": columns, "height": rows * (cell + 24) + 56}


def size_css(width: int, height: int) -> str:
    """Cap every picture inside the image components marked PX_CLASS (thumbnails, the preview, gr.Image)."""
    side = shown_side(width, height)
    return (f".{PX_CLASS} img {{max-width: min(100%, {side}px) !important; max-height: {side}px !important; "
            f"margin-left: auto; margin-right: auto}}\n"
            f".{PX_CLASS} .thumbnail-item {{max-width: {side}px; max-height: {side}px}}\n")


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
        except Exception as e:  # the user gets a message, the log gets the traceback
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(e).__name__}); the server log has details.",
                           print_exception=False) from None
    return wrapper


def progress_cb(progress: gr.Progress) -> Callable[[float, str], None]:
    return lambda fraction, message: progress(fraction, desc=message)


class Page:
    """The studio, the visitor's token and every tab's components (page.design, page.selfie, page.chars: each a
    namespace of components). `listen` wires a handler fn(page, owner, values, ...): it gets the owner and a
    {component: value} dict of its inputs, and returns a {component: value} dict of what changes. Handlers are
    named on_*: gradio names an event by its function, and the API's endpoint names must stay free."""

    def __init__(self, studio: Studio, token: gr.BrowserState, tabs: gr.Tabs | None = None):
        self.studio, self.token, self.tabs = studio, token, tabs
        self.design = self.selfie = self.chars = SimpleNamespace()

    def listen(self, event: Callable, fn: Callable[..., dict], inputs: list, outputs: list, *,
               progress: bool = False, select: bool = False, **kwargs: Any) -> Any:
        """event(handler): fn(page, owner, values, [progress | evt]) with the owner resolved from the token (or the
        login) once, here. Page events are undocumented in the API (the typed API is customizer/ui/api.py)."""
        handler = self.owned(fn, progress=progress, select=select)
        return event(handler, inputs={*inputs, self.token}, outputs=list(outputs), api_visibility="undocumented",
                     **kwargs)

    def owned(self, fn: Callable[..., dict], *, progress: bool = False, select: bool = False) -> Callable:
        """The one place a page handler learns who is asking. Gradio finds gr.Request / gr.Progress /
        gr.SelectData by the positional parameters of the function it is given, so each variant is spelt out."""
        token, page = self.token, self

        def owner_of(values: dict, request: gr.Request) -> str:
            return visitor(values.pop(token, None), request)

        if progress:
            def handler(values: dict, request: gr.Request,
                        progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - gradio reads this default
                return fn(page, owner_of(values, request), values, progress)
        elif select:
            def handler(values: dict, request: gr.Request, evt: gr.SelectData):
                return fn(page, owner_of(values, request), values, evt)
        else:
            def handler(values: dict, request: gr.Request):
                return fn(page, owner_of(values, request), values)
        handler.__name__ = handler.__qualname__ = fn.__name__
        handler.__doc__ = fn.__doc__
        return friendly(handler)


# ------------------------------------------------------------------------------------------------ captions
def caption(item: dict) -> str:
    """seed, and for selfies the likeness bar and attempts (customizer/likeness/badge.py); accepted selfies say so."""
    return badge.caption(item) + (" · ✓ accepted" if item.get("accepted") else "")


def accept_label(selfie: dict | None) -> str:
    return "Un-accept selected selfie" if selfie and selfie.get("accepted") else "Accept selected selfie"


def likeness_line(studio: Studio) -> str:
    cfg = studio.profile.likeness
    if cfg is None:
        return "likeness not measured in this profile"
    band, attempts = studio.likeness_policy
    retry = (f", target band {band.lo:.2f}-{band.hi:.2f}, up to {attempts} attempts per selfie"
             if band and attempts > 1 else "")
    return f"likeness by the **{cfg.instrument}** instrument{retry}"


def character_choices(studio: Studio, owner: str, locked_only: bool = False) -> list[tuple[str, str]]:
    return [(f"{c['name']} ({c['status']})", c["id"]) for c in studio.list_characters(owner=owner)
            if not locked_only or c["status"] == "locked"]
