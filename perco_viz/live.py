"""Trainings running in background processes, for an interactive front end.

No UI code here: a front end keeps one :class:`RunRegistry` for the whole server process (in
Streamlit, through ``st.cache_resource``), starts runs for a session, and reads a run's
latest state with :meth:`LiveRun.info` — a thread-safe copy — or from the run directory.
:func:`start_training` is the one way a training starts (the registry adds its limits).

Each training runs in a process of its own (:func:`perco_viz.process.start_child`: forked from a
process server that has already imported torch, so it starts in a fraction of a second), never
in the UI's process: it neither holds the UI's GIL nor waits for it (a plot being built, numba
compiling UMAP), trainings of different users run in parallel on different cores, and a crash
in one cannot take the server down. The child reports through a queue (progress, snapshots,
the final status) and through the run directory, which is all a run made by the CLI offers too.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perco_viz import process
from perco_viz.config import RunConfig
from perco_viz.runs import RunDir, RunStoreError
from perco_viz.safe_io import server_trusts_torchscript

PROGRESS_EVERY_S = 0.1  # the child sends at most ten progress messages a second
TRAINING_NICENESS = 5  # below the server and its browser tabs, above the worker (process.WORKER_NICENESS)


# the phases a run reports before it trains (``Distiller.setup``), in order; then "train"
SETUP_PHASES = ("starting", "data", "teacher", "features")


class RegistryFull(RuntimeError):
    """Too many trainings at once; the message says what to do."""


def prepare_demo_teacher() -> None:
    """Train and cache the demo's teacher if it is not cached yet (run it in the worker)."""
    from perco_viz import models, paths
    from perco_viz.data import load_dataset

    cfg = RunConfig()
    data = load_dataset(cfg.data)
    if not models.teacher_cache_path(data, paths.default_cache_dir()).is_file():
        models.load_teacher(cfg.teacher, data, cache_dir=paths.default_cache_dir())


def train_in_child(job: dict[str, Any], cancel, messages) -> None:
    """The training process (:func:`perco_viz.process.start_child`'s target): run the distillation
    of ``job`` (made by :func:`start_training`), report through ``messages``, stop when ``cancel``
    is set."""
    last = [0.0]

    def on_progress(p: dict[str, Any]) -> None:
        now = time.monotonic()
        if p.get("phase") != "train" or now - last[0] >= PROGRESS_EVERY_S or p.get("step") == p.get("total_steps"):
            last[0] = now
            messages.put(("progress", p))

    def on_snapshot(snap) -> None:
        messages.put(("snapshot", {"index": snap.index, "epoch": snap.epoch, "step": snap.step}))

    def on_status(state: str, error: str | None) -> None:
        messages.put(("status", {"state": state, "error": error}))

    try:
        if hasattr(os, "nice"):  # the pages that show the training go first
            os.nice(TRAINING_NICENESS)
        os.chdir(job["cwd"])
        process.apply_env(job["env"])
        import torch

        from perco_viz.config import ConfigError
        from perco_viz.distill import Callbacks, Distiller, TrainingError, resume, run_engine

        torch.set_num_threads(job["threads"])
        run_dir = RunDir(job["run_dir"])
        config = RunConfig.from_dict(job["config"])
        callbacks = Callbacks(on_snapshot, on_progress, on_status)
        trust = bool(job.get("trust_code", False))
        try:
            if job["resume"]:  # under the run's lock, everything checked before anything is written
                resume(run_dir, config=config, callbacks=callbacks, cancel=cancel, trust_code=trust)
            else:
                run_engine(Distiller(config, run_dir, callbacks, cancel, trust_code=trust))
        except (RunStoreError, ConfigError, TrainingError) as exc:  # refused: one line, the run untouched
            on_status("failed", str(exc))
    except BaseException as exc:  # noqa: BLE001 — reported, never a silent death
        messages.put(("status", {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}))
        raise


