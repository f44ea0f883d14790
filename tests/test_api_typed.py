"""The typed API against the real app.py (tiny model): the README's gradio_client example runs as written,
view_api() lists named, typed parameters for every endpoint, the v1 form (one request object) still works and
means the same, and a call that mixes the forms or sends a wrong type is refused with its reason."""
from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
TOKEN = "typed-api-token-0123456789"


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir):
    import yaml

    from apprunner import App
    from tiny_profiles import tiny_profile_yaml

    root = tmp_path_factory.mktemp("typed")
    (root / "spaces.yaml").write_text(yaml.safe_dump({
        "default_profile": "tiny", "storage": {"db": "characters.db", "data_dir": "data"},
        "profiles": {"tiny": tiny_profile_yaml(tiny_model_dir, controlnet=None, steps=1)}}))
    app = App(root / "spaces.yaml")
    try:
        yield app, app.wait_ready()
    finally:
        app.stop()


def readme_example() -> str:
    section = README.split("## API (gradio_client)", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def documented_endpoints() -> list[str]:
    line = README.split("Endpoints: ", 1)[1].split("(their", 1)[0]
    return re.findall(r"`(\w+)`", line)


def test_the_readme_client_example_runs_as_written(served):
    _, url = served
    code = readme_example()
    assert 'Client("http://127.0.0.1:7860/")' in code
    scope: dict = {}
    exec(compile(code.replace("http://127.0.0.1:7860/", url), "README.md", "exec"), scope)
    assert len(scope["imgs"]) == 2 and len(scope["res"]["candidates"]) == 2
    assert len(scope["selfies"]) == 2 and len(scope["files"]) == 2
    assert scope["pack"]["name"] == "chat" and len(scope["faces"]) == len(scope["pack"]["items"]) == 7
    assert [c["id"] for c in scope["characters"]] == [scope["cid"]]
    character = scope["character"]
    assert character["status"] == "locked" and character["spec"]["hair_colour"] == "red"
    assert character["spec"]["age"] == 34 and len(character["selfies"]) == 2 + 7
    for item in scope["imgs"] + scope["files"]:
        assert Path(item["image"]).is_file()


def test_view_api_lists_named_typed_parameters_for_every_endpoint(served):
    from gradio_client import Client

    _, url = served
    info = Client(url, verbose=False).view_api(print_info=False, return_format="dict")
    named = info["named_endpoints"]
    assert sorted(n.lstrip("/") for n in named) == sorted(documented_endpoints())
    assert named["/new_token"]["parameters"] == []
    for name, endpoint in named.items():
        if name == "/new_token":
            continue
        params = endpoint["parameters"]
        assert params and params[0]["parameter_name"] == "token", name
        for p in params:
            assert p["parameter_name"] != "req", name
            kind = p["python_type"]["type"]
            assert kind not in ("Any", "str | float | bool | list | dict"), (name, p["parameter_name"], kind)
            assert p["python_type"]["description"], (name, p["parameter_name"])
        assert [r["label"] for r in endpoint["returns"]] == ["result", "images"]
    design = {p["parameter_name"]: p for p in named["/design_candidates"]["parameters"]}
    assert list(design) == ["token", "spec", "seed", "n", "name", "character_id", "advanced"]
    assert "hair_colour: Literal['black'" in design["spec"]["python_type"]["type"]
    assert "age: int" in design["spec"]["python_type"]["type"]
    assert design["n"]["parameter_has_default"] and design["n"]["parameter_default"] == 1
    assert "sampler: Literal[" in design["advanced"]["python_type"]["type"]
    selfie = {p["parameter_name"]: p for p in named["/selfie"]["parameters"]}
    assert "scene: Literal['studio'" in selfie["selfie"]["python_type"]["type"]
    assert not selfie["token"]["parameter_has_default"]  # required everywhere but design_candidates
    accept = {p["parameter_name"]: p for p in named["/accept_selfie"]["parameters"]}
    assert accept["accepted"]["python_type"]["type"] == "bool" and accept["accepted"]["parameter_default"] is True


def test_the_v1_form_is_the_same_request_and_mixing_or_wrong_types_are_refused(served):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    _, url = served
    c = Client(url, verbose=False)
    from PIL import Image

    typed, one = c.predict(token=TOKEN, spec={"age": 40}, seed=11, n=1, name="Typed", api_name="/design_candidates")
    v1, other = c.predict({"token": TOKEN, "spec": {"age": 40}, "seed": 11, "n": 1, "name": "V1"},
                          api_name="/design_candidates")
    recipes = [x["candidates"][0]["recipe"] for x in (typed, v1)]
    assert recipes[0]["prompt"] == recipes[1]["prompt"] and recipes[0]["seed"] == recipes[1]["seed"] == 11
    pixels = [Image.open(x[0]["image"]).convert("RGB").tobytes() for x in (one, other)]
    assert pixels[0] == pixels[1]  # same seed, same spec: the same candidate
    listed, _ = c.predict(TOKEN, api_name="/list_characters")
    assert {x["name"] for x in listed} == {"Typed", "V1"}
    assert c.predict({"token": TOKEN}, api_name="/list_characters")[0] == listed
    with pytest.raises(AppError, match="not both"):
        c.predict({"token": TOKEN}, character_id=typed["character_id"], api_name="/get_character")
    with pytest.raises(AppError, match="candidates: must be a whole number from 1 to 4, got 'two'"):
        c.predict(token=TOKEN, spec={}, n="two", api_name="/design_candidates")
    with pytest.raises(AppError, match="character_id: must be text, got int"):
        c.predict(token=TOKEN, character_id=5, api_name="/get_character")
    with pytest.raises(AppError, match="character_id: is missing"):
        c.predict(token=TOKEN, api_name="/get_character")
    assert len(c.predict(TOKEN, api_name="/list_characters")[0]) == 2  # nothing refused was stored


def _events(url: str, api: str, data: list) -> tuple[str, object]:
    import json

    r = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, timeout=120)
    assert r.status_code == 200, r.text
    with httpx.stream("GET", f"{url}gradio_api/call/{api}/{r.json()['event_id']}", timeout=120) as s:
        body = s.read().decode()
    return re.findall(r"^event: (\w+)", body, re.M)[-1], json.loads(body.rsplit("data:", 1)[1].strip())


def test_raw_http_may_leave_defaulted_parameters_off_the_end(served):
    _, url = served
    kind, (listed, _) = _events(url, "list_characters", [TOKEN])
    assert kind == "complete" and isinstance(listed, list)
    kind, data = _events(url, "get_character", [TOKEN])  # character_id left off: the handler says it is missing
    assert kind == "error" and "character_id: is missing" in data["error"]
    kind, (same, _) = _events(url, "list_characters", [{"token": TOKEN}])  # v1 over raw HTTP
    assert kind == "complete" and same == listed
    r = httpx.post(f"{url}gradio_api/call/lock", json={"data": []}, timeout=60)
    assert r.status_code == 400 and "takes 3 (token, character_id, candidate_id" in r.json()["error"]
