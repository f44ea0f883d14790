"""Fuzz every JSON API endpoint of ONE running app.py (tiny random model) with hostile requests.

For every request the fuzzer sends, whatever it is:
- a refusal is a gradio_client AppError whose message is a short, specific reason: not the catch-all "something
  went wrong", no traceback, no server file path, no SQL, nothing of the server's own;
- the server stays up (the victim's list_characters still answers, unchanged);
- a refused request changes nothing: the row counts and character rows of characters.db (read directly, read-only)
  and the image files are the same before and after;
- the victim's characters are never changed by anyone else, whatever they send (ids of theirs included);
- the server log shows no unexpected exception;
- an accepted answer holds no server path and no owner hash.
Valid-but-odd requests (a unicode name within the limits, an empty spec) may succeed. Raw HTTP bodies (any bytes,
any JSON shape, unknown endpoints, empty data) sent straight to gradio's routes get a 4xx with a JSON error or a
clean error event - never a 500, never {"error": null}, never a traceback in the log.
"""
from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apprunner import App
from customizer.owners import owner_from
from db_tables import table_counts
from tiny_profiles import tiny_profile_yaml

VICTIM = "victim-secret-token-0123456789"
ATTACKER = "attacker-secret-token-987654321"
FUZZ = settings(deadline=None, derandomize=False, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much, HealthCheck.large_base_example])

# Markers of the server's insides that must never reach a client (unless the client sent them itself).
LEAKS = ("Traceback", 'File "', "site-packages", "/work/", "/root/", "/tmp/", "/usr/", "sqlite", "SELECT ",
         "INSERT ", "UPDATE ", "DELETE FROM", " WHERE ", "Error binding", "NoneType", "object has no attribute",
         "Something went wrong", "unexpected error", "character_id = ?")
MESSAGE_MAX = 600


class Api:
    """gradio_client; requests are sent exactly as given (the fuzzer picks the token, or none)."""

    def __init__(self, url: str, token: str | None = None):
        from gradio_client import Client

        self.client, self.token = Client(url, verbose=False), token

    def predict(self, req, api_name: str):
        if self.token is not None and isinstance(req, dict):
            req = dict(req, token=self.token)
        return self.client.predict(req, api_name=api_name)


class World:
    """The running app, its database, and what the victim and the attacker own."""

    def __init__(self, app: App, url: str, root: Path):
        self.app, self.url, self.root = app, url, root
        self.db = root / "characters.db"
        self.images = root / "data" / "images"
        self.victim = Api(url, VICTIM)
        self.raw = Api(url)  # sends requests as they are, token included or not
        self.log_offset = 0
        self.ids: dict[str, str] = {}

    # ---- state ----------------------------------------------------------------------------------------
    def db_state(self) -> dict:
        with closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as conn:
            counts = table_counts(conn)  # every table, from sqlite_master
            rows = conn.execute("SELECT id, owner, name, spec_json, status, updated_at FROM characters "
                                "ORDER BY id").fetchall()
            refs = conn.execute("SELECT id, unlocked_at FROM refs ORDER BY id").fetchall()
        files = sorted(str(p.relative_to(self.images)) for p in self.images.rglob("*") if p.is_file())
        return {"counts": counts, "characters": rows, "refs": refs, "files": files}

    def victim_rows(self, state: dict) -> list:
        return [r for r in state["characters"] if r[1] == self.ids["victim_owner"]]

    def victim_view(self):
        listed, _ = self.victim.predict({}, api_name="/list_characters")
        return listed

    def new_log(self) -> str:
        data = self.app.log.read_bytes()
        text, self.log_offset = data[self.log_offset:].decode("utf-8", "replace"), len(data)
        return text

    # ---- the check every fuzzed request goes through ---------------------------------------------------
    def probe(self, api_name: str, req, typed: bool = False) -> tuple[bool, object]:
        """Send req (typed: its fields as named parameters); refused -> a clean reason and nothing changed;
        accepted -> the victim untouched."""
        from gradio_client.exceptions import AppError

        before = self.db_state()
        self.new_log()
        try:
            if typed:
                result = self.raw.client.predict(**req, api_name=f"/{api_name}")
            else:
                result = self.raw.predict(req, api_name=f"/{api_name}")
            accepted = True
        except AppError as e:
            result, accepted = str(e), False
            assert_clean_message(result, req)
        after = self.db_state()
        assert self.victim_rows(after) == self.victim_rows(before) == self.victim_rows(self.start)
        assert self.victim_view() == self.victim_list, "the victim's characters changed (or the server is down)"
        if not accepted:
            assert after == before, f"a refused request changed the database or files: {result!r}"
        log = self.new_log()
        assert "unexpected error" not in log and "Traceback" not in log, f"server log:\n{log[-3000:]}"
        if accepted:
            assert_no_server_insides(result, self.root)
        return accepted, result


