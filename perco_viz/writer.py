"""Stream your own training into a run directory the app opens live: :func:`open_run`.

Three lines in any training loop::

    import perco_viz as pv
    with pv.open_run("runs", name="resnet8-from-resnet56", teacher_features=t_probe, labels=y_probe,
                     config={"lr": 0.1}) as run:
        for epoch in range(epochs):
            ...                                   # your own training
            run.log(student_probe_features, epoch=epoch + 1, step=step, train_loss=loss.item(), lr=lr)

The run directory has exactly the engine's layout (:mod:`perco_viz.runs`): the same
``config.json``, ``status.json``, ``metrics.jsonl``, ``snapshots/``, ``teacher_probe.npz`` and
writer lock, read by the same :class:`~perco_viz.runs.RunDir`; so every page (Distill, live;
Embeddings, Rank agreement, Per-sample coherence, Diagnose, Compare, Runs) shows it, and the app
lists it from ``PERCO_VIZ_RUNS``. One more file, ``external.json``, says which writer made the
run and holds your own config; the run's ``config.json`` then describes only what perco_viz
knows (probe rows, feature width, epochs, the dissimilarity), never a dataset or model to load.

**Off your thread.** :meth:`Run.log` checks its arguments, copies the features to the CPU and
returns; a background thread computes PC, the c_i distribution and k-NN accuracy
(:func:`perco_viz.metrics.probe_record`, the engine's own) and writes them. At most
``max_pending`` snapshots (8; at most 1 GiB of features) wait to be measured: when your loop logs faster than they are
measured, the oldest waiting snapshot keeps its numbers (the scalars you gave) but not its
features, and :attr:`Run.dropped` counts it (a warning says so once). ``log`` never waits for a
measurement.

**How a run ends.** Leaving the ``with`` block normally marks it ``finished``; by an exception,
``failed`` with the message (``cancelled`` for Ctrl-C), and the exception goes on. A process
that ends with the run still open marks it ``failed``, naming an uncaught exception when there
was one. A killed process leaves ``running`` without its writer: the app shows it ``stale``
(the writer lock is released by the kernel; a heartbeat keeps a live run fresh).

**Distributed.** Under ``torch.distributed`` (or ``torchrun``'s ``RANK``), only rank 0 writes:
on every other rank :func:`open_run` returns an inactive run whose methods do nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import socket
import sys
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perco_viz.checks import check_features, check_labels
from perco_viz.config import MAX_PROBE, RunConfig
from perco_viz.metrics import probe_record
from perco_viz.runs import HEARTBEAT_S, RunDir, RunStoreError, Snapshot

RESERVED = frozenset({"epoch", "step", "snapshot", "pc", "coherence_p10", "knn_acc", "wall_s"})
MAX_SCALARS = 64  # scalars per log call
MAX_KEY_CHARS = 64
MAX_DIM = 4096  # the widest features a run records (config's student.dim rule)
MAX_PENDING_RECORDS = 10_000  # scalar records waiting for the disk; past this, log waits for it
MAX_PENDING_BYTES = 1 << 30  # features waiting to be measured, at most (and at most max_pending snapshots)
WRITERS = ("open_run", "lightning", "hf")


def current_rank() -> int:
    """This process's rank: ``torch.distributed``'s when initialised, else ``torchrun``'s
    ``RANK`` variable, else 0."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


@dataclass
class _Item:
    """One :meth:`Run.log` call waiting for the background thread."""

    epoch: float
    step: int
    scalars: dict[str, float | None]
    wall_s: float
    features: np.ndarray | None  # (n, d) float32, or None (numbers only)


