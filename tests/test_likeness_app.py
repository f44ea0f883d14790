"""The real app.py (tiny model, a random-weight identity encoder, a band that forces retries) through the JSON API
and in headless Chromium: every selfie carries its likeness score, state and attempt count; the expression pack is
one call / one click and shows as a grid."""
from __future__ import annotations

import os
import shutil

import pytest
import yaml

from apprunner import App
from likeness_helpers import random_identity_encoder
from test_app_e2e import Api
from tiny_profiles import tiny_profile_yaml

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STANDARD = ["neutral", "happy", "laughing", "sad", "surprised", "angry", "thinking"]


@pytest.fixture
def likeness_app(tmp_path, tiny_model_dir):
    instruments = random_identity_encoder(tmp_path / "instruments")
    likeness = {"instrument": "identity", "path": str(instruments), "band": [0.0, 0.0], "max_attempts": 2}
    cfg = {"default_profile": "tiny", "storage": {"db": "characters.db", "data_dir": "data"},
           "profiles": {"tiny": tiny_profile_yaml(tiny_model_dir, controlnet=None, likeness=likeness)}}
    path = tmp_path / "spaces.yaml"
    path.write_text(yaml.safe_dump(cfg))
    app = App(path)
    try:
        yield app.wait_ready()
    finally:
        app.stop()


def test_api_selfies_and_packs_carry_likeness_and_attempts(likeness_app):
    api = Api(likeness_app, "likeness-owner-token-0123456789")
    made, _ = api.predict({"spec": {"age": 29, "hair_colour": "pink"}, "seed": 4, "n": 1},
                          api_name="/design_candidates")
    cid = made["character_id"]
    api.predict({"character_id": cid, "candidate_id": made["candidates"][0]["id"]}, api_name="/lock")

    selfies, files = api.predict({"character_id": cid, "selfie": {"scene": "forest"}, "seed": 8, "count": 1},
                                 api_name="/selfie")
    (s,) = selfies
    assert len(files) == 1
    assert s["likeness_state"] == "scored" and s["likeness_instrument"] == "identity"
    assert 0 < s["likeness"] <= 1 and s["attempts"] == 2  # band [0, 0]: every score is a "copy", both tried
    assert s["recipe"]["extra"]["likeness"]["band"] == [0.0, 0.0]
    assert s["recipe"]["extra"]["likeness"]["position"] == "above"
    assert len(s["recipe"]["extra"]["attempts"]["tried"]) == 2 and "path" not in s

    pack, images = api.predict({"character_id": cid, "name": "For chat", "seed": 5}, api_name="/expression_pack")
    assert pack["name"] == "For chat" and pack["complete"] and pack["slots"] == STANDARD
    assert [i["pack_slot"] for i in pack["items"]] == STANDARD and len(images) == 7
    assert all(i["likeness_state"] == "scored" and i["attempts"] == 2 and "path" not in i for i in pack["items"])

    character, _ = api.predict({"character_id": cid}, api_name="/get_character")
    assert [p["name"] for p in character["packs"]] == ["For chat"]
    assert [i["slot"] for i in character["packs"][0]["items"]] == STANDARD
    assert len(character["selfies"]) == 8 and "thumbnail" not in character
    again, imgs = api.predict({"character_id": cid, "pack_id": pack["id"]}, api_name="/get_pack")
    assert [i["id"] for i in again["items"]] == [i["id"] for i in pack["items"]] and len(imgs) == 7

    # refusals: a clear message, nothing written
    for req, api_name, words in (({"character_id": cid, "selfie": {"expression": "sad"}}, "/expression_pack",
                                  "expression"),
                                 ({"character_id": cid, "name": "For chat"}, "/expression_pack", "already"),
                                 ({"character_id": "nope", "pack_id": pack["id"]}, "/get_pack", "not a pack"),
                                 ({"character_id": cid, "pack_id": "nope"}, "/get_pack", "not found")):
        with pytest.raises(Exception, match=words):
            api.predict(req, api_name=api_name)
    stranger = Api(likeness_app, "someone-else-token-9876543210")
    with pytest.raises(Exception, match="not found"):
        stranger.predict({"character_id": cid, "pack_id": pack["id"]}, api_name="/get_pack")
    assert len(api.predict({"character_id": cid}, api_name="/get_character")[0]["packs"]) == 1


@pytest.mark.skipif(not CHROMIUM and not os.environ.get("CI"), reason="chromium is not installed (CI installs it)")
def test_browser_shows_likeness_badges_and_the_expression_pack_grid(likeness_app, tmp_path):
    from playwright.sync_api import sync_playwright

    from test_browser import FLAGS, shot

    assert CHROMIUM, "chromium must be installed in CI"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
            page.set_default_timeout(240_000)  # first click loads the model: slow on a busy 2-core host
            page.goto(likeness_app)
            page.wait_for_function("window.localStorage.getItem('customizer-owner')")
            page.get_by_text("likeness by the identity instrument").wait_for()
            page.get_by_label("Name").fill("Badge Bo")
            page.click("#generate")
            page.wait_for_selector("#candidates img")
            page.locator("#candidates img").first.click()
            page.click("#lock")
            page.get_by_role("tab", name="Selfie studio", selected=True).wait_for()

            page.click("#take-selfie")
            card = page.locator("#likeness-cards .lk-card").first
            card.wait_for()
            assert card.get_attribute("data-state") == "scored" and card.get_attribute("data-attempts") == "2"
            assert 0 < float(card.get_attribute("data-score")) <= 1
            assert "2 attempts" in card.inner_text() and "above band" in card.inner_text()
            assert card.locator(".lk-bar .lk-fill").count() == 1
            # the thumbnail really loads from the server (images folder is served, nothing else)
            page.wait_for_function("document.querySelector('#likeness-cards .lk-card img')?.naturalWidth > 0")
            page.get_by_text("2 attempts").first.wait_for()
            assert "likeness" in page.locator("#selfie-info").inner_text()

            page.click("#make-pack")
            page.wait_for_function("document.querySelectorAll('#pack-cards .lk-card').length === 7")
            titles = page.locator("#pack-cards .lk-title").all_inner_texts()
            assert titles == STANDARD
            page.wait_for_selector("#expression-pack img")
            assert page.locator("#pack-pick input").input_value().startswith("Expressions 1")
            shot(page, tmp_path, "likeness-and-pack")
        finally:
            browser.close()