def _sent(req) -> str:
    try:
        return json.dumps(req, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(req)


OWNER_HASH = re.compile(r"\b(?:token|user|session):[0-9a-f]{32}\b")


def assert_no_server_insides(answer, root: Path) -> None:
    """No owner hash, no private key, no path of the server's folders anywhere in an answer's JSON."""
    stack = [answer]
    repo = str(Path(__file__).resolve().parent.parent)
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if (v.get("meta") or {}).get("_type") == "gradio.FileData":
                # an image: gradio's cache copy, its URL a capability URL (README, Privacy), never our data folder
                assert str(root) not in str(v.get("path")) and "/data/images/" not in str(v.get("url"))
                continue
            assert not {"owner", "path", "thumbnail"} & set(v), f"private key in an answer: {sorted(v)[:20]}"
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, str):
            assert not OWNER_HASH.search(v), f"owner hash in an answer: {v[:200]}"
            assert str(root) not in v and repo not in v, f"server path in an answer: {v[:200]}"


def assert_clean_message(message: str, req) -> None:
    sent = _sent(req).lower()
    assert message.strip(), "empty error message"
    assert len(message) <= MESSAGE_MAX, f"error message of {len(message)} characters: {message[:200]!r}..."
    for leak in LEAKS:
        if leak.lower() in message.lower() and leak.lower() not in sent:
            raise AssertionError(f"error message leaks {leak!r}: {message[:300]!r}")


# ---------------------------------------------------------------- the one server for this module

@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("fuzz-app")
    cfg = {"default_profile": "tiny", "storage": {"db": "characters.db", "data_dir": "data"},
           # one step, no ControlNet: rendering only slows the fuzzing; the request handling is the same
           "profiles": {"tiny": tiny_profile_yaml(tiny_model_dir, controlnet=None, steps=1)}}
    (root / "spaces.yaml").write_text(yaml.safe_dump(cfg))
    app = App(root / "spaces.yaml")
    try:
        w = World(app, app.wait_ready(), root)
        # the victim: a locked character with a selfie
        made, _ = w.victim.predict({"spec": {"age": 40, "hair_colour": "red"}, "seed": 1, "n": 1, "name": "Vic"},
                                   api_name="/design_candidates")
        w.ids["victim_locked"], w.ids["victim_cand"] = made["character_id"], made["candidates"][0]["id"]
        ref, _ = w.victim.predict({"character_id": made["character_id"], "candidate_id": w.ids["victim_cand"]},
                                  api_name="/lock")
        w.ids["victim_ref"] = ref["id"]
        selfies, _ = w.victim.predict({"character_id": made["character_id"], "selfie": {"scene": "beach"},
                                       "seed": 2}, api_name="/selfie")
        w.ids["victim_selfie"] = selfies[0]["id"]
        pack, _ = w.victim.predict({"character_id": made["character_id"], "seed": 3}, api_name="/expression_pack")
        w.ids["victim_pack"] = pack["id"]
        w.ids["victim_owner"] = owner_from(VICTIM)
        # the attacker's own characters: fuzzed fields then reach the deep code paths
        attacker = Api(w.url, ATTACKER)
        a, _ = attacker.predict({"spec": {}, "seed": 4, "n": 1, "name": "Mine"}, api_name="/design_candidates")
        attacker.predict({"character_id": a["character_id"], "candidate_id": a["candidates"][0]["id"]},
                         api_name="/lock")
        w.ids["own_locked"], w.ids["own_locked_cand"] = a["character_id"], a["candidates"][0]["id"]
        own_pack, _ = attacker.predict({"character_id": a["character_id"], "seed": 6, "name": "Taken"},
                                       api_name="/expression_pack")
        w.ids["own_pack"] = own_pack["id"]
        w.ids["own_selfie"] = own_pack["items"][0]["id"]
        d, _ = attacker.predict({"spec": {}, "seed": 5, "n": 1, "name": "My draft"}, api_name="/design_candidates")
        w.ids["own_draft"] = d["character_id"]
        config = httpx.get(f"{w.url}config", timeout=60).json()
        w.api_fns = [d["id"] for d in config["dependencies"] if d.get("api_name") in ENDPOINTS]
        w.victim_snapshot = w.victim.predict({"character_id": w.ids["victim_locked"]}, api_name="/get_character")[0]
        w.victim_list, w.start = w.victim_view(), w.db_state()
        w.new_log()
        yield w
    finally:
        app.stop()


