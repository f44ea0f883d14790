"""Logged-in visitors own their characters by account (Hugging Face OAuth on a Space, or gradio's own auth with
`app.py --auth-file`), whatever token their browser or client sends; two accounts never see each other's."""
from __future__ import annotations

import time

import pytest

from apprunner import App
from customizer.owners import logged_in_username, owner_from, visitor

TOKEN = "shared-token-both-users-send-0123"


class _NoSession:
    """A gradio Request without SessionMiddleware: reading .session raises, as starlette does."""

    def __init__(self, username=None):
        self.username = username

    @property
    def session(self):
        raise AssertionError("SessionMiddleware must be installed to access request.session")


class _WithSession:
    def __init__(self, session, username=None):
        self.session, self.username = session, username


def _oauth(name: str, expires_in: float) -> dict:
    return {"oauth_info": {"userinfo": {"preferred_username": name}, "expires_at": time.time() + expires_in}}


def test_logged_in_username_prefers_a_valid_oauth_login_then_gradio_auth():
    assert logged_in_username(None) is None
    assert logged_in_username(_NoSession()) is None
    assert logged_in_username(_NoSession("carol")) == "carol"
    assert logged_in_username(_WithSession(_oauth("dave", 3600), username="carol")) == "hf:dave"
    # an expired OAuth login counts as logged out; gradio's own login (if any) still counts
    assert logged_in_username(_WithSession(_oauth("dave", -1), username="carol")) == "carol"
    assert logged_in_username(_WithSession({}, username=None)) is None
    # the account wins over any token: the same person on two browsers is one owner
    assert visitor("token-aaaaaaaaaaaaaaaa", _WithSession(_oauth("dave", 60))) == \
        visitor("token-bbbbbbbbbbbbbbbb", _WithSession(_oauth("dave", 60))) == owner_from(username="hf:dave")
    # an HF account and a same-named local login are different owners
    assert visitor(None, _WithSession(_oauth("carol", 60))) != visitor(None, _NoSession("carol"))
    assert visitor(TOKEN, _NoSession()) == owner_from(TOKEN)


@pytest.fixture
def login_app(tiny_config_path, tiny_model_dir):
    users = tiny_config_path.parent / "users.txt"
    users.write_text("# people allowed in\nalice:alice-pw\nbob:bob-pw\n")
    app = App(tiny_config_path, extra_args=("--auth-file", str(users)))
    try:
        yield app.wait_ready()
    finally:
        app.stop()


def test_auth_file_logins_own_characters_by_account(login_app):
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    url = login_app
    alice = Client(url, auth=("alice", "alice-pw"), verbose=False)
    bob = Client(url, auth=("bob", "bob-pw"), verbose=False)
    made, _ = alice.predict({"token": TOKEN, "spec": {"age": 33}, "seed": 2, "n": 1, "name": "Alice's"},
                            api_name="/design_candidates")
    cid = made["character_id"]
    # bob sends the very same token, yet is his own owner: the login decides
    assert bob.predict({"token": TOKEN}, api_name="/list_characters")[0] == []
    with pytest.raises(Exception, match="not found"):
        bob.predict({"token": TOKEN, "character_id": cid}, api_name="/get_character")
    # alice with another token (another browser) still has her character
    mine, _ = alice.predict({"token": "another-browser-token-42424242"}, api_name="/list_characters")
    assert [c["id"] for c in mine] == [cid]
    # without a login the server answers nothing
    with pytest.raises(AuthenticationError):  # at Client(): without a login it cannot even read the API
        Client(url, verbose=False).predict({"token": TOKEN}, api_name="/list_characters")
    with pytest.raises(ValueError, match="Could not login"):
        Client(url, auth=("alice", "wrong"), verbose=False)


def test_bad_auth_file_is_a_clear_start_error(tmp_path, tiny_config_path):
    import subprocess
    import sys

    from apprunner import REPO

    bad = tmp_path / "users.txt"
    bad.write_text("alice-without-password\n")
    proc = subprocess.run([sys.executable, str(REPO / "app.py"), "--config", str(tiny_config_path), "--auth-file",
                           str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "expected 'user:password'" in proc.stderr and "Traceback" not in proc.stderr
