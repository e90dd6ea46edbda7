"""Background trainings and the worker process (perco_viz.live, perco_viz.background)."""

from __future__ import annotations

import os
import sys
import time
import types

import pytest

from perco_viz import live
from perco_viz.background import WorkerDied, WorkerProcess
from perco_viz.config import RunConfig


def _small(epochs: int) -> RunConfig:
    return RunConfig().override(**{"train.epochs": epochs, "data.probe_size": 60, "train.device": "cpu"})


def _wait(predicate, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def _touch(path: str) -> None:
    open(path, "w").close()


def test_children_never_rerun_the_main_script(tmp_path, monkeypatch):
    """Streamlit installs the page as ``__main__``; a child that re-ran it would run the page
    (and start processes again, without end). The marker would appear if it did."""
    marker = tmp_path / "main-ran"
    script = tmp_path / "page.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    live.prestart()  # a child through the fork server
    pool = WorkerProcess()
    try:
        pool.submit(_touch, str(tmp_path / "task-ran")).result(timeout=60)
    finally:
        pool.shutdown()
    assert (tmp_path / "task-ran").exists()
    assert not marker.exists()


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


def test_a_killed_child_is_reported_and_its_run_resumes(tmp_path):
    """SIGKILL mid-run (out of memory, a crash): the run says so, keeps its snapshots, resumes."""
    reg = live.RunRegistry(max_concurrent=2)
    run = reg.start("me", _small(200), tmp_path, "killed")
    _wait(lambda: run.info().get("snapshots", 0) >= 2)
    run.kill()
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


def test_a_failing_setup_is_reported(tmp_path):
    reg = live.RunRegistry()
    bad = RunConfig().override(**{"data.name": "npz", "data.path": str(tmp_path / "missing.npz")})
    run = reg.start("me", bad, tmp_path, "bad")
    _wait(lambda: not run.alive)
    assert run.info()["state"] == "failed" and "missing.npz" in run.info()["error"]


def test_worker_relays_progress_and_survives_a_dead_worker(tmp_path):
    pool = WorkerProcess()
    try:
        seen = []
        assert pool.submit(_count, 4, progress=lambda d, t: seen.append((d, t))).result(timeout=60) == 4
        _wait(lambda: (4, 4) in seen, 10)
        with pytest.raises(WorkerDied, match="exit code 3"):
            pool.submit(_die).result(timeout=60)
        assert pool.submit(_count, 2).result(timeout=60) == 2  # a fresh worker
    finally:
        pool.shutdown()


def test_worker_errors_reach_the_caller():
    pool = WorkerProcess()
    try:
        with pytest.raises(ZeroDivisionError):
            pool.submit(_divide, 1, 0).result(timeout=60)
        assert pool.submit(_divide, 6, 3).result(timeout=60) == 2  # the worker lives on
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
    """The fork server (and a long-lived worker) started earlier, with other variables: a call
    sees exactly the caller's PERCO_VIZ_* variables, set or removed since."""
    pool = WorkerProcess()
    try:
        monkeypatch.setenv("PERCO_VIZ_STALE_TEST", "1")
        assert pool.submit(_env, "PERCO_VIZ_STALE_TEST").result(timeout=60) == "1"
        monkeypatch.delenv("PERCO_VIZ_STALE_TEST")
        assert pool.submit(_env, "PERCO_VIZ_STALE_TEST").result(timeout=60) is None
    finally:
        pool.shutdown()
