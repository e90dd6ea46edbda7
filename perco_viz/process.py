"""Our child processes — the trainings and the worker — through the standard library.

A front end (the Streamlit server, a script) never starts a process of ours itself: it starts
one **launcher** once, ``python -c "from perco_viz.process import main; main()"`` through
:mod:`subprocess`, and asks it, through a :class:`multiprocessing.managers.BaseManager` (a local
socket, a random authkey), to start the trainings (:func:`start_child`) and to run calls in a
one-process :class:`concurrent.futures.ProcessPoolExecutor` (:class:`Worker`)::

    server (any __main__) ──RPC──▶ launcher (its __main__: one line of -c code)
                                     ├─ forkserver, torch preloaded ─▶ trainings (perco_viz.live)
                                     └─ ProcessPoolExecutor(max_workers=1, initializer) ─▶ the worker

Why a launcher: a ``spawn`` or ``forkserver`` child first imports its parent's ``__main__``
again (``multiprocessing.spawn.prepare``), so that functions defined there unpickle. Streamlit
installs the page being run as ``__main__`` (its ``__file__``, no ``__spec__``): a child started
from the server would run the page, and a page that starts processes would start them again.
The launcher's ``__main__`` is a ``-c`` command, which has no file for a child to run again, and
every function a child runs is a function of a module of ours; so no child of ours ever runs a
page, whatever the server's ``__main__`` is, and nothing changes how multiprocessing prepares a
child. Inside the launcher the children are forked from a fork server that has imported torch
once (:data:`PRELOAD`), so a training starts in a fraction of a second; ``spawn`` where there is
no fork server (Windows).

Every child watches its parent and ends soon after it (:func:`exit_with`); the launcher ends when
the server's end of its stdin closes (the server ended, however). The launcher imports this
module only (not torch: ~10 MB): it passes the calls, their results and the trainings' targets on
as pickles, which only the server and the children read. The server's environment variables that
matter (:func:`child_env`) go with every training and every call, so a child sees the caller's
values now, not the launcher's older ones (:func:`apply_env`).

>>> worker = Worker()                                  # doctest: +SKIP
>>> worker.submit(sum, [1, 2, 3]).result()             # doctest: +SKIP
6
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from multiprocessing.managers import BaseManager
from typing import Any

PRELOAD = ["perco_viz.distill", "perco_viz.data", "perco_viz.models", "perco_viz.metrics", "perco_viz.losses",
           "perco_viz.live", "perco_viz.process"]
"""What the fork server imports once, so that its children start without importing torch."""

WORKER_NICENESS = 10  # the worker's calls run below the trainings (5) and the pages (0)
_ENV_PREFIXES = ("PERCO_VIZ_", "NUMBA_", "TORCH_", "CUDA_")


class WorkerDied(RuntimeError):
    """The worker process (or the launcher) ended while running a call (out of memory, a crash)."""


# --------------------------------------------------------------------------- in every child
def child_env() -> dict[str, str]:
    """What a child must see of this process's environment (the launcher's may be older)."""
    return {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}


def apply_env(env: dict[str, str]) -> None:
    """In a child: make our variables exactly the caller's (set, changed or removed since the
    launcher started)."""
    for key in [k for k in os.environ if k.startswith(_ENV_PREFIXES) and k not in env]:
        del os.environ[key]
    os.environ.update(env)


def exit_with(pid: int, every_s: float = 1.0) -> None:
    """In a child: end this process soon after process ``pid`` is gone.

    A fork-server child's parent is the fork server, which itself lives as long as any child
    does; so a child watches the process that asked for it instead, from a daemon thread.
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

    threading.Thread(target=watch, name="perco-viz-exit-with-parent", daemon=True).start()


def process_context():
    """The multiprocessing context of the launcher's children: ``forkserver`` preloading
    :data:`PRELOAD` where it exists, ``spawn`` elsewhere."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return mp.get_context("spawn")


def _child_main(target: bytes, parent_pid: int, job: Any, cancel, messages) -> None:
    """A child of :meth:`Launcher.start`: ``target(job, cancel, messages)`` (``target`` pickled by
    the server), ending with its parent."""
    exit_with(parent_pid)
    pickle.loads(target)(job, cancel, messages)


def _noop() -> None:
    pass


_EVENTS: list[Any] = []  # in the worker process: the queue its progress goes to (set by _init_worker)


def _init_worker(parent_pid: int, events) -> None:
    """The worker process's initializer: watch the launcher, run below the trainings, say its pid."""
    exit_with(parent_pid)
    if hasattr(os, "nice"):  # background work: the trainings and the pages go first
        os.nice(WORKER_NICENESS)
    _EVENTS[:] = [events]
    events.put(("pid", os.getpid()))


