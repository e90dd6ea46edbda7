"""Shared, seeded fixtures. Tests that need a writable cache get a private one."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
BENCH_METHODS = ("coherence", "sp")  # the methods of the `bench` fixture
sys.path.insert(0, str(ROOT))  # the app's `ui` package, as `streamlit run app.py` sees it

# Keep the suite's caches (teacher weights) out of the user's home; shared across the session.
os.environ.setdefault("PERCO_VIZ_CACHE", str(ROOT / ".perco_viz_cache"))
# No start-up warm-up in test servers and AppTests: UMAP's 25 s compile per process would only
# compete with the tests for the CPU (the tests that use UMAP compile it when they need it).
os.environ.setdefault("PERCO_VIZ_WARMUP", "0")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


# --------------------------------------------------------------------------- markers
# `make test-fast` = -m "not slow and not app and not browser and not load"; `make test` runs all
# but `load` (pyproject's addopts). Markers that follow from what a test uses are set here, so a
# new test is sorted without anyone remembering to: every test of a tests/test_app_*.py file or
# using the app_env fixture drives pages with AppTest (app, slow); tests using a fixture that
# trains (SLOW_FIXTURES) are slow. Other slow tests carry @pytest.mark.slow themselves.
SLOW_FIXTURES = {"bench", "finished_run"}  # a method benchmark; a digits run of the engine (~6 s)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name.startswith("test_app_") or "app_env" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.app)
            item.add_marker(pytest.mark.slow)
        elif SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A small finished digits run made by the engine (as the CLI makes one): a RunDir.

    Lives in a shared runs root (``finished_run.path.parent``) that app tests point
    ``PERCO_VIZ_RUNS`` at.
    """
    from perco_viz.config import RunConfig
    from perco_viz.distill import distill

    root = tmp_path_factory.mktemp("shared-runs")
    cfg = RunConfig().override(**{"train.epochs": 3, "data.probe_size": 200, "train.device": "cpu"})
    result = distill(cfg, out=root, name="cli-digits")
    assert result.status == "finished", result.error
    return result.run_dir


@pytest.fixture
def app_env(tmp_path, monkeypatch, finished_run):
    """Environment for AppTest: the shared runs root holds ``finished_run``; returns that root."""
    monkeypatch.setenv("PERCO_VIZ_RUNS", str(finished_run.path.parent))
    monkeypatch.chdir(ROOT)
    return finished_run.path.parent


@pytest.fixture(scope="session")
def bench(tmp_path_factory):
    """One tiny ``perco-viz bench methods`` (digits, width 4, one seed, one epoch, :data:`BENCH_METHODS`).

    Its runs are kept under a runs root (test_compare.py adds a copy of the shared finished run).
    Returns ``(root, json_path, stdout)``.
    """
    from perco_viz.cli import main

    root = tmp_path_factory.mktemp("compare-runs")
    out_json = root.parent / "bench.json"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        code = main(["bench", "methods", "--dataset", "digits", "--student-dim", "4", "--seeds", "1",
                     "--epochs", "1", "--methods", ",".join(BENCH_METHODS), "--device", "cpu",
                     "--out", str(root), "--json", str(out_json)])
    assert code == 0, stdout.getvalue()
    return root, out_json, stdout.getvalue()


@pytest.fixture(scope="module")
def server(finished_run):
    """`streamlit run app.py` on a free port with ``finished_run`` in its shared runs folder; its URL.
    Skips when Debian's chromium or Playwright is missing (the browser tests' server)."""
    sys.path.insert(0, str(ROOT / "tools"))
    from bench_app import CHROMIUM, free_port, start_server, wait_health

    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make setup installs it where apt-get works)")
    pytest.importorskip("playwright.sync_api")
    port = free_port()
    proc = start_server(port, {**os.environ, "PERCO_VIZ_RUNS": str(finished_run.path.parent)})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_health(url)
    except RuntimeError as exc:
        proc.kill()
        pytest.fail(str(exc))
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
