"""A real browser: Debian's chromium, driven by Playwright, against `streamlit run`.

Clicks "Run the demo", waits for the live embedding figure, then visits every page and checks
that none shows an exception. Screenshots land in ``$PERCO_VIZ_SCREENSHOTS`` (default
``screenshots/``) for a person to look at.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from bench_app import ARGS, CHROMIUM, PAGES, settle  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser_page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        yield page
        browser.close()


def _shots() -> Path:
    out = Path(os.environ.get("PERCO_VIZ_SCREENSHOTS", ROOT / "screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def _assert_no_exception(page, name: str) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, f"{name}: {errors.first.inner_text()[:500]}"


def test_demo_in_a_real_browser(server, browser_page):
    page = browser_page  # how long each step takes is measured by tools/bench_app.py, not here
    page.goto(server)
    page.get_by_role("button", name="Run the demo").click(timeout=60_000)
    page.wait_for_url("**/Distill**", timeout=30_000)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=120_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(_shots() / "distill-live.png"), full_page=True)
    _assert_no_exception(page, "Distill")


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders(server, browser_page, name):
    """Each page in the demo's session (its ``?sid=`` kept, as after a click in the sidebar)."""
    page = browser_page
    query = page.url.partition("?")[2]
    page.goto(f"{server}/{name}?{query}")
    settle(page)
    page.screenshot(path=str(_shots() / f"{name}.png"), full_page=True)
    _assert_no_exception(page, name)

