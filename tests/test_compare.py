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
    run_table, *_diff, bench_table = at.dataframe  # the runs, what differs in their configs, the benchmark
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


# --------------------------------------------------------------------------- config diff
def test_config_diff_lists_only_the_fields_that_differ():
    from perco_viz.config import RunConfig

    base = RunConfig(name="a")
    other = base.override(**{"name": "b", "train.epochs": 5, "loss.name": "cc", "loss.options": {"gamma": 0.3}})
    third = base.override(**{"name": "c", "data.path": None, "teacher.layer": "embed"})
    diff = compare.config_diff({"A": base, "B": other, "C": third})
    assert list(diff.columns) == ["A", "B", "C"] and diff.index.name == "field"
    assert diff.to_dict("index") == {
        "teacher.layer": {"A": "none", "B": "none", "C": "embed"},
        "loss.name": {"A": "coherence", "B": "cc", "C": "coherence"},
        "loss.options.gamma": {"A": compare.NOT_SET, "B": "0.3", "C": compare.NOT_SET},
        "train.epochs": {"A": "20", "B": "5", "C": "20"},
    }  # the names differ too, but they are not compared


def test_config_diff_of_equal_configs_or_one_run_is_empty():
    from perco_viz.config import RunConfig

    assert compare.config_diff({"a": RunConfig(name="a"), "b": RunConfig(name="b")}).empty
    assert compare.config_diff({"a": RunConfig()}).empty
    assert compare.config_diff({}).empty


def test_compare_page_shows_the_config_diff(app_env, finished_run, tmp_path, monkeypatch):
    """Two runs that differ in their epochs: Compare says so in a table; the same run twice (two
    copies): plain words that the configurations agree."""
    root = tmp_path / "runs"
    shutil.copytree(finished_run.path, root / "five-epochs")
    shutil.copytree(finished_run.path, root / "same")
    twin = RunDir(root / "five-epochs")
    twin.write_config(twin.config().override(**{"train.epochs": 5}))
    monkeypatch.setenv("PERCO_VIZ_RUNS", str(root))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert sorted(at.multiselect(key="compare-runs").value) == ["five-epochs  ·  shared", "same  ·  shared"]
    diff = next(d for d in at.dataframe if d.key == "compare-config-diff" or "train.epochs" in d.value.index)
    assert diff.value.loc["train.epochs"].tolist() in (["5", "3"], ["3", "5"])
    twin.write_config(RunDir(root / "same").config())
    at.run()
    assert not at.exception
    assert not any("train.epochs" in d.value.index for d in at.dataframe)
    assert any("same configuration" in i.value for i in at.info)
