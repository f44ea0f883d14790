"""End to end: launch the real app.py as a server on the tiny model, drive it with gradio_client through the
documented API (design -> lock -> selfie -> list), restart it, and find the history still there."""
from __future__ import annotations

from pathlib import Path

import pytest


TOKEN = "alice-secret-token-0123456789"


class Api:
    """gradio_client with this user's token added to every request."""

    def __init__(self, url: str, token: str):
        from gradio_client import Client

        self.client, self.token = Client(url, verbose=False), token

    def predict(self, req, api_name: str):
        return self.client.predict(dict(req, token=self.token) if isinstance(req, dict) else req, api_name=api_name)


def test_design_lock_selfie_list_survives_restart(app_factory, tiny_config_path):
    app, url = app_factory()
    client = Api(url, TOKEN)
    spec = {"hair_colour": "blonde", "eye_colour": "blue", "age": 41, "theme": "vintage", "theme_strength": 1.0}
    result, images = client.predict({"spec": spec, "seed": 21, "n": 2, "name": "Ada"},
                                     api_name="/design_candidates")
    assert len(result["candidates"]) == 2 and len(images) == 2
    assert all(Path(i["image"]).stat().st_size > 0 for i in images)
    assert [c["seed"] for c in result["candidates"]] == [21, 22]
    assert "path" not in result["candidates"][0]  # server paths never leave the server
    cid = result["character_id"]

    ref, ref_images = client.predict({"character_id": cid, "candidate_id": result["candidates"][0]["id"]},
                                     api_name="/lock")
    # the reference and its sheet views (ids, view names, scores; files come as images, paths stay on the server)
    assert len(ref_images) == 1 + 4 and [v["view"] for v in ref["sheet"]][0] == "frontal"
    assert all("path" not in v and v["likeness_state"] for v in ref["sheet"])
    selfies, selfie_images = client.predict(
        {"character_id": cid, "selfie": {"scene": "library", "expression": "surprised", "framing": "half body"},
         "seed": 5, "count": 1}, api_name="/selfie")
    assert len(selfies) == 1 and len(selfie_images) == 1
    assert selfies[0]["recipe"]["reference_sha256"] == ref["image_sha256"]
    assert selfies[0]["recipe"]["conditioning_sha256"] == [ref["image_sha256"]] + [v["image_sha256"]
                                                                                  for v in ref["sheet"]]
    listed, _ = client.predict({}, api_name="/list_characters")
    assert [(c["name"], c["status"], c["n_selfies"]) for c in listed] == [("Ada", "locked", 1)]

    # bad input: a clear message, the server stays up, nothing written
    for bad in ({"spec": dict(spec, age=15)}, {"spec": dict(spec, extra="explicit nude")}, "not a dict"):
        with pytest.raises(Exception) as err:
            client.predict(bad, api_name="/design_candidates")
        assert "Traceback" not in str(err.value)
    assert len(client.predict({}, api_name="/list_characters")[0]) == 1

    app.stop()
    _, url2 = app_factory()
    again = Api(url2, TOKEN)
    character, imgs = again.predict({"character_id": cid}, api_name="/get_character")
    assert character["status"] == "locked" and character["reference"]["image_sha256"] == ref["image_sha256"]
    assert [s["id"] for s in character["selfies"]] == [selfies[0]["id"]]
    assert len(character["sheet"]) == 4 and {v["reference_id"] for v in character["sheet"]} == {ref["id"]}
    assert len(imgs) == 2 + 4  # reference + the selfie + the reference sheet views
    # the restarted app keeps working on the same character
    more, _ = again.predict({"character_id": cid, "selfie": {"scene": "beach"}, "seed": 6}, api_name="/selfie")
    assert more[0]["reference_id"] == character["reference"]["id"]
    assert (tiny_config_path.parent / "characters.db").exists()


def test_owners_cannot_see_or_touch_each_others_characters(app_factory):
    _, url = app_factory()
    alice, bob = Api(url, TOKEN), Api(url, "bob-secret-token-9876543210")
    made, _ = alice.predict({"spec": {"age": 30}, "seed": 1, "n": 1, "name": "Alice's"},
                            api_name="/design_candidates")
    cid, cand = made["character_id"], made["candidates"][0]["id"]
    assert bob.predict({}, api_name="/list_characters")[0] == []
    for req, api in (({"character_id": cid}, "/get_character"), ({"character_id": cid, "name": "x"}, "/rename"),
                     ({"character_id": cid, "candidate_id": cand}, "/lock"), ({"character_id": cid}, "/delete"),
                     ({"character_id": cid, "selfie": {}}, "/selfie")):
        with pytest.raises(Exception, match="not found"):
            bob.predict(req, api_name=api)
    # a client without a token owns nothing by its session: refused, except a first design, which gets a
    # server-made token (returned once) that owns what it made
    from gradio_client import Client

    anonymous = Client(url, verbose=False)
    with pytest.raises(Exception, match="token: is missing"):
        anonymous.predict({}, api_name="/list_characters")
    with pytest.raises(Exception, match="token"):
        anonymous.predict({"token": "short"}, api_name="/list_characters")
    first, _ = anonymous.predict({"spec": {"age": 50}, "seed": 3, "n": 1, "name": "Made without a token"},
                                 api_name="/design_candidates")
    server_token = first["token"]
    assert len(server_token) >= 32 and server_token != TOKEN
    mine_too = Api(url, server_token)
    assert [c["name"] for c in mine_too.predict({}, api_name="/list_characters")[0]] == ["Made without a token"]
    assert bob.predict({}, api_name="/list_characters")[0] == []
    fresh, _ = anonymous.predict({}, api_name="/new_token")
    assert fresh["token"] != server_token and Api(url, fresh["token"]).predict({}, api_name="/list_characters")[0] == []
    mine, _ = alice.predict({}, api_name="/list_characters")
    assert [c["name"] for c in mine] == ["Alice's"]