class Run:
    """An open run that your training logs to; made by :func:`open_run` (see the module docs).

    Attributes:
        run_dir: the :class:`~perco_viz.runs.RunDir` written (``None`` when inactive).
        active: False on a rank other than 0 (nothing is checked or written).
        dropped: snapshots whose features were not measured because the loop logged faster.
    """

    def __init__(self, run_dir: RunDir | None, *, teacher: np.ndarray | None = None,
                 labels: np.ndarray | None = None, metric: str = "euclidean", teacher_metric: str | None = None,
                 max_pending: int = 8, config: RunConfig | None = None, lock: contextlib.ExitStack | None = None):
        self.run_dir = run_dir
        self.active = run_dir is not None
        self.dropped = 0
        self._teacher, self._labels = teacher, labels
        self._metric, self._teacher_metric = metric, teacher_metric
        self._max_pending = max_pending
        self._config = config
        self._lock = lock
        self._t0 = time.perf_counter()
        self._epoch, self._step, self._logged = 0.0, -1, 0
        self._dim: int | None = None
        self._snapshot_index = 0
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._error: BaseException | None = None
        self._closed = not self.active
        self._warned = False
        self._thread: threading.Thread | None = None
        if self.active:
            self._thread = threading.Thread(target=self._work, name=f"perco_viz-run-{run_dir.name}", daemon=True)
            self._thread.start()
            _OPEN.add(self)

    # ------------------------------------------------------------------ what people call
    @property
    def path(self) -> Path | None:
        """The run directory (``None`` when inactive)."""
        return None if self.run_dir is None else self.run_dir.path

    @property
    def name(self) -> str | None:
        """The run directory's name, as the app lists it (``None`` when inactive)."""
        return None if self.run_dir is None else self.run_dir.name

    def log(self, features: Any = None, *, epoch: float | None = None, step: int | None = None,
            **scalars: Any) -> None:
        """Record one moment of the training; returns in about the time of one copy to the CPU.

        Args:
            features: (n_probe, d) the student's features of the probe rows, in the order of
                ``teacher_features``: a tensor on any device (detached here) or an array;
                floating point. ``None``: record the scalars only.
            epoch: where the training is, in epochs (may be fractional; the curves' x axis).
                Default: the last one given (0 at first).
            step: optimizer steps done. Default: one more than the last (0 at first).
            **scalars: numbers to record (``train_loss``, ``lr``, ``val_acc``, ...): Python or
                numpy numbers, or one-element tensors; ``None`` records a gap.

        Raises:
            ValueError: features that are not (n_probe, d) finite floats, a width unlike the
                first logged, a non-finite or non-numeric scalar, a reserved name. Checked
                here, before anything is queued: nothing is written.
            RuntimeError: the run is closed.
            perco_viz.runs.RunStoreError: an earlier write failed (a full disk): the message says what.
        """
        if not self.active:
            return
        if self._closed:
            raise RuntimeError(f"run {self.name!r} is closed; open a new one with perco_viz.open_run")
        self._raise_error()
        record = _check_scalars(scalars)
        epoch = self._epoch if epoch is None else _check_number(epoch, "epoch", minimum=0.0)
        step = self._step + 1 if step is None else _check_step(step)
        feats = None if features is None else self._check_features(features)
        item = _Item(float(epoch), step, record, time.perf_counter() - self._t0, feats)
        with self._cond:
            while len(self._queue) >= MAX_PENDING_RECORDS and self._error is None:
                self._cond.wait(1.0)  # only when the disk cannot take even the numbers
            self._queue.append(item)
            if feats is not None:
                self._drop_oldest_features()
            self._cond.notify_all()
        self._epoch, self._step, self._logged = float(epoch), step, self._logged + 1

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far is measured and on disk.

        Returns:
            True when done, False when ``timeout`` seconds passed first.

        Raises:
            perco_viz.runs.RunStoreError: a write failed.
        """
        if not self.active:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while (self._queue or self._busy) and self._error is None and self._thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left if left is not None else 1.0)
        self._raise_error()
        return True

    def close(self, error: str | None = None, *, state: str | None = None) -> None:
        """Measure what is still waiting, then record how the run ended and release it.

        Args:
            error: why the training failed (then the state is ``failed``), or ``None``.
            state: ``finished``, ``failed`` or ``cancelled``; default from ``error``.

        Idempotent: a second call does nothing.
        """
        if self._closed:
            return
        self._closed = True
        _OPEN.discard(self)
        state = state or ("failed" if error else "finished")
        try:
            with contextlib.suppress(RunStoreError):
                self.flush()
            with self._cond:
                self._cond.notify_all()
            self._thread.join(timeout=5.0)
            if self._error is not None and state == "finished":
                state, error = "failed", f"perco_viz could not record the run: {self._error}"
            self.run_dir.write_status(state, error=error, epoch=self._epoch, step=max(self._step, 0),
                                      dropped=self.dropped)
        finally:
            if self._lock is not None:
                self._lock.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close("stopped by the user (Ctrl-C)", state="cancelled")
        else:
            self.close(f"{exc_type.__name__}: {exc}")
        return False

    def __repr__(self) -> str:
        if not self.active:
            return "Run(inactive: not rank 0)"
        return f"Run({str(self.path)!r}, logged={self._logged}, closed={self._closed})"

    # ------------------------------------------------------------------ checks in the caller
    def _check_features(self, features: Any) -> np.ndarray:
        n = len(self._teacher)
        if isinstance(features, torch.Tensor):
            if not features.is_floating_point():
                raise ValueError(f"the student features must be floating point, got a {features.dtype} tensor; "
                                 "log the features themselves (e.g. features.float()), not class indices")
        else:
            features = np.asarray(features)
            if features.dtype.kind != "f":
                raise ValueError(f"the student features must be floating point, got dtype {features.dtype}; "
                                 "log the features themselves (e.g. x.astype('float32'))")
        shape = tuple(features.shape)
        if len(shape) != 2 or shape[0] != n:
            raise ValueError(_shape_message(shape, n))
        d = shape[1]
        if self._dim is not None and d != self._dim:
            raise ValueError(f"the student features have {d} columns, but this run's first features had "
                             f"{self._dim}; log the same layer every time (or open a new run)")
        if d > MAX_DIM:
            raise ValueError(f"the student features have {d:,} columns; a run records at most {MAX_DIM:,}: "
                             "log a pooled or projected layer")
        checked = check_features(features, "student")  # detached, on the CPU, finite, within float range
        self._dim = d
        return checked.astype(np.float32)

    def _drop_oldest_features(self) -> None:
        """Keep at most ``max_pending`` snapshots, and :data:`MAX_PENDING_BYTES` of features,
        waiting; the newest always stays (called with the condition held)."""
        waiting = [item for item in self._queue if item.features is not None]
        keep, size = 0, 0
        for item in reversed(waiting):
            size += item.features.nbytes
            if keep and (keep >= self._max_pending or size > MAX_PENDING_BYTES):
                break
            keep += 1
        for item in waiting[:len(waiting) - keep]:
            item.features = None
            self.dropped += 1
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"perco_viz: run {self.name!r}: your loop logs features faster than they are measured; "
                    "older snapshots keep their numbers but not their features. Log features less often "
                    "(e.g. once an epoch) or pass a larger max_pending to open_run.", RuntimeWarning, stacklevel=4)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise RunStoreError(f"perco_viz could not record run {self.name!r}: {self._error}") from self._error

    # ------------------------------------------------------------------ the background thread
    def _work(self) -> None:
        last_beat = time.monotonic()
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    if not self._cond.wait(HEARTBEAT_S):
                        break
                if not self._queue and self._closed:
                    self._cond.notify_all()
                    return
                item = self._queue.popleft() if self._queue else None
                self._busy = item is not None
                self._cond.notify_all()
            try:
                if item is not None:
                    self._write(item)
                    last_beat = time.monotonic()
                elif time.monotonic() - last_beat >= HEARTBEAT_S:
                    self.run_dir.write_status("running", error=None, epoch=self._epoch, step=max(self._step, 0))
                    last_beat = time.monotonic()
            except Exception as exc:  # noqa: BLE001 — surfaced to the caller by log/flush/close
                with self._cond:
                    self._error = exc
                    self._queue.clear()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if self._error is not None:
                return

    def _write(self, item: _Item) -> None:
        # probe_record and what it imports are imported with this module, not here: a module first
        # imported at interpreter exit (a run closed by atexit) cannot register its own atexit hooks
        record = {"epoch": item.epoch, "step": item.step, **item.scalars, "wall_s": item.wall_s}
        if item.features is None:
            self.run_dir.append_metrics({**record, "snapshot": None})
        else:
            self._grow_config(item)
            c, numbers = probe_record(item.features, self._teacher, self._labels, metric=self._metric,
                                      teacher_metric=self._teacher_metric)
            record = {"epoch": item.epoch, "step": item.step, **item.scalars, **numbers, "wall_s": item.wall_s}
            snap = Snapshot(self._snapshot_index, item.epoch, item.step, item.features, c, record)
            self.run_dir.save_snapshot(snap)
            self._snapshot_index += 1
        self.run_dir.write_status("running", error=None, epoch=item.epoch, step=item.step)

    def _grow_config(self, item: _Item) -> None:
        """Record the feature width (first snapshot) and the epochs seen in ``config.json``."""
        cfg = self._config
        dim = item.features.shape[1]
        epochs = max(cfg.train.epochs, math.ceil(item.epoch))
        if dim != cfg.student.dim or epochs != cfg.train.epochs:
            self._config = cfg.override(**{"student.dim": dim, "train.epochs": epochs})
            self.run_dir.write_config(self._config)


def open_run(root: str | os.PathLike = "runs", name: str | None = None, *, teacher_features: Any,
             labels: Any = None, class_names: Sequence[str] | None = None, config: dict[str, Any] | None = None,
             epochs: int | None = None, metric: str = "euclidean", teacher_metric: str | None = None,
             writer: str = "open_run", title: str = "", max_pending: int = 8) -> Run:
    """Open a run directory under ``root`` for your own training to log to (see the module docs).

    Args:
        root: the runs folder (the app's ``PERCO_VIZ_RUNS``); made if missing.
        name: the run's folder name (made safe; ``-1``, ``-2``... added when taken). Default:
            ``run-<date>-<time>``.
        teacher_features: (n, d_t) the frozen teacher's features of the probe rows: a tensor
            (any device) or an array, finite, 3 <= n <= 100,000.
        labels: (n,) integer class of each probe row, or ``None`` (then no k-NN accuracy).
        class_names: the name of each class (``class_names[label]``), shown by the pages.
        config: your own settings, any JSON object; shown by the app and kept in ``external.json``.
        epochs: how many epochs you plan (the live progress bar); grows if you log more.
        metric, teacher_metric: the dissimilarity of the student's (and the teacher's)
            features: one of :data:`perco_viz.coherence.METRICS`.
        writer: who writes (``open_run``, or an integration: ``lightning``, ``hf``).
        title: a display title for the run pickers.
        max_pending: snapshots that may wait to be measured before older ones lose their features
            (also at most :data:`MAX_PENDING_BYTES` of them: memory is max_pending × n × d × 4 bytes).

    Returns:
        A :class:`Run`, open and marked ``running`` (inactive on a rank other than 0).

    Raises:
        ValueError: a bad argument; the message says what to change. Nothing is written.
        perco_viz.runs.RunStoreError: the folder cannot be written.
    """
    if writer not in WRITERS:
        raise ValueError(f"writer must be one of {', '.join(WRITERS)}, got {writer!r}")
    if current_rank() != 0:
        return Run(None)
    if not isinstance(max_pending, int) or isinstance(max_pending, bool) or max_pending < 1:
        raise ValueError(f"max_pending must be an integer >= 1, got {max_pending!r}")
    teacher = check_features(teacher_features, "teacher", min_points=3).astype(np.float32)
    n = len(teacher)
    if n > MAX_PROBE:
        raise ValueError(f"the probe set has {n:,} rows; a run measures at most {MAX_PROBE:,} (every snapshot "
                         "ranks all pairs of them): log a sample of your evaluation set")
    y = None
    if labels is not None:
        y = check_labels(labels, n)
        if y.dtype.kind not in "iub":
            raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}; map them to 0..C-1 "
                             "and pass the names as class_names")
        y = y.astype(np.int64)
    names = _check_class_names(class_names, y)
    cfg = _run_config(name, n, epochs, metric, teacher_metric)
    info = {"writer": writer, "config": {} if config is None else config, "class_names": names,
            "host": socket.gethostname(), "pid": os.getpid(), "python": sys.version.split()[0],
            "torch": torch.__version__, "perco_viz": _version()}
    _check_json(info)
    run_dir = RunDir.create(root, cfg, cfg.name)
    lock = contextlib.ExitStack()
    try:
        lock.enter_context(run_dir.lock())
        run_dir.write_external(info)
        if title:
            run_dir.write_meta(title=title)
        run_dir.save_teacher_probe(teacher, y, np.arange(n))
        run_dir.write_status("running", error=None, epoch=0.0, step=0)
    except BaseException:
        lock.close()
        raise
    _install_exit_hooks()
    return Run(run_dir, teacher=teacher, labels=y, metric=metric, teacher_metric=teacher_metric,
               max_pending=max_pending, config=cfg, lock=lock)


# --------------------------------------------------------------------------- checks
def _run_config(name: str | None, n: int, epochs: int | None, metric: str, teacher_metric: str | None) -> RunConfig:
    from perco_viz.config import ConfigError

    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1):
        raise ValueError(f"epochs must be a whole number >= 1 (or None), got {epochs!r}")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"name must be text, got {type(name).__name__}")
    try:
        return RunConfig().override(**{
            "name": name or time.strftime("run-%Y%m%d-%H%M%S"), "data.probe_size": n, "train.epochs": epochs or 1,
            "loss.metric": metric, "loss.teacher_metric": teacher_metric})
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _check_class_names(class_names: Sequence[str] | None, labels: np.ndarray | None) -> list[str] | None:
    if class_names is None:
        return None
    if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
        raise ValueError("class_names must be a list of text, one per class (class_names[label])")
    names = list(class_names)
    if labels is not None and len(labels) and labels.max() >= len(names):
        raise ValueError(f"class_names has {len(names)} names, but the labels go up to {int(labels.max())}")
    return names


def _check_json(info: dict[str, Any]) -> None:
    import json

    try:
        json.dumps(info, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config must be JSON-serialisable (numbers, text, lists, dicts; no NaN): {exc}") from None


def _check_number(value: Any, name: str, *, minimum: float | None = None) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be one number, got a tensor of shape {tuple(value.shape)}")
        value = value.detach().item()
    elif isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} is {value}; perco_viz records finite numbers only: log None for a gap, "
                         "or stop the training (a NaN loss usually means the learning rate is too high)")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value:g}")
    return value


def _check_step(step: Any) -> int:
    value = _check_number(step, "step", minimum=0)
    if value != int(value):
        raise ValueError(f"step must be a whole number, got {value:g}")
    return int(value)


def _check_scalars(scalars: dict[str, Any]) -> dict[str, float | None]:
    if len(scalars) > MAX_SCALARS:
        raise ValueError(f"log takes at most {MAX_SCALARS} numbers at once, got {len(scalars)}")
    out: dict[str, float | None] = {}
    for key, value in scalars.items():
        if key in RESERVED:
            raise ValueError(f"{key!r} is computed or set by perco_viz; give your number another name")
        if len(key) > MAX_KEY_CHARS:
            raise ValueError(f"the name {key[:20]!r}... is longer than {MAX_KEY_CHARS} characters")
        out[key] = None if value is None else _check_number(value, key)
    return out


def _shape_message(shape: tuple, n: int) -> str:
    return (f"the student features must be (n_probe, d) with n_probe = {n} rows (one per teacher_features row, "
            f"in the same order), got shape {tuple(shape)}")


def _version() -> str:
    from perco_viz import __version__

    return __version__


# --------------------------------------------------------------------------- runs left open at exit
_OPEN: weakref.WeakSet[Run] = weakref.WeakSet()
_UNCAUGHT: list[BaseException] = []
_HOOKS_INSTALLED = False


def _install_exit_hooks() -> None:
    """Once per process: remember an uncaught exception, and at exit close every open run as
    failed (naming that exception), so a crash never leaves a run that claims to be running."""
    global _HOOKS_INSTALLED
    if _HOOKS_INSTALLED:
        return
    _HOOKS_INSTALLED = True
    previous = sys.excepthook

    def remember(exc_type, exc, tb):
        _UNCAUGHT.append(exc)
        previous(exc_type, exc, tb)

    sys.excepthook = remember
    atexit.register(_close_open_runs)


def _close_open_runs() -> None:
    for run in list(_OPEN):
        exc = _UNCAUGHT[-1] if _UNCAUGHT else None
        why = (f"{type(exc).__name__}: {exc}" if exc is not None
               else "the process ended before the run was closed (use `with perco_viz.open_run(...)` or run.close())")
        with contextlib.suppress(Exception):
            run.close(why, state="cancelled" if isinstance(exc, KeyboardInterrupt) else "failed")
