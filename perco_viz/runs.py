"""The run directory: one folder per distillation, readable while it is being written.

Layout::

    <run>/config.json         the resolved RunConfig (enough to reproduce the run)
    <run>/status.json         state (running/finished/failed/cancelled), error, heartbeat
    <run>/metrics.jsonl       one JSON line per snapshot (epoch, step, train_loss, pc, ...)
    <run>/snapshots/NNNNNN.npz  probe-set student features and per-sample coherence
    <run>/teacher_probe.npz   teacher probe features, labels, probe indices
    <run>/student.safetensors latest student weights
    <run>/checkpoint.pt       what resume needs (tensors and numbers only: weights_only-safe)

Every file but ``metrics.jsonl`` is written to a temporary name and renamed into place, so a
reader never sees half a file; ``metrics.jsonl`` is append-only and its reader skips a torn
last line. A process killed mid-run leaves a directory whose completed snapshots all load.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perco_viz.config import RunConfig

STATES = ("running", "finished", "failed", "cancelled")
STALE_AFTER_S = 30.0  # a "running" run whose heartbeat is older than this is reported stale
HEARTBEAT_S = 5.0  # the engine refreshes the heartbeat at least this often while it trains
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")


class RunStoreError(RuntimeError):
    """A run directory cannot be written or read; the message says what to change."""


def sanitize_name(name: str) -> str:
    """A safe single path component from user text (no separators, no traversal).

    >>> sanitize_name("../../etc/passwd")
    'etc_passwd'
    >>> sanitize_name("my run #1")
    'my_run_1'
    """
    cleaned = _NAME_OK.sub("_", str(name)).strip("._-")
    cleaned = re.sub(r"_+", "_", cleaned)[:80]
    if not cleaned:
        raise RunStoreError(f"run name {name!r} has no usable characters; use letters, digits, '-', '_' or '.'")
    return cleaned


@contextmanager
def _atomic(path: Path, mode: str = "wb") -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and rename it into place on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (write-then-rename)."""
    with _atomic(Path(path)) as fh:
        fh.write(data)


def _disk_error(path: Path, exc: OSError) -> RunStoreError:
    return RunStoreError(
        f"cannot write to the run directory {str(path)!r}: {exc.strerror or exc}. "
        "Free some disk space or choose another output directory (--out)."
    )


@dataclass
class Snapshot:
    """What the engine records on the probe set at one moment.

    Attributes:
        index: snapshot number (0 = before training).
        epoch: fractional epoch (e.g. 2.5 half-way through the third epoch).
        step: optimizer steps done.
        student: (n_probe, d_s) student features on the probe set.
        coherence: (n_probe,) per-sample coherence c_i against the teacher.
        metrics: the metrics.jsonl record of this snapshot.
    """

    index: int
    epoch: float
    step: int
    student: np.ndarray
    coherence: np.ndarray
    metrics: dict[str, Any]


