"""Results out: one snapshot of a run for TensorBoard's Embedding Projector, and the run's
metrics as CSV or Parquet, as files in a folder or as bytes (the app's downloads).

The projector folder (open it with ``tensorboard --logdir DIR``, tab *Projector*)::

    DIR/tensors.tsv             the student's probe features, (n, d_s): one row per probe point
    DIR/teacher_tensors.tsv     the teacher's probe features, (n, d_t): the same points, same order
    DIR/metadata.tsv            a header row, then per point: index, label, c_i, c_i_decile, test_index
    DIR/projector_config.pbtxt  one ``embeddings { ... }`` per tensor, paths relative to DIR
    DIR/perco_viz_export.json   what was exported (run, snapshot, files): marks DIR as an export

Numbers are written with ``%.9g`` (enough digits to read back the same float32), c_i with the
shortest text that reads back the same float64. ``label`` is the class name when the run's
dataset names its classes, else the integer label, else empty (an unlabeled run).

The metrics (every record of :meth:`perco_viz.runs.RunDir.metrics`) go to ``DIR/metrics.csv``
or ``DIR/metrics.parquet``: columns ``epoch, step, snapshot``, then the other fields in
alphabetical order; a missing value (``None``) is an empty CSV cell or a Parquet null.

Reading goes through :class:`~perco_viz.runs.RunDir` only. Writing refuses a non-empty folder
that is not a previous export of the same kind unless ``force=True``, refuses a folder that is a
symbolic link, and writes every file under a temporary name renamed into place (a link in the
folder is replaced, never followed). This module never imports streamlit or tensorboard.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perco_viz.runs import RunDir, RunStoreError, atomic_file, atomic_write_bytes

FORMATS = ("tensorboard", "csv", "parquet")
MARKER = "perco_viz_export.json"  # written last into every export folder
MARKER_MAX_BYTES = 64 << 10
STUDENT_TSV = "tensors.tsv"
TEACHER_TSV = "teacher_tensors.tsv"
METADATA_TSV = "metadata.tsv"
CONFIG_PBTXT = "projector_config.pbtxt"
PROJECTOR_FILES = (STUDENT_TSV, TEACHER_TSV, METADATA_TSV, CONFIG_PBTXT)
METADATA_COLUMNS = ("index", "label", "c_i", "c_i_decile", "test_index")
METRICS_FILES = {"csv": "metrics.csv", "parquet": "metrics.parquet"}
FIRST_COLUMNS = ("epoch", "step", "snapshot")
CHUNK_ROWS = 4096  # rows of a TSV formatted at once (a 100,000-row probe set is never one string)


# --------------------------------------------------------------------------- reading a run
def _as_run(run: RunDir | str | os.PathLike) -> RunDir:
    """``run`` as a RunDir that holds a readable run, else a ValueError saying what to give."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    if not run.exists():
        raise ValueError(f"{str(run.path)!r} is not a run directory (it has no config.json): give the folder that "
                         "`perco-viz distill` or `perco_viz.open_run` made")
    problem = run.problem()
    if problem:
        raise ValueError(f"run {run.name!r} cannot be exported: {problem}")
    return run


@dataclass(frozen=True)
class ProjectorData:
    """One snapshot of a run as the projector files hold it.

    Attributes:
        run_name: the run's folder name.
        snapshot: the snapshot's index; ``epoch``, ``step``: when it was recorded.
        student: (n, d_s) float32 student probe features.
        teacher: (n, d_t) float teacher probe features (same rows, same order).
        coherence: (n,) float64 per-sample coherence c_i of the snapshot.
        labels: (n,) int labels, or None (an unlabeled run).
        test_indices: (n,) int: each probe point's index into the dataset's test split.
        class_names: the dataset's class names, or None (labels written as integers).
    """

    run_name: str
    snapshot: int
    epoch: float
    step: int
    student: np.ndarray
    teacher: np.ndarray
    coherence: np.ndarray
    labels: np.ndarray | None
    test_indices: np.ndarray
    class_names: tuple[str, ...] | None

    @property
    def n(self) -> int:
        return len(self.student)


