"""ASGI middleware in front of gradio's HTTP API: the malformed calls gradio itself answers with a 500 and a
traceback in the log (an unknown endpoint, an unknown fn_index), with `{"error": null}` (empty `data`), or with a
crash after the response started (the result stream of an event that does not exist) get a clear 4xx JSON error
instead, before gradio sees them. Well-formed calls pass through untouched, except that a named call leaving
parameters with a default off the end of "data" gets those defaults (as gradio_client fills them in; the v1 form
of the typed API is one request object as the only value: customizer/ui/api.py).

Checked routes (under /gradio_api): POST call/<name>, call/v2/<name>, run/<name>, api/<name> (by name, or by
fn_index for the page's own unqueued events: run/predict); GET call/<name>/<event_id>; POST queue/join. The JSON body
answers: {"error": "...", "detail": "..."} (gradio's own 4xx answers carry `detail`, which gradio_client reads). No
torch.
"""
from __future__ import annotations

import json
import re
from typing import Any, Awaitable, Callable

PREFIX = "/gradio_api"
MAX_BODY = 16 * 2**20  # an API request is a small JSON object; more is refused without parsing it
_NAMED = re.compile(rf"^{PREFIX}/(call/v2|call|run|api)/([^/]+)/?$")
_RESULT = re.compile(rf"^{PREFIX}/call/([^/]+)/([^/]+)/?$")
_JOIN = re.compile(rf"^{PREFIX}/queue/join/?$")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ApiGuard:
    def __init__(self, app, blocks):
        self.app, self.blocks = app, blocks

    # ---- what the app has ------------------------------------------------------------------------------------
    def _fns(self) -> dict[int, Any]:
        return dict(getattr(self.blocks, "fns", {}) or {})

    def _by_name(self, name: str):
        return next((fn for fn in self._fns().values() if getattr(fn, "api_name", None) == name), None)

    def _public_names(self) -> list[str]:
        return sorted(fn.api_name for fn in self._fns().values()
                      if getattr(fn, "api_name", None) and getattr(fn, "api_visibility", "public") == "public")

    # ---- ASGI ------------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        path, method = scope.get("path", ""), scope.get("method", "GET")
        root = scope.get("root_path", "") or ""
        if root and path.startswith(root):
            path = path[len(root):]
        if method == "GET":
            m = _RESULT.match(path)
            if m and not m.group(1) == "v2":
                problem = self._check_result(m.group(1), m.group(2))
                if problem:
                    return await _answer(send, 404, problem)
            return await self.app(scope, receive, send)
        if method != "POST" or not (_NAMED.match(path) or _JOIN.match(path)):
            return await self.app(scope, receive, send)
        body = await _read_body(receive)
        if body is None:
            return  # the client left
        if body is _TOO_LARGE:
            return await _answer(send, 413, f"the request body is larger than {MAX_BODY // 2**20} MB")
        m = _NAMED.match(path)
        status, problem = (self._check_named(m.group(1), m.group(2), body) if m else self._check_join(body))
        if problem:
            return await _answer(send, status, problem)
        if m and m.group(1) in ("call", "run", "api"):
            filled = self._with_defaults(m.group(1), m.group(2), body)
            if filled is not body:
                body = filled
                scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers", []) if k != b"content-length"]
                         + [(b"content-length", str(len(body)).encode())]}
        if m and m.group(1) in ("run", "api"):
            # the unqueued route answers an app's own refusal (a gr.Error with its message) with a 500: a 400 it is
            send = _app_errors_as_400(send)
        return await self.app(scope, _replay(body, receive), send)

    # ---- checks ----------------------------------------------------------------------------------------------
    def _unknown(self, name: str) -> str:
        shown = name if len(name) <= 60 else name[:57] + "..."
        return (f"unknown endpoint {shown!r}; this app's API endpoints are: {', '.join(self._public_names())} "
                f"(see the 'Use via API' page)")

    def _check_named(self, route: str, name: str, body: bytes) -> tuple[int, str | None]:
        try:
            doc = json.loads(body or b"null")
        except (ValueError, RecursionError):
            return 400, "the request body is not valid JSON"
        if route in ("run", "api") and isinstance(doc, dict) and "fn_index" in doc:
            return self._check_join(body)  # the page's unqueued events: run/predict with an fn_index
        fn = self._by_name(name)
        if fn is None:
            return 404, self._unknown(name)
        if route == "call/v2":
            if not isinstance(doc, dict):
                return 400, "the request body must be a JSON object of the endpoint's named parameters"
            params = _params(fn)
            names = [p[0] for p in params]
            # gradio answers a key that is not a parameter (e.g. the v1 body {"data": [...]}) with a 500
            unknown = [k for k in doc if k not in names and k != "oauth_token"] if names else []
            if unknown:
                shown = ", ".join(repr(k[:40]) for k in unknown[:5])
                return 400, (f"unknown parameter(s) {shown} for {name!r}; its parameters are: {', '.join(names)}")
            missing = [p for p, has_default, *_ in params if not has_default and p not in doc]
            if missing:
                wanted = ", ".join(repr(p) for p in missing)
                return 400, f"missing parameter(s) {', '.join(missing)}; send {{{wanted}: ...}}"
            return 200, None
        if not isinstance(doc, dict) or "data" not in doc:
            return 400, ('the request body must be a JSON object {"data": [...]} with one value per input of the '
                         f"endpoint ({len(fn.inputs)} here: the endpoint's parameters in order; the v1 form of the API "
                         "endpoints: one request object)")
        data = doc["data"]
        if not isinstance(data, list):
            return 400, '"data" must be a list with one value per input of the endpoint'
        if len(data) < len(fn.inputs) and _defaults(fn, len(data)) is None:
            names = [p[0] for p in _params(fn)]
            return 400, (f'"data" has {len(data)} value(s) but {name!r} takes {len(fn.inputs)}'
                         + (f" ({', '.join(names)}; the ones with a default may be left off the end)"
                            if len(names) == len(fn.inputs) else ""))
        return 200, None

    def _with_defaults(self, route: str, name: str, body: bytes) -> bytes:
        """A named call that leaves parameters with a default off the end of "data" (a raw-HTTP client of the
        typed API, or the v1 form: one request object) gets those defaults, as gradio_client fills them in."""
        fn = self._by_name(name)
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return body
        if fn is None or not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
            return body
        if route in ("run", "api") and "fn_index" in doc:
            return body  # the page's own events by index (checked by _check_join), not this named endpoint
        missing = _defaults(fn, len(doc["data"]))
        if not missing:
            return body
        return json.dumps({**doc, "data": doc["data"] + missing}).encode()

    def _check_join(self, body: bytes) -> tuple[int, str | None]:
        try:
            doc = json.loads(body or b"null")
        except (ValueError, RecursionError):
            return 400, "the request body is not valid JSON"
        if not isinstance(doc, dict):
            return 400, "the request body must be a JSON object"
        index = doc.get("fn_index")
        fns = self._fns()
        if isinstance(index, bool) or not isinstance(index, int) or index not in fns:
            return 404, f"unknown fn_index {str(index)[:40]}; use the API endpoints by name (/gradio_api/call/...)"
        data = doc.get("data")
        if not isinstance(data, list):
            return 400, '"data" must be a list with one value per input of the event'
        inputs = fns[index].inputs
        if len(data) < len(inputs):
            return 400, f'"data" has {len(data)} value(s) but this event takes {len(inputs)}'
        for i, (component, value) in enumerate(zip(inputs, data)):
            kind = type(component).__name__
            ok = _ACCEPTS.get(kind)
            if ok is not None and not ok(value):
                return 400, f"value {i} of this event must be what a {kind} sends, got {type(value).__name__}"
        return 200, None

    def _check_result(self, name: str, event_id: str) -> str | None:
        if self._by_name(name) is None:
            return self._unknown(name)
        queue = getattr(self.blocks, "_queue", None)
        if queue is None:
            return None
        try:
            if event_id in queue.event_ids_to_events:
                return None
            if any(event_id in ids for ids in list(queue.pending_event_ids_session.values())):
                return None
            if event_id in queue.pending_messages_per_session:
                return None
        except Exception:  # noqa: BLE001 - another gradio's queue: let it answer
            return None
        return "no such event (unknown event id, or its result was already read)"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# What the page's own components send (an event addressed by fn_index gets these from the browser; anything else
