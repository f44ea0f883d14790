"""End to end: launch the real app.py as a server on the tiny model, drive it with gradio_client through the
documented API (design -> lock -> selfie -> list), restart it, and find the history still there."""
from __future__ import annotations

from pathlib import Path

import pytest


def test_design_lock_selfie_list_survives_restart(app_factory, tiny_config_path):
    from gradio_client import Client

    app, url = app_factory()
    client = Client(url, verbose=False)
    spec = {"hair_colour": "blonde", "eye_colour": "blue", "age": 41, "theme": "vintage", "theme_strength": 1.0}
    result, images = client.predict({"spec": spec, "seed": 21, "n": 2, "name": "Ada"},
                                     api_name="/design_candidates")
    assert len(result["candidates"]) == 2 and len(images) == 2
    assert all(Path(i["image"]).stat().st_size > 0 for i in images)
    assert [c["seed"] for c in result["candidates"]] == [21, 22]
    assert "path" not in result["candidates"][0]  # server paths never leave the server
    cid = result["character_id"]

    ref, _ = client.predict({"character_id": cid, "candidate_id": result["candidates"][0]["id"]}, api_name="/lock")
    selfies, selfie_images = client.predict(
        {"character_id": cid, "selfie": {"scene": "library", "expression": "surprised", "framing": "half body"},
         "seed": 5, "count": 1}, api_name="/selfie")
    assert len(selfies) == 1 and len(selfie_images) == 1
    assert selfies[0]["recipe"]["reference_sha256"] == ref["image_sha256"]
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
    again = Client(url2, verbose=False)
    character, imgs = again.predict({"character_id": cid}, api_name="/get_character")
    assert character["status"] == "locked" and character["reference"]["image_sha256"] == ref["image_sha256"]
    assert [s["id"] for s in character["selfies"]] == [selfies[0]["id"]]
    assert len(imgs) == 2  # reference + the selfie
    # the restarted app keeps working on the same character
    more, _ = again.predict({"character_id": cid, "selfie": {"scene": "beach"}, "seed": 6}, api_name="/selfie")
    assert more[0]["reference_id"] == character["reference"]["id"]
    assert (tiny_config_path.parent / "characters.db").exists()
