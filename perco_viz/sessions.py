"""Keeping the sessions of a shared server apart (no UI code here; the app calls it).

A front end gives every browser session a folder of its own,
``<runs>/app-sessions/<session id>/`` (its uploads under ``uploads/``, its runs beside them).
This module holds the server's rules around those folders:

* **Which files a session may name** (:func:`check_user_path`, :func:`check_config_paths`):
  a path typed into a field, or carried by an uploaded config, is resolved (symlinks followed)
  and must lie in the session's own folder or in one of the data roots the operator listed in
  ``PERCO_VIZ_DATA_ROOTS`` (``os.pathsep``-separated; unset: no server paths at all). Another
  session's folder is refused even when a data root contains it.
* **How much disk a session may fill** (:class:`SessionSpace`): its uploads and runs together,
  at most ``PERCO_VIZ_SESSION_QUOTA_MB`` (default 2048) megabytes; an upload past it is refused.
* **When a session's folder goes** (:func:`sweep_sessions`, :func:`maybe_sweep`): once its
  newest file is older than ``PERCO_VIZ_SESSION_TTL_HOURS`` (default 24) hours and none of its
  runs is training.
* **A session reachable by a name** (:func:`workspace_id`): a name a person picks (a passphrase
  of at least :data:`WORKSPACE_MIN_CHARS` characters) gives a fixed session id, so the same name
  typed in any tab or on any device opens the same folder. Whoever knows the name sees that
  session's runs and uploads, as whoever has its link does.
* **How long parsing an upload may take** (:func:`run_limited`): in a worker process of its
  own, at most ``PERCO_VIZ_PARSE_TIMEOUT_S`` (default 60) seconds; then the worker is ended and
  the caller gets :class:`ParseTimeout`.

>>> space = SessionSpace(Path("runs/app-sessions/0123"))          # doctest: +SKIP
>>> space.save_upload(b"...", "points.npz")                        # doctest: +SKIP
PosixPath('runs/app-sessions/0123/uploads/9f86d081884c/points.npz')
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perco_viz.safe_io import check_size

DATA_ROOTS_ENV = "PERCO_VIZ_DATA_ROOTS"
QUOTA_ENV = "PERCO_VIZ_SESSION_QUOTA_MB"
TTL_ENV = "PERCO_VIZ_SESSION_TTL_HOURS"
PARSE_TIMEOUT_ENV = "PERCO_VIZ_PARSE_TIMEOUT_S"
DEFAULT_QUOTA_MB = 2048.0
DEFAULT_TTL_HOURS = 24.0
DEFAULT_PARSE_TIMEOUT_S = 60.0
SESSIONS_DIRNAME = "app-sessions"
UPLOADS_DIRNAME = "uploads"
SWEEP_EVERY_S = 600.0  # the most often maybe_sweep walks the sessions' folders
PATH_FIELDS = (("data", "path"), ("teacher", "path"), ("student", "path"))  # RunConfig fields naming files
WORKSPACE_MIN_CHARS = 12  # a workspace name is a passphrase: whoever guesses it sees the session's files
WORKSPACE_MAX_CHARS = 200
_WORKSPACE_PREFIX = "perco_viz workspace v1\n"  # fixed: a name gives the same id on every server start


class SessionError(ValueError):
    """A request a session may not make here; the message says what to do instead."""


class PathNotAllowed(SessionError):
    """A path outside what this session may read."""


class QuotaExceeded(SessionError):
    """The session's folder is full."""


class ParseTimeout(SessionError):
    """Reading an upload took longer than the limit (the reader was ended)."""


# --------------------------------------------------------------------------- settings
def _number(env: str, default: float) -> float:
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SessionError(f"{env}={raw!r} is not a number; the operator should set e.g. {env}={default:g}") from None
    if not (value > 0 and value != float("inf")):
        raise SessionError(f"{env}={raw!r} must be a positive number; the operator should set e.g. {default:g}")
    return value


