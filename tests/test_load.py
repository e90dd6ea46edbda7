"""A small version of the load test in real browsers (tools/load_test_browser.py runs the full one).

6 sessions in their own browser contexts against one `streamlit run` server, 2 of them running
the demo at once: every page loads without an exception and each demo session gets its own,
correct run. (tools/load_test.py drives AppTest sessions in threads instead, for server-side
latency; AppTest's test runtime is process-global, so its concurrent runs can race, and it is
not a test.)

Marked ``load``: ``make test`` leaves it out (pyproject's addopts ``-m "not load"``; six browsers
and two trainings take minutes on two cores); ``make load-test-browser`` runs it
(``pytest -m load tests/test_load.py``) before the full 20-session measurement.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.load, pytest.mark.browser]

ROOT = Path(__file__).resolve().parent.parent


def test_concurrent_browser_sessions_each_get_their_own_correct_run():
    sys.path.insert(0, str(ROOT / "tools"))
    import load_test_browser

    if not os.path.exists(load_test_browser.CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make setup installs it where apt-get works)")
    pytest.importorskip("playwright.async_api")
    report = asyncio.run(load_test_browser.run(sessions=6, demos=2, timeout_s=300))
    assert report["sessions_completed"] == 6, report["errors"]
    assert report["pages_with_an_exception"] == 0
    assert report["distinct_session_ids"] == 6
    assert report["demo_runs_own_and_correct"] == 2
    assert report["peak_rss_server_tree_mib"] > 0
