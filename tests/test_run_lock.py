"""One writer per run: the OS lock on ``<run>/.lock``, a concurrent resume refused before it
touches anything, a dead writer's lock freed by the kernel, and failed resumes that leave a
finished run's status.json and config.json byte for byte as they were."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from perco_viz.config import ConfigError, RunConfig
from perco_viz.distill import Callbacks, Distiller, TrainingError, distill, resume
from perco_viz.runs import RunDir, RunLockedError, RunStoreError


def tiny(**overrides) -> RunConfig:
    base = {"data.name": "blobs", "data.n_samples": 300, "data.probe_size": 60, "teacher.kind": "identity",
            "student.dim": 2, "student.hidden": 32, "train.epochs": 2, "train.batch_size": 64,
            "train.device": "cpu", "train.lr": 1e-2}
    return RunConfig().override(**{**base, **overrides})


def _files(run: RunDir) -> dict[str, bytes]:
    """Every file of the run but the lock file, by relative path."""
    out = {}
    for folder, _, names in os.walk(run.path):
        for name in names:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, run.path)
            if rel != ".lock":
                with open(path, "rb") as fh:
                    out[rel] = fh.read()
    return out


def _hold_in_thread(run: RunDir):
    """Hold ``run``'s lock in another thread until the returned event is set."""
    held, release = threading.Event(), threading.Event()

    def hold():
        with run.lock():
            held.set()
            release.wait(60)

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    assert held.wait(10)
    return release, t


@pytest.fixture
def finished(tmp_path) -> RunDir:
    result = distill(tiny(), out=tmp_path / "runs", name="done")
    assert result.status == "finished", result.error
    return result.run_dir


# --------------------------------------------------------------------------- the lock itself
def test_the_lock_is_exclusive_and_reentrant_within_a_thread(tmp_path):
    run = RunDir.create(tmp_path, tiny(), "r")
    assert not run.is_locked()
    with run.lock():
        with run.lock():  # re-entrant: distill()/resume() and the engine take it in turn
            assert run.is_locked()
        assert run.is_locked()
        errors = []

        def other_thread():
            try:
                with run.lock(wait_s=0.1):
                    pass
            except RunLockedError as exc:
                errors.append(str(exc))

        t = threading.Thread(target=other_thread)
        t.start()
        t.join(10)
        assert len(errors) == 1 and "locked by another process" in errors[0] and f"pid {os.getpid()}" in errors[0]
        assert "wait for it to finish or stop it" in errors[0]
    assert not run.is_locked()
    with run.lock():
        pass
    with pytest.raises(RunStoreError, match="not a run directory"):
        with RunDir(tmp_path / "nowhere").lock():
            pass


