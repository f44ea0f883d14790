"""README screenshots of the real app on the bundled model, taken in headless Chromium.

    python scripts/screenshots.py --out assets/screenshots     # about 1-2 min on 2 CPU cores

Starts app.py on the repo's spaces.yaml (default profile: bundled) with a fresh database in a temp dir, then, as a
visitor would: designs a red-haired character in robes (4 candidates), locks the first candidate (the reference
sheet is rendered), takes 4 selfies in the forest, and makes an expression pack. Writes bundled-design.png,
bundled-selfies.png and bundled-pack.png. Needs Debian's chromium (`apt-get install -y chromium`) and playwright.
Loopback only; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import _harness as h

DESIGN = {"design-hair-colour": "red", "design-hair-style": "wavy", "design-hair-length": "long",
          "design-eye-colour": "green", "design-outfit": "robe"}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-quic"]


def pick(page, elem_id: str, value: str) -> None:
    """Choose `value` in the gradio Dropdown with this elem_id."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=value, exact=True).click()


def set_number(page, label: str, value: int) -> None:
    """The number box of the gradio Slider with this label."""
    box = page.get_by_label(f"number input for {label}", exact=True)
    box.fill(str(value))
    box.press("Enter")


def take(page, out: Path, name: str, selector: str | None = None) -> Path:
    path = out / name
    (page.locator(selector) if selector else page).screenshot(path=str(path), **({} if selector else
                                                                               {"full_page": True}))
    print(f"wrote {path}", file=sys.stderr)
    return path


def run(out: Path, work: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("chromium is not installed: apt-get install -y chromium")
    server = h.Server(h.REPO / "spaces.yaml", work, preload=True)
    try:
        url = server.wait_ready()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(240_000)
            page.goto(url)
            page.wait_for_function("window.localStorage.getItem('customizer-owner')")
            page.get_by_label("Name").fill("Mira")
            for elem_id, value in DESIGN.items():
                pick(page, elem_id, value)
            page.get_by_label("Randomize seed").first.uncheck()
            set_number(page, "Candidates", 4)
            page.click("#generate")
            page.wait_for_function("document.querySelectorAll('#candidates img').length >= 4")
            page.wait_for_function("document.querySelector('#design-info')?.innerText.includes('Mira')")
            take(page, out, "bundled-design.png")

            page.locator("#candidates img").first.click()
            page.click("#lock")
            page.get_by_role("tab", name="Selfie studio", selected=True).wait_for()
            page.wait_for_selector("#reference-sheet img")
            page.get_by_label("Scene", exact=True).click()
            page.get_by_role("option", name="forest", exact=True).click()
            set_number(page, "Count", 4)
            page.click("#take-selfie")
            page.wait_for_function("document.querySelectorAll('#history img').length >= 4")
            page.get_by_text("New:").first.wait_for()
            take(page, out, "bundled-selfies.png")

            page.click("#make-pack")
            page.wait_for_function("document.querySelectorAll('#expression-pack img').length >= 7")
            take(page, out, "bundled-pack.png")
            browser.close()
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python scripts/screenshots.py", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=h.REPO / "assets" / "screenshots")
    ap.add_argument("--workdir", type=Path, help="keep the app's database and log here (default: a temp dir)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.workdir:
        run(args.out, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
            run(args.out, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
