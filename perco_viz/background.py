"""A worker process for heavy, GIL-holding computations of an interactive front end.

UMAP compiles its numba kernels on first use (~25 s here, every new process) and, like
t-SNE, runs for seconds in Python and numba. Done in the front end's process, that would hold
its GIL and freeze every page of every session meanwhile. :class:`WorkerProcess` runs such
calls in one long-lived child process instead (started from the same fork server as the
trainings, see :mod:`perco_viz.live`) and reports their progress back.

>>> pool = WorkerProcess()                           # doctest: +SKIP
>>> future = pool.submit(sum, [1, 2, 3])             # doctest: +SKIP
>>> future.result()                                  # doctest: +SKIP
6
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from perco_viz.live import _apply_env, _child_env, _context, exit_with

_PROGRESS: list[Any] = []  # in the worker: the queue its tasks report progress on


def _init(progress_queue, server_pid: int) -> None:
    exit_with(server_pid)
    _PROGRESS[:] = [progress_queue]
    if hasattr(os, "nice"):  # background work: the trainings and the pages go first
        os.nice(10)


def _call(task_id: int, fn: Callable[..., Any], args: tuple, with_progress: bool, cwd: str,
          env: dict[str, str]) -> Any:
    """In the worker: ``fn(*args)``, with ``progress=`` sending ``(task_id, done, total)``, in the
    caller's working directory and perco_viz environment (the fork server's may be older)."""
    os.chdir(cwd)
    _apply_env(env)
    if not with_progress:
        return fn(*args)

    def progress(done: int, total: int) -> None:
        _PROGRESS[0].put((task_id, done, total))

    return fn(*args, progress=progress)


class WorkerProcess:
    """One child process that runs submitted calls in order.

    Args:
        workers: child processes (1: calls run one after the other, numba compiles once).

    A call that kills its worker (out of memory, a crash) fails its future with
    ``BrokenProcessPool``; the next :meth:`submit` starts a fresh worker.
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._listeners: dict[int, Callable[[int, int], None]] = {}
        self._finished: collections.deque[tuple[float, int]] = collections.deque()
        self._progress = _context().Queue()
        self._pool = self._new_pool()
        threading.Thread(target=self._relay, name="perco-viz-worker-progress", daemon=True).start()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=_context(), initializer=_init,
                                   initargs=(self._progress, os.getpid()))

    def submit(self, fn: Callable[..., Any], *args: Any,
               progress: Callable[[int, int], None] | None = None) -> Future:
        """Run ``fn(*args)`` (``fn(*args, progress=...)`` when ``progress`` is given) in the worker.

        ``fn`` and ``args`` must be picklable (a module-level function and plain data).
        """
        with self._lock:
            task = next(self._ids)
            if progress is not None:
                self._listeners[task] = progress
            call = (task, fn, args, progress is not None, os.getcwd(), _child_env())
            try:
                future = self._pool.submit(_call, *call)
            except BrokenProcessPool:  # the last worker died: start another
                self._pool = self._new_pool()
                future = self._pool.submit(_call, *call)
        future.add_done_callback(lambda _f, task=task: self._finished.append((time.monotonic(), task)))
        return future

    def _relay(self) -> None:
        """Hand the worker's progress reports to the listeners (a thread of this process)."""
        while True:
            try:
                task, done, total = self._progress.get(timeout=1.0)
            except queue.Empty:
                self._forget_finished()
                continue
            except (EOFError, OSError):  # interpreter shutdown
                return
            listener = self._listeners.get(task)
            if listener is not None:
                listener(done, total)
            self._forget_finished()

    def _forget_finished(self, grace_s: float = 10.0) -> None:
        """Drop the listeners of calls finished a while ago (their last reports may trail the result)."""
        now = time.monotonic()
        while self._finished and now - self._finished[0][0] > grace_s:
            self._listeners.pop(self._finished.popleft()[1], None)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


_SHARED: list[WorkerProcess] = []
_SHARED_LOCK = threading.Lock()


def shared_worker() -> WorkerProcess:
    """This process's one worker (created on first use): UMAP compiles once per server."""
    with _SHARED_LOCK:
        if not _SHARED:
            _SHARED.append(WorkerProcess())
        return _SHARED[0]