# ---------------------------------------------------------------- strategies

HOSTILE_STRINGS = [
    "", " ", "../../etc/passwd", "/etc/passwd", "C:\\Windows\\System32\\config", "%2e%2e/%2e%2e/etc/passwd",
    "..\\..\\boot.ini", "file:///etc/passwd", "images/../../characters.db", "characters.db",
    "'; DROP TABLE characters; --", "\" OR 1=1 --", "%s%s%s%n", "{0}{1}", "${jndi:ldap://x}",
    "\u202eevil\u202c", "\u200b\u200c\u200d\ufeff", "\u2066rtl\u2069", "👩‍🎤🧝‍♀️🏳️‍🌈", "مرحبا بالعالم", "שלום",
    "a\x00b", "\x00", "\x1b[31mred\x1b[0m", "line\nbreak\r\n", "\t\v\f", "\x7f\x85", "null", "None", "NaN",
    "Infinity", "-1", "1e309", "-1e309", "0x1F", "٣٤", "{}", "[]", "true",
    "x" * 100_000, "€" * 100_000, "\u200b" * 100_000, "9" * 5000,
]
text = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40),  # a client cannot send surrogates
)
NUMBERS = [-1, 0, 1, 4, 5, 7, 17, 18, 70, 71, 100, 10**6, 10**9, 2**31, 2**63, 10**30, 10**400, -(10**400),
           1e9, 1e308, -1e308, 0.5, 2.5, -0.0, 1e-300, 17.999, 18.5]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(NUMBERS),
                    st.floats(allow_nan=False, allow_infinity=False), text)
junk = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(text, inner, max_size=3)), max_leaves=8)
tokens = st.one_of(st.just(ATTACKER), st.just(ATTACKER), st.just(ATTACKER), junk)  # mostly the attacker's


def field(valid: st.SearchStrategy, *odd) -> st.SearchStrategy:
    return st.one_of(valid, st.sampled_from(odd) if odd else st.nothing(), junk)


def choice_of(values: list) -> st.SearchStrategy:
    return field(st.sampled_from(values), "", "RED", " red", "plaid", None)


def spec_strategy() -> st.SearchStrategy:
    from customizer.character import catalogue

    cat = catalogue()
    fields = {k: choice_of(list(opt.choices)) for k, opt in cat.items()}
    fields["age"] = field(st.integers(18, 70), 0, 17, 71, -1, "1e309", 10**400, 17.5, "17",
                          "18", " 30 ", "thirty", True)
    fields["theme_strength"] = field(st.floats(0, 1), -0.1, 1.1, 10**400, "0.5", "nan", "inf", True)
    fields["extra"] = field(st.sampled_from(["freckles", "a scar", "nude", "15 years old", "like Taylor Swift",
                                             "n\u200bude", "ｎｕｄｅ", "🦊 fox ears"]), "x" * 301)
    return st.one_of(junk, st.fixed_dictionaries({}, optional={**fields, "wings": junk}))


def advanced_strategy() -> st.SearchStrategy:
    from customizer.settings import samplers

    return st.one_of(junk, st.fixed_dictionaries({}, optional={
        "sampler": field(st.sampled_from(list(samplers())), "plms", "DDIM"),
        "steps": field(st.integers(1, 2), 0, 10**6, 101, -1, 2.5, "1"),
        "guidance": field(st.floats(0, 20), -1, 21, 1e308, "5"),
        "width": field(st.sampled_from([32, 40]), 7, 31, 100_000, 2056, 33, 32.5, "32"),
        "height": field(st.sampled_from([32, 40]), 0, 100_000, -8, 2**63),
        "negative": field(st.sampled_from(["blurry", "", "\u200b"]), "x" * 601),
        "upscale": field(st.booleans(), "yes", 1, 0),
        "turbo": junk,
    }))