@dataclass
class LiveRun:
    """One background training (a child process), made by :func:`start_training`. Read it
    through :meth:`info`."""

    owner: str
    config: RunConfig | None
    root: Path
    name: str | None = None
    resume_dir: Path | None = None
    threads: int = 1
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _state: dict[str, Any] = field(default_factory=dict, repr=False)
    _starting: bool = field(default=True, repr=False)  # counts as alive until _start() returns
    _child: process.Child | None = field(default=None, repr=False)
    _watcher: threading.Thread | None = field(default=None, repr=False)

    def _start(self) -> LiveRun:
        """Create (or reopen) the run directory and start the child process."""
        try:
            self._set(state="starting", phase="starting", started=time.time(), snapshots=0, error=None,
                      run_dir=None, progress={}, snapshot=None)
            if self.resume_dir is not None:
                run_dir = RunDir(self.resume_dir)
                if run_dir.is_external():  # its config names no data or model: training it would overwrite it
                    raise RunStoreError(f"run {run_dir.name!r} was written by your own training "
                                        "(perco_viz.open_run or a callback): it cannot be resumed here; "
                                        "start your training again")
                if self.config is None:
                    self.config = run_dir.config()
                # another writer holds it: refused here with its message (the child checks again under
                # the lock, and only it writes the config, once everything else is checked)
                run_dir.check_unlocked()
            else:
                run_dir = RunDir.create(self.root, self.config, self.name)
            self._set(run_dir=str(run_dir.path), state="running")
            job = {"config": self.config.to_dict(), "run_dir": str(Path(run_dir.path).resolve()),
                   "resume": self.resume_dir is not None, "cwd": os.getcwd(), "env": process.child_env(),
                   "threads": self.threads,
                   # the operator's switch, read here in the server (never from the config or the child's env)
                   "trust_code": server_trusts_torchscript()}
            self._child = process.start_child(train_in_child, job, name=f"run-{self.id}")
            self._watcher = threading.Thread(target=self._watch, name=f"perco-viz-watch-{self.id}", daemon=True)
            self._watcher.start()
        finally:
            self._starting = False
        return self

    # ------------------------------------------------------------------ the child's reports
    def _watch(self) -> None:
        while True:
            try:
                messages, alive = self._child.messages(timeout=0.2)
            except (EOFError, OSError):  # the launcher is gone, and the child with it
                break
            for kind, body in messages:
                self._handle(kind, body)
            if not alive:
                break
        if self.info().get("state") in ("starting", "running"):
            self._died(self._child.exitcode)

    def _handle(self, kind: str, body: dict[str, Any]) -> None:
        with self._lock:
            if kind == "progress":
                self._state["progress"] = body
                self._state["phase"] = body.get("phase")
            elif kind == "snapshot":
                if self._state.get("phase") in SETUP_PHASES:  # a snapshot: the set-up is over
                    self._state["phase"] = "train"
                self._state["snapshot"] = body
                self._state["snapshots"] = self._state.get("snapshots", 0) + 1
                self._state["updated"] = time.time()
            elif kind == "status":
                self._state.update(state=body["state"], error=body["error"], finished=time.time())

    def _died(self, code: int | None) -> None:
        """The child ended without a final status (killed, out of memory, a crash)."""
        error = f"the training process stopped unexpectedly (exit code {code}); resume the run to continue"
        self._set(state="failed", error=error, finished=time.time())
        run_dir = self.run_dir
        if run_dir is None:
            return
        try:
            with run_dir.lock():  # the child's lock died with it; a new writer's is respected
                if run_dir.status().get("state") == "running":
                    run_dir.write_status("failed", error=error)
        except Exception:  # noqa: BLE001 — the in-memory state already says so
            pass

    def _set(self, **values: Any) -> None:
        with self._lock:
            self._state.update(values)

    # ------------------------------------------------------------------ what a front end reads
    def info(self) -> dict[str, Any]:
        """A consistent copy: state, phase, progress, latest snapshot, run_dir, error."""
        with self._lock:
            return dict(self._state, id=self.id, alive=self.alive)

    @property
    def alive(self) -> bool:
        """True from the start until the child has ended and its last reports are read."""
        return self._starting or (self._watcher is not None and self._watcher.is_alive())

    @property
    def pid(self) -> int | None:
        return None if self._child is None else self._child.pid

    @property
    def run_dir(self) -> RunDir | None:
        with self._lock:
            path = self._state.get("run_dir")
        return RunDir(path) if path else None

    def stop(self, wait: float = 0.0) -> None:
        """Ask the run to stop within one batch; optionally wait for it to end."""
        if self._child is not None and self.alive:
            try:
                self._child.cancel()
            except (EOFError, OSError):  # the launcher is gone, and the child with it
                pass
        if wait and self._watcher is not None:
            self._watcher.join(wait)