def _run_task(task: int, call: bytes, with_progress: bool, cwd: str, env: dict[str, str]) -> tuple[bool, bytes]:
    """In the worker: ``fn(*args)`` (``call`` is their pickle, made by the server) in the
    caller's folder and environment.

    Returns:
        ``(True, pickle of (result, last progress))``, or ``(False, pickle of (exception, last
        progress))`` — pickled here and read by the server only, so the launcher, which passes
        them on, never imports the modules they need.
    """
    os.chdir(cwd)
    apply_env(env)  # the caller's, not the launcher's (older) environment
    last: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        last[:] = [(int(done), int(total))]
        _EVENTS[0].put(("progress", task, int(done), int(total)))

    try:
        fn, args = pickle.loads(call)
        result = fn(*args, progress=progress) if with_progress else fn(*args)
        return True, pickle.dumps((result, last[0] if last else None))
    except BaseException as exc:  # noqa: BLE001 — handed to the caller's future
        try:
            return False, pickle.dumps((exc, last[0] if last else None))
        except Exception:  # noqa: BLE001 — an exception that does not pickle: its text
            return False, pickle.dumps((RuntimeError(f"{type(exc).__name__}: {exc}"), last[0] if last else None))


# --------------------------------------------------------------------------- in the launcher
class _Pool:
    """One ProcessPoolExecutor of one worker process, with its progress relay."""

    def __init__(self, ctx, name: str) -> None:
        self.name = name
        self.events = ctx.Queue()
        self.pid: int | None = None
        self.started = threading.Event()
        self.progress: dict[int, tuple[int, int]] = {}
        self.executor = ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_init_worker,
                                            initargs=(os.getpid(), self.events))
        threading.Thread(target=self._relay, name="perco-viz-worker-relay", daemon=True).start()

    def _relay(self) -> None:
        while True:
            try:
                kind, *body = self.events.get()
            except (EOFError, OSError, ValueError):
                return
            if kind == "pid":
                self.pid = body[0]
                self.started.set()
            elif kind == "progress":
                task, done, total = body
                self.progress[task] = (done, total)
            else:  # "stop"
                return

    def kill(self) -> None:
        """End the worker process now (its running call fails), and the executor."""
        if self.started.wait(5.0) and self.pid is not None:
            try:
                os.kill(self.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
            except OSError:
                pass
        self.close()

    def close(self) -> None:
        """Shut the executor down (a broken one: its process is gone already)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.events.put(("stop",))


class Launcher:
    """The launcher's one object, called by the server through a manager proxy.

    Children (:meth:`start`) and worker pools (:meth:`submit`) are known by keys; nothing here
    is UI code. All methods are thread-safe (the manager serves each client thread in a thread).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._ctx = None
        self._children: dict[int, dict[str, Any]] = {}
        self._pools: dict[str, _Pool] = {}
        self._tasks: dict[int, tuple[_Pool, Future]] = {}

    def _context(self):
        with self._lock:
            if self._ctx is None:
                self._ctx = process_context()
            return self._ctx

    def prestart(self) -> None:
        """Start the fork server now (it imports torch once), so the first training starts fast."""
        proc = self._context().Process(target=_noop, daemon=True)
        proc.start()
        proc.join()

    # ---------------------------------------------------------------- children (trainings)
    def start(self, target: bytes, job: Any, name: str = "child") -> tuple[int, int]:
        """Start ``target(job, cancel, messages)`` in a child (``target`` pickled: the launcher
        never imports it); returns ``(key, pid)``."""
        ctx = self._context()
        cancel, messages = ctx.Event(), ctx.Queue()
        proc = ctx.Process(target=_child_main, args=(target, os.getpid(), job, cancel, messages),
                           name=f"perco-viz-{name}", daemon=True)
        proc.start()
        with self._lock:
            key = next(self._ids)
            self._children[key] = {"process": proc, "cancel": cancel, "messages": messages}
        return key, proc.pid

    def messages(self, key: int, timeout: float = 0.2) -> tuple[list[Any], bool, int | None]:
        """``(messages, alive, exit code)``: what child ``key`` sent (waiting up to ``timeout``
        for the first); once it has ended, everything it sent before it ended and ``alive`` False."""
        child = self._children[key]
        proc, box = child["process"], child["messages"]
        if box is None:
            return [], False, proc.exitcode
        out = []
        try:
            out.append(box.get(timeout=timeout))
            while True:
                out.append(box.get_nowait())
        except (queue.Empty, EOFError, OSError):
            pass
        if proc.is_alive():
            return out, True, None
        while True:  # what the child sent just before it ended
            try:
                out.append(box.get(timeout=0.2))
            except (queue.Empty, EOFError, OSError):
                break
        proc.join(5)
        box.close()
        child["messages"] = None
        return out, False, proc.exitcode

    def cancel(self, key: int) -> None:
        self._children[key]["cancel"].set()

    # ---------------------------------------------------------------- the worker pools
    def submit(self, pool: str, call: bytes, with_progress: bool, cwd: str, env: dict[str, str]) -> int:
        """Queue ``fn(*args)`` (``call``: their pickle) in worker pool ``pool`` (started on first
        use, restarted after a death); returns the task's key for :meth:`wait`."""
        ctx = self._context()
        for attempt in (0, 1):
            with self._lock:  # not held while the pool starts its process (the fork server may be cold)
                task = next(self._ids)
                worker = self._pools.get(pool)
                if worker is None:
                    worker = self._pools[pool] = _Pool(ctx, pool)
            try:
                future = worker.executor.submit(_run_task, task, call, with_progress, cwd, env)
            except (BrokenExecutor, RuntimeError):  # its process died (or it was shut down): a fresh one
                with self._lock:
                    if self._pools.get(pool) is worker:
                        del self._pools[pool]
                worker.close()
                if attempt:
                    raise
                continue
            with self._lock:
                self._tasks[task] = (worker, future)
            return task
        raise AssertionError("unreachable")

    def wait(self, task: int, timeout: float = 0.25) -> tuple[str, Any]:
        """``(state, value)`` of a task, waiting up to ``timeout`` for it to end: ``running``
        (value: the latest progress or None), ``done`` or ``error`` (value: :func:`_run_task`'s
        pickle) or ``died`` (the worker process ended meanwhile; value: the message)."""
        worker, future = self._tasks[task]
        if not wait_futures([future], timeout).done:
            return "running", worker.progress.get(task)
        with self._lock:
            self._tasks.pop(task, None)
            worker.progress.pop(task, None)
        try:
            ok, payload = future.result()
        except BrokenExecutor:  # the next submit starts a fresh worker
            with self._lock:
                if self._pools.get(worker.name) is worker:
                    del self._pools[worker.name]
            worker.close()
            return "died", "the worker process ended while running this call (out of memory, a crash?)"
        return ("done" if ok else "error"), payload

    def close(self) -> None:
        """End every worker process (before the launcher exits)."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for worker in pools:
            worker.kill()

    def kill_pool(self, pool: str) -> None:
        """End pool ``pool``'s worker process now (its calls fail); the next submit starts a new one."""
        with self._lock:
            worker = self._pools.pop(pool, None)
        if worker is not None:
            worker.kill()


class _Manager(BaseManager):
    pass


_LAUNCHER: list[Launcher] = []


def _the_launcher() -> Launcher:
    if not _LAUNCHER:
        _LAUNCHER.append(Launcher())
    return _LAUNCHER[0]


_Manager.register("launcher", callable=_the_launcher)


def main() -> None:
    """The launcher: read the handshake from stdin, serve the manager until stdin closes."""
    hello = json.loads(sys.stdin.readline())
    sys.path[:] = hello["sys_path"]
    server = _Manager(address=None, authkey=bytes.fromhex(hello["authkey"])).get_server()
    print(json.dumps({"address": server.address}), flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nobody reads the pipe from now on
    threading.Thread(target=server.serve_forever, name="perco-viz-launcher", daemon=True).start()
    sys.stdin.read()  # returns when the server's end closes: the server has ended
    for launcher in _LAUNCHER:  # the worker's call is abandoned; the trainings end with this process
        launcher.close()


# --------------------------------------------------------------------------- in the server
_CLIENT: dict[str, Any] = {}
_CLIENT_LOCK = threading.Lock()


def launcher():
    """This process's proxy of its launcher (started on first use, and again if it ended)."""
    with _CLIENT_LOCK:
        proc = _CLIENT.get("process")
        if proc is None or proc.poll() is not None:
            _CLIENT.clear()
            _CLIENT.update(_start_launcher())
        return _CLIENT["proxy"]


LAUNCHER_COMMAND = "from perco_viz.process import main; main()"  # imports no torch (see perco_viz/__init__)


def _start_launcher() -> dict[str, Any]:
    authkey = os.urandom(32)
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER_COMMAND], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, cwd=os.getcwd())
    hello = {"authkey": authkey.hex(), "sys_path": [p or os.getcwd() for p in sys.path]}
    proc.stdin.write((json.dumps(hello) + "\n").encode())
    proc.stdin.flush()  # kept open: the launcher ends when it closes
    line = proc.stdout.readline()
    proc.stdout.close()
    if not line:
        proc.wait(10)
        raise ChildProcessError(f"the process launcher did not start (exit code {proc.returncode})")
    address = json.loads(line)["address"]
    manager = _Manager(address=tuple(address) if isinstance(address, list) else address, authkey=authkey)
    manager.connect()
    return {"process": proc, "manager": manager, "proxy": manager.launcher()}


