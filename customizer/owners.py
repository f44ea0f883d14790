"""Who owns a character. Every visitor gets an owner id; the store only shows an owner their own characters.

- Browser visitors: a random secret token kept in the browser (gr.BrowserState, encrypted with a server secret
  that persists next to the database so tokens survive restarts).
- Logged-in users (Hugging Face OAuth on a Space with `hf_oauth: true`, or gradio's own auth via
  `app.py --auth-file`): their username, whatever browser or token they come with (logged_in_username).
- API clients: the `token` field of the request: one the server made (returned by a first design_candidates call
  without a token, or by new_token), or a secret of their own. A call without one owns nothing: it is refused
  (only design_candidates and new_token make a token). Never the client session: its hash is chosen and sent by
  the client, visible to anything between it and the server, and anyone who learns it would own its characters.
Owner ids are hashes: the database never holds a token.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from .errors import SpecError

TOKEN = re.compile(r"^[A-Za-z0-9_\-]{16,200}$")
SECRET_FILE = "browser_state.secret"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _hash(kind: str, value: str) -> str:
    return f"{kind}:" + hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:32]


def owner_from(token: str | None = None, username: str | None = None) -> str:
    """Owner id, strongest identity first. Raises SpecError for a malformed or missing token."""
    if username:
        return _hash("user", username)
    if token:
        if not isinstance(token, str) or not TOKEN.match(token):
            raise SpecError("token", "must be 16-200 characters of letters, digits, '-' or '_'")
        return _hash("token", token)
    raise SpecError("token", "no owner: send a token (API) or enable cookies/local storage (browser)")


def logged_in_username(request: Any) -> str | None:
    """The account behind a gradio request, or None: a valid Hugging Face OAuth login in the signed session
    cookie first (gradio keeps it in request.session['oauth_info']), then gradio's own auth (request.username).
    Duck-typed so this module needs no gradio; an expired OAuth login counts as logged out."""
    if request is None:
        return None
    try:
        session = getattr(request, "session", None)  # no SessionMiddleware (no OAuth): AssertionError
    except (AssertionError, AttributeError, KeyError):
        session = None
    info = session.get("oauth_info") if hasattr(session, "get") else None
    if isinstance(info, dict) and float(info.get("expires_at") or 0) > time.time():
        name = (info.get("userinfo") or {}).get("preferred_username")
        if isinstance(name, str) and name:
            return f"hf:{name}"
    name = getattr(request, "username", None)
    return name if isinstance(name, str) and name else None


def visitor(token: str | None, request: Any = None) -> str:
    """Owner id of a UI or API call: the logged-in account when there is one, else the token."""
    return owner_from(token, username=logged_in_username(request))


def browser_secret(data_dir: str | Path) -> str:
    """The BrowserState encryption secret, created once (0600) beside the data so it survives restarts.

    Written to a temp file, fsynced, then hard-linked into place: a crash never leaves an empty secret (which
    gradio would silently replace per process, cutting browsers off from their characters after a restart).
    """
    path = Path(data_dir) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text().strip() if path.exists() else ""
    if existing:
        return existing
    tmp = path.with_name(f".{SECRET_FILE}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32))
        f.flush()
        os.fsync(f.fileno())
    try:
        if path.exists():  # an empty leftover from an older crash
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic and never overwrites a secret another process just made
            except FileExistsError:
                pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()
