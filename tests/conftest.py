"""Shared, seeded fixtures. Tests that need a writable cache get a private one."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

# Keep the suite's caches (teacher weights, numba) out of the user's home and per-run.
os.environ.setdefault("PERCO_VIZ_CACHE", os.path.join(os.path.dirname(__file__), "..", ".perco_viz_cache"))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
