"""Shared, seeded fixtures. Tests that need a writable cache get a private one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the app's `ui` package, as `streamlit run app.py` sees it

# Keep the suite's caches (teacher weights) out of the user's home; shared across the session.
os.environ.setdefault("PERCO_VIZ_CACHE", str(ROOT / ".perco_viz_cache"))
# No start-up warm-up in test servers and AppTests: UMAP's 25 s compile per process would only
# compete with the tests for the CPU (the tests that use UMAP compile it when they need it).
os.environ.setdefault("PERCO_VIZ_WARMUP", "0")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
