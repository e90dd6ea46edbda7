"""The methods benchmark (``perco-viz bench methods``, :mod:`perco_viz.methods`).

The ``bench`` fixture (one tiny benchmark through the CLI) is in conftest.py.
"""

from __future__ import annotations

import json
import math

import pytest

from perco_viz import methods
from perco_viz.analysis import compare
from perco_viz.config import ConfigError
from perco_viz.runs import list_runs

METHODS = ("coherence", "sp")  # conftest's BENCH_METHODS


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
    assert {n for n in runs if n.startswith("digits-d4-")} == {f"digits-d4-s0-{m}" for m in METHODS}
    for method in METHODS:
        run = runs[f"digits-d4-s0-{method}"]
        cfg = run.config()
        assert (cfg.loss.name, cfg.loss.ce_weight, cfg.loss.kd_weight, cfg.train.seed) == (method, 0.0, 0.0, 0)
        held = run.heldout()
        assert held["method"] == method
    assert compare.find_benches(root) == [root / compare.BENCH_FILE]
    assert len(compare.load_bench(root / compare.BENCH_FILE)["rows"]) == 2 + len(METHODS)


def test_bench_rejects_unknown_methods():
    with pytest.raises(ValueError, match="unknown method"):
        methods.bench_methods("digits", 4, 1, 1, ["triplet"])


def test_bench_set_overrides_are_typed_and_checked():
    from perco_viz.methods import bench_config, parse_overrides

    cfg = bench_config("digits", 8, 1, overrides=parse_overrides(["train.batch_size=64", "train.amp=off",
                                                                    "loss.kernel=sigmoid"]))
    assert (cfg.train.batch_size, cfg.train.amp, cfg.loss.kernel) == (64, False, "sigmoid")
    with pytest.raises(ConfigError, match="train.batch_size must be between 3 and 65,536"):
        bench_config("digits", 8, 1, overrides=parse_overrides(["train.batch_size=1"]))
    assert math.isclose(bench_config("digits", 8, 1, overrides={"train.lr": "3e-4"}).train.lr, 3e-4)