def data_roots() -> tuple[Path, ...]:
    """The folders on the server whose files sessions may name: ``$PERCO_VIZ_DATA_ROOTS``
    (``os.pathsep``-separated, resolved); empty when unset, which turns server paths off."""
    raw = os.environ.get(DATA_ROOTS_ENV, "")
    return tuple(Path(os.path.realpath(Path(p).expanduser())) for p in raw.split(os.pathsep) if p.strip())


def quota_bytes() -> int:
    """A session's disk quota (uploads + runs): ``$PERCO_VIZ_SESSION_QUOTA_MB`` megabytes (default 2048)."""
    return int(_number(QUOTA_ENV, DEFAULT_QUOTA_MB) * 2**20)


def ttl_seconds() -> float:
    """How long a session's folder outlives its last activity: ``$PERCO_VIZ_SESSION_TTL_HOURS`` (default 24)."""
    return _number(TTL_ENV, DEFAULT_TTL_HOURS) * 3600.0


def parse_timeout_s() -> float:
    """The time limit of parsing one upload: ``$PERCO_VIZ_PARSE_TIMEOUT_S`` seconds (default 60)."""
    return _number(PARSE_TIMEOUT_ENV, DEFAULT_PARSE_TIMEOUT_S)


def format_bytes(n: int) -> str:
    """Bytes for people: ``"12.3 MB"``, or ``"4.0 KB"`` below a megabyte."""
    return f"{n / 2**20:,.1f} MB" if n >= 2**20 else f"{n / 2**10:,.1f} KB"


# --------------------------------------------------------------------------- named workspaces
def workspace_id(name: str) -> str:
    """The session id (32 lower-case hex digits, like a random one) of the workspace called ``name``.

    The name is taken as typed, less the spaces around it (Unicode NFC, so one accented letter
    typed two ways is one name); upper and lower case differ, as in a password. The id is the
    first 32 hex digits of SHA-256 of a fixed prefix and the name: the same on every server, and
    no other session's random id is ever one of them in practice.

    Raises:
        SessionError: the name is shorter than :data:`WORKSPACE_MIN_CHARS` characters (easy to
            guess) or longer than :data:`WORKSPACE_MAX_CHARS`.

    >>> workspace_id("purple otter sings at noon") == workspace_id("  purple otter sings at noon ")
    True
    >>> len(workspace_id("purple otter sings at noon"))
    32
    """
    if not isinstance(name, str):
        raise SessionError("a workspace name must be text")
    text = unicodedata.normalize("NFC", name).strip()
    if len(text) < WORKSPACE_MIN_CHARS:
        raise SessionError(f"a workspace name needs at least {WORKSPACE_MIN_CHARS} characters (this one has "
                           f"{len(text)}): whoever guesses it sees its runs and uploads, so pick something like a "
                           "passphrase, e.g. three unrelated words")
    if len(text) > WORKSPACE_MAX_CHARS:
        raise SessionError(f"a workspace name has at most {WORKSPACE_MAX_CHARS} characters (this one has {len(text)})")
    return hashlib.sha256((_WORKSPACE_PREFIX + text).encode("utf-8")).hexdigest()[:32]


