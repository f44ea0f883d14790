"""Who owns a character. Every visitor gets an owner id; the store only shows an owner their own characters.

- Browser visitors: a random secret token kept in the browser (gr.BrowserState, encrypted with a server secret
  that persists next to the database so tokens survive restarts).
- Logged-in users (Gradio auth / Hugging Face OAuth): their username.
- API clients: the `token` field of the request (any secret they choose), else their client session.
Owner ids are hashes: the database never holds a token.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

from .errors import SpecError

TOKEN = re.compile(r"^[A-Za-z0-9_\-]{16,200}$")
SECRET_FILE = "browser_state.secret"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _hash(kind: str, value: str) -> str:
    return f"{kind}:" + hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:32]


def owner_from(token: str | None = None, username: str | None = None, session: str | None = None) -> str:
    """Owner id, strongest identity first. Raises SpecError for a malformed token."""
    if username:
        return _hash("user", username)
    if token:
        if not isinstance(token, str) or not TOKEN.match(token):
            raise SpecError("token", "must be 16-200 characters of letters, digits, '-' or '_'")
        return _hash("token", token)
    if session:
        return _hash("session", str(session))
    raise SpecError("token", "no owner: send a token (API) or enable cookies/local storage (browser)")


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