def prestart() -> None:
    """Start the launcher and its fork server now (torch imported once), so the first training
    starts fast."""
    launcher().prestart()


class Child:
    """A process of ours started by the launcher (:func:`start_child`)."""

    def __init__(self, target: Callable[..., None], job: Any, name: str = "child") -> None:
        self._launcher = launcher()
        self.key, self.pid = self._launcher.start(pickle.dumps(target), job, name)
        self.exitcode: int | None = None

    def messages(self, timeout: float = 0.2) -> tuple[list[Any], bool]:
        """``(messages, alive)``: what it sent since the last call (see :meth:`Launcher.messages`).

        Raises:
            EOFError, OSError: the launcher is gone (and the child with it).
        """
        out, alive, self.exitcode = self._launcher.messages(self.key, timeout)
        return out, alive

    def cancel(self) -> None:
        """Set the child's cancel event."""
        self._launcher.cancel(self.key)


def start_child(target: Callable[..., None], job: Any, name: str = "child") -> Child:
    """Run ``target(job, cancel, messages)`` in a child process of the launcher.

    ``target`` is a module-level function of ours; ``job`` plain data; ``cancel`` a
    multiprocessing Event the server sets through :meth:`Child.cancel`; ``messages`` a
    multiprocessing Queue whose items the server reads through :meth:`Child.messages`.
    """
    return Child(target, job, name)


