"""Background warm-up at server start: numba's JIT (UMAP, the coherence kernels) and the
demo's teacher, so the first click is fast. Runs once per server process, never blocks a page."""

from __future__ import annotations

import threading

import streamlit as st

_STATE = {"numba": "pending", "teacher": "pending"}


def _warm() -> None:
    try:
        import numpy as np

        from perco_viz.coherence import perception_coherence

        rng = np.random.default_rng(0)
        perception_coherence(rng.normal(size=(8, 2)), rng.normal(size=(8, 3)))
        from perco_viz.projection import warm_up_numba

        warm_up_numba()
        _STATE["numba"] = "ready"
    except Exception as exc:  # noqa: BLE001 — warm-up is an optimisation only
        _STATE["numba"] = f"failed: {exc}"
    try:
        from perco_viz import models
        from perco_viz.config import RunConfig
        from perco_viz.data import load_dataset

        cfg = RunConfig()
        models.load_teacher(cfg.teacher, load_dataset(cfg.data), cache_dir=models.default_cache_dir())
        _STATE["teacher"] = "ready"
    except Exception as exc:  # noqa: BLE001
        _STATE["teacher"] = f"failed: {exc}"


@st.cache_resource
def _thread() -> threading.Thread:
    t = threading.Thread(target=_warm, name="perco-viz-warmup", daemon=True)
    t.start()
    return t


def start() -> None:
    """Start the warm-up once per server process."""
    _thread()


def status() -> dict[str, str]:
    return dict(_STATE)
