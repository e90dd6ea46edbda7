"""The methods benchmark (library and CLI), the run tables and the Compare page."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from perco_viz.analysis import compare
from perco_viz.cli import main
from perco_viz.data import load_dataset
from perco_viz.runs import RunDir, list_runs

TIMEOUT = 60
ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "7_Compare.py")
METHODS = ("coherence", "sp")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One tiny benchmark through the CLI (digits, width 4, one seed, one epoch, two methods).

    Its runs are kept under a runs root that also holds a copy of the shared finished run.
    Returns ``(root, json_path, stdout)``.
    """
    root = tmp_path_factory.mktemp("compare-runs")
    out_json = root.parent / "bench.json"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        code = main(["bench", "methods", "--dataset", "digits", "--student-dim", "4", "--seeds", "1",
                     "--epochs", "1", "--methods", ",".join(METHODS), "--device", "cpu",
                     "--out", str(root), "--json", str(out_json)])
    assert code == 0, stdout.getvalue()
    return root, out_json, stdout.getvalue()


def test_bench_json_is_well_formed(bench):
    _, out_json, _ = bench
    doc = json.loads(out_json.read_text())
    assert set(doc) >= {"machine", "protocol", "rows"}
    assert "class-unaware" in doc["protocol"].lower() and "defaults" in doc["protocol"]
    assert [r["method"] for r in doc["rows"]] == ["teacher", "untrained", *METHODS]
    for row in doc["rows"]:
        assert set(compare.ROW_KEYS) <= set(row), row
        assert "error" not in row
        for key in compare.METRICS:
            assert math.isfinite(row[key]) and 0.0 <= row[key] <= 1.0, (row["method"], key, row[key])
    teacher = doc["rows"][0]
    assert teacher["pc"] == pytest.approx(1.0) and teacher["cka"] == pytest.approx(1.0)
    for row in doc["rows"][1:]:
        assert row["seed"] == 0 and row["train_s"] >= 0.0
        assert row["pc"] == pytest.approx(row["coherence_mean"])


def test_bench_prints_machine_protocol_and_table(bench):
    _, _, stdout = bench
    assert stdout.startswith("machine: ") and "protocol: " in stdout
    table = [line for line in stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| method | seeds | PC |")
    assert [line.split("|")[1].strip() for line in table[2:]] == ["teacher", "untrained", *METHODS]


def test_bench_out_keeps_runs_and_held_out_rows(bench):
    root, _, _ = bench
    runs = {r.name: r for r in list_runs(root)}
    assert set(runs) == {f"digits-d4-s0-{m}" for m in METHODS}
    for method in METHODS:
        run = runs[f"digits-d4-s0-{method}"]
        cfg = run.config()
        assert (cfg.loss.name, cfg.loss.ce_weight, cfg.loss.kd_weight, cfg.train.seed) == (method, 0.0, 0.0, 0)
        held = json.loads((run.path / compare.HELDOUT_FILE).read_text())
        assert held["method"] == method
    assert compare.find_benches(root) == [root / compare.BENCH_FILE]
    assert len(compare.load_bench(root / compare.BENCH_FILE)["rows"]) == 2 + len(METHODS)


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


def test_bench_rejects_unknown_methods():
    with pytest.raises(ValueError, match="unknown method"):
        compare.bench_methods("digits", 4, 1, 1, ["triplet"])


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