def projector_data(run: RunDir | str | os.PathLike, snapshot: int | None = None, *,
                   class_names: Sequence[str] | None = None) -> ProjectorData:
    """Read snapshot ``snapshot`` (default: the latest) of ``run`` and its teacher probe.

    Args:
        run: a RunDir or a run directory's path.
        snapshot: a snapshot index (see ``RunDir.snapshot_indices``); None = the latest.
        class_names: names of the integer labels (``class_names[label]``), or None.

    Raises:
        ValueError: not a run, no snapshot yet, no such snapshot, or a damaged snapshot or
            teacher probe (the message names the run and what to do).
    """
    run = _as_run(run)
    try:
        indices = run.snapshot_indices()
    except RunStoreError as exc:
        raise ValueError(f"{exc}") from None
    if not indices:
        raise ValueError(f"run {run.name!r} has no snapshot yet: a snapshot is written when its training starts; "
                         "wait for the first one (or resume the run) and export again")
    if snapshot is None:
        snapshot = indices[-1]
    elif int(snapshot) not in indices:
        raise ValueError(f"run {run.name!r} has no snapshot {snapshot}: it has {_ranges(indices)}; "
                         "choose one of those (--snapshot N), or leave it out for the latest")
    snapshot = int(snapshot)
    try:
        probe = run.teacher_probe()
    except RunStoreError as exc:
        raise ValueError(f"{exc}; every snapshot is exported with it, so this run cannot be: re-run the "
                         "training") from None
    try:
        snap = run.load_snapshot(snapshot)
    except RunStoreError as exc:
        others = [i for i in indices if i != snapshot]
        hint = (f"export another snapshot (--snapshot N; it also has {_ranges(others)})" if others
                else "re-run or resume the training to write a new one")
        raise ValueError(f"{exc}; {hint}") from None
    if len(probe["features"]) != len(snap.student):
        raise ValueError(f"run {run.name!r}: snapshot {snapshot} has {len(snap.student):,} rows but the teacher probe "
                         f"{len(probe['features']):,}; the run is damaged: export another run")
    labels = probe.get("labels")
    names = None if class_names is None or labels is None else tuple(_cell(str(c)) for c in class_names)
    return ProjectorData(run.name, snapshot, float(snap.epoch), int(snap.step), snap.student, probe["features"],
                         np.asarray(snap.coherence, dtype=np.float64), labels, probe["indices"], names)


def _ranges(indices: Sequence[int]) -> str:
    """``snapshots 0–4, 7`` for [0, 1, 2, 3, 4, 7]."""
    if not indices:
        return "no other snapshot"
    parts, start, prev = [], indices[0], indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}–{prev}")
        if i is not None:
            start = prev = i
    return ("snapshot " if len(indices) == 1 else "snapshots ") + ", ".join(parts)


def class_names_for(run: RunDir | str | os.PathLike, *, allow_paths: bool = True) -> list[str] | None:
    """The class names of the run's dataset when it loads here without a download, else None.

    A run written by the user's own training (``RunDir.is_external``) names no dataset: the names
    its writer was given (``open_run(class_names=...)``), or None.

    Args:
        allow_paths: False: only datasets that name no file or folder (``data.path`` unset) are
            loaded (what a server may do for a run of someone else).
    """
    import dataclasses

    run = run if isinstance(run, RunDir) else RunDir(run)
    external = run.external()
    if external is not None:
        names = external.get("class_names")
        ok = isinstance(names, list) and names and all(isinstance(n, str) for n in names)
        return list(names) if ok else None
    try:
        data = run.config().data
        if data.path and not allow_paths:
            return None
        from perco_viz.data import load_dataset

        dataset = load_dataset(dataclasses.replace(data, download=False))
    except Exception:  # noqa: BLE001 — names are a nicety: without them labels are written as numbers
        return None
    return None if dataset.class_names is None else [str(c) for c in dataset.class_names]


