"""Background trainings and the worker process (perco_viz.live, perco_viz.process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perco_viz import live
from perco_viz.config import RunConfig
from perco_viz.process import WORKER_NICENESS, Worker, WorkerDied


def _small(epochs: int) -> RunConfig:
    return RunConfig().override(**{"train.epochs": epochs, "data.probe_size": 60, "train.device": "cpu"})


def _wait(predicate, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


PAGE = """
import os, sys, time
with open({marker!r}, "a") as f:  # at import time: a child that re-ran the page would add a line
    f.write(f"{{os.getpid()}} {{__name__}}\\n")
from perco_viz import live
from perco_viz.config import RunConfig
from perco_viz.process import Worker

worker = Worker()
assert worker.submit(os.getpid).result(timeout=120) != os.getpid()
cfg = RunConfig().override(**{{"train.epochs": 1, "data.probe_size": 30, "train.device": "cpu"}})
run = live.start_training(cfg, runs_root={root!r}, name="from-a-page")
deadline = time.time() + 120
while run.alive and time.time() < deadline:
    time.sleep(0.1)
print(run.info()["state"], run.info()["error"])
worker.shutdown()
"""


@pytest.mark.slow
def test_children_never_rerun_the_page(tmp_path):
    """Streamlit installs the page as ``__main__`` (its ``__file__``, no ``__spec__``); a child that
    re-ran it would run the page (and start processes again, without end). A page run the same
    way (``runpy.run_path(run_name="__main__")``) starts a worker call and a training: its marker
    is written once, by the page's own process."""
    marker, page = tmp_path / "page-ran", tmp_path / "page.py"
    page.write_text(PAGE.format(marker=str(marker), root=str(tmp_path / "runs")))
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.run([sys.executable, "-c", f"import runpy; runpy.run_path({str(page)!r}, run_name='__main__')"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": root})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "finished", proc.stdout
    lines = marker.read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith(" __main__"), lines


def test_the_launcher_imports_no_torch():
    """The launcher only passes pickles on: importing its module must not import torch (~170 MB)."""
    proc = subprocess.run([sys.executable, "-c", "import sys, perco_viz.process; print(sorted(m for m in "
                           "('torch', 'numpy') if m in sys.modules))"], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr


@pytest.mark.slow
def test_the_one_way_to_start_a_training(tmp_path):
    """``live.start_training`` starts a run outside any registry (the registry calls it too)."""
    run = live.start_training(_small(1), runs_root=tmp_path, name="direct")
    _wait(lambda: not run.alive)
    assert run.info()["state"] == "finished", run.info()["error"]
    assert run.run_dir.path == tmp_path / "direct"


@pytest.mark.slow
def test_a_run_in_its_own_process_reports_and_finishes(tmp_path):
    reg = live.RunRegistry(max_concurrent=2)
    run = reg.start("me", _small(2), tmp_path, "child")
    assert run.pid is not None and run.pid != __import__("os").getpid()
    _wait(lambda: not run.alive)
    info = run.info()
    assert info["state"] == "finished", info["error"]
    assert info["snapshots"] == 3 and info["progress"]["step"] == info["progress"]["total_steps"]
    assert run.run_dir.status()["state"] == "finished"
    assert len(run.run_dir.snapshot_indices()) == 3


@pytest.mark.slow
def test_a_killed_child_is_reported_and_its_run_resumes(tmp_path):
    """SIGKILL mid-run (out of memory, a crash): the run says so, keeps its snapshots, resumes."""
    reg = live.RunRegistry(max_concurrent=2)
    run = reg.start("me", _small(200), tmp_path, "killed")
    _wait(lambda: run.info().get("snapshots", 0) >= 2)
    os.kill(run.pid, signal.SIGKILL)
    _wait(lambda: not run.alive, 30)
    info = run.info()
    assert info["state"] == "failed" and "stopped unexpectedly" in info["error"]
    run_dir = run.run_dir
    assert run_dir.status()["state"] == "failed"
    kept = run_dir.snapshot_indices()
    assert len(kept) >= 2
    for i in kept:
        assert run_dir.load_snapshot(i).student.shape[0] == 60
    resumed = reg.start("me", _small(len(kept) + 1), tmp_path, resume_dir=run_dir.path)
    _wait(lambda: not resumed.alive)
    assert resumed.info()["state"] == "finished", resumed.info()["error"]
    assert run_dir.metrics()[-1]["epoch"] == len(kept) + 1


@pytest.mark.slow
def test_stop_cancels_within_a_batch(tmp_path):
    reg = live.RunRegistry(max_concurrent=1)
    run = reg.start("me", _small(500), tmp_path, "stopped")
    _wait(lambda: run.info().get("snapshots", 0) >= 1)
    # the training runs below the server that shows it
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, run.pid) == min(19, ours + live.TRAINING_NICENESS)
    run.stop(wait=30)
    assert not run.alive
    assert run.info()["state"] == "cancelled" and run.run_dir.status()["state"] == "cancelled"


@pytest.mark.slow
def test_a_failing_setup_is_reported(tmp_path):
    reg = live.RunRegistry()
    bad = RunConfig().override(**{"data.name": "npz", "data.path": str(tmp_path / "missing.npz")})
    run = reg.start("me", bad, tmp_path, "bad")
    _wait(lambda: not run.alive)
    assert run.info()["state"] == "failed" and "missing.npz" in run.info()["error"]


def test_worker_relays_progress_and_survives_a_dead_worker(tmp_path):
    pool = Worker()
    try:
        seen = []
        assert pool.submit(_count, 4, progress=lambda d, t: seen.append((d, t))).result(timeout=60) == 4
        _wait(lambda: (4, 4) in seen, 10)
        with pytest.raises(WorkerDied, match="worker process ended"):
            pool.submit(_die).result(timeout=60)
        assert pool.submit(_count, 2).result(timeout=60) == 2  # a fresh worker
    finally:
        pool.shutdown()


def test_worker_errors_reach_the_caller():
    pool = Worker()
    try:
        with pytest.raises(ZeroDivisionError):
            pool.submit(_divide, 1, 0).result(timeout=60)
        assert pool.submit(_divide, 6, 3).result(timeout=60) == 2  # the worker lives on
        # background work: below the trainings and the pages
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert pool.submit(os.getpriority, os.PRIO_PROCESS, 0).result(timeout=60) == min(19, ours + WORKER_NICENESS)
    finally:
        pool.shutdown()


def _divide(a: int, b: int) -> float:
    return a // b


def _count(n: int, progress=None) -> int:
    for i in range(1, n + 1):
        if progress is not None:
            progress(i, n)
    return n


def _die() -> None:
    import os

    os._exit(3)


def _env(key: str) -> str | None:
    import os

    return os.environ.get(key)


def test_children_see_the_callers_environment_now(monkeypatch):
    """The launcher (and a long-lived worker) started earlier, with other variables: a call
    sees exactly the caller's PERCO_VIZ_* variables, set or removed since."""
    pool = Worker()
    try:
        monkeypatch.setenv("PERCO_VIZ_STALE_TEST", "1")
        assert pool.submit(_env, "PERCO_VIZ_STALE_TEST").result(timeout=60) == "1"
        monkeypatch.delenv("PERCO_VIZ_STALE_TEST")
        assert pool.submit(_env, "PERCO_VIZ_STALE_TEST").result(timeout=60) is None
    finally:
        pool.shutdown()


def test_the_phase_follows_the_latest_report(tmp_path):
    """Issue 12: "Computing the teacher's features…" stayed up after metrics appeared: the first
    snapshot (epoch 0) comes before any training step's progress, and must end the set-up phase."""
    run = live.LiveRun("me", _small(1), tmp_path)
    run._handle("progress", {"phase": "features", "step": 0, "total_steps": 10, "epoch": 0})
    assert run.info()["phase"] == "features"
    run._handle("snapshot", {"index": 0, "epoch": 0.0, "step": 0})
    assert run.info()["phase"] == "train"
    run._handle("progress", {"phase": "train", "step": 3, "total_steps": 10, "epoch": 0})
    run._handle("snapshot", {"index": 1, "epoch": 1.0, "step": 5})
    assert run.info()["phase"] == "train"


def test_the_engine_reports_training_before_its_first_snapshot(tmp_path):
    """The engine says "train" as soon as its set-up is over, before the epoch-0 snapshot."""
    from perco_viz.distill import Callbacks, distill

    events = []
    cfg = RunConfig().override(**{"data.name": "blobs", "data.n_samples": 200, "teacher.kind": "identity",
                                  "data.probe_size": 30, "train.epochs": 1, "train.batch_size": 64, "train.device": "cpu"})
    result = distill(cfg, out=tmp_path, callbacks=Callbacks(on_snapshot=lambda s: events.append("snapshot"),
                                                            on_progress=lambda p: events.append(p["phase"])))
    assert result.status == "finished", result.error
    assert events.index("train") < events.index("snapshot")