class RunDir:
    """One run's directory. Cheap to construct; every read goes to disk.

    Args:
        path: the directory (need not exist yet).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, root: str | os.PathLike, config: RunConfig, name: str | None = None) -> RunDir:
        """Make a fresh run directory under ``root`` (a unique name is derived if taken)."""
        base = sanitize_name(name or config.name or _default_name(config))
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            for i in range(10_000):
                candidate = root / (base if i == 0 else f"{base}-{i}")
                try:
                    candidate.mkdir()
                    break
                except FileExistsError:
                    continue
            run = cls(candidate)
            (candidate / "snapshots").mkdir()
            run.write_config(config)
        except OSError as exc:
            raise _disk_error(root, exc) from None
        return run

    @property
    def name(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        """True when this looks like a run directory (has a config)."""
        return (self.path / "config.json").is_file()

    # ------------------------------------------------------------------ config & status
    def write_config(self, config: RunConfig) -> None:
        try:
            atomic_write_bytes(self.path / "config.json", config.to_json().encode())
        except OSError as exc:
            raise _disk_error(self.path, exc) from None

    def config(self) -> RunConfig:
        """The run's resolved configuration."""
        if not self.exists():
            raise RunStoreError(f"{str(self.path)!r} is not a run directory (no config.json)")
        return RunConfig.load(self.path / "config.json")

    def write_status(self, state: str, **fields: Any) -> None:
        """Atomically record ``state`` plus fields (error, epoch, step, ...) and a heartbeat."""
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}")
        status = {**self._read_json("status.json", {}), **fields, "state": state, "heartbeat": time.time()}
        status.setdefault("started", status["heartbeat"])
        status["pid"] = os.getpid()
        status["host"] = socket.gethostname()
        try:
            atomic_write_bytes(self.path / "status.json", json.dumps(status, default=str).encode())
        except OSError as exc:
            raise _disk_error(self.path, exc) from None

    def status(self) -> dict[str, Any]:
        """The status, with ``state == "stale"`` for a running run whose heartbeat stopped."""
        status = self._read_json("status.json", {"state": "unknown"})
        if status.get("state") == "running" and (_writer_gone(status) or _heartbeat_old(status)):
            status = {**status, "state": "stale",
                      "error": "the training process stopped answering (killed or crashed); resume it to continue"}
        return status

    def _read_json(self, name: str, default: dict[str, Any]) -> dict[str, Any]:
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError):
            return dict(default)

    # ------------------------------------------------------------------ metrics
    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line (flushed and fsynced: a crash loses at most this line)."""
        line = json.dumps(_jsonable(record), allow_nan=False) + "\n"
        try:
            with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise _disk_error(self.path, exc) from None

    def metrics(self) -> list[dict[str, Any]]:
        """All complete metric records; a torn or corrupt line is skipped, not fatal."""
        try:
            text = (self.path / "metrics.jsonl").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        records = []
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                records.append(rec)
        return records

    def truncate_metrics(self, max_step: int) -> None:
        """Keep only records with ``step <= max_step`` (used by resume)."""
        kept = [r for r in self.metrics() if int(r.get("step", 0)) <= max_step]
        data = "".join(json.dumps(r) + "\n" for r in kept).encode()
        atomic_write_bytes(self.path / "metrics.jsonl", data)

    # ------------------------------------------------------------------ snapshots
    def save_snapshot(self, snap: Snapshot) -> None:
        """Write the snapshot's arrays, then its metrics line (so a listed line has its file)."""
        buf = _npz_bytes(student=snap.student.astype(np.float32), coherence=snap.coherence.astype(np.float64),
                         epoch=np.float64(snap.epoch), step=np.int64(snap.step), index=np.int64(snap.index))
        try:
            atomic_write_bytes(self.path / "snapshots" / f"{snap.index:06d}.npz", buf)
        except OSError as exc:
            raise _disk_error(self.path, exc) from None
        self.append_metrics({**snap.metrics, "snapshot": snap.index})

    def snapshot_indices(self) -> list[int]:
        """Indices of the snapshots on disk, in order."""
        folder = self.path / "snapshots"
        if not folder.is_dir():
            return []
        return sorted(int(p.stem) for p in folder.glob("[0-9]*.npz") if p.stem.isdigit())

    def load_snapshot(self, index: int) -> Snapshot:
        """Read one snapshot (arrays and its metrics record)."""
        path = self.path / "snapshots" / f"{int(index):06d}.npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise RunStoreError(f"snapshot {index} of run {self.name!r} cannot be read: {exc}") from None
        record = next((r for r in self.metrics() if r.get("snapshot") == int(index)), {})
        return Snapshot(int(arrays["index"]), float(arrays["epoch"]), int(arrays["step"]),
                        arrays["student"], arrays["coherence"], record)

    def remove_snapshots_after(self, index: int) -> None:
        for i in self.snapshot_indices():
            if i > index:
                (self.path / "snapshots" / f"{i:06d}.npz").unlink(missing_ok=True)

    # ------------------------------------------------------------------ teacher probe
    def save_teacher_probe(self, features: np.ndarray, labels: np.ndarray | None, indices: np.ndarray) -> None:
        """Teacher features (n_probe, d_t), labels (n_probe,) or none, probe indices into the test split."""
        arrays = {"features": features.astype(np.float32), "indices": indices.astype(np.int64)}
        if labels is not None:
            arrays["labels"] = labels.astype(np.int64)
        atomic_write_bytes(self.path / "teacher_probe.npz", _npz_bytes(**arrays))

    def teacher_probe(self) -> dict[str, np.ndarray]:
        """``features``, ``indices`` and (when labelled) ``labels`` of the probe set."""
        try:
            with np.load(self.path / "teacher_probe.npz", allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise RunStoreError(f"run {self.name!r} has no readable teacher_probe.npz yet: {exc}") from None

    # ------------------------------------------------------------------ weights
    @property
    def student_path(self) -> Path:
        return self.path / "student.safetensors"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"


def _heartbeat_old(status: dict[str, Any]) -> bool:
    beat = status.get("heartbeat")
    return bool(beat) and time.time() - float(beat) > STALE_AFTER_S


def _writer_gone(status: dict[str, Any]) -> bool:
    """True when the writing process ran on this host and no longer exists."""
    pid, host = status.get("pid"), status.get("host")
    if not pid or host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError, ValueError):
        return False
    return _is_zombie(int(pid))


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _default_name(config: RunConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{config.data.name}-{config.loss.name}-d{config.student.dim}-{stamp}"


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    """Plain floats/ints; non-finite numbers become None (JSON has no NaN)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, (np.floating, float)):
            value = float(value)
            out[key] = value if np.isfinite(value) else None
        elif isinstance(value, np.integer):
            out[key] = int(value)
        else:
            out[key] = value
    return out


def list_runs(root: str | os.PathLike) -> list[RunDir]:
    """Run directories directly under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file()]
    return sorted(runs, key=lambda r: r.path.stat().st_mtime, reverse=True)