class Worker:
    """A worker process that runs submitted calls one after the other (a one-process
    :class:`~concurrent.futures.ProcessPoolExecutor` in the launcher).

    A call that kills the worker fails its future with :class:`WorkerDied`; the next
    :meth:`submit` starts a fresh worker. The worker runs at niceness :data:`WORKER_NICENESS`
    and never outlives the launcher, which never outlives this process.
    """

    def __init__(self) -> None:
        self.name = uuid.uuid4().hex

    def submit(self, fn: Callable[..., Any], *args: Any,
               progress: Callable[[int, int], None] | None = None) -> Future:
        """Run ``fn(*args)`` (``fn(*args, progress=...)`` when ``progress`` is given) in the worker.

        ``fn`` and ``args`` must be picklable (a module-level function and plain data); the
        result too. ``progress(done, total)`` is called in a thread of this process.
        """
        proxy = launcher()
        task = proxy.submit(self.name, pickle.dumps((fn, args)), progress is not None, os.getcwd(), child_env())
        future: Future = Future()
        future.set_running_or_notify_cancel()
        threading.Thread(target=_follow, args=(proxy, task, future, progress), name="perco-viz-worker-call",
                         daemon=True).start()
        return future

    def shutdown(self) -> None:
        """End the worker process now (its running call fails with :class:`WorkerDied`)."""
        try:
            launcher().kill_pool(self.name)
        except (EOFError, OSError):  # the launcher is gone, and the worker with it
            pass


def _follow(proxy, task: int, future: Future, listener: Callable[[int, int], None] | None) -> None:
    """Relay one task's progress to ``listener`` and its end to ``future``."""
    seen = None

    def tell(progress: tuple[int, int] | None) -> None:
        nonlocal seen
        if listener is not None and progress is not None and progress != seen:
            seen = progress
            listener(*progress)

    while True:
        try:
            state, value = proxy.wait(task, 0.25)
        except (EOFError, OSError) as exc:
            future.set_exception(WorkerDied(f"the process launcher ended ({type(exc).__name__}); try again"))
            return
        if state == "running":
            tell(value)
            continue
        if state == "died":
            future.set_exception(WorkerDied(f"{value}; try again"))
            return
        try:
            outcome, progress = pickle.loads(value)
        except Exception as exc:  # noqa: BLE001 — e.g. a result whose class this process lacks
            future.set_exception(exc)
            return
        tell(progress)
        if state == "done":
            future.set_result(outcome)
        else:
            future.set_exception(outcome)
        return


_SHARED: list[Worker] = []
_SHARED_LOCK = threading.Lock()


def shared_worker() -> Worker:
    """This process's one worker for heavy calls (UMAP compiles once per worker)."""
    with _SHARED_LOCK:
        if not _SHARED:
            _SHARED.append(Worker())
        return _SHARED[0]