def selfie_strategy() -> st.SearchStrategy:
    from customizer.character import catalogue, selfie_catalogue

    cat = selfie_catalogue()
    return st.one_of(junk, st.fixed_dictionaries({}, optional={
        "scene": choice_of(list(cat["scene"].choices)),
        "scene_text": field(st.sampled_from(["rainy rooftop", "nude beach", "with Taylor Swift"]), "x" * 201),
        "expression": choice_of(list(cat["expression"].choices)),
        "framing": choice_of(list(cat["framing"].choices)),
        "outfit": field(st.sampled_from([None, *catalogue()["outfit"].choices])),
        "likeness": field(st.floats(0, 1), -0.5, 1.5, 10**400, "0.7", "nan"),
        "extra": field(st.just("smiling"), "x" * 301),
        "pose": junk,
    }))


def ids(w: World, *own: str) -> st.SearchStrategy:
    """Ids that do not exist, ids of another owner (the victim's), the wrong kind of id, and junk."""
    theirs = [w.ids[k] for k in ("victim_locked", "victim_cand", "victim_ref", "victim_selfie", "victim_pack")]
    made_up = ["0" * 32, uuid.uuid4().hex, uuid.uuid4().hex.upper(), w.ids["victim_locked"] + " ",
               w.ids["victim_locked"].upper(), w.ids["victim_locked"] + "' OR '1'='1", "%", "*", "_"]
    return st.one_of(st.sampled_from(theirs + made_up + [w.ids[k] for k in own]), junk)


def seeds() -> st.SearchStrategy:
    return field(st.integers(0, 2**31 - 1), -1, -2, 2**31, 2**63, 10**400, 1.5, "7", "1e309", "", None)


def counts() -> st.SearchStrategy:
    return field(st.integers(1, 2), 0, 5, 10**9, -1, 1.5, "2", 10**400, True)


def request(**fields: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries({"token": tokens}, optional={**fields, "unexpected_field": junk})


# ---------------------------------------------------------------- fuzz every endpoint

@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_fuzz_design_candidates(world, data):
    req = data.draw(request(spec=spec_strategy(), seed=seeds(), n=counts(), advanced=advanced_strategy(),
                            character_id=ids(world, "own_draft", "own_locked"), name=field(
                                st.sampled_from(["Zoë", "مريم", "🦊", "  Ada  "]), "x" * 81, "a\nb", "a\x00b")))
    world.probe("design_candidates", req)


@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_fuzz_lock(world, data):
    req = data.draw(request(character_id=ids(world, "own_locked", "own_draft"),
                            candidate_id=ids(world, "own_locked_cand")))
    world.probe("lock", req)


@settings(FUZZ, max_examples=25)
@given(data=st.data())
def test_fuzz_selfie(world, data):
    req = data.draw(request(character_id=ids(world, "own_locked", "own_locked", "own_draft"),
                            selfie=selfie_strategy(), seed=seeds(), count=counts(), advanced=advanced_strategy()))
    world.probe("selfie", req)


@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_fuzz_list_characters(world, data):
    accepted, result = world.probe("list_characters", data.draw(request()))
    if accepted:
        listed, images = result
        victim_ids = {world.ids["victim_locked"]}
        assert not victim_ids & {c["id"] for c in listed}


@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_fuzz_get_character(world, data):
    accepted, result = world.probe("get_character", data.draw(request(character_id=ids(world, "own_locked"))))
    if accepted:
        assert result[0]["id"] != world.ids["victim_locked"]


@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_fuzz_rename(world, data):
    req = data.draw(request(character_id=ids(world, "own_draft"), name=field(
        st.sampled_from(["Zoë", "مريم", "🦊", "x" * 80, "\u202eevil"]), "x" * 81, "a\nb", "a\x00b", "   ")))
    world.probe("rename", req)


@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_fuzz_delete(world, data):
    world.probe("delete", data.draw(request(character_id=ids(world))))  # never the attacker's own ids


@settings(FUZZ, max_examples=12)
@given(data=st.data())
def test_fuzz_expression_pack(world, data):
    req = data.draw(request(character_id=ids(world, "own_locked", "own_locked", "own_draft"),
                            selfie=selfie_strategy(), seed=seeds(), advanced=advanced_strategy(),
                            kind=field(st.just("expressions"), "poses", "", None),
                            name=field(st.sampled_from(["Zoë faces", "🦊", "Taken"]), "x" * 81, "a\nb", "", "  ")))
    world.probe("expression_pack", req)


@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_fuzz_get_pack(world, data):
    req = data.draw(request(character_id=ids(world, "own_locked"), pack_id=ids(world, "own_pack")))
    accepted, result = world.probe("get_pack", req)
    if accepted:
        assert result[0]["id"] == world.ids["own_pack"]


@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_fuzz_accept_selfie(world, data):
    req = data.draw(request(selfie_id=ids(world, "own_selfie"), accepted=field(st.booleans(), "yes", 1, 0, None)))
    world.probe("accept_selfie", req)


@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_fuzz_character_lora(world, data):
    """Never the attacker's own character: a training would start (and is tested in test_character_lora.py)."""
    api = data.draw(st.sampled_from(["character_lora_start", "character_lora_status", "character_lora_cancel"]))
    req = data.draw(request(character_id=ids(world), job_id=ids(world), seed=seeds()))
    accepted, _ = world.probe(api, req)
    assert not accepted


ENDPOINTS = ["design_candidates", "lock", "selfie", "expression_pack", "get_pack", "list_characters",
             "get_character", "rename", "delete", "accept_selfie", "character_lora_start", "character_lora_status",
             "character_lora_cancel"]
# The first value of a call is the typed form's token (text or null) or the v1 form's request object: anything
# else there is a v1 request that is not an object.
NOT_OBJECTS = st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                        st.lists(junk, max_size=4))


