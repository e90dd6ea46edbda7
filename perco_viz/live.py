"""Trainings running in background threads, for an interactive front end.

No UI code here: a front end keeps one :class:`RunRegistry` for the whole server process (in
Streamlit, through ``st.cache_resource``), starts runs for a session, and reads a run's
latest state with :meth:`LiveRun.info` — a thread-safe copy — or from the run directory.
The training thread never touches the UI.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perco_viz.config import RunConfig
from perco_viz.runs import RunDir, Snapshot


class RegistryFull(RuntimeError):
    """Too many trainings at once; the message says what to do."""


@dataclass
class LiveRun:
    """One background training. Read it through :meth:`info`."""

    owner: str
    config: RunConfig
    root: Path
    name: str | None = None
    resume_dir: Path | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    cancel: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _state: dict[str, Any] = field(default_factory=dict, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> LiveRun:
        self._set(state="starting", phase="starting", started=time.time(), snapshots=0, error=None,
                  run_dir=None, progress={}, snapshot=None)
        self._thread = threading.Thread(target=self._main, name=f"perco-viz-run-{self.id}", daemon=True)
        self._thread.start()
        return self

    def _main(self) -> None:
        from perco_viz.distill import Callbacks, Distiller, _setup_and_run

        try:
            if self.resume_dir is not None:
                run_dir = RunDir(self.resume_dir)
                config = run_dir.config() if self.config is None else self.config
                if self.config is not None:
                    run_dir.write_config(config)
            else:
                run_dir = RunDir.create(self.root, self.config, self.name)
                config = self.config
            self._set(run_dir=str(run_dir.path), state="running")
            callbacks = Callbacks(on_snapshot=self._on_snapshot, on_progress=self._on_progress,
                                  on_status=self._on_status)
            engine = Distiller(config, run_dir, callbacks, self.cancel)
            _setup_and_run(engine, restore=self.resume_dir is not None)
        except Exception as exc:  # noqa: BLE001 — shown to the user, never a silent thread death
            self._set(state="failed", error=str(exc))

    def _on_snapshot(self, snap: Snapshot) -> None:
        with self._lock:
            self._state["snapshot"] = snap
            self._state["snapshots"] = self._state.get("snapshots", 0) + 1
            self._state["updated"] = time.time()

    def _on_progress(self, progress: dict[str, Any]) -> None:
        with self._lock:
            self._state["progress"] = progress
            self._state["phase"] = progress.get("phase")

    def _on_status(self, state: str, error: str | None) -> None:
        self._set(state=state, error=error, finished=time.time())

    def _set(self, **values: Any) -> None:
        with self._lock:
            self._state.update(values)

    def info(self) -> dict[str, Any]:
        """A consistent copy: state, phase, progress, latest snapshot, run_dir, error."""
        with self._lock:
            return dict(self._state, id=self.id, alive=self.alive)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def run_dir(self) -> RunDir | None:
        with self._lock:
            path = self._state.get("run_dir")
        return RunDir(path) if path else None

    def stop(self, wait: float = 0.0) -> None:
        """Ask the run to stop within one batch; optionally wait for the thread."""
        self.cancel.set()
        if wait and self._thread is not None:
            self._thread.join(wait)


class RunRegistry:
    """All background trainings of one server process.

    Args:
        max_concurrent: the most trainings running at once, over all sessions.
    """

    def __init__(self, max_concurrent: int = 4) -> None:
        self.max_concurrent = max_concurrent
        self._runs: dict[str, list[LiveRun]] = {}
        self._lock = threading.Lock()

    def start(self, owner: str, config: RunConfig, root: str | Path, name: str | None = None,
              resume_dir: str | Path | None = None) -> LiveRun:
        """Start a training for ``owner`` (one at a time per owner).

        Raises:
            RegistryFull: the owner already trains, or the server-wide limit is reached.
        """
        with self._lock:
            mine = self._runs.setdefault(owner, [])
            if any(r.alive for r in mine):
                raise RegistryFull("a training of yours is already running: stop it before starting another")
            if self.active_count_unlocked() >= self.max_concurrent:
                raise RegistryFull(f"the server is running its limit of {self.max_concurrent} trainings at once; "
                                   "try again when one finishes")
            run = LiveRun(owner, config, Path(root), name, Path(resume_dir) if resume_dir else None)
            mine.append(run)
            return run.start()

    def latest(self, owner: str) -> LiveRun | None:
        """The owner's most recent run (running or not)."""
        with self._lock:
            runs = self._runs.get(owner) or []
            return runs[-1] if runs else None

    def runs_of(self, owner: str) -> list[LiveRun]:
        with self._lock:
            return list(self._runs.get(owner) or [])

    def active_count_unlocked(self) -> int:
        return sum(r.alive for runs in self._runs.values() for r in runs)

    def active_count(self) -> int:
        with self._lock:
            return self.active_count_unlocked()

    def stop_all(self, wait: float = 0.0) -> None:
        with self._lock:
            runs = [r for rs in self._runs.values() for r in rs]
        for r in runs:
            r.stop(wait)

    def reap(self, idle_s: float = 3600.0) -> int:
        """Stop runs nobody has looked at for ``idle_s`` (abandoned sessions); returns how many."""
        now, stopped = time.time(), 0
        with self._lock:
            runs = [r for rs in self._runs.values() for r in rs if r.alive]
        for r in runs:
            if now - r.info().get("seen", r.info().get("started", now)) > idle_s:
                r.stop()
                stopped += 1
        return stopped

    def touch(self, owner: str) -> None:
        """Mark the owner's runs as watched (see :meth:`reap`)."""
        for r in self.runs_of(owner):
            r._set(seen=time.time())
