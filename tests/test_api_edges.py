"""The API's edges over raw HTTP against the running app.py (tiny model): unknown endpoints and empty or
malformed bodies get a clear 4xx JSON error (never a 500, never {"error": null}, nothing crash-like in the log);
answers carry the profile name but no server path or owner hash; image URLs are capability URLs (no token needed)
and delete takes the served copies down with the character."""
from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from customizer.owners import owner_from

TOKEN = "edges-token-0123456789abcdef"
OWNER_HASH = re.compile(r"\b(?:token|user|session):[0-9a-f]{32}\b")


def call(url: str, api: str, req, timeout: float = 120) -> tuple[str, object]:
    """POST /gradio_api/call/<api> then read its event stream: ("complete" | "error", data)."""
    r = httpx.post(f"{url}gradio_api/call/{api}", json={"data": [req]}, timeout=timeout)
    assert r.status_code == 200, (r.status_code, r.text)
    with httpx.stream("GET", f"{url}gradio_api/call/{api}/{r.json()['event_id']}", timeout=timeout) as s:
        text = s.read().decode()
    kind = re.findall(r"^event: (\w+)", text, re.M)[-1]
    data = json.loads(text.rsplit("data:", 1)[1].strip())
    return kind, data


def strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, str):
        yield value


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir):
    import yaml

    from apprunner import App
    from tiny_profiles import tiny_profile_yaml

    root = tmp_path_factory.mktemp("edges")
    (root / "spaces.yaml").write_text(yaml.safe_dump({
        "default_profile": "tiny", "storage": {"db": "characters.db", "data_dir": "data"},
        "profiles": {"tiny": tiny_profile_yaml(tiny_model_dir, controlnet=None)}}))
    app = App(root / "spaces.yaml")
    try:
        yield app, app.wait_ready(), root
    finally:
        app.stop()


BAD = [
    ("POST", "call/nope", {"json": {"data": [{}]}}, 404, "unknown endpoint 'nope'"),
    ("POST", "run/nope", {"json": {"data": [{}]}}, 404, "unknown endpoint"),
    ("POST", "call/v2/nope", {"json": {}}, 404, "unknown endpoint"),
    ("GET", "call/nope/0123", {}, 404, "unknown endpoint"),
    ("POST", "call/list_characters", {"json": {"data": []}}, 400, "takes 1"),
    ("POST", "run/list_characters", {"json": {"data": []}}, 400, "takes 1"),
    ("POST", "call/list_characters", {"json": {}}, 400, '{"data": [...]}'),
    ("POST", "call/list_characters", {"content": b"not json"}, 400, "not valid JSON"),
    ("POST", "call/list_characters", {"content": b"[1, 2]"}, 400, "JSON object"),
    ("POST", "call/list_characters", {"content": b'{"data": 5}'}, 400, "must be a list"),
    ("POST", "call/list_characters", {"content": b'{"data": ' + b"[" * 5000 + b"]" * 5000 + b"}"}, 400,
     "not valid JSON"),
    ("POST", "call/v2/list_characters", {"json": {}}, 400, "missing parameter(s) token"),
    # the v1 body on the v2 route: every parameter of design_candidates has a default, so only the unknown key is wrong
    ("POST", "call/v2/design_candidates", {"json": {"data": []}}, 400, "unknown parameter(s) 'data'"),
    ("POST", "call/v2/list_characters", {"json": {"token": "t", "x": 1}}, 400, "unknown parameter(s) 'x'"),
    ("POST", "queue/join", {"json": {"data": [{}], "fn_index": 99999, "session_hash": "x"}}, 404, "fn_index"),
    ("POST", "queue/join", {"json": {"data": [], "fn_index": 0, "session_hash": "x"}}, 400, "takes"),
    ("POST", "queue/join", {"json": {"data": [{}], "fn_index": "0", "session_hash": "x"}}, 404, "fn_index"),
    ("GET", "call/list_characters/no-such-event", {}, 404, "no such event"),
]


@pytest.mark.parametrize("method,route,body,status,says", BAD, ids=[f"{m}-{r}-{i}" for i, (m, r, *_) in
                                                                   enumerate(BAD)])
def test_malformed_calls_get_a_clear_4xx(served, method, route, body, status, says):
    app, url, _ = served
    start = app.log.stat().st_size
    headers = {"content-type": "application/json"} if "content" in body else {}
    r = httpx.request(method, f"{url}gradio_api/{route}", headers=headers, timeout=60, **body)
    assert r.status_code == status, (r.status_code, r.text[:300])
    error = r.json()["error"]
    assert isinstance(error, str) and says in error
    log = app.log.read_bytes()[start:].decode("utf-8", "replace")
    assert "Traceback" not in log and "Exception" not in log, log[-2000:]


def test_empty_request_object_and_null_are_clear_errors_not_null(served):
    _, url, _ = served
    # {} and [] are the v1 form (one request object); null is the typed form's token, left out
    for req, says in (({}, "token: is missing"), (None, "token: is missing"), ([], "must be a JSON object")):
        kind, data = call(url, "list_characters", req)
        assert kind == "error" and isinstance(data, dict) and data["error"] and says in data["error"], data


def test_answers_hold_the_profile_name_but_no_server_paths_or_owner_hashes(served):
    app, url, root = served
    kind, (made, images) = call(url, "design_candidates", {"token": TOKEN, "spec": {}, "seed": 1, "n": 1})
    assert kind == "complete"
    cid = made["character_id"]
    kind, (ref, _) = call(url, "lock", {"token": TOKEN, "character_id": cid,
                                        "candidate_id": made["candidates"][0]["id"]})
    answers = [made, ref, call(url, "list_characters", {"token": TOKEN})[1][0],
               call(url, "get_character", {"token": TOKEN, "character_id": cid})[1][0]]
    owner = owner_from(TOKEN)
    server_dirs = [str(root), str(Path(__file__).resolve().parent.parent)]
    for answer in answers:
        for text in strings(answer):
            assert text not in ("owner", "path", "thumbnail"), f"private key {text!r} in an answer"
            assert not OWNER_HASH.search(text) and owner not in text
            assert not any(d in text for d in server_dirs), f"server path in an answer: {text[:200]}"
    recipe = ref["recipe"]
    assert recipe["profile"] == "tiny" and recipe["model_id"] == "local:model"


def test_image_urls_are_capability_urls_and_delete_takes_the_served_copies_down(served):
    _, url, _ = served
    kind, (made, images) = call(url, "design_candidates", {"token": TOKEN, "spec": {}, "seed": 7, "n": 2})
    assert kind == "complete"
    urls = [item["image"]["url"] for item in images]
    assert len(urls) == 2
    for u in urls:  # no token, no cookie: the unguessable URL is the key
        assert httpx.get(u, timeout=30).status_code == 200
    kind, (gone, _) = call(url, "delete", {"token": TOKEN, "character_id": made["character_id"]})
    assert kind == "complete" and gone["served_copies_removed"] >= 2
    for u in urls:  # gradio answers 403 for a file that is no longer there
        assert httpx.get(u, timeout=30).status_code in (403, 404)
        assert not Path(u.split("file=", 1)[1]).exists()
    kind, data = call(url, "get_character", {"token": TOKEN, "character_id": made["character_id"]})
    assert kind == "error" and "not found" in data["error"]