@settings(FUZZ, max_examples=14)
@given(api=st.sampled_from(ENDPOINTS), req=NOT_OBJECTS)
def test_requests_that_are_not_objects(world, api, req):
    accepted, message = world.probe(api, req)
    assert not accepted and "JSON object" in message


@settings(FUZZ, max_examples=14)
@given(api=st.sampled_from(ENDPOINTS), token=st.one_of(st.none(), text))
def test_a_bare_token_of_any_text(world, api, token):
    """Null or text alone is the typed form with every other parameter left out: refused for the token (or, with
    a well-formed token, for the first required field), except list_characters, which lists that token's own
    (no) characters, and design_candidates without a token, which makes a default character for a new one."""
    accepted, result = world.probe(api, token)
    if accepted and api == "design_candidates":
        assert not token and result[0]["token"] and len(result[0]["candidates"]) == 1, (token, result)
    elif accepted:
        assert api == "list_characters" and result[0] == [], (api, token, result)
    else:
        assert result.startswith(("token: ", "character_id: is missing", "selfie_id: is missing",
                                  "job_id: is missing", "pack_id: is missing")), result


# The typed form: the same fields as named parameters (fields the endpoint does not have are left out).
TYPED = {"design_candidates": lambda w: request(spec=spec_strategy(), seed=seeds(), n=counts(),
                                                advanced=advanced_strategy(), character_id=ids(w, "own_draft"),
                                                name=field(st.sampled_from(["Zoë", "🦊"]), "x" * 81, "a\x00b")),
         "selfie": lambda w: request(character_id=ids(w, "own_locked", "own_draft"), selfie=selfie_strategy(),
                                     seed=seeds(), count=counts(), advanced=advanced_strategy()),
         "rename": lambda w: request(character_id=ids(w, "own_draft"), name=field(st.just("Zoë"), "x" * 81, "  ")),
         "get_pack": lambda w: request(character_id=ids(w, "own_locked"), pack_id=ids(w, "own_pack")),
         "accept_selfie": lambda w: request(selfie_id=ids(w, "own_selfie"),
                                            accepted=field(st.booleans(), "yes", 1, 0))}


@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_fuzz_typed_parameters(world, data):
    """The same hostile values as named parameters: the same checks, the same guarantees (world.probe)."""
    api = data.draw(st.sampled_from(sorted(TYPED)))
    req = data.draw(TYPED[api](world))
    req.pop("unexpected_field", None)
    world.probe(api, req, typed=True)