HOLDER = """
import sys, time
from perco_viz.runs import RunDir
run = RunDir(sys.argv[1])
with run.lock():
    run.write_status("running")
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.mark.slow
def test_a_killed_writer_frees_the_lock_and_its_running_status_reads_stale(tmp_path):
    """The kernel releases the lock of a dead process: "running" + a free lock = stale, even
    when the pid in status.json is alive (reused) and the heartbeat is fresh."""
    run = RunDir.create(tmp_path, tiny(), "r")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert run.is_locked()
        with pytest.raises(RunLockedError, match=f"pid {proc.pid} on "):
            with run.lock(wait_s=0.2):
                pass
        run.write_status("running")  # now: our (live) pid, a fresh heartbeat
        assert run.status()["state"] == "running"
    finally:
        proc.kill()
        proc.wait(30)
    assert not run.is_locked()
    status = run.status()
    assert status["state"] == "stale" and "resume" in status["error"]
    with run.lock(wait_s=0.2):
        assert run.status()["state"] == "running"  # a writer that holds the lock is alive


# --------------------------------------------------------------------------- concurrent writers
@pytest.mark.slow
def test_resume_of_a_run_still_training_is_refused(tmp_path):
    """A training (a Distiller in a thread) holds its run; `perco-viz resume` in another process,
    resume() in this one and the app's registry are all refused at once, and the training goes
    on unharmed: ordered metrics without duplicates, every snapshot intact."""
    root = tmp_path / "runs"
    stop, paused, snaps, box = threading.Event(), threading.Event(), [], {}

    def on_snapshot(snap):
        snaps.append(snap)
        if len(snaps) == 2:  # the writer pauses here, lock held, so the others get the CPU
            paused.wait(120)

    trainer = threading.Thread(target=lambda: box.setdefault("result", distill(
        tiny(**{"train.epochs": 100_000}), out=root, name="busy", cancel=stop,
        callbacks=Callbacks(on_snapshot=on_snapshot))), daemon=True)
    trainer.start()
    try:
        deadline = time.time() + 120
        while len(snaps) < 2 and time.time() < deadline and trainer.is_alive():
            time.sleep(0.05)
        assert len(snaps) >= 2, box
        run = RunDir(root / "busy")
        assert run.is_locked() and run.status()["state"] == "running"

        with pytest.raises(RunLockedError, match="locked by another process"):
            resume(run, epochs=3)

        from perco_viz import live

        with pytest.raises(RunLockedError, match="locked"):  # the app's Resume button
            live.RunRegistry().start("me", run.config(), root, resume_dir=run.path)

        proc = subprocess.run([sys.executable, "-m", "perco_viz", "resume", str(run.path), "--epochs", "3",
                               "--quiet"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "locked" in lines[0], proc.stderr
        assert "wait for it to finish or stop it" in lines[0]
        paused.set()  # the training goes on, unharmed
        while len(snaps) < 4 and time.time() < deadline and trainer.is_alive():
            time.sleep(0.05)
        assert len(snaps) >= 4
    finally:
        paused.set()
        stop.set()
        trainer.join(60)
    assert box["result"].status == "cancelled", box["result"].error
    assert run.config().train.epochs == 100_000  # the refused resumes did not rewrite it
    records = run.metrics()
    steps = [r["step"] for r in records]
    indices = [r["snapshot"] for r in records]
    assert steps == sorted(set(steps)) and indices == list(range(len(indices)))
    assert run.snapshot_indices() == indices
    for i in indices:
        assert run.load_snapshot(i).student.shape == (60, 2)
    # free again: a resume goes on from the last checkpoint
    done = int(max(r["epoch"] for r in records))
    result = resume(run, epochs=done + 1)
    assert result.status == "finished", result.error
    epochs = [r["epoch"] for r in run.metrics()]
    assert epochs == sorted(set(epochs)) and epochs[-1] == done + 1


# --------------------------------------------------------------------------- failed resumes
def _refusals():
    def setup_fails(self):
        raise TrainingError("the data went away")

    def restore_fails(self):
        raise RuntimeError("size mismatch for student.net.0.weight")

    return {
        "negative epochs": (dict(epochs=-5), ConfigError, "train.epochs", None),
        "no more epochs": (dict(epochs=2), ConfigError, "finished after 2 epoch(s)", None),
        "another run's config": (dict(config=lambda run: run.config().override(**{"loss.name": "rkd"})),
                                 ConfigError, "loss.name is 'coherence' in the run", None),
        "absent device": (dict(epochs=4, config=lambda run: run.config().override(**{"train.device": "cuda:77"})),
                          ConfigError, "cuda:77", None),
        "damaged checkpoint": (dict(epochs=4), RunStoreError, "checkpoint.pt of run 'done' is damaged",
                               lambda run, mp: run.checkpoint_path.write_bytes(b"not a checkpoint")),
        "set-up fails": (dict(epochs=4), None, "the data went away",
                         lambda run, mp: mp.setattr(Distiller, "setup", setup_fails)),
        "restore fails": (dict(epochs=4), None, "RuntimeError: size mismatch",
                          lambda run, mp: mp.setattr(Distiller, "restore", restore_fails)),
        "locked": (dict(epochs=4), RunLockedError, "locked by another process", "lock"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", list(_refusals()))
def test_a_failed_resume_changes_nothing(finished, monkeypatch, case):
    kwargs, error, message, prepare = _refusals()[case]
    run = finished
    if "config" in kwargs:
        kwargs = {**kwargs, "config": kwargs["config"](run)}
    release = None
    if prepare == "lock":
        release, holder = _hold_in_thread(run)
    elif prepare is not None:
        prepare(run, monkeypatch)
    before = _files(run)
    seen = []
    try:
        if error is None:  # set-up/restore errors: reported as the result, the run untouched
            result = resume(run, callbacks=Callbacks(on_status=lambda s, e: seen.append((s, e))), **kwargs)
            assert result.status == "failed" and message in result.error
            assert seen == [("failed", result.error)]
        else:
            with pytest.raises(error) as err:
                resume(run, **kwargs)
            assert message in str(err.value)
    finally:
        if release is not None:
            release.set()
            holder.join(10)
    assert _files(run) == before  # status.json, config.json, metrics, snapshots: byte for byte
    assert run.status()["state"] == "finished"


@pytest.mark.slow
def test_cli_resume_with_bad_epochs_changes_nothing(finished, capsys):
    from perco_viz.cli import main

    before = _files(finished)
    assert main(["resume", str(finished.path), "--epochs", "-5", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "train.epochs" in err[0]
    assert main(["resume", str(finished.path), "--epochs", "2", "--quiet"]) == 1
    assert "finished after 2" in capsys.readouterr().err
    assert _files(finished) == before