# is a hand-made request, refused before a handler meets a value of a type it never sees from the page).
_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    "Slider": _number,
    "Number": lambda v: v is None or _number(v),
    "Checkbox": lambda v: isinstance(v, bool),
    "Textbox": lambda v: v is None or isinstance(v, str),
    "Dropdown": lambda v: v is None or isinstance(v, (str, int, float)) or (
        isinstance(v, list) and all(isinstance(x, (str, int, float)) for x in v)),
    "Radio": lambda v: v is None or isinstance(v, (str, int, float)),
}


def _params(fn) -> list[tuple]:
    """The endpoint's parameters (name, has_default, default, type), as gradio names them (the handler's
    arguments, one per input); [] when that cannot be told."""
    try:
        from gradio.utils import get_function_params

        return list(get_function_params(fn.fn)[:len(fn.inputs)])
    except Exception:  # noqa: BLE001 - cannot tell: let gradio answer
        return []


def _defaults(fn, given: int) -> list | None:
    """The defaults of the parameters after the first `given` ones, or None when one of them has none (or the
    parameters cannot be told apart: the page's own events take *args)."""
    if getattr(fn, "api_visibility", "public") != "public":
        return None
    params = _params(fn)
    if len(params) != len(fn.inputs) or given > len(params) or not all(p[1] for p in params[given:]):
        return None
    defaults = [p[2] for p in params[given:]]
    try:
        json.dumps(defaults)
    except (TypeError, ValueError):
        return None
    return defaults


_TOO_LARGE = object()


async def _read_body(receive: Receive):
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return _TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return again


def _app_errors_as_400(send: Send) -> Send:
    """Hold the response; a 500 whose JSON body carries an error message (the app refused the request and said why)
    goes out as a 400. A 500 without a message (a real crash) goes out as it is."""
    held: list[dict[str, Any]] = []

    async def relay(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message.get("status") != 500:
            held.append({"pass": True})
        if held and held[0].get("pass"):
            return await send(message)
        held.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            start, body = held[0], b"".join(m.get("body", b"") for m in held[1:])
            try:
                error = json.loads(body).get("error")
            except (ValueError, AttributeError):
                error = None
            if isinstance(error, str) and error:
                start = {**start, "status": 400}
            await send(start)
            await send({"type": "http.response.body", "body": body})
    return relay


async def _answer(send: Send, status: int, message: str) -> None:
    payload = json.dumps({"error": message, "detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