# ---------------------------------------------------------------- what gradio_client cannot send

RAW = [
    # non-finite numbers and huge ones: Python's JSON parser reads 1e309 as inf, NaN as nan
    ("design_candidates", '{"token": "%s", "spec": {"age": 1e309}}'),
    ("design_candidates", '{"token": "%s", "spec": {"age": -1e309}}'),
    ("design_candidates", '{"token": "%s", "spec": {"age": NaN}}'),
    ("design_candidates", '{"token": "%s", "spec": {"theme_strength": Infinity}}'),
    ("design_candidates", '{"token": "%s", "spec": {}, "n": 1e309}'),
    ("design_candidates", '{"token": "%s", "spec": {}, "n": NaN}'),
    ("design_candidates", '{"token": "%s", "spec": {}, "seed": 1e309}'),
    ("design_candidates", '{"token": "%s", "spec": {}, "seed": -Infinity}'),
    ("design_candidates", '{"token": "%s", "spec": {}, "advanced": {"steps": 1e309}}'),
    ("design_candidates", '{"token": "%s", "spec": {}, "advanced": {"width": NaN}}'),
    ("selfie", '{"token": "%s", "character_id": "OWN", "selfie": {"likeness": NaN}}'),
    ("selfie", '{"token": "%s", "character_id": "OWN", "count": Infinity}'),
    # unpaired UTF-16 surrogates (valid JSON escapes, not encodable text)
    ("design_candidates", '{"token": "%s", "spec": {"extra": "\\ud800"}}'),
    ("design_candidates", '{"token": "%s", "spec": {}, "name": "x\\udfff"}'),
    ("get_character", '{"token": "%s", "character_id": "\\ud800"}'),
    ("rename", '{"token": "%s", "character_id": "OWN", "name": "\\udc00abc"}'),
    ("list_characters", '{"token": "\\ud800\\ud800\\ud800\\ud800\\ud800\\ud800\\ud800\\ud800\\ud800"}'),
    ("list_characters", '{"token": "%s", "\\ud800": 1}'),
    # deep nesting, huge numbers, broken JSON
    ("design_candidates", '{"token": "%s", "spec": {"hair_colour": ' + "[" * 900 + "]" * 900 + "}}"),
    ("design_candidates", '{"token": "%s", "spec": {"hair_colour": ' + '{"a": ' * 900 + "1" + "}" * 900 + "}}"),
    ("list_characters", '{"token": "%s", "x": ' + "9" * 5000 + "}"),
    ("list_characters", '{"token": "%s"'),
]


@pytest.mark.parametrize("api, body", RAW, ids=[f"{a}-{i}" for i, (a, _) in enumerate(RAW)])
def test_raw_json_gradio_client_cannot_send(world, api, body):
    """Straight to gradio's REST route: the body is JSON text a client library would refuse to produce."""
    body = body.replace("%s", ATTACKER, 1).replace("OWN", world.ids["own_locked"])
    before = world.db_state()
    world.new_log()
    base = f"{world.url}gradio_api/call/{api}"
    r = httpx.post(base, content='{"data": [' + body + "]}", headers={"content-type": "application/json"},
                   timeout=60)
    if r.status_code == 200:
        with httpx.stream("GET", f"{base}/{r.json()['event_id']}", timeout=60) as s:
            events = s.read().decode("utf-8", "replace")
        assert "event: error" in events, events[:500]
        payload = json.loads(events.split("event: error", 1)[1].split("data:", 1)[1].split("\n", 1)[0])
        assert_clean_message(payload["error"] or "", body)
    else:
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])  # refused while parsing, never a 500
    assert world.db_state() == before and world.victim_view() == world.victim_list
    log = world.new_log()
    assert "unexpected error" not in log and "Traceback" not in log, log[-3000:]


# ---------------------------------------------------------------- raw HTTP bodies, any route

ROUTES = st.one_of(
    st.sampled_from([f"call/{e}" for e in ENDPOINTS] + [f"run/{e}" for e in ENDPOINTS] +
                    [f"call/v2/{e}" for e in ENDPOINTS] + ["queue/join"]),
    st.builds(lambda r, n: f"{r}/{n}", st.sampled_from(["call", "run", "call/v2", "api"]),
              st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=30)),
)
JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                     st.text(max_size=20)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=10), inner, max_size=3)),
                           max_leaves=10)


