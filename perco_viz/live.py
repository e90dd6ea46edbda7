"""Trainings running in background processes, for an interactive front end.

No UI code here: a front end keeps one :class:`RunRegistry` for the whole server process (in
Streamlit, through ``st.cache_resource``), starts runs for a session, and reads a run's
latest state with :meth:`LiveRun.info` — a thread-safe copy — or from the run directory.

Each training runs in a process of its own (forked from a server that has already imported
torch, so it starts in a fraction of a second), never in the UI's process: it neither holds
the UI's GIL nor waits for it (a plot being built, numba compiling UMAP), trainings of
different users run in parallel on different cores, and a crash in one cannot take the server
down. The child reports through a queue (progress, snapshots, the final status) and through
the run directory, which is all a run made by the CLI offers too.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perco_viz.config import RunConfig
from perco_viz.runs import RunDir, RunStoreError
from perco_viz.safe_io import server_trusts_torchscript

_PRELOAD = ["perco_viz.distill", "perco_viz.data", "perco_viz.models", "perco_viz.metrics", "perco_viz.losses"]
_CONTEXT: list[Any] = []
_CONTEXT_LOCK = threading.Lock()
PROGRESS_EVERY_S = 0.1  # the child sends at most ten progress messages a second


class RegistryFull(RuntimeError):
    """Too many trainings at once; the message says what to do."""


def process_context():
    """The multiprocessing context of our processes: ``forkserver`` (preloaded) where it
    exists, ``spawn`` elsewhere; its processes never re-run the main script (see
    :func:`_without_main_script`)."""
    with _CONTEXT_LOCK:
        if not _CONTEXT:
            if "forkserver" in mp.get_all_start_methods():
                ctx = mp.get_context("forkserver")
                ctx.set_forkserver_preload(_PRELOAD)
            else:  # Windows
                ctx = mp.get_context("spawn")
            _without_main_script()
            _CONTEXT.append(_NamedContext(ctx))
        return _CONTEXT[0]


PROCESS_PREFIX = "perco-viz-"


def _without_main_script() -> None:
    """Keep our child processes from importing the parent's ``__main__`` script.

    A spawned or fork-server child normally re-runs the parent's main script first (so that
    functions defined there unpickle). Streamlit installs the page being run as ``__main__``:
    a child would run the page, and a page that starts processes would start them again,
    without end. Our children run library functions only, so for processes named
    ``perco-viz-*`` the main script is left out of what the child prepares.
    """
    from multiprocessing import spawn

    original = spawn.get_preparation_data
    if getattr(original, "_perco_viz", False):
        return

    def preparation_data(name: str) -> dict[str, Any]:
        data = original(name)
        if str(name).startswith(PROCESS_PREFIX):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    preparation_data._perco_viz = True  # type: ignore[attr-defined]
    spawn.get_preparation_data = preparation_data


class _NamedContext:
    """A multiprocessing context whose processes are all named ``perco-viz-*``."""

    def __init__(self, ctx) -> None:
        self._ctx = ctx

    def Process(self, *args: Any, name: str | None = None, **kwargs: Any):  # noqa: N802 — the mp API
        if not (name or "").startswith(PROCESS_PREFIX):
            name = f"{PROCESS_PREFIX}{name or 'worker'}"
        return self._ctx.Process(*args, name=name, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._ctx, attr)


def exit_with(pid: int, every_s: float = 1.0) -> None:
    """In a child: end this process soon after process ``pid`` (the server) is gone.

    A fork-server child's parent is the fork server, which itself lives as long as any child
    does; so a child watches the server that asked for it instead, from a daemon thread.
    """

    def watch() -> None:
        while True:
            time.sleep(every_s)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except OSError:  # exists, but not ours to signal
                pass

    threading.Thread(target=watch, name="perco-viz-exit-with-server", daemon=True).start()


def _noop() -> None:
    pass


def prestart() -> None:
    """Start the process server now (imports torch once), so the first training starts fast."""
    ctx = process_context()
    proc = ctx.Process(target=_noop, daemon=True)
    proc.start()
    proc.join()


def prepare_demo_teacher() -> None:
    """Train and cache the demo's teacher if it is not cached yet (run it in a worker)."""
    from perco_viz import models
    from perco_viz.config import RunConfig
    from perco_viz.data import load_dataset

    cfg = RunConfig()
    data = load_dataset(cfg.data)
    if not models.teacher_cache_path(data, models.default_cache_dir()).is_file():
        models.load_teacher(cfg.teacher, data, cache_dir=models.default_cache_dir())


TRAINING_NICENESS = 5  # below the server and its browser tabs, above the projection worker (10)

_ENV_PREFIXES = ("PERCO_VIZ_", "NUMBA_", "TORCH_", "CUDA_")


