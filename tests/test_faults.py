"""Runs survive faults: SIGKILL mid-run, a full disk, an unwritable run directory."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from perco_viz.config import RunConfig
from perco_viz.distill import distill, resume
from perco_viz.runs import RunDir, RunStoreError, list_runs

ARGS = ["--dataset", "blobs", "--n-samples", "3000", "--probe-size", "100", "--teacher", "identity",
        "--student-dim", "2", "--batch-size", "32", "--device", "cpu", "--quiet"]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "perco_viz", "distill", *ARGS, "--epochs", "400",
                             "--out", str(tmp_path), "--name", "killed"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = RunDir(tmp_path / "killed")
    deadline = time.time() + 120
    while time.time() < deadline and len(run.snapshot_indices()) < 3:
        time.sleep(0.1)
    assert len(run.snapshot_indices()) >= 3, "the run did not start in time"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)

    status = run.status()
    assert status["state"] == "stale" and "resume" in status["error"]
    records = run.metrics()
    assert records, "completed snapshots must be listed"
    for i in run.snapshot_indices():  # every completed snapshot is intact
        snap = run.load_snapshot(i)
        assert np.isfinite(snap.student).all() and snap.coherence.shape == (100,)
    done_epochs = int(max(r["epoch"] for r in records))

    result = resume(run, epochs=done_epochs + 2)
    assert result.status == "finished", result.error
    assert run.status()["state"] == "finished"
    epochs = [r["epoch"] for r in run.metrics()]
    assert epochs == sorted(epochs) and epochs[-1] == done_epochs + 2
    assert len(epochs) == len(set(epochs)), "resume must not duplicate snapshots"


def test_full_disk_mid_run_fails_clearly(tmp_path, monkeypatch):
    from perco_viz import runs

    cfg = RunConfig().override(**{"data.name": "blobs", "data.n_samples": 300, "data.probe_size": 50,
                                  "teacher.kind": "identity", "student.dim": 2, "train.epochs": 5,
                                  "train.batch_size": 64, "train.device": "cpu"})
    real = runs.atomic_write_bytes
    calls = {"n": 0}

    def flaky(path, data):
        calls["n"] += 1
        if "snapshots" in str(path) and calls["n"] > 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(runs, "atomic_write_bytes", flaky)
    result = distill(cfg, out=tmp_path, name="full")
    assert result.status == "failed"  # a full disk ends the run (it does not retry for ever)
    assert "No space left" in result.error and "Free some disk space" in result.error
    for i in result.run_dir.snapshot_indices():
        result.run_dir.load_snapshot(i)  # what was written is intact


@pytest.mark.slow
def test_unwritable_output_is_a_clear_cli_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    proc = subprocess.run([sys.executable, "-m", "perco_viz", "distill", *ARGS, "--epochs", "1",
                           "--out", str(blocker / "runs")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "cannot write to the run directory" in proc.stderr and "Traceback" not in proc.stderr


def test_listing_skips_broken_run_dirs(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{not json")
    runs = list_runs(tmp_path)
    assert [r.name for r in runs] == ["half"]
    with pytest.raises(Exception, match="config"):
        runs[0].config()
    with pytest.raises(RunStoreError):
        runs[0].load_snapshot(0)
