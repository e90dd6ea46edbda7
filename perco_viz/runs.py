"""The run directory: one folder per distillation, readable while it is being written.

Layout::

    <run>/config.json         the resolved RunConfig (enough to reproduce the run)
    <run>/status.json         state (running/finished/failed/cancelled), error, heartbeat
    <run>/metrics.jsonl       one JSON line per snapshot (epoch, step, train_loss, pc, ...)
    <run>/snapshots/NNNNNN.npz  probe-set student features and per-sample coherence
    <run>/teacher_probe.npz   teacher probe features, labels, probe indices
    <run>/student.safetensors latest student weights
    <run>/checkpoint.pt       what resume needs (tensors and numbers only: weights_only-safe)
    <run>/heldout.json        the method benchmark's held-out scores of the trained student
    <run>/meta.json           what people say about the run: a title, tags, a note (:class:`RunMeta`)
    <run>/external.json       only in a run written by the user's own training (:func:`perco_viz.open_run`
                              and the integrations): which writer, and the user's own config
    <run>/.lock               the writer's OS lock (``fcntl.flock``) and who holds it

Every file but ``metrics.jsonl`` is written to a temporary name and renamed into place, so a
reader never sees half a file; ``metrics.jsonl`` is append-only and its reader skips a torn
last line. A process killed mid-run leaves a directory whose completed snapshots all load.

**Only this module knows the layout.** Everything else asks :class:`RunDir`: its readers and
writers, :meth:`RunDir.signature` and :meth:`RunDir.snapshot_stamp` for cache keys,
:meth:`RunDir.snapshot_path`, :attr:`RunDir.metrics_path`, :attr:`RunDir.student_path` for a
file's place, and :func:`list_runs` to find runs.

**Reading is defensive.** A runs folder may be shared, and its writers are not trusted: every
read of a run file goes through one entrance (:meth:`RunDir._open_file`) that accepts regular
files only (a FIFO, device or socket is refused without blocking), refuses a link whose target
leaves the runs folder (the run directory's parent), caps the size (:data:`MAX_BYTES`; for
``.npz`` also what it unpacks to, through :func:`perco_viz.safe_io.load_npz`) and checks every
field's type. A damaged file raises :class:`RunStoreError` naming the run, the file and what is
wrong; :meth:`RunDir.status` never raises (a damaged status reads ``"damaged"``), a bad
``metrics.jsonl`` line is skipped, and :func:`list_runs` never fails because of one entry.

**One writer.** A training holds an exclusive ``fcntl.flock`` on ``<run>/.lock`` from set-up to
its final status (:meth:`RunDir.lock`); the kernel releases it when the process dies, so a
``running`` status whose lock is free is a dead run (``stale``). A second writer (``resume``
of a run still training) is refused with :class:`RunLockedError` before it touches anything.
:meth:`RunDir.delete` takes the same lock, so a run being written is never deleted.

**People's words about a run** (:meth:`RunDir.meta`, :meth:`RunDir.write_meta`): a title, tags
and a note in ``meta.json``, bounded (:data:`MAX_TITLE_CHARS`, :data:`MAX_TAGS`,
:data:`MAX_TAG_CHARS`, :data:`MAX_NOTE_CHARS`) and checked on write and on read; a damaged
``meta.json`` reads as no metadata plus a ``problem`` (it never hides the run). The engine never
reads or writes it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from perco_viz.config import RunConfig

try:  # POSIX; on Windows a run is not locked (one writer is then the user's business)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

STATES = ("running", "finished", "failed", "cancelled")
READ_STATES = (*STATES, "stale", "unknown", "damaged")  # what status() may say
STALE_AFTER_S = 30.0  # a "running" run whose heartbeat is older than this is reported stale (other hosts)
HEARTBEAT_S = 5.0  # the engine refreshes the heartbeat at least this often while it trains
LOCK_FILE = ".lock"
LOCK_WAIT_S = 1.0  # a writer retries this long (a reader's probe holds the lock for microseconds)
MAX_BYTES = {  # per file: bytes on disk (for .npz also what its arrays unpack to)
    "config.json": 1 << 20,
    "status.json": 1 << 20,
    "metrics.jsonl": 64 << 20,
    LOCK_FILE: 4096,
    "snapshot": 512 << 20,  # and at most what the run's probe_size x student.dim needs
    "teacher_probe.npz": 512 << 20,
    "heldout.json": 1 << 20,
    "meta.json": 64 << 10,
    "external.json": 256 << 10,
}
META_FILE = "meta.json"
EXTERNAL_FILE = "external.json"
MAX_TITLE_CHARS = 80
MAX_TAGS = 20
MAX_TAG_CHARS = 40
MAX_NOTE_CHARS = 5000
MAX_SNAPSHOT_FILES = 100_000  # entries of snapshots/ looked at
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")
_SNAPSHOT_NAME = re.compile(r"([0-9]{1,9})\.npz")
SNAPSHOTS = "snapshots"  # the folder of snapshot files


def _snapshot_rel(index: int) -> str:
    """Snapshot ``index``'s file, relative to the run directory."""
    return f"{SNAPSHOTS}/{int(index):06d}.npz"
_O_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class RunStoreError(RuntimeError):
    """A run directory cannot be written or read; the message says what to change."""


