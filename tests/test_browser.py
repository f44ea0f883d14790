"""The UI in a real headless Chromium (Debian's chromium driven by playwright): design, pick a candidate, lock,
take a selfie, reload the page and find the selfie in the character's history. Screenshots go to the test's
tmp dir (and to $UI_SCREENSHOTS when set)."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-quic"]

if not CHROMIUM and not os.environ.get("CI"):
    pytest.skip("chromium is not installed (CI installs it: see .ci/run)", allow_module_level=True)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium must be installed in CI"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def new_page(browser):
    """A fresh browser profile (own localStorage = own owner token)."""
    pg = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    pg.set_default_timeout(240_000)  # first click loads the model: slow on a busy 2-core host
    return pg


@pytest.fixture
def page(browser):
    return new_page(browser)


def shot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if os.environ.get("UI_SCREENSHOTS"):
        out = Path(os.environ["UI_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def assert_pictures_at_most_twice_their_size(page, where: str) -> None:
    """A small model's pictures are shown at their own size up to twice it, not blown up to fill a panel."""
    sizes = page.evaluate(f"() => [...document.querySelectorAll('{where} img')].filter(i => i.naturalWidth)"
                          ".map(i => [i.naturalWidth, i.getBoundingClientRect().width, i.getBoundingClientRect()"
                          ".height])")
    assert sizes, f"no pictures in {where}"
    for natural, width, height in sizes:
        assert max(width, height) <= 2 * natural + 1, (where, natural, width, height)


def test_design_lock_selfie_and_history_after_reload(app_factory, browser, page, tmp_path):
    _, url = app_factory()
    page.goto(url)
    # the page's load event gives this browser its owner token (kept in localStorage)
    page.wait_for_function("window.localStorage.getItem('customizer-owner')")
    page.get_by_label("Name").fill("Browser Bea")
    page.click("#generate")
    page.wait_for_selector("#candidates img")
    page.wait_for_function("document.querySelector('#design-info')?.innerText.includes('Browser Bea')")
    shot(page, tmp_path, "design")
    assert_pictures_at_most_twice_their_size(page, "#candidates")
    # a second Generate adds to the open draft instead of starting another character
    first_seeds = page.locator("#design-info").inner_text()
    page.click("#generate")
    page.wait_for_function(f"document.querySelector('#design-info')?.innerText != {first_seeds!r}")
    page.wait_for_function("document.querySelectorAll('#candidates img').length >= 4")
    assert "Designing draft" in page.locator("#design-draft").inner_text()

    # locking before picking a candidate is refused with a message, not a crash
    page.click("#lock")
    page.get_by_text("Click a candidate portrait").first.wait_for()

    page.locator("#candidates img").first.click()
    page.click("#lock")
    page.get_by_role("tab", name="Selfie studio", selected=True).wait_for()
    # nothing trains: no Cancel training button; the sheet's captions are whole, their details listed below
    assert not page.locator("#cancel-lora").is_visible()
    page.wait_for_selector("#reference-sheet img")
    notes = page.locator("#sheet-notes").inner_text()
    assert notes.count("likeness") >= 1 and ("conditions selfies" in notes or "left out" in notes
                                                   or "for viewing" in notes), notes
    cut = page.evaluate("() => [...document.querySelectorAll('#reference-sheet .caption, #reference-sheet "
                        ".caption-label')].filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)")
    assert cut == [], f"cut-off captions: {cut}"
    assert_pictures_at_most_twice_their_size(page, "#reference")
    page.click("#take-selfie")
    page.wait_for_selector("#history img")
    page.get_by_text("New: seed").wait_for()
    shot(page, tmp_path, "selfie")
    assert_pictures_at_most_twice_their_size(page, "#history")

    page.reload()
    page.get_by_role("tab", name="Characters").click()
    # nothing is open yet: no empty character panel, no empty export
    page.wait_for_selector("#overview img")
    assert not page.locator("#character-info").is_visible() and not page.locator("#export-file").is_visible()
    page.locator("#characters-pick input").click()
    assert page.get_by_role("option", name=re.compile("Browser Bea")).count() == 1  # one character, not a draft each
    page.get_by_role("option", name="Browser Bea (locked)").click()
    page.get_by_role("button", name="Open", exact=True).click()
    page.get_by_role("tab", name="Selfie studio", selected=True).wait_for()
    page.wait_for_selector("#history img")
    assert page.locator("#history img").count() >= 1
    shot(page, tmp_path, "history-after-reload")

    # another visitor (a fresh browser profile) sees none of it
    stranger = new_page(browser)
    stranger.goto(url)
    stranger.wait_for_function("window.localStorage.getItem('customizer-owner')")
    stranger.get_by_role("tab", name="Characters").click()
    stranger.locator("#characters-pick input").click()
    stranger.wait_for_timeout(1000)
    assert stranger.get_by_role("option", name="Browser Bea (locked)").count() == 0
    # while the owner, after a reload, still does
    page.reload()
    page.get_by_role("tab", name="Characters").click()
    page.locator("#characters-pick input").click()
    page.get_by_role("option", name="Browser Bea (locked)").wait_for()


def test_advanced_controls_offer_only_what_the_budget_allows(browser, page, tmp_path, tiny_model_dir):
    """A profile with a compute budget: the Steps slider's maximum is what fits with the candidates asked for, it
    grows when fewer are asked for, and the estimate line under Advanced follows."""
    import yaml

    from apprunner import App
    from customizer import budget
    from tiny_profiles import tiny_profile_yaml

    limits = {"seconds_per_unit": 1.0, "max_render_seconds": 0.05, "max_seconds": 0.2, "max_side": 96}
    cfg = {"default_profile": "tiny", "storage": {"db": "characters.db", "data_dir": "data"},
           "profiles": {"tiny": tiny_profile_yaml(tiny_model_dir, controlnet=None, budget=limits)}}
    (tmp_path / "spaces.yaml").write_text(yaml.safe_dump(cfg))
    app = App(tmp_path / "spaces.yaml")
    try:
        page.goto(app.wait_ready())
        page.get_by_text("Advanced").first.click()
        steps_max = "() => document.querySelector('#design-steps input[type=range]').max"
        expect = {n: budget.fit(budget.parse(limits), 32, 32, 3, n, 100, 2048, 4, batched=True).steps_max
                  for n in (1, 2)}
        page.wait_for_function(f"({steps_max})() == '{expect[2]}'")  # 2 candidates by default
        assert "fits" in page.locator("#design-budget").inner_text()
        page.locator("#design-candidates input[type=number]").fill("1")
        page.locator("#design-candidates input[type=number]").press("Enter")
        page.wait_for_function(f"({steps_max})() == '{expect[1]}'")
        assert expect[1] > expect[2]
        assert float(page.evaluate("() => document.querySelector('#design-width input[type=range]').max")) <= 96
        shot(page, tmp_path, "budget")
    finally:
        app.stop()
