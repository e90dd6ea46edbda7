"""A worker process for heavy, GIL-holding computations of an interactive front end.

UMAP compiles its numba kernels on first use (~25 s here, every new process) and, like
t-SNE, runs for seconds in Python and numba. Done in the front end's process, that would hold
its GIL and freeze every page of every session meanwhile. :class:`WorkerProcess` runs such
calls in one long-lived, low-priority child process instead (started from the same fork server
as the trainings, see :mod:`perco_viz.live`), one after the other, and relays their progress.

>>> pool = WorkerProcess()                           # doctest: +SKIP
>>> pool.submit(sum, [1, 2, 3]).result()             # doctest: +SKIP
6
"""

from __future__ import annotations

import itertools
import os
import pickle
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from perco_viz.live import apply_env, child_env, exit_with, process_context


class WorkerDied(RuntimeError):
    """The worker process ended while running a call (out of memory, a crash)."""


def _serve(tasks, events, server_pid: int) -> None:
    """The worker process: run each ``(task, fn, args, with_progress, cwd, env)`` in order."""
    exit_with(server_pid)
    if hasattr(os, "nice"):  # background work: the trainings and the pages go first
        os.nice(10)
    while True:
        task, fn, args, with_progress, cwd, env = tasks.get()
        try:
            os.chdir(cwd)
            apply_env(env)  # the caller's, not the fork server's (older) environment
            if with_progress:
                result = fn(*args, progress=lambda done, total, task=task: events.put(("progress", task, done, total)))
            else:
                result = fn(*args)
            events.put(("done", task, result))
        except BaseException as exc:  # noqa: BLE001 — handed to the caller's future
            try:
                pickle.dumps(exc)
            except Exception:  # noqa: BLE001 — an exception that does not pickle: its text
                exc = RuntimeError(f"{type(exc).__name__}: {exc}")
            events.put(("error", task, exc))


class WorkerProcess:
    """One child process that runs submitted calls one after the other.

    A call that kills the worker fails its future (and those queued behind it) with
    :class:`WorkerDied`; the next :meth:`submit` starts a fresh worker. The worker is a daemon
    and watches this process: it never outlives it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._pending: dict[int, tuple[Future, Callable[[int, int], None] | None, Any]] = {}  # task → (…, its process)
        self._start()

    def _start(self) -> None:
        ctx = process_context()
        self._tasks, events = ctx.Queue(), ctx.Queue()
        self._proc = ctx.Process(target=_serve, args=(self._tasks, events, os.getpid()), name="worker", daemon=True)
        self._proc.start()
        threading.Thread(target=self._relay, args=(self._proc, events), name="perco-viz-worker-relay",
                         daemon=True).start()

    def submit(self, fn: Callable[..., Any], *args: Any,
               progress: Callable[[int, int], None] | None = None) -> Future:
        """Run ``fn(*args)`` (``fn(*args, progress=...)`` when ``progress`` is given) in the worker.

        ``fn`` and ``args`` must be picklable (a module-level function and plain data).
        """
        future: Future = Future()
        with self._lock:
            if not self._proc.is_alive():
                self._start()
            task = next(self._ids)
            self._pending[task] = (future, progress, self._proc)
            self._tasks.put((task, fn, args, progress is not None, os.getcwd(), child_env()))
        return future

    def _relay(self, proc, events) -> None:
        """This process's side: progress to the listeners, results to the futures."""
        while True:
            try:
                kind, task, *body = events.get(timeout=0.5)
            except queue.Empty:
                if proc.is_alive():
                    continue
                self._fail_pending(proc)
                return
            except (EOFError, OSError):  # interpreter shutdown
                return
            with self._lock:
                future, listener, _ = self._pending.get(task, (None, None, None))
                if kind != "progress":
                    self._pending.pop(task, None)
            if future is None:
                continue
            if kind == "progress":
                if listener is not None:
                    listener(*body)
            elif kind == "done":
                future.set_result(body[0])
            else:
                future.set_exception(body[0])

    def _fail_pending(self, proc) -> None:
        """The worker died: every call sent to it fails (a later submit starts a new worker)."""
        with self._lock:
            failed = [task for task, (_, _, sent_to) in self._pending.items() if sent_to is proc]
            failed = [self._pending.pop(task)[0] for task in failed]
        for future in failed:
            future.set_exception(WorkerDied(f"the worker process ended (exit code {proc.exitcode}); try again"))

    def shutdown(self) -> None:
        """End the worker now (its running call is abandoned)."""
        self._proc.kill()


_SHARED: list[WorkerProcess] = []
_SHARED_LOCK = threading.Lock()


def shared_worker() -> WorkerProcess:
    """This process's one worker (created on first use): UMAP compiles once per server."""
    with _SHARED_LOCK:
        if not _SHARED:
            _SHARED.append(WorkerProcess())
        return _SHARED[0]
