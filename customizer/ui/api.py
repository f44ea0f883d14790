"""The named API endpoints for gradio_client users, with typed, named parameters (customizer/ui/api_schema.py):
`Client.view_api()` and the "Use via API" page list every field. Each returns (result, images).

    c.predict(token=T, spec={"hair_colour": "red"}, seed=7, n=2, api_name="/design_candidates")

The v1 form - one JSON object holding every field, as the only value - is still accepted for older clients
(`c.predict({"token": T, "spec": {...}, "seed": 7}, api_name="/design_candidates")`): both forms become the same
request dict and pass the same checks. Answers never hold server paths or owner hashes (scrub)."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr
from gradio.components.api_component import Api

from ..errors import SpecError
from ..owners import logged_in_username, new_token, visitor
from . import api_schema
from .api_schema import Param
from .common import RENDER, client_gone, friendly

if TYPE_CHECKING:  # the UI is handed a Studio; importing service would reach the engine
    from ..service import Studio

PRIVATE_KEYS = ("path", "thumbnail", "owner")  # server paths and owner hashes never leave the server
MISSING_TOKEN = ("is missing: send the token a first design_candidates (or new_token) call returned, or your own "
                 "secret of 16-200 letters, digits, '-' or '_'; it owns your characters")


# ------------------------------------------------------------------------------------------------ answers
def images(items: list[dict]) -> list[tuple[str, str]]:
    return [(i["path"], i.get("id", "")) for i in items]


def public(item: dict) -> dict:
    """Clients get ids, seeds, recipes and the profile name (images come separately); server file paths, owner
    hashes and local model folders stay on the server (scrub)."""
    return scrub({k: v for k, v in item.items() if k not in PRIVATE_KEYS})


def scrub(value: Any) -> Any:
    """A JSON answer without the server's insides: keys in PRIVATE_KEYS dropped at any depth, and any text that is
    an absolute path on this server's disk (a local model folder in an old recipe) reduced to "local:<name>"."""
    from ..config import public_ref

    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in PRIVATE_KEYS}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str) and value.startswith("/") and len(value) < 4096 and Path(value).exists():
        return public_ref(value)
    return value


def public_pack(pack: dict) -> dict:
    return {**{k: v for k, v in pack.items() if k != "items"}, "items": [public(s) for s in pack["items"]]}


# ------------------------------------------------------------------------------------------------ request checks
def unencodable(value: Any) -> bool:
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


def text(req: dict, key: str, required: bool = True) -> str | None:
    """A request field that must be text (an id, a name): never str()-ed into "None" or "['x']"."""
    value = req.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise SpecError(key, "is missing" if value is None else f"must be text, got {type(value).__name__}")
    return value


def mapping(req: dict, key: str) -> Any:
    """An optional object field: absent/null -> {}; anything else goes to its validator (which names the type)."""
    value = req.get(key)
    return {} if value is None else value


def request_of(params: list[Param], values: tuple) -> dict:
    """The request dict of a call: the v1 form (one JSON object as the first value, every other value left at
    its default) as it is; the typed form from its named values (null ones left out: they take the default)."""
    if params and values and not (values[0] is None or isinstance(values[0], str)):
        if any(v != p.value for p, v in zip(params[1:], values[1:])):
            raise gr.Error("send either one request object (the v1 form) or the named parameters, not both",
                           print_exception=False)
        if not isinstance(values[0], dict):
            raise gr.Error("the request must be a JSON object", print_exception=False)
        return values[0]
    return {p.name: v for p, v in zip(params, values) if v is not None}


def check(req: dict, request: gr.Request, mint: bool | str) -> tuple[str, str | None]:
    """The owner of a request and, when one was made for it, its new token."""
    if unencodable(req):
        raise gr.Error("the request holds text that is not valid Unicode (an unpaired surrogate)",
                       print_exception=False)
    token = req.get("token")
    if token is not None and not isinstance(token, str):
        raise SpecError("token", f"must be text, got {type(token).__name__}")
    minted = None
    if mint == "always" or (not token and logged_in_username(request) is None):
        if not mint:
            raise SpecError("token", MISSING_TOKEN)
        token = minted = new_token()
    return visitor(token, request), minted


# ------------------------------------------------------------------------------------------------ endpoints
def endpoint(api_name: str, params: list[Param], fn: Callable[..., tuple[Any, list]], doc: str,
             render: bool = False, mint: bool | str = False) -> None:
    """One typed endpoint: a hidden input per parameter (its JSON schema and default are what view_api shows),
    the result as JSON and the images as a gallery (served from gradio's cache at capability URLs). render: it
    renders - run beside the others (RENDER), stopped when the client goes away (fn gets `cancelled`). mint: a
    request without a token gets a server-made one, returned in the result's `token`; "always": every call."""
    with gr.Group(visible=False):
        inputs = [Api(p.value, p.api_info(), label=p.name) for p in params]
        result = gr.JSON(label="result")
        gallery = gr.Gallery(label="images")
        trigger = gr.Button()

    @friendly
    def run(*args):
        *values, request, _progress = args
        req = request_of(params, tuple(values))
        owner, minted = check(req, request, mint)
        answer, imgs = fn(req, owner, client_gone()) if render else fn(req, owner)
        answer = scrub(answer)
        if minted is not None and isinstance(answer, dict):
            answer["token"] = minted  # keep it: it is the only key to what this call made
        return answer, imgs

    # gradio reads the parameters (names, defaults; gr.Request and gr.Progress by position) from the signature
    run.__signature__ = inspect.Signature(
        [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Any,
                           **({} if p.required and p.name == "token" else {"default": p.value})) for p in params]
        + [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request),
           inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                             default=gr.Progress(track_tqdm=True))])
    run.__annotations__ = {"request": gr.Request}
    run.__name__ = run.__qualname__ = api_name
    run.__doc__ = doc
    trigger.click(run, inputs, [result, gallery], api_name=api_name, api_description=doc,
                  **(RENDER if render else {}))


def add_api(studio: Studio) -> None:
    """The endpoints (README, API): each handler takes the request dict and the owner."""
    from .api_handlers import DOCS, handlers

    table = api_schema.params(list(studio.samplers()))
    for name, (fn, render, mint) in handlers(studio).items():
        endpoint(name, table[name], fn, DOCS[name], render=render, mint=mint)

