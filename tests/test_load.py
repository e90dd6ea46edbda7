"""A small version of the load test (tools/load_test.py runs the full 20-session one)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.load


def test_concurrent_sessions_each_get_their_own_correct_run(app_env, monkeypatch):
    monkeypatch.setenv("PERCO_VIZ_MAX_TRAININGS", "8")
    spec = importlib.util.spec_from_file_location("load_test", Path(__file__).parent.parent / "tools" / "load_test.py")
    load_test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load_test)
    from ui import common

    monkeypatch.setattr(common, "demo_config", common.demo_config)  # restored after the test
    report = load_test.run_load(sessions=6, demos=2, epochs=3, timeout_s=300)
    assert report["sessions_without_exception"] == 6
    assert report["distinct_session_ids"] == 6
    assert report["demo_runs_own_and_correct"] == 2
