"""Held-out evaluation, the benchmark table, the run tables and the Compare page.

The ``bench`` fixture (a tiny ``perco-viz bench methods``) is in conftest.py; the benchmark's
own tests are in test_methods.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from perco_viz.analysis import compare
from perco_viz.data import load_dataset
from perco_viz.runs import RunDir

TIMEOUT = 60
ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "7_Compare.py")
METHODS = ("coherence", "sp")


def test_evaluate_student_of_a_run_matches_the_bench(bench):
    root, out_json, _ = bench
    row = next(r for r in json.loads(out_json.read_text())["rows"] if r["method"] == "coherence")
    run = RunDir(root / "digits-d4-s0-coherence")
    scores = compare.evaluate_student(run, device="cpu")
    for key in compare.METRICS:
        assert scores[key] == pytest.approx(row[key], abs=1e-6), key
    assert scores["n_test"] == load_dataset(run.config().data).n_test  # the whole test split, not the probe set
    assert scores["train_s"] >= 0


def test_summary_table_mean_std_and_failures():
    rows = [
        {"method": "teacher", "seed": None, **dict.fromkeys(compare.METRICS, 1.0), "train_s": None},
        {"method": "coherence", "seed": 0, **dict.fromkeys(compare.METRICS, 0.8), "train_s": 1.0},
        {"method": "coherence", "seed": 1, **dict.fromkeys(compare.METRICS, 0.9), "train_s": 3.0},
        {"method": "rkd", "seed": 0, **dict.fromkeys(compare.METRICS, 0.7), "train_s": 2.0},
        {"method": "rkd", "seed": 1, **dict.fromkeys(compare.METRICS), "train_s": 2.0, "error": "NaN loss"},
    ]
    lines = compare.summary_table(rows).splitlines()
    assert lines[2].startswith("| teacher | 1 | 1.000 |")
    assert lines[3].startswith("| coherence | 2 | **0.850 ± 0.071** |") and "2.0 ± 1.4" in lines[3]
    assert lines[4].startswith("| rkd | 1 (1 failed) | 0.700 |")


def test_run_table_and_curves(finished_run, bench):
    root, _, _ = bench
    runs = [finished_run, RunDir(root / "digits-d4-s0-sp")]
    table = compare.run_table(runs)
    assert list(table["run"]) == ["cli-digits", "digits-d4-s0-sp"]
    assert list(table["loss"]) == ["coherence", "sp"] and list(table["epochs"]) == [3, 1]
    assert table["pc"].between(0, 1).all()
    named = compare.curves(runs + [finished_run])  # a repeated name gets a suffix
    assert list(named) == ["cli-digits", "digits-d4-s0-sp", "cli-digits (2)"]
    assert len(named["cli-digits"]) == 4 and "pc" in named["cli-digits"][-1]


@pytest.fixture
def compare_env(app_env, bench, finished_run, monkeypatch):
    """A runs root with the shared finished run, two bench runs and the bench's JSON."""
    root, _, _ = bench
    if not (root / finished_run.name).exists():
        shutil.copytree(finished_run.path, root / finished_run.name)
    monkeypatch.setenv("PERCO_VIZ_RUNS", str(root))
    return root


def test_compare_page_renders_two_runs(compare_env):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert len(at.multiselect(key="compare-runs").value) == 2
    assert len(at.get("plotly_chart")) >= 5  # 3 curves, 2 embeddings (+ the bench bars)
    run_table, bench_table = at.dataframe
    assert len(run_table.value) == 2
    assert list(bench_table.value["method"]) == ["teacher", "untrained", *METHODS]


def test_compare_page_starts_a_baseline_with_the_same_config(compare_env):
    from ui import common

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.switch_page("pages/7_Compare.py").run()
    at.selectbox(key="compare-baseline-loss").select("rkd").run()
    at.button(key="compare-baseline-start").click().run()
    assert not at.exception, at.exception
    run = common.registry().latest(at.session_state["sid"])
    try:
        assert run is not None and run.config.loss.name == "rkd"
    finally:
        run.stop(wait=30)