def move_session(src: str | os.PathLike, dst: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Move a session's runs and uploads into another session's folder (e.g. a named workspace).

    A run being trained (locked, or its status says running) stays where it is. Each run moves
    under its writer's lock, by a rename (no copy: both folders are under one sessions folder);
    a name taken in ``dst`` gets a ``-2``, ``-3``... suffix. A moved run's config paths that named
    ``src``'s uploads are rewritten to name them in ``dst``. An upload already in ``dst`` (same
    content, same name) is not moved twice. Links are never followed.

    Returns:
        (the names of the runs moved, one sentence per run that stayed and why).
    """
    from perco_viz.runs import RunDir, RunLockedError, RunStoreError

    src, dst = Path(src), Path(dst)
    if _resolve(src) == _resolve(dst) or not src.is_dir() or src.is_symlink():
        return [], []
    dst.mkdir(parents=True, exist_ok=True)
    _move_uploads(src / UPLOADS_DIRNAME, dst / UPLOADS_DIRNAME)
    moved, stayed = [], []
    try:
        children = sorted(p for p in src.iterdir() if p.name != UPLOADS_DIRNAME)
    except OSError:
        children = []
    for child in children:
        run = RunDir(child)
        if child.is_symlink() or not child.is_dir() or not run.exists():
            continue
        if run.is_locked() or run.status().get("state") == "running":
            stayed.append(f"{child.name} is training: it stays in the previous session")
            continue
        target = dst / child.name
        n = 2
        while target.exists() or target.is_symlink():
            target, n = dst / f"{child.name}-{n}", n + 1
        try:
            with run.lock(wait_s=0):
                os.rename(child, target)
        except RunLockedError:
            stayed.append(f"{child.name} is training: it stays in the previous session")
            continue
        except (RunStoreError, OSError) as exc:
            stayed.append(f"{child.name} could not be moved ({exc})")
            continue
        _repoint_config(RunDir(target), src, dst)
        moved.append(target.name)
    return moved, stayed


def _move_uploads(src: Path, dst: Path) -> None:
    """Move ``src``'s upload folders (``<hash>/<name>``) into ``dst``, file by file where the
    folder is there already."""
    if src.is_symlink() or not src.is_dir():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for folder in src.iterdir():
        if folder.is_symlink() or not folder.is_dir():
            continue
        target = dst / folder.name
        try:
            if not target.exists():
                os.rename(folder, target)
                continue
            for item in folder.iterdir():
                if item.is_file() and not item.is_symlink() and not (target / item.name).exists():
                    os.rename(item, target / item.name)
        except OSError:  # a file that cannot move stays where it was
            continue


def _repoint_config(run: Any, src: Path, dst: Path) -> None:
    """Rewrite the config paths of a moved run that named files in ``src`` to name them in ``dst``."""
    try:
        cfg = run.config()
    except Exception:  # noqa: BLE001 — a damaged config is moved as it is
        return
    old_roots = {str(src), os.path.realpath(src)}
    changes = {}
    for section, name in PATH_FIELDS:
        value = getattr(getattr(cfg, section), name)
        for old in old_roots:
            if value and (value == old or value.startswith(old + os.sep)):
                changes[f"{section}.{name}"] = str(dst) + value[len(old):]
                break
    if changes:
        try:
            run.write_config(cfg.override(**changes))
        except Exception:  # noqa: BLE001 — the run moved; only its file names are stale
            pass


# --------------------------------------------------------------------------- path policy
def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether resolved ``path`` is ``folder`` or below it (both already resolved)."""
    path, folder = Path(path), Path(folder)
    return path == folder or folder in path.parents


