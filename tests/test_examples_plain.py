"""examples/plain_pytorch.py (issue 14, item 5): a plain PyTorch loop that distils with
``pv.coherence_loss`` and logs with ``pv.open_run`` runs as a script, on a CPU, and leaves a
finished run whose snapshots the app reads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from perco_viz.runs import RunDir, list_runs
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "plain_pytorch.py"


@pytest.mark.slow
def test_the_plain_pytorch_example_leaves_a_finished_run_whose_pc_rises(tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(EXAMPLE), "--runs", str(runs), "--epochs", "3"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (run,) = list_runs(runs)
    assert run.status()["state"] == "finished" and run.is_external()
    assert run.external()["writer"] == "open_run" and run.external()["config"]["student"] == "MLP 64-128-8"
    assert run.snapshot_indices() == [0, 1, 2, 3]  # the untrained student, then one per epoch
    records = run.metrics()
    assert [r["snapshot"] for r in records] == [0, 1, 2, 3]
    pcs = [r["pc"] for r in records]
    assert pcs[-1] > pcs[0] + 0.05  # the student learns the teacher's rankings
    assert all(r["knn_acc"] is not None for r in records) and records[-1]["train_loss"] is not None
    snap = RunDir(run.path).load_snapshot(3)
    assert snap.student.shape == (300, 8) and snap.coherence.shape == (300,)
    assert str(run.path) in out.stdout and f"PERCO_VIZ_RUNS={runs.resolve()}" in out.stdout
