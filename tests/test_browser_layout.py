"""Layout in a real browser (Debian's chromium): every page of a finished run, at 1024×768 (a laptop,
a projector) and 1920×1080, shows no label, number or button cut short and no figure text drawn
outside its figure (tests/layout_check.js), and no exception. Screenshots land in
``$PERCO_VIZ_SCREENSHOTS/layout`` for a person to look at."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from bench_app import ARGS, CHROMIUM, settle  # noqa: E402

pytestmark = pytest.mark.browser
CHECK = "\n".join(line for line in (ROOT / "tests" / "layout_check.js").read_text().splitlines()
                  if not line.startswith("//"))
PAGES = ["", "Setup", "Distill", "Embeddings", "Rank_agreement", "Per_sample_coherence", "Diagnose", "Compare",
         "Teaching_view", "Runs"]


@pytest.fixture(scope="module")
def chromium(server):  # `server`: tests/test_browser.py's, on the shared finished run
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.mark.parametrize("size", [(1024, 768), (1920, 1080)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", PAGES, ids=lambda n: n or "Home")
def test_nothing_is_cut(server, chromium, name, size):
    page = chromium.new_page(viewport={"width": size[0], "height": size[1]})
    try:
        page.goto(f"{server}/{name}")
        settle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        problems = page.evaluate(CHECK)
        out = Path(os.environ.get("PERCO_VIZ_SCREENSHOTS", ROOT / "screenshots")) / "layout"
        out.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out / f"{name or 'Home'}-{size[0]}.png"))  # the first screen, as a person sees it
        assert problems == [], f"{name or 'Home'} at {size[0]}×{size[1]}: {problems}"
    finally:
        page.close()


def test_sidebar_links_carry_the_run_and_presentation_mode(server, chromium, finished_run):
    """A run picked on one page, and presentation mode, stay when the person moves on in the sidebar."""
    page = chromium.new_page(viewport={"width": 1024, "height": 768})
    try:
        page.goto(f"{server}/Per_sample_coherence?present=1")
        settle(page)
        link = page.locator("[data-testid='stSidebar'] a", has_text="Rank agreement")
        href = link.get_attribute("href")
        assert f"run=shared%2F{finished_run.path.name}" in href and "present=1" in href, href
        link.click()
        page.wait_for_url("**/Rank_agreement**")
        settle(page)
        assert f"run=shared%2F{finished_run.path.name}" in page.url and "present=1" in page.url
        assert page.locator("[data-testid='stSidebar'] input[type='checkbox']").first.is_checked()
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        page.close()