def child_env() -> dict[str, str]:
    """What a child must see of this process's environment (the fork server's may be older)."""
    return {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}


def apply_env(env: dict[str, str]) -> None:
    """In a child: make our variables exactly the caller's (set, changed or removed since the
    fork server started)."""
    for key in [k for k in os.environ if k.startswith(_ENV_PREFIXES) and k not in env]:
        del os.environ[key]
    os.environ.update(env)


def _train_in_child(job: dict[str, Any], cancel, messages) -> None:
    """The child process: run the distillation, report through ``messages``."""
    exit_with(job["server_pid"])
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
        apply_env(job["env"])
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
    """One background training (a child process). Read it through :meth:`info`."""

    owner: str
    config: RunConfig
    root: Path
    name: str | None = None
    resume_dir: Path | None = None
    threads: int = 1
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    cancel: Any = field(default=None, repr=False)  # a multiprocessing Event, made by start()
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _state: dict[str, Any] = field(default_factory=dict, repr=False)
    _starting: bool = field(default=True, repr=False)  # counts as alive until start() returns
    _process: Any = field(default=None, repr=False)
    _messages: Any = field(default=None, repr=False)
    _watcher: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> LiveRun:
        """Create (or reopen) the run directory and start the child process.

        Raises:
            RunLockedError: resuming a run that another process is writing (nothing touched).
            RunStoreError: the runs folder cannot be written, or the run to resume is damaged.
        """
        self._set(state="starting", phase="starting", started=time.time(), snapshots=0, error=None,
                  run_dir=None, progress={}, snapshot=None)
        if self.resume_dir is not None:
            run_dir = RunDir(self.resume_dir)
            if self.config is None:
                self.config = run_dir.config()
            # another writer holds it: refused here with its message (the child checks again under
            # the lock, and only it writes the config, once everything else is checked)
            run_dir.check_unlocked()
        else:
            run_dir = RunDir.create(self.root, self.config, self.name)
        self._set(run_dir=str(run_dir.path), state="running")
        ctx = process_context()
        self.cancel = ctx.Event()
        self._messages = ctx.Queue()
        job = {"config": self.config.to_dict(), "run_dir": str(Path(run_dir.path).resolve()),
               "resume": self.resume_dir is not None, "cwd": os.getcwd(), "env": child_env(),
               "threads": self.threads, "server_pid": os.getpid(),
               # the operator's switch, read here in the server (never from the config or the child's env)
               "trust_code": server_trusts_torchscript()}
        self._process = ctx.Process(target=_train_in_child, args=(job, self.cancel, self._messages),
                                    name=f"{PROCESS_PREFIX}run-{self.id}", daemon=True)
        try:
            self._process.start()
            self._watcher = threading.Thread(target=self._watch, name=f"perco-viz-watch-{self.id}", daemon=True)
            self._watcher.start()
        finally:
            self._starting = False
        return self

    # ------------------------------------------------------------------ the child's reports
    def _watch(self) -> None:
        while True:
            try:
                self._handle(*self._messages.get(timeout=0.2))
            except queue.Empty:
                if not self._process.is_alive():
                    break
            except (EOFError, OSError):  # the queue's pipe broke: the child is gone
                break
        while True:  # what the child sent just before it ended
            try:
                self._handle(*self._messages.get(timeout=0.2))
            except (queue.Empty, EOFError, OSError):
                break
        self._process.join(5)
        if self.info().get("state") in ("starting", "running"):
            self._died(self._process.exitcode)

    def _handle(self, kind: str, body: dict[str, Any]) -> None:
        with self._lock:
            if kind == "progress":
                self._state["progress"] = body
                self._state["phase"] = body.get("phase")
            elif kind == "snapshot":
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
        return None if self._process is None else self._process.pid

    @property
    def run_dir(self) -> RunDir | None:
        with self._lock:
            path = self._state.get("run_dir")
        return RunDir(path) if path else None

    def stop(self, wait: float = 0.0) -> None:
        """Ask the run to stop within one batch; optionally wait for it to end."""
        if self.cancel is not None:
            self.cancel.set()
        if wait and self._watcher is not None:
            self._watcher.join(wait)

    def kill(self) -> None:
        """End the child at once (it is marked failed; its completed snapshots are kept)."""
        if self._process is not None and self._process.is_alive():
            self._process.kill()


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
            cores = os.cpu_count() or 1
            threads = max(1, cores // (self.active_count_unlocked() + 1))  # no oversubscription
            run = LiveRun(owner, config, Path(root), name, Path(resume_dir) if resume_dir else None, threads)
            mine.append(run)  # counted (alive while starting) before the lock is let go
        try:  # outside the lock: the first start may wait seconds for the process server
            return run.start()
        except BaseException:
            with self._lock:
                mine.remove(run)
            raise

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
