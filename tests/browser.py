"""Headless Chromium for the page tests (the explain page, the training-health dashboard): one
browser per test module, and pages opened from file:// URLs that record console errors, page
errors, dialogs and requests. Skips, saying why, where Chromium (Debian's `chromium`, which
.ci/run installs with apt-get) or Playwright for Python (in the [test] extra) is missing."""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--disable-default-apps"]


def _chromium() -> str | None:
    for candidate in (os.environ.get("DIFPROG_CHROMIUM"), shutil.which("chromium"),
                      "/usr/bin/chromium", shutil.which("chromium-browser")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module, or a skip that says what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need Playwright for Python: pip install -e '.[test]'")
    executable = _chromium()
    if executable is None:
        pytest.skip("browser tests need Chromium: no chromium at /usr/bin/chromium or on PATH "
                    "(.ci/run installs Debian's with apt-get install chromium; or set "
                    "DIFPROG_CHROMIUM to a Chromium binary)")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=executable, args=ARGS)
        except Exception as error:  # a Chromium that cannot start here (missing libraries...)
            pytest.skip(f"browser tests: Chromium at {executable} did not start "
                        f"({str(error).splitlines()[0]})")
        yield launched
        launched.close()


class Page:
    """A page opened from a file:// URL, recording console errors, page errors and requests."""

    def __init__(self, browser, path: pathlib.Path):
        self.url = path.resolve().as_uri()
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.errors, self.requests, self.dialogs = [], [], []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(self.url)

    def close(self):
        self.context.close()


def not_blank(path: pathlib.Path) -> None:
    """A 1280x800 screenshot of many colours, none of them most of it."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.size == (1280, 800)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 100, "the screenshot looks blank"
    assert max(count for count, _ in colours) < 0.85 * 1280 * 800, "mostly one colour"


def screenshot(page: Page, tmp_path: pathlib.Path, name: str) -> None:
    """Takes a screenshot, checks it is not blank, and keeps it in $DIFPROG_SCREENSHOTS."""
    path = tmp_path / f"{name}.png"
    page.page.screenshot(path=str(path))
    not_blank(path)
    keep = os.environ.get("DIFPROG_SCREENSHOTS")
    if keep:
        pathlib.Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, pathlib.Path(keep) / path.name)
