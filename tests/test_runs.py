"""The run directory: atomic files, torn lines, stale heartbeats, safe names."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from perco_viz.config import ConfigError, RunConfig
from perco_viz.runs import RunDir, RunStoreError, Snapshot, list_runs, sanitize_name


def _snap(i: int, n: int = 5) -> Snapshot:
    return Snapshot(i, float(i), 10 * i, np.full((n, 2), i, np.float32), np.full(n, 0.5 + 0.01 * i),
                    {"epoch": float(i), "step": 10 * i, "pc": 0.5 + 0.01 * i})


def test_create_write_read_roundtrip(tmp_path):
    cfg = RunConfig().override(**{"student.dim": 4})
    run = RunDir.create(tmp_path, cfg, "demo")
    assert run.exists() and run.config() == cfg
    for i in range(3):
        run.save_snapshot(_snap(i))
    assert run.snapshot_indices() == [0, 1, 2]
    snap = run.load_snapshot(2)
    assert snap.step == 20 and snap.student.shape == (5, 2) and snap.metrics["pc"] == pytest.approx(0.52)
    run.save_teacher_probe(np.zeros((5, 3)), np.arange(5), np.arange(5))
    assert set(run.teacher_probe()) == {"features", "labels", "indices"}
    # a second run with the same name does not overwrite the first
    assert RunDir.create(tmp_path, cfg, "demo").name == "demo-1"
    assert [r.name for r in list_runs(tmp_path)] and len(list_runs(tmp_path)) == 2


def test_torn_last_line_is_skipped(tmp_path):
    run = RunDir.create(tmp_path, RunConfig(), "torn")
    run.append_metrics({"epoch": 0, "step": 0, "pc": 0.5})
    with open(run.path / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 1, "step": 5, "pc"')  # a writer killed mid-line
    assert run.metrics() == [{"epoch": 0, "step": 0, "pc": 0.5}]


def test_nan_metrics_become_null(tmp_path):
    run = RunDir.create(tmp_path, RunConfig(), "nan")
    run.append_metrics({"pc": float("nan"), "knn_acc": np.float32(0.5)})
    assert run.metrics() == [{"pc": None, "knn_acc": 0.5}]
    json.loads((run.path / "metrics.jsonl").read_text())  # strict JSON


def test_status_and_stale_heartbeat(tmp_path):
    run = RunDir.create(tmp_path, RunConfig(), "s")
    run.write_status("running", epoch=1)
    assert run.status()["state"] == "running"
    status = json.loads((run.path / "status.json").read_text())
    status["heartbeat"] = time.time() - 3600
    (run.path / "status.json").write_text(json.dumps(status))
    assert run.status()["state"] == "stale" and "resume" in run.status()["error"]
    with pytest.raises(ValueError):
        run.write_status("exploded")


def test_truncate_for_resume(tmp_path):
    run = RunDir.create(tmp_path, RunConfig(), "t")
    for i in range(4):
        run.save_snapshot(_snap(i))
    run.truncate_metrics(10)
    run.remove_snapshots_after(1)
    assert [r["step"] for r in run.metrics()] == [0, 10] and run.snapshot_indices() == [0, 1]


@pytest.mark.parametrize("name", ["../../etc", "a/b", "..x", "x\\y", "  spaced name "])
def test_names_cannot_escape_the_root(tmp_path, name):
    run = RunDir.create(tmp_path / "root", RunConfig(), name)
    assert run.path.parent == tmp_path / "root"
    assert "/" not in sanitize_name(name.replace("..", "a"))


def test_empty_name_rejected():
    with pytest.raises(RunStoreError, match="usable characters"):
        sanitize_name("../..")


def test_unwritable_root_gives_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RunStoreError, match="cannot write"):
        RunDir.create(blocker / "runs", RunConfig(), "x")


def test_not_a_run_directory(tmp_path):
    with pytest.raises(RunStoreError, match="not a run directory"):
        RunDir(tmp_path).config()


def test_config_roundtrip_and_errors(tmp_path):
    cfg = RunConfig().override(**{"loss.tau": "0.05", "train.epochs": "3", "train.amp": "false"})
    assert cfg.loss.tau == 0.05 and cfg.train.epochs == 3 and cfg.train.amp is False
    assert RunConfig.from_text(cfg.to_yaml()) == cfg == RunConfig.from_text(cfg.to_json())
    path = tmp_path / "c.yaml"
    cfg.save(path)
    assert RunConfig.load(path) == cfg
    with pytest.raises(ConfigError, match="unknown key"):
        RunConfig.from_dict({"loss": {"temperature": 1}})
    with pytest.raises(ConfigError, match="unknown config section"):
        RunConfig.from_dict({"optimizer": {}})
    with pytest.raises(ConfigError, match="must be"):
        RunConfig().override(**{"train.epochs": "many"})
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunConfig.from_text("loss: [unclosed")
