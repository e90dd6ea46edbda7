"""A real browser: Debian's chromium, driven by Playwright, against `streamlit run`.

Clicks "Run the demo", waits for the live embedding figure, then visits every page and checks
that none shows an exception. Screenshots land in ``$PERCO_VIZ_SCREENSHOTS`` (default
``screenshots/``) for a person to look at.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
PAGES = ["Setup", "Distill", "Embeddings", "Rank_agreement", "Per_sample_coherence", "Diagnose", "Compare",
         "Teaching_view"]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, finished_run):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make setup installs it where apt-get works)")
    pytest.importorskip("playwright.sync_api")
    port = _free_port()
    env = {**os.environ, "PERCO_VIZ_RUNS": str(finished_run.path.parent)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless",
         "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("streamlit did not start within 60 s")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


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


def _settle(page, timeout_s: float = 90.0) -> None:
    """Wait until the page's script has run to its end and no spinner is left."""
    page.locator('[data-testid="stApp"]').first.wait_for(timeout=timeout_s * 1000)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        idle = page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').count()
        if idle and not page.locator('[data-testid="stSpinner"]').count():
            break
        page.wait_for_timeout(200)
    page.wait_for_timeout(1000)  # let plotly draw


def _assert_no_exception(page, name: str) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, f"{name}: {errors.first.inner_text()[:500]}"


def test_demo_in_a_real_browser(server, browser_page):
    page = browser_page
    t0 = time.time()
    page.goto(server)
    page.get_by_role("button", name="Run the demo").click(timeout=60_000)
    clicked = time.time()
    page.wait_for_url("**/Distill**", timeout=30_000)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=120_000)
    first_figure_s = time.time() - clicked
    page.wait_for_timeout(1500)
    page.screenshot(path=str(_shots() / "distill-live.png"), full_page=True)
    _assert_no_exception(page, "Distill")
    print(f"home loaded and clicked after {clicked - t0:.1f} s; first live figure {first_figure_s:.1f} s after the click")


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders(server, browser_page, name):
    """Each page in the demo's session (its ``?sid=`` kept, as after a click in the sidebar)."""
    page = browser_page
    query = page.url.partition("?")[2]
    page.goto(f"{server}/{name}?{query}")
    _settle(page)
    page.screenshot(path=str(_shots() / f"{name}.png"), full_page=True)
    _assert_no_exception(page, name)