def _bodies(w: World) -> st.SearchStrategy:
    request_objects = st.one_of(JSON_VALUES, st.fixed_dictionaries({"token": st.sampled_from([ATTACKER, ""])},
                                                                    optional={"character_id": ids(w),
                                                                              "spec": junk, "x": junk}))
    shapes = st.one_of(
        st.builds(lambda d: {"data": d}, st.one_of(st.just([]), st.lists(request_objects, max_size=3),
                                                   JSON_VALUES)),
        # by fn_index: the API's own events, indices no event has, and junk (the page's own events, hand-made
        # with values the page never sends, are refused by gradio itself: see README, API, Edges)
        st.builds(lambda d, i: {"data": d, "fn_index": i, "session_hash": "fuzz-session"},
                  st.lists(request_objects, max_size=6),
                  st.one_of(st.sampled_from(w.api_fns), st.integers(1000, 10**6), st.integers(-10**6, -1),
                            JSON_VALUES)),
        st.builds(lambda d: {"req": d}, request_objects),
        JSON_VALUES,
    )
    return st.one_of(shapes.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200),
                     st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_fuzz_raw_http_bodies_never_500_never_null_error(world, data):
    """Straight to gradio's routes with any body: a 4xx with a JSON error string, or an event whose error has a
    message; the database changes only for a request that was accepted, and the log shows no crash."""
    route = data.draw(ROUTES)
    body = data.draw(_bodies(world))
    before = world.db_state()
    world.new_log()
    base = f"{world.url}gradio_api/{route}"
    r = httpx.post(base, content=body, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code < 500, (route, body[:200], r.status_code, r.text[:300])
    accepted = False
    if r.status_code == 200 and route.startswith("call/") and "event_id" in r.text:
        results = f"{world.url}gradio_api/call/{route.rsplit('/', 1)[1]}/{r.json()['event_id']}"
        with httpx.stream("GET", results, timeout=60) as stream:
            events = stream.read().decode("utf-8", "replace")
        kinds = re.findall(r"^event: (\w+)", events, re.M)
        assert kinds and kinds[-1] in ("complete", "error"), events[:300]
        payload = json.loads(events.rsplit("data:", 1)[1].strip())
        if kinds[-1] == "error":
            assert isinstance(payload, dict) and isinstance(payload.get("error"), str) and payload["error"], payload
            assert_clean_message(payload["error"], body.decode("utf-8", "replace"))
        else:
            accepted = True
            assert_no_server_insides(payload, world.root)
    elif r.status_code == 200 and route.startswith(("run/", "api/")):
        accepted = True
        assert_no_server_insides(r.json(), world.root)
    elif r.status_code >= 400:
        detail = r.json()
        message = detail.get("error") if "error" in detail else detail.get("detail")
        assert message, detail  # never {"error": null}
    after = world.db_state()
    if not accepted:
        assert after["characters"] == before["characters"] or route.startswith("queue/")
    assert world.victim_view() == world.victim_list
    log = world.new_log()
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]


# ---------------------------------------------------------------- afterwards

def test_after_the_fuzzing_the_victim_is_untouched_and_storage_is_consistent(world):
    again, images = world.victim.predict({"character_id": world.ids["victim_locked"]}, api_name="/get_character")
    # reference, selfie, expression pack, reference sheet
    assert again == world.victim_snapshot and len(images) == 2 + 7 + len(again["sheet"]) and again["sheet"]
    assert [c["name"] for c in world.victim_view()] == ["Vic"]
    with closing(sqlite3.connect(f"file:{world.db}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = {r[0]: r[1] for r in conn.execute("SELECT sha256, path FROM images")}
    files = {p.name.removesuffix(".png") for p in world.images.rglob("*.png")}
    assert files == set(rows), "image rows and files disagree"
    for sha, rel in rows.items():
        assert hashlib.sha256((world.root / "data" / rel).read_bytes()).hexdigest() == sha
    assert not list(world.images.rglob("*.tmp"))
    assert world.app.proc.poll() is None  # still running