# --------------------------------------------------------------------------- the projector's text
def _cell(text: str) -> str:
    """A TSV cell: tabs and line breaks become spaces."""
    return " ".join(str(text).replace("\t", " ").splitlines()) if text else ""


def tsv_chunks(X: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> Iterator[str]:
    """The rows of ``X`` (n, d) as tab-separated text, ``chunk_rows`` rows per piece, each
    number as ``%.9g`` (float32 reads back exactly; a float64 array gets ``%.17g``)."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] == 0:
        raise ValueError(f"features must be a 2-D array with at least one column, got shape {X.shape}")
    spec = "%.17g" if X.dtype == np.float64 else "%.9g"
    line = "\t".join([spec] * X.shape[1]) + "\n"
    for start in range(0, len(X), chunk_rows):
        block = X[start:start + chunk_rows]
        yield (line * len(block)) % tuple(block.astype(np.float64).ravel().tolist())


def metadata_chunks(data: ProjectorData, chunk_rows: int = CHUNK_ROWS) -> Iterator[str]:
    """``metadata.tsv``: the header (:data:`METADATA_COLUMNS`), then one line per probe point."""
    yield "\t".join(METADATA_COLUMNS) + "\n"
    n = data.n
    order = np.argsort(data.coherence, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    decile = rank * 10 // max(n, 1) + 1  # 1 = the lowest tenth of c_i
    names = data.class_names
    for start in range(0, n, chunk_rows):
        lines = []
        for i in range(start, min(n, start + chunk_rows)):
            if data.labels is None:
                label = ""
            else:
                value = int(data.labels[i])
                label = names[value] if names is not None and 0 <= value < len(names) else str(value)
            lines.append(f"{i}\t{label}\t{float(data.coherence[i])!r}\t{decile[i]}\t{int(data.test_indices[i])}\n")
        yield "".join(lines)


def _pb_string(text: str) -> str:
    """A protobuf text-format string literal (quotes, backslashes and control characters escaped).

    >>> _pb_string('a "b"')
    '"a \\\\"b\\\\""'
    """
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 32 or ord(c) == 127:
            out.append(f"\\{ord(c):03o}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def projector_config(data: ProjectorData) -> str:
    """``projector_config.pbtxt``: one ``embeddings`` block per tensor (student, then teacher),
    with its name, TSV path and metadata path (relative to the folder) and ``tensor_shape``."""
    blocks = []
    for name, path, X in ((f"student (snapshot {data.snapshot}, epoch {data.epoch:g})", STUDENT_TSV, data.student),
                          ("teacher", TEACHER_TSV, data.teacher)):
        blocks.append("embeddings {\n"
                      f"  tensor_name: {_pb_string(name)}\n"
                      f"  tensor_path: {_pb_string(path)}\n"
                      f"  metadata_path: {_pb_string(METADATA_TSV)}\n"
                      f"  tensor_shape: {X.shape[0]}\n"
                      f"  tensor_shape: {X.shape[1]}\n"
                      "}\n")
    return "".join(blocks)


def _projector_marker(run_path: str, data: ProjectorData) -> dict[str, Any]:
    return {"kind": "tensorboard", "run": run_path, "run_name": data.run_name, "snapshot": data.snapshot,
            "epoch": data.epoch, "step": data.step, "points": data.n, "files": list(PROJECTOR_FILES)}


def _projector_pieces(data: ProjectorData) -> Iterator[tuple[str, Iterator[str]]]:
    """(file name, its text in pieces) for every projector file but the marker, config last."""
    yield STUDENT_TSV, tsv_chunks(data.student)
    yield TEACHER_TSV, tsv_chunks(data.teacher)
    yield METADATA_TSV, metadata_chunks(data)
    yield CONFIG_PBTXT, iter([projector_config(data)])


# --------------------------------------------------------------------------- the output folder
def _read_marker(folder: Path) -> dict[str, Any] | None:
    """The export marker in ``folder`` (a regular file, not a link, small, a JSON object), or None."""
    try:
        fd = os.open(folder / MARKER, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MARKER_MAX_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            doc = json.loads(fh.read(MARKER_MAX_BYTES).decode("utf-8"))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    return doc if isinstance(doc, dict) else None


def prepare_out(out: str | os.PathLike, kind: str, *, force: bool = False) -> tuple[Path, dict[str, Any] | None]:
    """Check (and make) the output folder ``out`` for an export of ``kind`` (``tensorboard`` or
    ``metrics``); returns the folder and the marker of a previous export found there.

    Raises:
        ValueError: ``out`` is a symbolic link or a file, or a non-empty folder that is not a
            previous export of the same kind and ``force`` is False; or it cannot be made.
    """
    folder = Path(out).expanduser()
    if folder.is_symlink():
        raise ValueError(f"--out {str(folder)!r} is a symbolic link; give the folder itself (nothing is written "
                         "through links)")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {str(folder)!r} is a file, not a folder; give a new or empty folder")
    marker = _read_marker(folder) if folder.is_dir() else None
    if folder.is_dir() and not force:
        try:
            with os.scandir(folder) as entries:
                empty = next(entries, None) is None
        except OSError as exc:
            raise ValueError(f"--out {str(folder)!r} cannot be listed: {exc.strerror or exc}") from None
        if not empty and (marker is None or marker.get("kind") != kind):
            what = "TensorBoard projector" if kind == "tensorboard" else "metrics"
            raise ValueError(f"--out {str(folder)!r} is not empty and is not a previous {what} export of perco-viz; "
                             "give a new or empty folder, or --force (force=True) to write into it (files of the "
                             "same names are replaced, nothing else is touched)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {str(folder)!r} cannot be made: {exc.strerror or exc}") from None
    return folder, marker


def _write_marker(folder: Path, doc: dict[str, Any]) -> Path:
    path = folder / MARKER
    atomic_write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode())
    return path


def _disk(folder: Path, exc: OSError) -> ValueError:
    return ValueError(f"cannot write into {str(folder)!r}: {exc.strerror or exc}; free some space or choose another "
                      "folder (--out)")


# --------------------------------------------------------------------------- projector: files, zip
def write_projector(run: RunDir | str | os.PathLike, out: str | os.PathLike, *, snapshot: int | None = None,
                    class_names: Sequence[str] | None = None, force: bool = False) -> list[Path]:
    """Write snapshot ``snapshot`` (default: the latest) of ``run`` in TensorBoard's Embedding
    Projector format into the folder ``out`` (see the module docstring); returns the paths written.

    Raises:
        ValueError: see :func:`projector_data` and :func:`prepare_out`, or the disk refused.
    """
    run = _as_run(run)
    data = projector_data(run, snapshot, class_names=class_names)
    folder, _ = prepare_out(out, "tensorboard", force=force)
    written = []
    try:
        for name, pieces in _projector_pieces(data):
            with atomic_file(folder / name, "w", encoding="utf-8", newline="\n") as fh:
                for piece in pieces:
                    fh.write(piece)
            written.append(folder / name)
        written.append(_write_marker(folder, _projector_marker(str(run.path), data)))
    except OSError as exc:
        raise _disk(folder, exc) from None
    return written


def projector_zip(run: RunDir | str | os.PathLike, *, snapshot: int | None = None,
                  class_names: Sequence[str] | None = None) -> bytes:
    """The projector folder of :func:`write_projector` as a zip in memory (one folder
    ``<run>-projector-snapshot<N>/`` inside: unzip it, then ``tensorboard --logdir`` that folder)."""
    run = _as_run(run)
    data = projector_data(run, snapshot, class_names=class_names)
    top = f"{data.run_name}-projector-snapshot{data.snapshot}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, pieces in _projector_pieces(data):
            with zf.open(f"{top}/{name}", "w", force_zip64=True) as fh:
                for piece in pieces:
                    fh.write(piece.encode("utf-8"))
        zf.writestr(f"{top}/{MARKER}", json.dumps(_projector_marker(data.run_name, data), indent=1) + "\n")
    return buf.getvalue()


# --------------------------------------------------------------------------- metrics
def _column(values: list[Any]) -> pd.Series | list[Any]:
    """One metrics column typed for both CSV and Parquet: integers (nullable), numbers (nullable
    floats), booleans, text; a column mixing kinds becomes text (JSON of the non-text values)."""
    present = [v for v in values if v is not None]
    if not present:
        return pd.Series([None] * len(values), dtype=object)
    if all(isinstance(v, bool) for v in present):
        return pd.array(values, dtype="boolean")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pd.array(values, dtype="Int64")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pd.array([None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
                         for v in values], dtype="Float64")
    if all(isinstance(v, str) for v in present):
        return pd.Series(values, dtype=object)
    return pd.Series([None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
                     dtype=object)


def metrics_columns(records: Sequence[dict[str, Any]]) -> list[str]:
    """``epoch, step, snapshot``, then every other field of ``records`` in alphabetical order."""
    others = sorted({k for r in records for k in r} - set(FIRST_COLUMNS))
    return [*FIRST_COLUMNS, *others]


def metrics_table(run: RunDir | str | os.PathLike) -> pd.DataFrame:
    """Every record of ``RunDir.metrics()`` as one row (columns: :func:`metrics_columns`)."""
    run = _as_run(run)
    try:
        records = run.metrics()
    except RunStoreError as exc:
        raise ValueError(str(exc)) from None
    columns = metrics_columns(records)
    return pd.DataFrame({c: _column([r.get(c) for r in records]) for c in columns}, columns=columns)


def metrics_bytes(run: RunDir | str | os.PathLike, fmt: str) -> bytes:
    """The metrics table as ``csv`` (UTF-8, empty cells for missing values) or ``parquet`` bytes."""
    if fmt not in METRICS_FILES:
        raise ValueError(f"format must be one of {', '.join(METRICS_FILES)}, got {fmt!r}")
    table = metrics_table(run)
    if fmt == "csv":
        return table.to_csv(index=False, na_rep="", lineterminator="\n").encode("utf-8")
    buf = io.BytesIO()
    table.to_parquet(buf, index=False, engine="pyarrow")
    return buf.getvalue()


def write_metrics(run: RunDir | str | os.PathLike, out: str | os.PathLike, fmt: str, *,
                  force: bool = False) -> list[Path]:
    """Write the run's metrics into the folder ``out`` as ``metrics.csv`` or ``metrics.parquet``
    (a folder may hold both); returns the paths written.

    Raises:
        ValueError: a bad ``fmt``, see :func:`prepare_out`, or the disk refused.
    """
    run = _as_run(run)
    data = metrics_bytes(run, fmt)
    folder, marker = prepare_out(out, "metrics", force=force)
    name = METRICS_FILES[fmt]
    files = sorted({name, *[f for f in (marker or {}).get("files", []) if f in METRICS_FILES.values()]})
    try:
        atomic_write_bytes(folder / name, data)
        marker_path = _write_marker(folder, {"kind": "metrics", "run": str(run.path), "run_name": run.name,
                                             "files": files})
    except OSError as exc:
        raise _disk(folder, exc) from None
    return [folder / name, marker_path]


def export(run: RunDir | str | os.PathLike, out: str | os.PathLike, fmt: str, *, snapshot: int | None = None,
           class_names: Sequence[str] | None = None, force: bool = False) -> list[Path]:
    """``perco-viz export``: :func:`write_projector` (``fmt="tensorboard"``) or :func:`write_metrics`
    (``csv``, ``parquet``); returns the paths written."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "tensorboard":
        return write_projector(run, out, snapshot=snapshot, class_names=class_names, force=force)
    if snapshot is not None:
        raise ValueError("--snapshot chooses the snapshot of --format tensorboard; the metrics export holds every "
                         "record: leave it out")
    return write_metrics(run, out, fmt, force=force)