def _resolve(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def check_user_path(path: str | os.PathLike, *, roots: Iterable[str | os.PathLike], own_dir: str | os.PathLike,
                    sessions_dir: str | os.PathLike, field: str = "path") -> Path:
    """The resolved ``path`` if this session may read it, else :class:`PathNotAllowed`.

    Allowed: the session's own folder ``own_dir`` (its uploads and runs), and any folder below
    one of ``roots`` — except the other sessions' folders under ``sessions_dir``, which are
    refused even when a root contains them, and any folder above ``sessions_dir`` (an image
    folder is read recursively). Symlinks are followed before the check, so a link
    inside a root that leads out of it is refused. The message names the path as typed (never
    anything read from it).

    Args:
        path: what was typed (absolute, relative to the server's working folder, or ``~/...``).
        roots: the operator's data roots (:func:`data_roots`); empty: only ``own_dir``.
        own_dir: this session's folder (``<runs>/app-sessions/<sid>``).
        sessions_dir: the folder of all sessions' folders (``<runs>/app-sessions``).
        field: how to call the field in the message (``"data.path"``).
    """
    text = os.fspath(path)
    if "\x00" in text:
        raise PathNotAllowed(f"{field} contains a NUL character; type a plain path")
    try:
        real = _resolve(text)
    except (OSError, ValueError, RuntimeError) as exc:  # a symlink loop, an unreadable part
        raise PathNotAllowed(f"{field} {text!r} cannot be resolved ({type(exc).__name__}); check the path") from None
    if is_within(real, _resolve(own_dir)):
        return real
    sessions_real = _resolve(sessions_dir)
    if is_within(real, sessions_real):
        raise PathNotAllowed(f"{field} {text!r} is in another session's folder; upload your own copy instead")
    if is_within(sessions_real, real):  # a folder that a loader would walk down into the sessions' folders
        raise PathNotAllowed(f"{field} {text!r} holds the sessions' own folders; choose a folder that does not")
    roots = [_resolve(r) for r in roots]
    if not roots:
        raise PathNotAllowed(f"{field} {text!r} is a path on the server, and this server reads only uploads; "
                             f"upload the file instead (the operator allows folders with {DATA_ROOTS_ENV})")
    if any(is_within(real, root) for root in roots):
        return real
    shown = ", ".join(str(r) for r in roots)
    raise PathNotAllowed(f"{field} {text!r} is outside the data folders this server allows ({shown}); "
                         "choose a file in one of them, or upload it")


def check_config_paths(cfg: Any, *, roots: Iterable[str | os.PathLike], own_dir: str | os.PathLike,
                       sessions_dir: str | os.PathLike) -> None:
    """:func:`check_user_path` on every path a RunConfig names (``data.path``, ``teacher.path``,
    ``student.path``; empty ones are skipped). Raises :class:`PathNotAllowed` for the first one refused."""
    roots = tuple(roots)
    for section, name in PATH_FIELDS:
        value = getattr(getattr(cfg, section, None), name, None)
        if value is not None and str(value).strip():
            check_user_path(str(value), roots=roots, own_dir=own_dir, sessions_dir=sessions_dir,
                            field=f"{section}.{name}")


# --------------------------------------------------------------------------- sizes and ages
def _walk(folder: Path):
    """``os.DirEntry`` of everything below ``folder`` (symlinks reported, never followed)."""
    stack = [folder]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    yield entry
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
        except OSError:  # removed meanwhile, unreadable
            continue


def folder_size(folder: str | os.PathLike) -> int:
    """Bytes of the regular files below ``folder`` (0 when absent; links are not followed)."""
    total = 0
    for entry in _walk(Path(folder)):
        try:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total


def newest_mtime(folder: str | os.PathLike) -> float:
    """The latest modification time of ``folder`` and anything below it (0 when absent)."""
    try:
        newest = os.stat(folder, follow_symlinks=False).st_mtime
    except OSError:
        return 0.0
    for entry in _walk(Path(folder)):
        try:
            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
        except OSError:
            continue
    return newest


# --------------------------------------------------------------------------- uploads
def sanitize_filename(name: str) -> str:
    """A safe file name: no folders, only ``A-Za-z0-9._-``, no leading dot, at most 100 characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip("._")
    if len(clean) > 100:
        stem, dot, suffix = clean.rpartition(".")
        clean = (stem[: 99 - len(suffix)] + dot + suffix) if dot and len(suffix) < 12 else clean[:100]
    return clean or "upload"


def upload_path(data: bytes, name: str, folder: str | os.PathLike) -> Path:
    """Where :func:`save_upload` keeps ``data``: ``folder/<first 12 hex of its SHA-256>/<sanitized name>``."""
    return Path(folder) / hashlib.sha256(data).hexdigest()[:12] / sanitize_filename(name)


def save_upload(data: bytes, name: str, folder: str | os.PathLike) -> Path:
    """Write uploaded bytes to :func:`upload_path` (atomically: a temporary file, then a rename).

    The hash of the content keeps two uploads with one name apart (and caches keyed by path
    honest); the same content uploaded again is not written twice.

    Raises:
        InputFileError: the file is above ``safe_io.max_file_bytes()``.
    """
    check_size(len(data), repr(name))
    path = upload_path(data, name, folder)
    if path.is_file() and not path.is_symlink() and path.stat().st_size == len(data):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class SessionSpace:
    """One session's folder: its uploads, its runs and its quota.

    Args:
        root: the session's folder, ``<runs>/app-sessions/<sid>``.
        quota: the most bytes its uploads and runs may take (default :func:`quota_bytes`).
        how_to_free: the end of the quota message: how a person frees space in this front end.
    """

    root: Path
    quota: int | None = None
    how_to_free: str = "delete this session's uploads, or start a new session"

    @property
    def uploads(self) -> Path:
        return Path(self.root) / UPLOADS_DIRNAME

    @property
    def sessions_dir(self) -> Path:
        return Path(self.root).parent

    def limit(self) -> int:
        return quota_bytes() if self.quota is None else int(self.quota)

    def usage(self) -> dict[str, int]:
        """``{"uploads": bytes, "runs": bytes, "total": bytes}`` of the session's folder."""
        total, uploads = folder_size(self.root), folder_size(self.uploads)
        return {"uploads": uploads, "runs": total - uploads, "total": total}

    def check_room(self, incoming: int = 0, what: str = "this file") -> None:
        """Raise :class:`QuotaExceeded` when ``incoming`` more bytes would pass the quota."""
        used, limit = self.usage(), self.limit()
        if used["total"] + incoming <= limit:
            return
        f = format_bytes
        head = (f"{what} ({f(incoming)}) does not fit in this session's folder" if incoming else
                "this session's folder is full")
        raise QuotaExceeded(f"{head}: {f(used['total'])} of its {f(limit)} are used (uploads {f(used['uploads'])}, "
                            f"runs {f(used['runs'])}). To free space, {self.how_to_free}")

    def save_upload(self, data: bytes, name: str) -> Path:
        """Keep an upload in ``uploads/`` (:func:`save_upload`), within the quota.

        Raises:
            QuotaExceeded: it does not fit (the message says how much is used and how to free it).
            InputFileError: it is above the size limit of any file.
        """
        check_size(len(data), repr(name))
        existing = upload_path(data, name, self.uploads)
        if not (existing.is_file() and existing.stat().st_size == len(data)):
            self.check_room(len(data), repr(sanitize_filename(name)))
        return save_upload(data, name, self.uploads)

    def delete_uploads(self) -> int:
        """Delete every upload of the session; returns the bytes freed."""
        freed = folder_size(self.uploads)
        shutil.rmtree(self.uploads, ignore_errors=True)
        return freed

    def touch(self) -> None:
        """Mark the session as active now (its folder's time), so :func:`sweep_sessions` keeps it."""
        try:
            os.utime(self.root)
        except OSError:  # no folder yet: nothing to keep
            pass

    def check_path(self, path: str | os.PathLike, roots: Iterable[str | os.PathLike] | None = None,
                   field: str = "path") -> Path:
        """:func:`check_user_path` for this session (``roots`` default :func:`data_roots`)."""
        return check_user_path(path, roots=data_roots() if roots is None else roots, own_dir=self.root,
                               sessions_dir=self.sessions_dir, field=field)

    def check_config(self, cfg: Any, roots: Iterable[str | os.PathLike] | None = None) -> None:
        """:func:`check_config_paths` for this session (``roots`` default :func:`data_roots`)."""
        check_config_paths(cfg, roots=data_roots() if roots is None else roots, own_dir=self.root,
                           sessions_dir=self.sessions_dir)


# --------------------------------------------------------------------------- cleanup
def run_is_locked(path: str | os.PathLike) -> bool:
    """Whether a writer holds the run directory ``path`` (``RunDir.is_locked``); False when unknown."""
    from perco_viz.runs import RunDir

    is_locked = getattr(RunDir, "is_locked", None)
    if is_locked is None:
        return False
    try:
        return bool(is_locked(RunDir(path)))
    except Exception:  # noqa: BLE001 — a damaged run: not a live writer
        return False


def session_is_training(folder: str | os.PathLike) -> bool:
    """Whether any run directly in the session's ``folder`` is held by a writer."""
    try:
        children = [p for p in Path(folder).iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return False
    return any(run_is_locked(p) for p in children if p.name != UPLOADS_DIRNAME)


def sweep_sessions(sessions_dir: str | os.PathLike, *, ttl_s: float, now: float | None = None,
                   is_live: Callable[[Path], bool] | None = None) -> list[Path]:
    """Delete the session folders under ``sessions_dir`` that nobody has used for ``ttl_s``.

    A folder goes when its newest file (:func:`newest_mtime`) is older than ``ttl_s`` and it
    holds no live training: none of its runs is locked by a writer (:func:`session_is_training`)
    and ``is_live(folder)`` (e.g. the server's registry of running trainings) is not true. Links
    and plain files directly under ``sessions_dir`` are left alone.

    Returns:
        The folders deleted.
    """
    now = time.time() if now is None else now
    try:
        folders = [p for p in Path(sessions_dir).iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []
    deleted = []
    for folder in folders:
        if now - newest_mtime(folder) <= ttl_s:
            continue
        if session_is_training(folder) or (is_live is not None and is_live(folder)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            deleted.append(folder)
    return deleted


_SWEEP_LOCK = threading.Lock()
_LAST_SWEEP: dict[str, float] = {}


def maybe_sweep(sessions_dir: str | os.PathLike, *, ttl_s: float | None = None, every_s: float = SWEEP_EVERY_S,
                is_live: Callable[[Path], bool] | None = None) -> threading.Thread | None:
    """:func:`sweep_sessions` in a background thread, at most once per ``every_s`` per folder.

    Cheap to call on every page view: it returns at once (None) when the last sweep of this
    folder is recent; otherwise it returns the started daemon thread.
    """
    key = os.path.realpath(sessions_dir)
    now = time.monotonic()
    with _SWEEP_LOCK:
        last = _LAST_SWEEP.get(key)
        if last is not None and now - last < every_s:
            return None
        _LAST_SWEEP[key] = now
    ttl = ttl_seconds() if ttl_s is None else ttl_s
    thread = threading.Thread(target=sweep_sessions, args=(sessions_dir,), kwargs={"ttl_s": ttl, "is_live": is_live},
                              name="perco-viz-session-sweep", daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------- bounded parsing
def check_array_upload(data: bytes, name: str, label_column: str | None = None) -> tuple[int, int, int | None]:
    """Validate a ``.npz``/``.npy``/``.csv`` upload through ``safe_io.load_array_file``.

    Returns:
        (points, features, classes or None when unlabeled).

    Raises:
        InputFileError: the message says what is wrong with the file and how to fix it.
    """
    from perco_viz.safe_io import load_array_file

    X, y, _ = load_array_file(data, name=name, label_column=label_column or None)
    classes = None if y is None else len(set(y.tolist()))
    return int(X.shape[0]), int(X.shape[1]), classes


_PARSER: list[Any] = []
_PARSER_LOCK = threading.Lock()


def parse_worker():
    """This process's one worker process for parsing uploads (a :class:`perco_viz.process.Worker`
    of its own: ending it on a timeout never stops a projection of the shared worker)."""
    from perco_viz.process import Worker

    with _PARSER_LOCK:
        if not _PARSER:
            _PARSER.append(Worker())
        return _PARSER[0]


def run_limited(fn: Callable[..., Any], *args: Any, timeout_s: float | None = None, what: str = "the file") -> Any:
    """``fn(*args)`` in :func:`parse_worker`, within ``timeout_s`` (default :func:`parse_timeout_s`).

    ``fn`` and ``args`` must be picklable (a module-level function and plain data). The caller's
    thread only waits (the GIL is free for the other sessions meanwhile). On a timeout the
    worker is ended (the next call starts a fresh one).

    Raises:
        ParseTimeout: it ran past the limit.
        SessionError: the worker died while reading (e.g. out of memory).
        Whatever ``fn`` raises (an ``InputFileError`` for a bad file).
    """
    from perco_viz.process import WorkerDied

    limit = parse_timeout_s() if timeout_s is None else timeout_s
    worker = parse_worker()
    future = worker.submit(fn, *args)
    try:
        return future.result(timeout=limit)
    except FutureTimeout:
        with _PARSER_LOCK:  # the next call gets a fresh worker
            if worker in _PARSER:
                _PARSER.remove(worker)
        worker.shutdown()
        raise ParseTimeout(f"reading {what} took longer than {limit:g} s and was stopped; use a smaller file "
                           f"(the operator sets the limit with {PARSE_TIMEOUT_ENV})") from None
    except WorkerDied:
        raise SessionError(f"reading {what} ended the reader process (out of memory?); use a smaller file, "
                           "or try again") from None
