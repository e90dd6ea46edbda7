"""perco_viz.open_run: a run of your own training, in the engine's format, measured off your thread."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest
import torch

import perco_viz as pv
from perco_viz import writer as writer_module
from perco_viz.coherence import per_sample_coherence
from perco_viz.metrics import knn_accuracy
from perco_viz.runs import RunDir, RunStoreError, list_runs

N, D_T, D_S = 60, 12, 4


@pytest.fixture
def probe(rng):
    teacher = rng.normal(size=(N, D_T)).astype(np.float32)
    labels = rng.integers(0, 3, size=N)
    return teacher, labels


def _student(rng, teacher, noise=0.5):
    return (teacher[:, :D_S] + noise * rng.normal(size=(N, D_S))).astype(np.float32)


def test_a_loop_becomes_a_run_the_engine_reader_reads(tmp_path, probe, rng):
    teacher, labels = probe
    feats = [_student(rng, teacher, noise) for noise in (2.0, 1.0, 0.1)]
    with pv.open_run(tmp_path, name="mine", teacher_features=torch.tensor(teacher), labels=labels,
                     class_names=["a", "b", "c"], config={"lr": 0.1, "arch": "resnet8"}, epochs=3) as run:
        for epoch, f in enumerate(feats):
            run.log(torch.tensor(f), epoch=epoch + 1, step=10 * (epoch + 1), train_loss=1.0 / (epoch + 1), lr=0.1)
    assert [r.name for r in list_runs(tmp_path)] == ["mine"]
    r = RunDir(tmp_path / "mine")
    assert r.status()["state"] == "finished" and r.status()["error"] is None
    assert r.snapshot_indices() == [0, 1, 2]
    cfg = r.config()
    assert (cfg.data.probe_size, cfg.student.dim, cfg.train.epochs, cfg.name) == (N, D_S, 3, "mine")
    probe_arrays = r.teacher_probe()
    np.testing.assert_array_equal(probe_arrays["labels"], labels)
    np.testing.assert_array_equal(probe_arrays["indices"], np.arange(N))
    records = r.metrics()
    assert [m["step"] for m in records] == [10, 20, 30] and [m["snapshot"] for m in records] == [0, 1, 2]
    for f, rec, i in zip(feats, records, range(3)):
        snap = r.load_snapshot(i)
        c = per_sample_coherence(f, teacher)
        np.testing.assert_allclose(snap.coherence, c)
        np.testing.assert_array_equal(snap.student, f)
        assert rec["pc"] == pytest.approx(c.mean()) and rec["knn_acc"] == knn_accuracy(f, labels, k=5)
        assert rec["coherence_p10"] == pytest.approx(np.quantile(c, 0.1))
        assert rec["lr"] == 0.1 and rec["wall_s"] >= 0
    assert records[0]["pc"] < records[-1]["pc"]
    ext = r.external()
    assert ext["writer"] == "open_run" and ext["config"] == {"lr": 0.1, "arch": "resnet8"}
    assert ext["class_names"] == ["a", "b", "c"] and r.is_external()
    assert not r.is_locked()


def test_numbers_only_logs_and_defaults(tmp_path, probe, rng):
    teacher, _ = probe
    with pv.open_run(tmp_path, teacher_features=teacher) as run:  # unlabeled, no name
        run.log(train_loss=2.0)
        run.log(train_loss=None, val_acc=np.float32(0.5))
        run.log(_student(rng, teacher), epoch=1.5)
    r = RunDir(run.path)
    assert r.name.startswith("run-")
    recs = r.metrics()
    assert [(m["step"], m["epoch"], m["snapshot"]) for m in recs] == [(0, 0.0, None), (1, 0.0, None), (2, 1.5, 0)]
    assert recs[1]["train_loss"] is None and recs[1]["val_acc"] == 0.5
    assert recs[2]["knn_acc"] is None and "pc" not in recs[0]
    assert r.config().train.epochs == 2  # grew to the epochs logged


@pytest.mark.parametrize("bad, message", [
    (lambda s: np.where(np.arange(N)[:, None] == 3, np.nan, s), "NaN"),
    (lambda s: s[:-1], "60 rows"),
    (lambda s: s.astype(np.int64), "floating point"),
    (lambda s: torch.tensor(s).long(), "floating point"),
    (lambda s: s[:, :, None], "(n_probe, d)"),
    (lambda s: np.zeros((N, 5000), np.float32), "at most 4,096"),
])
def test_bad_features_raise_in_the_caller_and_write_nothing(tmp_path, probe, rng, bad, message):
    teacher, _ = probe
    with pv.open_run(tmp_path, name="r", teacher_features=teacher) as run:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            run.log(bad(_student(rng, teacher)), epoch=1)
        run.flush()
        assert run.run_dir.metrics() == [] and run.run_dir.snapshot_indices() == []
    assert RunDir(tmp_path / "r").status()["state"] == "finished"


def test_bad_scalars_and_a_width_change_raise(tmp_path, probe, rng):
    teacher, _ = probe
    with pv.open_run(tmp_path, name="r", teacher_features=teacher) as run:
        for kwargs, message in [({"train_loss": float("nan")}, "finite numbers only"),
                                ({"pc": 0.5}, "computed or set by perco_viz"),
                                ({"lr": "fast"}, "must be a number"),
                                ({"epoch": -1}, ">= 0"), ({"step": 1.5}, "whole number"),
                                ({"loss": torch.ones(3)}, "one number")]:
            with pytest.raises(ValueError, match=message):
                run.log(**kwargs)
        run.log(_student(rng, teacher))
        with pytest.raises(ValueError, match="first features had 4"):
            run.log(np.zeros((N, 5), np.float32))
        run.flush()
        assert len(run.run_dir.metrics()) == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"teacher_features": np.full((5, 2), np.inf)}, "NaN/inf"),
    ({"teacher_features": np.ones((2, 2))}, "at least 3"),
    ({"labels": np.zeros(59)}, "one entry per point"),
    ({"labels": np.linspace(0, 1, 60)}, "integer class"),
    ({"config": {"x": float("nan")}}, "JSON-serialisable"),
    ({"config": {"x": object()}}, "JSON-serialisable"),
    ({"metric": "manhattan-ish"}, "loss.metric"),
    ({"epochs": 0}, "epochs"),
    ({"class_names": ["a"], "labels": np.arange(60) % 3}, "class_names has 1"),
    ({"max_pending": 0}, "max_pending"),
])
def test_bad_arguments_to_open_run_write_nothing(tmp_path, probe, kwargs, message):
    teacher, _ = probe
    args = {"teacher_features": teacher, **kwargs}
    with pytest.raises(ValueError, match=message):
        pv.open_run(tmp_path / "runs", **args)
    assert not (tmp_path / "runs").exists() or list_runs(tmp_path / "runs") == []


def test_a_loop_that_raises_leaves_a_failed_run_and_the_exception_goes_on(tmp_path, probe, rng):
    teacher, _ = probe
    with pytest.raises(ZeroDivisionError):
        with pv.open_run(tmp_path, name="boom", teacher_features=teacher) as run:
            run.log(_student(rng, teacher), epoch=1)
            raise ZeroDivisionError("division by zero")
    status = RunDir(tmp_path / "boom").status()
    assert status["state"] == "failed" and status["error"] == "ZeroDivisionError: division by zero"
    assert RunDir(tmp_path / "boom").snapshot_indices() == [0]  # what was logged is kept


def test_ctrl_c_marks_the_run_cancelled(tmp_path, probe):
    teacher, _ = probe
    with pytest.raises(KeyboardInterrupt):
        with pv.open_run(tmp_path, name="stop", teacher_features=teacher):
            raise KeyboardInterrupt
    assert RunDir(tmp_path / "stop").status()["state"] == "cancelled"


def test_log_after_close_is_refused(tmp_path, probe):
    teacher, _ = probe
    run = pv.open_run(tmp_path, teacher_features=teacher)
    run.close()
    run.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        run.log(train_loss=1.0)


def _script(tmp_path, body: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import numpy as np, perco_viz as pv
        teacher = np.random.default_rng(0).normal(size=(40, 6))
        run = pv.open_run({str(tmp_path)!r}, name="child", teacher_features=teacher)
        run.log(teacher[:, :2] + 0.1, epoch=1)
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_an_uncaught_exception_without_with_marks_the_run_failed(tmp_path):
    proc = _script(tmp_path, "raise RuntimeError('out of memory in my loop')\n")
    assert proc.returncode == 1 and "out of memory" in proc.stderr
    status = RunDir(tmp_path / "child").status()
    assert status["state"] == "failed" and status["error"] == "RuntimeError: out of memory in my loop"
    assert RunDir(tmp_path / "child").snapshot_indices() == [0]  # the pending snapshot was measured first


def test_a_run_never_closed_is_failed_at_exit(tmp_path):
    proc = _script(tmp_path, "")
    assert proc.returncode == 0, proc.stderr
    status = RunDir(tmp_path / "child").status()
    assert status["state"] == "failed" and "ended before the run was closed" in status["error"]


def test_a_killed_process_leaves_a_stale_run(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time, numpy as np, perco_viz as pv
        teacher = np.random.default_rng(0).normal(size=(40, 6))
        run = pv.open_run({str(tmp_path)!r}, name="killed", teacher_features=teacher)
        run.log(teacher[:, :2], epoch=1); run.flush()
        print("ready", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        run = RunDir(tmp_path / "killed")
        assert run.status()["state"] == "running" and run.is_locked()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    status = RunDir(tmp_path / "killed").status()
    assert status["state"] == "stale" and "stopped answering" in status["error"]
    assert RunDir(tmp_path / "killed").load_snapshot(0).student.shape == (40, 2)


def test_only_rank_zero_writes(tmp_path, probe, monkeypatch):
    teacher, _ = probe
    monkeypatch.setenv("RANK", "1")
    with pv.open_run(tmp_path, name="r1", teacher_features=teacher) as run:
        run.log(np.full((N, 2), np.nan), epoch=1)  # not even checked: rank 1 does nothing
        assert not run.active and run.path is None and run.flush()
    assert not (tmp_path / "r1").exists()
    monkeypatch.setenv("RANK", "0")
    with pv.open_run(tmp_path, name="r0", teacher_features=teacher) as run:
        assert run.active
    assert (tmp_path / "r0").exists()


def test_log_does_not_wait_for_the_measurement(tmp_path, probe, rng, monkeypatch):
    """While the background thread is stuck measuring, log returns and the features queue is
    bounded: the oldest waiting snapshot loses its features, not its numbers."""
    teacher, _ = probe
    release, entered = threading.Event(), threading.Event()
    real = writer_module.Run._write

    def slow_write(self, item):
        entered.set()
        release.wait(30)
        return real(self, item)

    monkeypatch.setattr(writer_module.Run, "_write", slow_write)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pv.open_run(tmp_path, name="busy", teacher_features=teacher, max_pending=2) as run:
            for step in range(6):  # the first is taken by the stuck thread; 5 wait, 2 keep features
                run.log(_student(rng, teacher), epoch=step, step=step, train_loss=float(step))
                assert entered.wait(30)
            assert not run.flush(timeout=0.05)
            assert run.dropped == 3
            release.set()
    assert any("faster than they are measured" in str(w.message) for w in caught)
    r = RunDir(tmp_path / "busy")
    recs = r.metrics()
    assert [m["train_loss"] for m in recs] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # every number kept, in order
    assert [m["snapshot"] for m in recs] == [0, None, None, None, 1, 2]
    assert r.status()["dropped"] == 3


def test_a_failed_write_surfaces_in_the_caller(tmp_path, probe, rng, monkeypatch):
    teacher, _ = probe
    run = pv.open_run(tmp_path, name="disk", teacher_features=teacher)

    def full(self, record):
        raise RunStoreError("cannot write to the run directory: No space left on device")

    monkeypatch.setattr(RunDir, "append_metrics", full)
    run.log(train_loss=1.0)
    with pytest.raises(RunStoreError, match="No space left"):
        run.flush()
    with pytest.raises(RunStoreError, match="No space left"):
        run.log(train_loss=2.0)
    monkeypatch.undo()
    run.close()
    status = RunDir(tmp_path / "disk").status()
    assert status["state"] == "failed" and "No space left" in status["error"]


def test_a_second_writer_is_refused_and_the_engine_never_resumes_it(tmp_path, probe):
    teacher, _ = probe
    from perco_viz.distill import resume

    with pv.open_run(tmp_path, name="one", teacher_features=teacher) as run:
        errors = []
        other = threading.Thread(target=lambda: errors.append(_second_writer(run.run_dir)))
        other.start()
        other.join(30)
        assert errors and "locked by another process" in errors[0]
    with pytest.raises(RunStoreError, match="written by your own training"):
        resume(run.path)
    assert RunDir(run.path).status()["state"] == "finished"


def _second_writer(run_dir: RunDir) -> str:
    try:
        with run_dir.lock(wait_s=0.1):
            return "not refused"
    except RunStoreError as exc:
        return str(exc)


def test_heartbeat_keeps_a_quiet_run_fresh(tmp_path, probe, monkeypatch):
    teacher, _ = probe
    monkeypatch.setattr(writer_module, "HEARTBEAT_S", 0.05)
    with pv.open_run(tmp_path, name="quiet", teacher_features=teacher) as run:
        first = run.run_dir.status()["heartbeat"]
        deadline = time.monotonic() + 10
        while run.run_dir.status()["heartbeat"] == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run.run_dir.status()["heartbeat"] > first
        assert run.run_dir.status()["state"] == "running"


def test_external_json_damaged_reads_as_unknown_writer(tmp_path, probe):
    teacher, _ = probe
    with pv.open_run(tmp_path, name="x", teacher_features=teacher) as run:
        pass
    (run.path / "external.json").write_text("{not json")
    ext = RunDir(run.path).external()
    assert ext["writer"] == "unknown" and "not valid JSON" in ext["problem"]
    (run.path / "external.json").write_text(json.dumps({"writer": 3, "config": [1]}))
    assert RunDir(run.path).external() == {"writer": "unknown", "config": {}}


def test_bench_log_reports_the_callers_time(capsys, tmp_path):
    from perco_viz.cli import main

    assert main(["bench", "log", "--rows", "40", "--logs", "3", "--every-s", "0", "--student-dim", "4",
                 "--teacher-dim", "8", "--json", str(tmp_path / "log.json")]) == 0
    out = capsys.readouterr().out
    assert "| 40 | 4 |" in out and "of 3 | cpu |" in out
    (row,) = json.loads((tmp_path / "log.json").read_text())["rows"]
    assert row["rows"] == 40 and 0 < row["log_ms_median"] <= row["log_ms_max"] and row["measure_s"] > 0
    assert main(["bench", "log", "--rows", "2"]) == 2