class RunLockedError(RunStoreError):
    """Another process is writing this run (it holds the run's lock)."""


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
def atomic_file(path: Path, mode: str = "wb", **open_kwargs: Any) -> Iterator[Any]:
    """Write to a temporary file beside ``path``, flushed to disk, and rename it into place on
    success (a reader never sees half a file; a link at ``path`` is replaced, never followed).
    ``open_kwargs`` go to :func:`os.fdopen` (``encoding``, ``newline`` for text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as fh:
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
    with atomic_file(Path(path)) as fh:
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


@dataclass(frozen=True)
class RunMeta:
    """What people say about a run (``meta.json``): all optional, bounded, plain text.

    Attributes:
        title: a display title (one line, at most :data:`MAX_TITLE_CHARS`); "" = none (the
            folder name is shown).
        tags: at most :data:`MAX_TAGS` distinct tags of at most :data:`MAX_TAG_CHARS` each (one
            line, no commas), in the order given.
        note: free text (lines kept, at most :data:`MAX_NOTE_CHARS`).
        problem: why ``meta.json`` could not be used (then the fields are empty), or None.
    """

    title: str = ""
    tags: tuple[str, ...] = ()
    note: str = ""
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "tags": list(self.tags), "note": self.note}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", _CONTROL.sub(" ", text)).strip()


def check_meta(title: Any = "", tags: Any = (), note: Any = "") -> RunMeta:
    """A :class:`RunMeta` from people's words, cleaned (a title and tags on one line, single spaces,
    tags without commas and without repeats; a note keeps its lines) and checked.

    Raises:
        RunStoreError: a field of the wrong type or too long; the message says what to shorten.

    >>> check_meta(" My  run ", ["good", " good", "needs, review"], "ok").tags
    ('good', 'needs review')
    """
    if title is None:
        title = ""
    if note is None:
        note = ""
    if not isinstance(title, str):
        raise RunStoreError(f"a run's title must be text, not {_type_name(title)}")
    if not isinstance(note, str):
        raise RunStoreError(f"a run's note must be text, not {_type_name(note)}")
    if isinstance(tags, str) or not isinstance(tags, (list, tuple)):
        raise RunStoreError(f"a run's tags must be a list of words, not {_type_name(tags)}")
    title = _one_line(title)
    if len(title) > MAX_TITLE_CHARS:
        raise RunStoreError(f"a run's title has at most {MAX_TITLE_CHARS} characters (this one has {len(title)}); "
                            "shorten it")
    cleaned: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise RunStoreError(f"a run's tags must be words, not {_type_name(tag)}")
        tag = _one_line(tag.replace(",", " "))
        if not tag or tag in cleaned:
            continue
        if len(tag) > MAX_TAG_CHARS:
            raise RunStoreError(f"a tag has at most {MAX_TAG_CHARS} characters ({tag[:20]!r}… has {len(tag)}); "
                                "shorten it")
        cleaned.append(tag)
    if len(cleaned) > MAX_TAGS:
        raise RunStoreError(f"a run has at most {MAX_TAGS} tags (these are {len(cleaned)}); remove some")
    note = _CONTROL.sub(" ", note.replace("\r\n", "\n")).strip()
    if len(note) > MAX_NOTE_CHARS:
        raise RunStoreError(f"a run's note has at most {MAX_NOTE_CHARS:,} characters (this one has {len(note):,}); "
                            "shorten it")
    return RunMeta(title=title, tags=tuple(cleaned), note=note)


# --------------------------------------------------------------------------- field types
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__)


# status.json: field -> (check, what it must be); absent fields are fine, unknown scalar ones kept
_STATUS_FIELDS: dict[str, tuple[Any, str]] = {
    "state": (lambda v: v in STATES, f"one of {', '.join(STATES)}"),
    "error": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "heartbeat": (_is_number, "a number (seconds since 1970)"),
    "started": (_is_number, "a number (seconds since 1970)"),
    "pid": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "host": (lambda v: isinstance(v, str), "a string"),
    "epoch": (lambda v: v is None or (_is_number(v) and v >= 0), "a number >= 0 or null"),
    "step": (lambda v: v is None or (_is_int(v) and v >= 0), "an integer >= 0 or null"),
}
# metrics.jsonl records: required fields, then fields that must be a number or null
_METRIC_REQUIRED: dict[str, tuple[Any, str]] = {
    "epoch": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "step": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
}
_METRIC_NUMBERS = ("train_loss", "pc", "coherence_p10", "knn_acc", "lr", "wall_s")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _loads(text: str) -> Any:
    """Strict JSON: no NaN/Infinity, no overflowing floats; ValueError/RecursionError otherwise."""
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def check_metrics_record(record: Any) -> str | None:
    """Why ``record`` is not a valid metrics.jsonl record, or ``None`` when it is.

    Valid: an object with ``epoch`` (number >= 0) and ``step`` (integer >= 0); ``snapshot`` an
    integer >= 0 or null; ``train_loss``, ``pc``, ``coherence_p10``, ``knn_acc``, ``lr``,
    ``wall_s`` and every ``loss_*`` a number or null; any other field a string, number,
    boolean or null.
    """
    if not isinstance(record, dict):
        return f"a record must be an object, not {_type_name(record)}"
    for key, (ok, what) in _METRIC_REQUIRED.items():
        if key not in record or not ok(record[key]):
            return f"{key!r} must be {what}, got {record.get(key)!r:.40}"
    for key, value in record.items():
        if key == "snapshot":
            if not (value is None or (_is_int(value) and value >= 0)):
                return f"'snapshot' must be an integer >= 0 or null, got {value!r:.40}"
        elif key in _METRIC_NUMBERS or key.startswith("loss_"):
            if not (value is None or _is_number(value)):
                return f"{key!r} must be a number or null, got {value!r:.40}"
        elif not (value is None or isinstance(value, (str, int, float))):
            return f"{key!r} must be a plain value, got {_type_name(value)}"
    return None


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


# cached facts of files (config, teacher probe rows), keyed by the file's identity and mtime
_FACTS: OrderedDict[tuple, Any] = OrderedDict()
_FACTS_LOCK = threading.Lock()
_FACTS_MAX = 256

# locks held by this process: lock file -> [thread id, fd, depth] (re-entrant within a thread)
_HELD: dict[str, list[int]] = {}
_HELD_LOCK = threading.Lock()


class RunDir:
    """One run's directory. Cheap to construct; every read goes to disk.

    Args:
        path: the directory (need not exist yet). Its parent is the runs folder: no file of
            the run may lead (by a symbolic link) out of it.
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
            (candidate / SNAPSHOTS).mkdir()
            run.write_config(config)
        except OSError as exc:
            raise _disk_error(root, exc) from None
        return run

    @property
    def name(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        """True when this looks like a run directory (has a config.json file). Never raises."""
        try:
            return stat.S_ISREG(os.stat(self.path / "config.json").st_mode)
        except (OSError, ValueError):
            return False

    # ------------------------------------------------------------------ the one entrance
    def _root(self) -> str:
        return os.path.realpath(self.path.parent)

    def _open_file(self, rel: str, cap: int, what: str | None = None) -> tuple[IO[bytes], os.stat_result] | None:
        """Open a run file for reading, or ``None`` when it does not exist.

        The file must be a regular file (checked before and after opening, which never blocks:
        ``O_NONBLOCK``), must not lead out of the runs folder by a link (its real path is checked,
        then opened with ``O_NOFOLLOW``), and must be at most ``cap`` bytes.

        Raises:
            RunStoreError: any of these fails, or the file cannot be read.
        """
        what = what or rel
        label = f"{what} of run {self.name!r}"
        path = self.path / rel
        real = os.path.realpath(path)
        root = self._root()
        if not _inside(real, root):
            raise RunStoreError(f"{label} leads out of the runs folder (to {real!r}); "
                                "a run's files must be inside its folder: remove the link")
        try:
            before = os.lstat(real)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RunStoreError(f"{label} cannot be read: {exc.strerror or exc}") from None
        if not stat.S_ISREG(before.st_mode):
            raise RunStoreError(f"{label} is not a regular file ({_file_kind(before.st_mode)}); "
                                "replace it with the file the run wrote, or remove the run")
        if before.st_size > cap:
            raise RunStoreError(f"{label} is {_mib(before.st_size)}, over the {_mib(cap)} limit for it; "
                                "the file is damaged or not from perco_viz")
        try:
            fd = os.open(real, _O_READ | _O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RunStoreError(f"{label} cannot be read: {exc.strerror or exc}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            os.close(fd)
            raise RunStoreError(f"{label} changed into {_file_kind(st.st_mode)} while it was opened; try again")
        return os.fdopen(fd, "rb"), st

    def _read_bytes(self, rel: str, cap: int, what: str | None = None) -> bytes | None:
        """The bytes of a run file through :meth:`_open_file` (at most ``cap``; ``None``: absent)."""
        opened = self._open_file(rel, cap, what)
        if opened is None:
            return None
        fh, _ = opened
        with fh:
            try:
                data = fh.read(cap + 1)
            except OSError as exc:
                raise RunStoreError(f"{what or rel} of run {self.name!r} cannot be read: {exc.strerror or exc}") from None
        if len(data) > cap:
            raise RunStoreError(f"{what or rel} of run {self.name!r} grew past the {_mib(cap)} limit for it")
        return data

    def _read_npz(self, rel: str, cap: int, what: str) -> dict[str, np.ndarray] | None:
        """Arrays of a run's ``.npz`` within ``cap`` on disk and unpacked (``None``: absent)."""
        from perco_viz.safe_io import InputFileError, load_npz

        opened = self._open_file(rel, cap, what)
        if opened is None:
            return None
        fh, _ = opened
        with fh:
            try:
                return load_npz(fh, name=rel, max_bytes=cap)
            except InputFileError as exc:
                raise RunStoreError(f"{what} of run {self.name!r} is damaged and cannot be read: {exc}") from None
            except OSError as exc:
                raise RunStoreError(f"{what} of run {self.name!r} cannot be read: {exc.strerror or exc}") from None
            except Exception as exc:  # noqa: BLE001 — whatever a hostile file provokes: still one clear error
                raise RunStoreError(f"{what} of run {self.name!r} is damaged and cannot be read "
                                    f"({type(exc).__name__}: {str(exc)[:160]})") from None

    def _json_object(self, rel: str) -> dict[str, Any] | None:
        """The run's small JSON file ``rel`` (``status.json``, ``meta.json``) as a dict, None when absent.

        Raises:
            RunStoreError: unreadable, not valid JSON, or not a JSON object.
        """
        data = self._read_bytes(rel, MAX_BYTES[rel])
        if data is None:
            return None
        label = f"{rel} of run {self.name!r}"
        try:
            doc = _loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise RunStoreError(f"{label} is damaged: not valid JSON ({str(exc)[:120]})") from None
        if not isinstance(doc, dict):
            raise RunStoreError(f"{label} is damaged: it must be a JSON object, not {_type_name(doc)}")
        return doc

    def _stat_key(self, rel: str) -> tuple | None:
        """The identity of a run file (real path, device, inode, size, mtime), or None."""
        try:
            real = os.path.realpath(self.path / rel)
            st = os.stat(real)
        except (OSError, ValueError):
            return None
        return (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _cached(self, kind: str, rel: str, compute):
        key = self._stat_key(rel)
        if key is not None:
            with _FACTS_LOCK:
                if (kind, *key) in _FACTS:
                    _FACTS.move_to_end((kind, *key))
                    return _FACTS[(kind, *key)]
        value = compute()
        if key is not None and key == self._stat_key(rel):
            with _FACTS_LOCK:
                _FACTS[(kind, *key)] = value
                while len(_FACTS) > _FACTS_MAX:
                    _FACTS.popitem(last=False)
        return value

    # ------------------------------------------------------------------ config & status
    def write_config(self, config: RunConfig) -> None:
        try:
            atomic_write_bytes(self.path / "config.json", config.to_json().encode())
        except OSError as exc:
            raise _disk_error(self.path, exc) from None

    def config(self) -> RunConfig:
        """The run's resolved configuration.

        Raises:
            RunStoreError: no config.json (not a run directory), or it is unreadable or invalid.
        """
        return copy.deepcopy(self._cached("config", "config.json", self._load_config))

    def _load_config(self) -> RunConfig:
        data = self._read_bytes("config.json", MAX_BYTES["config.json"])
        if data is None:
            raise RunStoreError(f"{str(self.path)!r} is not a run directory (no config.json)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise RunStoreError(f"config.json of run {self.name!r} is damaged: it is not UTF-8 text") from None
        try:
            return RunConfig.from_text(text)
        except (ValueError, TypeError, RecursionError) as exc:  # ConfigError is a ValueError
            raise RunStoreError(f"config.json of run {self.name!r} is invalid: {exc}") from None

    def write_status(self, state: str, **fields: Any) -> None:
        """Atomically record ``state`` plus fields (error, epoch, step, ...) and a heartbeat."""
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}")
        try:
            old = self._status_file() or {}
        except RunStoreError:  # a damaged status is replaced, not merged
            old = {}
        status = {**old, **fields, "state": state, "heartbeat": time.time()}
        status.setdefault("started", status["heartbeat"])
        status["pid"] = os.getpid()
        status["host"] = socket.gethostname()
        try:
            atomic_write_bytes(self.path / "status.json", json.dumps(status, default=str).encode())
        except OSError as exc:
            raise _disk_error(self.path, exc) from None

    def _status_file(self) -> dict[str, Any] | None:
        """status.json, type-checked field by field (``None``: not written yet).

        Raises:
            RunStoreError: unreadable, not a JSON object, or a field of the wrong type.
        """
        status = self._json_object("status.json")
        if status is None:
            return None
        label = f"status.json of run {self.name!r}"
        if "state" not in status:
            raise RunStoreError(f"{label} is damaged: it has no 'state'")
        for key, (ok, what) in _STATUS_FIELDS.items():
            if key in status and not ok(status[key]):
                raise RunStoreError(f"{label} is damaged: {key!r} must be {what}, got {status[key]!r:.60}")
        return {k: v for k, v in status.items()
                if k in _STATUS_FIELDS or v is None or isinstance(v, (str, int, float))}

    def status(self) -> dict[str, Any]:
        """The run's status; never raises.

        ``state`` is one of :data:`READ_STATES`: a written state, ``"stale"`` for a running run
        whose writer is gone (its lock is free; on another host: its pid is gone or its
        heartbeat stopped), ``"unknown"`` before the first status, ``"damaged"`` (with
        ``error`` saying what is wrong) when status.json cannot be used.
        """
        try:
            status = self._status_file()
        except RunStoreError as exc:
            return {"state": "damaged", "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 — status() is called by every page: never raise
            return {"state": "damaged", "error": f"status.json of run {self.name!r} cannot be read: {exc}"}
        if status is None:
            return {"state": "unknown"}
        if status["state"] == "running" and self._writer_stopped(status):
            how = ("log to a new run from your training" if self.is_external()
                   else "resume it to continue")
            status = {**status, "state": "stale",
                      "error": f"the training process stopped answering (killed or crashed); {how}"}
        return status

    def _writer_stopped(self, status: dict[str, Any]) -> bool:
        """A "running" status without a live writer: its lock is free (on this host, where the
        lock file exists), else its pid is gone or its heartbeat stopped."""
        if self.is_locked():
            return False
        if status.get("host") == socket.gethostname() and self._lock_file_exists():
            return True
        return _writer_gone(status) or _heartbeat_old(status)

    def problem(self) -> str | None:
        """Why this run cannot be shown (config or status unreadable), or ``None``. Cheap
        (two small files, the config cached by its mtime); never raises."""
        try:
            self.config()
        except RunStoreError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 — a health check never raises
            return f"run {self.name!r} cannot be read: {exc}"
        status = self.status()
        return status["error"] if status["state"] == "damaged" else None

    def coherence_metrics(self) -> tuple[str, str | None]:
        """``(metric, teacher_metric)``: the dissimilarities the run measured c_i with (its
        config's ``loss.metric`` and ``loss.teacher_metric``; ``("euclidean", None)``, the
        library default, when the config cannot be read). Never raises."""
        try:
            loss = self.config().loss
            return loss.metric, loss.teacher_metric
        except Exception:  # noqa: BLE001 — an unreadable config: the library default
            return "euclidean", None

    # ------------------------------------------------------------------ people's words
    def meta(self) -> RunMeta:
        """The run's title, tags and note (``meta.json``); empty when it has none. Never raises:
        a damaged ``meta.json`` (not a file, a link out of the runs folder, too big, not JSON, a
        field of the wrong type or too long) reads as empty metadata with ``problem`` saying why."""
        try:
            return self._cached("meta", META_FILE, self._load_meta)
        except RunStoreError as exc:
            return RunMeta(problem=str(exc))
        except Exception as exc:  # noqa: BLE001 — listing a run never fails because of its meta
            return RunMeta(problem=f"{META_FILE} of run {self.name!r} cannot be read: {exc}")

    def _load_meta(self) -> RunMeta:
        doc = self._json_object(META_FILE)
        if doc is None:
            return RunMeta()
        label = f"{META_FILE} of run {self.name!r}"
        try:
            return check_meta(doc.get("title", ""), doc.get("tags", []), doc.get("note", ""))
        except RunStoreError as exc:
            raise RunStoreError(f"{label} is damaged: {exc}") from None

    def write_meta(self, *, title: str = "", tags: Any = (), note: str = "") -> RunMeta:
        """Replace the run's title, tags and note (checked by :func:`check_meta`, written atomically).

        The run folder's modification time is kept, so editing a note does not make an old run
        the newest in :func:`list_runs`. Returns what was written (cleaned).

        Raises:
            RunStoreError: a field is wrong (the message says what to change), the run does not
                exist, or the disk refused the file.
        """
        if not isinstance(tags, (str, bytes, list, tuple)) and hasattr(tags, "__iter__"):
            tags = list(tags)  # a set, a generator
        meta = check_meta(title, tags, note)
        if not self.exists():
            raise RunStoreError(f"{str(self.path)!r} is not a run directory (no config.json); nothing was written")
        try:
            before = os.stat(self.path)
            atomic_write_bytes(self.path / META_FILE, json.dumps(meta.to_dict(), indent=1).encode())
        except OSError as exc:
            raise _disk_error(self.path, exc) from None
        try:
            os.utime(self.path, ns=(before.st_atime_ns, before.st_mtime_ns))
        except OSError:  # only the listing order
            pass
        return meta

    # ------------------------------------------------------------------ a run of someone's own training
    def write_external(self, info: dict[str, Any]) -> None:
        """Record that this run was written by the user's own training, not the engine.

        Args:
            info: a JSON object: ``writer`` (``"open_run"``, ``"lightning"``, ``"hf"``),
                ``config`` (the user's own settings), and any other plain facts.

        Raises:
            ValueError: ``info`` is not JSON-serialisable (NaN included) or over
                ``MAX_BYTES["external.json"]`` once written.
        """
        try:
            data = json.dumps(info, indent=1, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the run's config must be JSON-serialisable (numbers, text, lists, dicts): {exc}") from None
        cap = MAX_BYTES[EXTERNAL_FILE]
        if len(data) > cap:
            raise ValueError(f"the run's config takes {_mib(len(data))} as JSON, more than {_mib(cap)}; "
                             "record large things as files of your own and put their paths in the config")
        try:
            atomic_write_bytes(self.path / EXTERNAL_FILE, data)
        except OSError as exc:
            raise _disk_error(self.path, exc) from None

    def external(self) -> dict[str, Any] | None:
        """What :meth:`write_external` recorded (``writer``, ``config``, ...), or ``None`` for a run
        of the engine. Never raises: a damaged file reads as ``{"writer": "unknown", "config": {},
        "problem": why}`` (the run is still someone's own training)."""
        try:
            doc = self._cached("external", EXTERNAL_FILE, lambda: self._json_object(EXTERNAL_FILE))
        except RunStoreError as exc:
            return {"writer": "unknown", "config": {}, "problem": str(exc)}
        except Exception as exc:  # noqa: BLE001 — listing a run never fails because of this file
            return {"writer": "unknown", "config": {}, "problem": f"{EXTERNAL_FILE} of run {self.name!r}: {exc}"}
        if doc is None:
            return None
        doc = dict(doc)
        if not isinstance(doc.get("writer"), str):
            doc["writer"] = "unknown"
        if not isinstance(doc.get("config"), dict):
            doc["config"] = {}
        return doc

    def is_external(self) -> bool:
        """Whether the user's own training wrote this run (so its config names no dataset,
        teacher or student the app could load). Never raises."""
        return self.external() is not None

    # ------------------------------------------------------------------ deleting
    def delete(self, *, root: str | os.PathLike | None = None) -> None:
        """Delete the run: its folder and everything in it.

        Refused while a writer holds the run (a training, a resume) or while its status says it
        is running (a writer on another host); the run's lock is held while it goes, so no
        training starts on it meanwhile. Only the run's own folder goes: a run that is a link is
        refused (its target is never touched), and links inside it are removed, never followed.

        Args:
            root: when given, the run must lie directly in this folder (e.g. the session's own
                runs folder); anything else is refused.

        Raises:
            RunLockedError: it is being written; the message says to stop it first.
            RunStoreError: it is not a run directory, not in ``root``, a link, or the disk refused.
        """
        label = f"run {self.name!r}"
        try:
            st_ = os.lstat(self.path)
        except FileNotFoundError:
            raise RunStoreError(f"{label} does not exist (already deleted?)") from None
        except OSError as exc:
            raise RunStoreError(f"{label} cannot be deleted: {exc.strerror or exc}") from None
        if stat.S_ISLNK(st_.st_mode):
            raise RunStoreError(f"{label} is a link to another folder, not a run folder of its own; it was not "
                                "deleted (remove the link on the server if it should go)")
        if not stat.S_ISDIR(st_.st_mode) or not self.exists():
            raise RunStoreError(f"{str(self.path)!r} is not a run directory (no config.json); nothing was deleted")
        if root is not None and os.path.realpath(self.path.parent) != os.path.realpath(root):
            raise RunStoreError(f"{label} is not one of the runs that may be deleted here; nothing was deleted")
        busy = (f"{label} is being trained right now: stop it first (Distill → Stop), then delete it")
        if self.is_locked() or self.status().get("state") == "running":
            raise RunLockedError(busy)
        try:
            with self.lock(wait_s=0):
                os.unlink(self.path / "config.json")  # from now on it is not listed as a run
                shutil.rmtree(self.path)
        except RunLockedError:
            raise RunLockedError(busy) from None
        except OSError as exc:
            raise RunStoreError(f"{label} could not be deleted entirely: {exc.strerror or exc}; "
                                "what is left is no longer listed as a run") from None

    # ------------------------------------------------------------------ the writer's lock
    def _lock_file_exists(self) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self.path / LOCK_FILE).st_mode)
        except OSError:
            return False

    def _open_lock(self, write: bool) -> int:
        flags = _O_READ | _O_CLOEXEC  # O_RDONLY is 0
        if write:
            flags |= os.O_RDWR | os.O_CREAT
        fd = os.open(self.path / LOCK_FILE, flags, 0o644)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunStoreError(f"{LOCK_FILE} of run {self.name!r} is not a regular file; remove it")
        return fd

    def is_locked(self) -> bool:
        """True while a process (this one included) holds the run's writer lock. Never raises."""
        if fcntl is None:
            return False
        with _HELD_LOCK:
            if self._lock_key() in _HELD:
                return True
        try:
            fd = self._open_lock(write=False)
        except (OSError, RunStoreError, ValueError):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # conflicts only with a writer's LOCK_EX
        except BlockingIOError:
            return True
        except OSError:
            return False
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def _lock_key(self) -> str:
        return os.path.realpath(self.path / LOCK_FILE)

    def check_unlocked(self) -> None:
        """Raise :class:`RunLockedError` (naming the holder) when another writer holds the lock."""
        if self.is_locked():
            raise RunLockedError(self._locked_message())

    def lock_holder(self) -> dict[str, Any]:
        """Who holds (or last held) the lock: ``{"pid", "host", "since"}`` as far as known."""
        try:
            data = self._read_bytes(LOCK_FILE, MAX_BYTES[LOCK_FILE])
            info = _loads(data.decode("utf-8")) if data else {}
        except (RunStoreError, UnicodeDecodeError, ValueError, RecursionError):
            return {}
        if not isinstance(info, dict):
            return {}
        return {k: info[k] for k, ok in (("pid", _is_int), ("host", lambda v: isinstance(v, str)),
                                          ("since", _is_number)) if k in info and ok(info[k])}

    @contextmanager
    def lock(self, wait_s: float = LOCK_WAIT_S) -> Iterator[RunDir]:
        """Hold the run's exclusive writer lock (``fcntl.flock`` on ``.lock``) for the block.

        Re-entrant within one thread; another thread or process is refused. The kernel releases
        the lock when the holder dies, however it dies.

        Raises:
            RunLockedError: another process (or thread) holds it; the message names it.
            RunStoreError: the run directory does not exist or its lock file is not a file.
        """
        if fcntl is None:  # pragma: no cover — Windows
            yield self
            return
        key, me = self._lock_key(), threading.get_ident()
        with _HELD_LOCK:
            held = _HELD.get(key)
            if held is not None and held[0] == me:
                held[2] += 1
                reentered = True
            else:
                reentered = False
        if reentered:
            try:
                yield self
            finally:
                with _HELD_LOCK:
                    _HELD[key][2] -= 1
            return
        fd = self._acquire(wait_s)
        with _HELD_LOCK:
            _HELD[key] = [me, fd, 1]
        try:
            yield self
        finally:
            with _HELD_LOCK:
                _HELD.pop(key, None)
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _acquire(self, wait_s: float) -> int:
        try:
            fd = self._open_lock(write=True)
        except FileNotFoundError:
            raise RunStoreError(f"{str(self.path)!r} is not a run directory (it does not exist)") from None
        except OSError as exc:
            raise RunStoreError(f"cannot lock run {self.name!r}: {exc.strerror or exc}") from None
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise RunLockedError(self._locked_message()) from None
                time.sleep(0.02)
            except OSError as exc:
                os.close(fd)
                raise RunStoreError(f"cannot lock run {self.name!r}: {exc.strerror or exc}") from None
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
        except OSError:  # who holds it is only for messages
            pass
        return fd

    def _locked_message(self) -> str:
        holder = self.lock_holder()
        who = []
        if "pid" in holder:
            who.append(f"pid {holder['pid']}")
        if "host" in holder:
            who.append(f"on {holder['host']}")
        if "since" in holder:
            who.append("since " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["since"])))
        by = f" ({' '.join(who)})" if who else ""
        return (f"run {self.name!r} is locked by another process that is writing it{by}: "
                "wait for it to finish or stop it, then try again")

    # ------------------------------------------------------------------ metrics
    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line (flushed and fsynced: a crash loses at most this line)."""
        line = json.dumps(_jsonable(record), allow_nan=False) + "\n"
        try:
            fd = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_NONBLOCK", 0) | _O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _disk_error(self.path, exc) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunStoreError(f"metrics.jsonl of run {self.name!r} is not a regular file; remove it")
        try:
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise _disk_error(self.path, exc) from None

    def metrics(self) -> list[dict[str, Any]]:
        """All complete, valid metric records (see :func:`check_metrics_record`), in file order;
        a torn, corrupt or wrongly typed line is skipped (:meth:`metrics_skipped` counts them).

        Raises:
            RunStoreError: metrics.jsonl is not a regular file, leads out of the runs folder, or
                is over its size limit.
        """
        return self._metrics()[0]

    def metrics_skipped(self) -> int:
        """How many lines of metrics.jsonl :meth:`metrics` skips (torn, corrupt, wrong types)."""
        return self._metrics()[1]

    def _metrics(self) -> tuple[list[dict[str, Any]], int]:
        data = self._read_bytes("metrics.jsonl", MAX_BYTES["metrics.jsonl"])
        if data is None:
            return [], 0
        records, skipped = [], 0
        for line in data.decode("utf-8", errors="replace").split("\n"):
            if not line.strip():
                continue
            try:
                rec = _loads(line)
            except (ValueError, RecursionError):
                skipped += 1
                continue
            if check_metrics_record(rec) is None:
                records.append(rec)
            else:
                skipped += 1
        return records, skipped

    def _snapshot_records(self) -> dict[int, dict[str, Any]]:
        """Snapshot index -> its metrics record (the first one of each index)."""
        out: dict[int, dict[str, Any]] = {}
        for rec in self.metrics():
            if rec.get("snapshot") is not None:
                out.setdefault(rec["snapshot"], rec)
        return out

    @property
    def metrics_path(self) -> Path:
        """Where metrics.jsonl lives (it need not exist); read it with :meth:`metrics`."""
        return self.path / "metrics.jsonl"

    def metrics_mtime(self) -> float:
        """Modification time of metrics.jsonl (0.0 when absent or unreadable). Never raises."""
        key = self._stat_key("metrics.jsonl")
        return 0.0 if key is None else key[4] / 1e9

    def signature(self) -> tuple[str, int, float]:
        """``(path, number of snapshots, metrics.jsonl mtime)``: a cache key that changes with every
        new snapshot (and on resume). Never raises (a damaged snapshots folder counts -1)."""
        try:
            count = len(self.snapshot_indices())
        except RunStoreError:
            count = -1
        return str(self.path), count, self.metrics_mtime()

    def stamp(self) -> tuple:
        """A cache key of what a run list shows of the run: the identity (device, inode, size,
        mtime) of config.json, status.json, metrics.jsonl and meta.json (None for one absent).
        Changes when any of them is rewritten. Never raises."""
        return tuple(None if (key := self._stat_key(rel)) is None else key[1:]
                     for rel in ("config.json", "status.json", "metrics.jsonl", META_FILE))

    def truncate_metrics(self, max_step: int) -> None:
        """Keep only records with ``step <= max_step`` (used by resume)."""
        kept = [r for r in self.metrics() if r["step"] <= max_step]
        data = "".join(json.dumps(r) + "\n" for r in kept).encode()
        atomic_write_bytes(self.metrics_path, data)

    # ------------------------------------------------------------------ snapshots
    def save_snapshot(self, snap: Snapshot) -> None:
        """Write the snapshot's arrays, then its metrics line (so a listed line has its file)."""
        buf = _npz_bytes(student=snap.student.astype(np.float32), coherence=snap.coherence.astype(np.float64),
                         epoch=np.float64(snap.epoch), step=np.int64(snap.step), index=np.int64(snap.index))
        try:
            atomic_write_bytes(self.snapshot_path(snap.index), buf)
        except OSError as exc:
            raise _disk_error(self.path, exc) from None
        self.append_metrics({**snap.metrics, "snapshot": snap.index})

    def snapshot_indices(self) -> list[int]:
        """Indices of the snapshots on disk, in order (files named ``NNNNNN.npz``).

        Raises:
            RunStoreError: snapshots/ leads out of the runs folder, cannot be listed, or holds
                more than :data:`MAX_SNAPSHOT_FILES` entries.
        """
        folder = self.path / SNAPSHOTS
        real = os.path.realpath(folder)
        if not _inside(real, self._root()):
            raise RunStoreError(f"snapshots/ of run {self.name!r} leads out of the runs folder (to {real!r}); "
                                "remove the link")
        found = []
        try:
            if not stat.S_ISDIR(os.stat(real).st_mode):
                return []
            with os.scandir(real) as entries:
                for n, entry in enumerate(entries):
                    if n >= MAX_SNAPSHOT_FILES:
                        raise RunStoreError(f"snapshots/ of run {self.name!r} holds more than "
                                            f"{MAX_SNAPSHOT_FILES:,} entries; it is not a perco_viz run")
                    m = _SNAPSHOT_NAME.fullmatch(entry.name)
                    if m:
                        found.append(int(m.group(1)))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise RunStoreError(f"snapshots/ of run {self.name!r} cannot be listed: {exc.strerror or exc}") from None
        return sorted(found)

    def snapshot_path(self, index: int) -> Path:
        """Where snapshot ``index`` lives (it need not exist); read it with :meth:`load_snapshot`."""
        return self.path / _snapshot_rel(index)

    def snapshot_stamp(self, index: int) -> float:
        """Modification time of snapshot ``index``'s file (0.0 when absent): part of cache keys,
        since a resumed run rewrites snapshots. Never raises."""
        key = self._stat_key(_snapshot_rel(index))
        return 0.0 if key is None else key[4] / 1e9

    def load_snapshot(self, index: int) -> Snapshot:
        """Read one snapshot (arrays and its metrics record), checked against the run.

        Raises:
            RunStoreError: the file is missing, not a regular file, too big (on disk or
                unpacked), not a ``.npz``, or its arrays are not ``student`` (n, d) finite float
                with ``d`` = the config's ``student.dim``, ``coherence`` (n,) finite float,
                scalar ``epoch`` >= 0, ``step`` >= 0 and ``index`` = ``index``, with ``n`` the teacher
                probe's rows. The message reads "snapshot i of run 'x' is damaged and cannot be read: ...".
        """
        index = int(index)
        what = f"snapshot {index}"
        config = self.config()
        # what a snapshot of this run can hold: (probe_size, dim) float32 + (probe_size,) float64 + slack
        cap = min(MAX_BYTES["snapshot"], config.data.probe_size * (4 * config.student.dim + 8) + (1 << 20))
        arrays = self._read_npz(_snapshot_rel(index), cap, what)
        if arrays is None:
            raise RunStoreError(f"{what} of run {self.name!r} cannot be read: its file does not exist")

        problem = _snapshot_problem(arrays, index, self._probe_rows, config.student.dim)
        if problem:
            raise RunStoreError(f"{what} of run {self.name!r} is damaged and cannot be read: {problem}")
        try:
            record = dict(self._cached("snapshot_records", "metrics.jsonl", self._snapshot_records).get(index, {}))
        except RunStoreError:  # the arrays are fine; their metrics line is optional
            record = {}
        return Snapshot(index, float(arrays["epoch"]), int(arrays["step"]), arrays["student"], arrays["coherence"],
                        record)

    def remove_snapshots_after(self, index: int) -> None:
        for i in self.snapshot_indices():
            if i > index:
                self.snapshot_path(i).unlink(missing_ok=True)

    # ------------------------------------------------------------------ teacher probe
    def save_teacher_probe(self, features: np.ndarray, labels: np.ndarray | None, indices: np.ndarray) -> None:
        """Teacher features (n_probe, d_t), labels (n_probe,) or none, probe indices into the test split."""
        arrays = {"features": features.astype(np.float32), "indices": indices.astype(np.int64)}
        if labels is not None:
            arrays["labels"] = labels.astype(np.int64)
        atomic_write_bytes(self.path / "teacher_probe.npz", _npz_bytes(**arrays))

    def teacher_probe(self) -> dict[str, np.ndarray]:
        """``features`` (n, d_t) finite float, ``indices`` (n,) int and, when labelled, ``labels`` (n,) int.

        Raises:
            RunStoreError: missing (the run has not finished its set-up), or damaged.
        """
        what = "teacher_probe.npz"
        arrays = self._read_npz(what, MAX_BYTES[what], what)
        if arrays is None:
            raise RunStoreError(f"run {self.name!r} has no readable teacher_probe.npz yet (its set-up has not "
                                "finished, or it was removed)")

        def damaged(why: str) -> RunStoreError:
            return RunStoreError(f"teacher_probe.npz of run {self.name!r} is damaged and cannot be read: {why}")

        features, indices = arrays.get("features"), arrays.get("indices")
        if features is None or indices is None:
            raise damaged(f"it needs arrays 'features' and 'indices' (has {sorted(arrays)[:10]})")
        if features.ndim != 2 or features.dtype.kind != "f" or 0 in features.shape:
            raise damaged(f"'features' must be a non-empty 2-D float array, got shape {features.shape} {features.dtype}")
        n = len(features)
        if not np.isfinite(features).all():
            raise damaged("'features' hold NaN or inf")
        too_large = _too_large_to_compare(features, "teacher")
        if too_large:
            raise damaged(too_large)
        out = {"features": features, "indices": indices}
        for key in ("indices", "labels"):
            a = arrays.get(key)
            if a is None:
                continue
            if a.shape != (n,) or a.dtype.kind not in "iu":
                raise damaged(f"{key!r} must be {n} integers (one per probe point), got shape {a.shape} {a.dtype}")
            out[key] = a
        return out

    def _probe_rows(self) -> int:
        return self._cached("probe_rows", "teacher_probe.npz", lambda: len(self.teacher_probe()["features"]))

    # ------------------------------------------------------------------ held-out scores
    def save_heldout(self, row: dict[str, Any]) -> None:
        """Write the method benchmark's held-out scores of the trained student (a flat JSON object)."""
        try:
            atomic_write_bytes(self.path / "heldout.json", json.dumps(_jsonable(row), indent=1).encode())
        except OSError as exc:
            raise _disk_error(self.path, exc) from None

    def heldout(self) -> dict[str, Any] | None:
        """The held-out scores :meth:`save_heldout` wrote, or ``None`` when there are none.

        Raises:
            RunStoreError: not a regular file, a link out of the runs folder, too big, or not a
                JSON object.
        """
        data = self._read_bytes("heldout.json", MAX_BYTES["heldout.json"])
        if data is None:
            return None
        try:
            row = _loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise RunStoreError(f"heldout.json of run {self.name!r} is damaged: not valid JSON ({str(exc)[:120]})") from None
        if not isinstance(row, dict):
            raise RunStoreError(f"heldout.json of run {self.name!r} is damaged: it must be a JSON object, "
                                f"not {_type_name(row)}")
        return row

    # ------------------------------------------------------------------ weights
    @property
    def student_path(self) -> Path:
        return self.path / "student.safetensors"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    def student_file(self) -> Path | None:
        """The real path of ``student.safetensors`` once checked by the entrance (a regular file
        inside the runs folder, within ``$PERCO_VIZ_MAX_FILE_MB``), for a loader such as
        :func:`perco_viz.safe_io.load_state_dict`; ``None`` when the run has none yet.

        Raises:
            RunStoreError: a link out of the runs folder, not a regular file, or too big.
        """
        from perco_viz.safe_io import max_file_bytes

        opened = self._open_file("student.safetensors", max_file_bytes())
        if opened is None:
            return None
        opened[0].close()
        return Path(os.path.realpath(self.student_path))

    def student_weights(self) -> bytes | None:
        """The bytes of ``student.safetensors`` (for a download), read through the entrance and
        checked to start like a safetensors file; ``None`` when the run has none yet.

        Raises:
            RunStoreError: a link out of the runs folder, not a regular file, too big, or not
                a safetensors file.
        """
        from perco_viz.safe_io import max_file_bytes

        data = self._read_bytes("student.safetensors", max_file_bytes())
        if data is None:
            return None
        header = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
        if not (0 < header <= len(data) - 8 and data[8:9] == b"{"):
            raise RunStoreError(f"student.safetensors of run {self.name!r} is damaged: it is not a safetensors file")
        return data

    def read_checkpoint(self, max_bytes: int | None = None) -> dict[str, Any] | None:
        """The resume checkpoint (tensors and numbers, ``torch.load(weights_only=True)``), or
        ``None`` when the run has none yet.

        Raises:
            RunStoreError: not a regular file, a link out of the runs folder, over ``max_bytes``
                (default ``$PERCO_VIZ_MAX_FILE_MB``) on disk or unpacked, or not a checkpoint
                that perco_viz wrote (damaged, or holding code).
        """
        from perco_viz.safe_io import InputFileError, load_torch_checkpoint, max_file_bytes

        cap = max_file_bytes() if max_bytes is None else max_bytes
        label = f"checkpoint.pt of run {self.name!r}"
        opened = self._open_file("checkpoint.pt", cap)  # a regular file, inside the runs folder, within cap
        if opened is None:
            return None
        opened[0].close()
        try:  # weights_only, its unpacked size checked from the zip headers first
            state = load_torch_checkpoint(os.path.realpath(self.checkpoint_path), max_bytes=cap)
        except InputFileError as exc:
            raise RunStoreError(f"{label} is damaged and cannot be read ({exc}); "
                                "the run cannot be resumed: start it again") from None
        problem = _check_checkpoint(state)
        if problem:
            raise RunStoreError(f"{label} is damaged: {problem}; the run cannot be resumed: start it again")
        return state


def _snapshot_problem(arrays: dict[str, np.ndarray], index: int, probe_rows, dim: int) -> str | None:
    """Why ``arrays`` are not snapshot ``index`` of a run whose teacher probe has ``probe_rows()``
    rows and whose ``student.dim`` is ``dim``, or None: ``student`` (n, dim) finite float,
    ``coherence`` (n,) finite float, scalars ``epoch`` >= 0, ``step`` >= 0 (integer), ``index``."""
    missing = sorted({"student", "coherence", "epoch", "step", "index"} - set(arrays))
    if missing:
        return f"it has no {', '.join(missing)} (arrays: {sorted(arrays)[:10]})"
    student, coherence = arrays["student"], arrays["coherence"]
    if student.ndim != 2 or student.dtype.kind != "f" or 0 in student.shape:
        return f"'student' must be a non-empty 2-D float array, got shape {student.shape} {student.dtype}"
    n, d = student.shape
    if coherence.ndim != 1 or coherence.dtype.kind != "f" or len(coherence) != n:
        return (f"'coherence' must be a 1-D float array of {n} values (one per probe point), "
                f"got shape {coherence.shape} {coherence.dtype}")
    if not np.isfinite(student).all() or not np.isfinite(coherence).all():
        return "its features or coherence hold NaN or inf"
    if ((coherence < 0) | (coherence > 1)).any():
        return "its per-sample coherence lies outside [0, 1]"
    too_large = _too_large_to_compare(student, "student")
    if too_large:
        return too_large
    for key, kinds in (("epoch", "fiu"), ("step", "iu"), ("index", "iu")):
        a = arrays[key]
        if a.shape != () or a.dtype.kind not in kinds or not np.isfinite(a) or a < 0:
            return f"{key!r} must be a number >= 0 (a scalar), got shape {a.shape} {a.dtype}"
    if int(arrays["index"]) != index:
        return f"it says it is snapshot {int(arrays['index'])}"
    rows = probe_rows()
    if n != rows:
        return f"it has {n} probe points, the run's teacher probe has {rows}"
    if d != dim:
        return f"its student features are {d}-D, the run's student.dim is {dim}"
    return None


def _too_large_to_compare(features: np.ndarray, name: str) -> str | None:
    """Why finite (n, d) ``features`` cannot be compared (distances would overflow even in
    float64, ``checks.check_magnitude``), or None. The engine writes float32 features, so such
    values mean a damaged file; pages would otherwise draw NaN or fail inside a projection."""
    import torch

    from perco_viz.checks import check_magnitude

    try:
        check_magnitude(torch.from_numpy(np.ascontiguousarray(features)), name, torch.float64)
    except ValueError as exc:
        return str(exc)
    return None


def _check_checkpoint(state: Any) -> str | None:
    """Why ``state`` is not a checkpoint written by the engine, or None."""
    if not isinstance(state, dict):
        return f"it holds {_type_name(state)}, not a checkpoint"
    for key in ("student", "loss", "optimizer", "scheduler"):
        if not isinstance(state.get(key), dict):
            return f"{key!r} must be a state dict"
    if not (state.get("head") is None or isinstance(state.get("head"), dict)):
        return "'head' must be a state dict or None"
    for key in ("epoch", "step", "snapshot_index"):
        if not (_is_int(state.get(key)) and state[key] >= 0):
            return f"{key!r} must be an integer >= 0"
    for key in ("wall_s", "last_loss"):
        if not isinstance(state.get(key), (int, float)) or isinstance(state.get(key), bool):
            return f"{key!r} must be a number"
    return None


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a link")):
        if test(mode):
            return name
    return "not a regular file"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB" if n >= 1 << 20 else f"{n:,} bytes"


def _heartbeat_old(status: dict[str, Any]) -> bool:
    beat = status.get("heartbeat")
    return _is_number(beat) and time.time() - float(beat) > STALE_AFTER_S


def _writer_gone(status: dict[str, Any]) -> bool:
    """True when the writing process ran on this host and no longer exists."""
    pid, host = status.get("pid"), status.get("host")
    if not _is_int(pid) or pid <= 0 or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError, ValueError, OverflowError):
        return False
    return _is_zombie(pid)


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
    """Run directories directly under ``root`` (those with a config.json file), newest first.

    Never raises: an entry that cannot be looked at (permissions, a vanished folder, a link
    leading out of ``root``) is left out; a listed run may still be damaged (see
    :meth:`RunDir.problem`).
    """
    try:
        real_root = os.path.realpath(root)
        with os.scandir(root) as it:
            entries = list(it)
    except (OSError, ValueError):
        return []
    found: list[tuple[float, RunDir]] = []
    for entry in entries:
        try:
            if not entry.is_dir():
                continue
            if entry.is_symlink() and not _inside(os.path.realpath(entry.path), real_root):
                continue
            run = RunDir(entry.path)
            if run.exists():
                found.append((entry.stat().st_mtime, run))
        except (OSError, ValueError):
            continue
    found.sort(key=lambda item: item[0], reverse=True)
    return [run for _, run in found]