def start_training(config: RunConfig | None, *, runs_root: str | Path, name: str | None = None,
                   resume_dir: str | Path | None = None, threads: int = 1, owner: str = "") -> LiveRun:
    """Start (or resume) a training in a process of its own; returns at once.

    Args:
        config: the run's configuration (``None`` with ``resume_dir``: the saved one).
        runs_root: the folder the new run directory is made in.
        name: the run's name (default: derived from the config and the time).
        resume_dir: go on with this run instead of starting a new one.
        threads: torch's threads in the child.
        owner: who started it (a session id), for :class:`RunRegistry`.

    Raises:
        RunLockedError: resuming a run that another process is writing (nothing touched).
        RunStoreError: the runs folder cannot be written, or the run to resume is damaged.
        ChildProcessError: the process launcher (:mod:`perco_viz.process`) could not start.
    """
    run = LiveRun(owner, config, Path(runs_root), name, Path(resume_dir) if resume_dir else None, threads)
    return run._start()


class RunRegistry:
    """All background trainings of one server process.

    Args:
        max_concurrent: the most trainings running at once, over all sessions.
    """

    def __init__(self, max_concurrent: int = 4) -> None:
        self.max_concurrent = max_concurrent
        self._runs: dict[str, list[LiveRun]] = {}
        self._starting: dict[str, int] = {}  # owner → trainings being started (counted as running)
        self._lock = threading.Lock()

    def start(self, owner: str, config: RunConfig | None, root: str | Path, name: str | None = None,
              resume_dir: str | Path | None = None) -> LiveRun:
        """:func:`start_training` for ``owner`` (one at a time per owner, ``max_concurrent`` in all).

        Raises:
            RegistryFull: the owner already trains, or the server-wide limit is reached.
            RunLockedError, RunStoreError: see :func:`start_training`.
        """
        with self._lock:
            mine = self._runs.setdefault(owner, [])
            if self._starting.get(owner) or any(r.alive for r in mine):
                raise RegistryFull("a training of yours is already running: stop it before starting another")
            active = self._active_count()
            if active >= self.max_concurrent:
                raise RegistryFull(f"the server is running its limit of {self.max_concurrent} trainings at once; "
                                   "try again when one finishes")
            threads = max(1, (os.cpu_count() or 1) // (active + 1))  # no oversubscription
            self._starting[owner] = 1  # counted before the lock is let go
        try:  # outside the lock: the first start may wait seconds for the process server
            run = start_training(config, runs_root=root, name=name, resume_dir=resume_dir, threads=threads,
                                 owner=owner)
            with self._lock:
                mine.append(run)
            return run
        finally:
            with self._lock:
                self._starting.pop(owner, None)

    def latest(self, owner: str) -> LiveRun | None:
        """The owner's most recent run (running or not)."""
        with self._lock:
            runs = self._runs.get(owner) or []
            return runs[-1] if runs else None

    def runs_of(self, owner: str) -> list[LiveRun]:
        with self._lock:
            return list(self._runs.get(owner) or [])

    def _active_count(self) -> int:
        return sum(self._starting.values()) + sum(r.alive for runs in self._runs.values() for r in runs)

    def active_count(self) -> int:
        """Trainings running (or being started) now, over all owners."""
        with self._lock:
            return self._active_count()
