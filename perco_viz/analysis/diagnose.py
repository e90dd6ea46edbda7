"""Diagnose a student trained anywhere: load a teacher/student pair of features and compute the
whole quality panel (its figures and HTML report: :mod:`perco_viz.figures.diagnose`).

The pair comes from two embedding files (``.npz``/``.csv``/``.npy`` read through
:func:`perco_viz.safe_io.load_array_file`), from two models run on a dataset, or from a run
directory (its teacher probe and a student snapshot). :func:`compute_panel` measures it with
the library (:func:`perco_viz.metrics.student_report`,
:func:`perco_viz.coherence.per_sample_coherence`, :func:`perco_viz.coherence.rank_agreement`)
on a stratified subsample of at most ``max_points`` rows, so every number describes the same
points; :func:`panel_table` is its metric table. The figures of a panel and the self-contained
HTML report are :mod:`perco_viz.figures.diagnose` (no plotly here).

>>> rng = np.random.default_rng(0)
>>> t = rng.normal(size=(60, 5))
>>> pair = EmbeddingPair(teacher=t, student=3.0 * t[:, :5] @ np.linalg.qr(rng.normal(size=(5, 5)))[0])
>>> round(compute_panel(pair).report["pc"], 6)
1.0
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perco_viz.checks import check_features
from perco_viz.safe_io import (
    InputFileError,
    Source,
    check_file,
    check_size,
    load_array_file,
    load_npz,
    read_csv_limited,
)

MIN_ROWS = 10
DEFAULT_MAX_POINTS = 2000
SHEPARD_PAIRS = 20_000
LABEL_SOURCES: tuple[str, ...] = ("auto", "teacher", "student", "file", "none")


# --------------------------------------------------------------------------- the metrics, in words
@dataclass(frozen=True)
class MetricInfo:
    """How to show one metric of the panel.

    Attributes:
        label: short name for a card or a table row.
        help: one sentence on what it measures and how to read it.
        percent: show as a percentage (accuracies) rather than a 0–1 score.
    """

    label: str
    help: str
    percent: bool = False


METRIC_INFO: dict[str, MetricInfo] = {
    "pc": MetricInfo(
        "PC (perception coherence)",
        "Share of all (anchor, j, k) questions 'is j closer to the anchor than k?' that the student "
        "answers like the teacher: 1 = same ranking, 0.5 = chance, 0 = reversed."),
    "coherence_mean": MetricInfo(
        "mean c_i",
        "Mean per-sample coherence c_i over the points; equal to PC by definition."),
    "coherence_p10": MetricInfo(
        "c_i, 10th percentile",
        "The lower tail of the per-sample coherence: 10% of the points are perceived at least this "
        "badly; a low value with a high PC means a few inputs go wrong."),
    "knn_acc": MetricInfo(
        "k-NN accuracy (k = 5)",
        "Share of points whose 5 nearest neighbours in the student's features vote for their true "
        "class (leave-one-out): are classes still neighbourhoods?", percent=True),
    "linear_acc": MetricInfo(
        "linear probe accuracy",
        "Accuracy of a logistic regression on the student's features (5-fold cross-validated): "
        "are classes linearly separable?", percent=True),
    "trustworthiness": MetricInfo(
        "trustworthiness@10",
        "Whether the student's 10 nearest neighbours of each point are also near in the teacher "
        "(1 = no false neighbours)."),
    "knn_overlap": MetricInfo(
        "k-NN overlap@10",
        "Mean share of each point's 10 nearest neighbours that teacher and student agree on."),
    "cka": MetricInfo(
        "linear CKA",
        "Similarity of the two feature spaces up to rotation and scale (1 = the same geometry); "
        "unlike PC it asks for the same geometry, not only the same ranking."),
}
CARD_ORDER: tuple[str, ...] = ("pc", "coherence_p10", "knn_acc", "linear_acc", "trustworthiness", "knn_overlap",
                               "cka")


def format_value(key: str, value: float | None) -> str:
    """How a metric is printed everywhere (cards, table, report): 3 decimals, or a percentage."""
    if value is None or not math.isfinite(value):
        return "—"
    info = METRIC_INFO.get(key)
    return f"{value:.1%}" if info is not None and info.percent else f"{value:.3f}"


# --------------------------------------------------------------------------- the pair
@dataclass(eq=False)
class EmbeddingPair:
    """Teacher and student features of the same inputs, row for row.

    Attributes:
        teacher: (n, d_t) teacher features.
        student: (n, d_s) student features (d_s may differ from d_t).
        labels: (n,) labels or ``None``.
        source: one line on where the pair comes from.
        class_names: names of the label values, when known.
        notes: things the user should know (which labels were used, ...).
    """

    teacher: np.ndarray
    student: np.ndarray
    labels: np.ndarray | None = None
    source: str = ""
    class_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.teacher = _as_features(self.teacher, "teacher")
        self.student = _as_features(self.student, "student")
        _check_rows(len(self.teacher), len(self.student), "teacher", "student")
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            if self.labels.ndim != 1 or len(self.labels) != len(self.teacher):
                raise InputFileError(
                    f"the labels have shape {self.labels.shape} but the features have {len(self.teacher)} rows; "
                    "give one label per row"
                )

    @property
    def n(self) -> int:
        """Number of rows (inputs)."""
        return len(self.teacher)


def _as_features(x: Any, name: str) -> np.ndarray:
    """(n, d) float64 features through :func:`perco_viz.checks.check_features` (real, finite,
    within the magnitude limit; a 1-D array is one column), its refusal as an ``InputFileError``."""
    try:
        return check_features(x, f"the {name}")
    except ValueError as exc:
        raise InputFileError(str(exc)) from None


def _check_rows(n_t: int, n_s: int, what_t: str, what_s: str) -> None:
    if n_t != n_s:
        raise InputFileError(
            f"the {what_t} has {n_t} rows but the {what_s} has {n_s}; both must hold the features of the "
            "same inputs, in the same order (one row per input)"
        )
    if n_t < MIN_ROWS:
        raise InputFileError(f"only {n_t} rows: the diagnosis needs at least {MIN_ROWS} inputs")


def _read_bytes(src: Source, name: str | None) -> tuple[bytes, str]:
    """The bytes and the name of a path, bytes or an upload (size-checked, read once)."""
    if isinstance(src, str | Path):
        p = check_file(src, what="array file")
        return p.read_bytes(), name or p.name
    if name is None:
        raise InputFileError("give the file name (e.g. 'teacher.npz') so its format is known")
    data = bytes(src) if isinstance(src, bytes | bytearray | memoryview) else src.read()
    check_size(len(data), repr(name))
    return data, name


def _labels_only(data: bytes, name: str, label_column: str | None) -> np.ndarray:
    """Labels from a file that holds nothing else: a 1-D ``.npy``, an ``.npz`` with ``y``/``labels``,
    or a ``.csv`` with a ``label``/``y`` column (or ``label_column``, or its only column).
    Read without pickle; the feature files go through :func:`load_array_file`."""
    suffix = Path(name).suffix.lower()
    try:
        if suffix in (".npy", ".npz"):
            arrays = load_npz(data, name=name)  # bounded unpacking; a bare .npy is {"arr_0": y}
            key = label_column or next((k for k in ("y", "labels", "label") if k in arrays), None)
            if key is None and len(arrays) == 1:
                key = next(iter(arrays))
            if key not in arrays:
                raise InputFileError(f"{name!r} holds arrays {sorted(arrays)}; store the labels under 'y'")
            y = arrays[key]
        elif suffix == ".csv":
            df = read_csv_limited(data, name)
            col = label_column or next((c for c in df.columns if str(c).lower() in ("label", "y", "labels")), None)
            if col is None and len(df.columns) == 1:
                col = df.columns[0]
            if col not in df.columns:
                raise InputFileError(f"{name!r} has columns {list(df.columns)[:10]}; name the label column 'label'")
            y = df[col].to_numpy()
        else:
            raise InputFileError(f"{name!r}: labels must be a .npy, .npz or .csv file")
    except InputFileError:
        raise
    except Exception:  # corrupt file, or object arrays (refused: allow_pickle=False)
        raise InputFileError(f"{name!r} is not a readable labels file; save plain numbers or strings with "
                             "np.save / np.savez(y=...) or a CSV with a 'label' column") from None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise InputFileError(f"{name!r}: labels must be one value per row, got shape {y.shape}")
    if pd.isna(y).any():
        raise InputFileError(f"{name!r}: {int(pd.isna(y).sum())} label(s) are missing; fill or drop those rows")
    return y


def load_labels(src: Source, *, name: str | None = None, label_column: str | None = None) -> np.ndarray:
    """Labels from a file of their own, or from the label column of an embedding file.

    Args:
        src: a path, the file's bytes, or an upload.
        name: file name (its suffix picks the format); required for bytes/uploads.
        label_column: the array/column holding the labels (default ``y``/``label``).

    Returns:
        (n,) labels as stored.
    """
    data, name = _read_bytes(src, name)
    try:
        X, y, _ = load_array_file(data, name=name, label_column=label_column)
    except InputFileError:
        return _labels_only(data, name, label_column)
    if y is not None:
        return y
    if X.shape[1] == 1:
        return X[:, 0]
    return _labels_only(data, name, label_column)


def load_pair(
    teacher: Source,
    student: Source,
    *,
    teacher_name: str | None = None,
    student_name: str | None = None,
    labels_from: str = "auto",
    labels: Source | None = None,
    labels_name: str | None = None,
    label_column: str | None = None,
) -> EmbeddingPair:
    """Read a teacher and a student embedding file of the same inputs.

    Args:
        teacher: the teacher's features: a path, the file's bytes or an upload.
        student: the student's features, same rows in the same order.
        teacher_name: file name of ``teacher`` (its suffix picks the format).
        student_name: file name of ``student``.
        labels_from: ``auto`` (the teacher file's ``y``/``label``, else the student's),
            ``teacher``, ``student``, ``file`` (``labels``) or ``none``.
        labels: a labels file when ``labels_from == "file"``.
        labels_name: its file name.
        label_column: the array/column holding the labels (default ``y``/``label``).

    Returns:
        The pair, with ``notes`` saying where the labels came from.

    Raises:
        InputFileError: unreadable file, NaN/inf, different row counts (both counts named), too
            few rows, or labels that do not fit.
    """
    if labels_from not in LABEL_SOURCES:
        raise InputFileError(f"labels_from must be one of {', '.join(LABEL_SOURCES)}, got {labels_from!r}")
    t_data, t_name = _read_bytes(teacher, teacher_name)
    s_data, s_name = _read_bytes(student, student_name)
    col_t = label_column if labels_from == "teacher" else None
    col_s = label_column if labels_from == "student" else None
    T, y_t, _ = load_array_file(t_data, name=t_name, label_column=col_t)
    S, y_s, _ = load_array_file(s_data, name=s_name, label_column=col_s)
    _check_rows(len(T), len(S), f"teacher file {t_name!r}", f"student file {s_name!r}")
    notes: list[str] = []
    y = None
    if labels_from == "file":
        if labels is None:
            raise InputFileError("choose a labels file, or take the labels from the teacher/student file")
        y = load_labels(labels, name=labels_name, label_column=label_column)
        if len(y) != len(T):
            raise InputFileError(f"the labels file has {len(y)} rows but the embedding files have {len(T)}; "
                                 "give one label per row, in the same order")
        notes.append(f"labels from {labels_name or 'the labels file'}")
    elif labels_from in ("auto", "teacher", "student"):
        y, notes = _pick_labels(labels_from, y_t, y_s, t_name, s_name)
    return EmbeddingPair(T, S, y, source=f"teacher {t_name} · student {s_name}", notes=notes)


def _pick_labels(mode: str, y_t, y_s, t_name: str, s_name: str) -> tuple[np.ndarray | None, list[str]]:
    if mode == "teacher" and y_t is None:
        raise InputFileError(f"{t_name!r} holds no labels ('y'/'label'); pick another source of labels")
    if mode == "student" and y_s is None:
        raise InputFileError(f"{s_name!r} holds no labels ('y'/'label'); pick another source of labels")
    if mode == "student" or (mode == "auto" and y_t is None):
        return y_s, ([f"labels from {s_name}"] if y_s is not None else ["no labels: accuracies are skipped"])
    notes = [f"labels from {t_name}"]
    if mode == "auto" and y_s is not None and not np.array_equal(np.asarray(y_t), np.asarray(y_s)):
        notes.append(f"{s_name} carries different labels; the teacher's were used")
    return y_t, notes


def pair_from_run(run, snapshot: int | None = None) -> EmbeddingPair:
    """A run's teacher probe features and one student snapshot (default: the last).

    Args:
        run: a :class:`perco_viz.runs.RunDir`.
        snapshot: snapshot index, ``None`` for the latest.
    """
    probe = run.teacher_probe()
    indices = run.snapshot_indices()
    if not indices:
        raise InputFileError(f"run {run.name!r} has no snapshot yet; wait for the first one")
    snap = run.load_snapshot(indices[-1] if snapshot is None else snapshot)
    return EmbeddingPair(probe["features"], snap.student, probe.get("labels"),
                         source=f"run {run.name} · snapshot {snap.index} (epoch {snap.epoch:.3g}) · probe set")


def pair_from_models(teacher, student, X, labels=None, *, batch_size: int = 512, device=None,
                     source: str = "", class_names: list[str] | None = None) -> EmbeddingPair:
    """Features of two models on the same inputs (no gradients, in batches).

    Args:
        teacher: a :class:`perco_viz.models.FeatureModel` (or any module giving (n, d_t)).
        student: a module giving (n, d_s) features.
        X: (n, *input_shape) inputs.
        labels: (n,) labels or ``None``.
        batch_size: inputs per forward pass.
        device: where to compute (``None``: where each model is).
        source: one line on where the pair comes from.
        class_names: names of the classes.
    """
    from perco_viz.models import extract_features

    t = extract_features(teacher, X, batch_size=batch_size, device=device)
    s = extract_features(student, X, batch_size=batch_size, device=device)
    y = None if labels is None else np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels)
    return EmbeddingPair(t.numpy(), s.numpy(), y, source=source, class_names=class_names)


# --------------------------------------------------------------------------- the panel
@dataclass(eq=False)
class Panel:
    """The diagnosis of a pair, on a stratified subsample of its rows.

    Attributes:
        report: :func:`perco_viz.metrics.student_report` of the subsample.
        coherence: (m,) per-sample coherence c_i.
        agreement: (m, m) rank-agreement matrix A (NaN on the diagonal).
        teacher: (m, d_t) and ``student`` (m, d_s): the subsample's features.
        labels: (m,) labels or ``None``.
        indices: (m,) rows of the pair in the subsample (sorted).
        teacher_xy: (m, 2) PCA of the teacher; ``student_xy`` (m, 2) PCA of the student,
            aligned to the teacher by Procrustes.
        shepard: ``(d_teacher, d_student)``, each (p,), dissimilarities of up to
            ``SHEPARD_PAIRS`` random pairs of the subsample.
        n_total: rows of the pair.
        source: where the pair comes from.
        class_names: names of the label values, when known.
        seconds: wall time of each part.
    """

    report: dict[str, float]
    coherence: np.ndarray
    agreement: np.ndarray
    teacher: np.ndarray
    student: np.ndarray
    labels: np.ndarray | None
    indices: np.ndarray
    teacher_xy: np.ndarray
    student_xy: np.ndarray
    shepard: tuple[np.ndarray, np.ndarray]
    n_total: int
    source: str = ""
    class_names: list[str] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def n_used(self) -> int:
        """Rows the panel was computed on."""
        return len(self.indices)

    @property
    def subsampled(self) -> bool:
        """Whether the panel uses fewer rows than the pair has."""
        return self.n_used < self.n_total

    def scope(self) -> str:
        """One sentence on which rows the numbers describe."""
        if self.subsampled:
            how = "stratified by label" if self.labels is not None else "uniformly at random"
            return (f"Computed on a subsample of {self.n_used:,} of the {self.n_total:,} rows ({how}, seeded): "
                    "the ranking metrics cost O(n²), and every number describes the same points.")
        return f"Computed on all {self.n_total:,} rows."


def subsample_indices(n: int, labels: np.ndarray | None, max_points: int, seed: int = 0) -> np.ndarray:
    """(min(n, max_points),) sorted row indices, stratified by label when there are labels."""
    from perco_viz.analysis.projection import stratified_subsample

    if max_points < MIN_ROWS:
        raise ValueError(f"max_points must be at least {MIN_ROWS}, got {max_points}")
    return stratified_subsample(labels, n, max_points, seed=seed)


def compute_panel(pair: EmbeddingPair, *, max_points: int = DEFAULT_MAX_POINTS, seed: int = 0, k: int = 5,
                  trust_k: int = 10, metric: str = "euclidean") -> Panel:
    """The whole quality panel of a pair.

    Args:
        pair: teacher and student features of the same rows.
        max_points: largest number of rows measured (a stratified, seeded subsample above it).
        seed: seed of the subsample.
        k: neighbours of the k-NN classifier.
        trust_k: neighbourhood size of trustworthiness and k-NN overlap.
        metric: dissimilarity of the coherence scores.

    Returns:
        A :class:`Panel`; ``panel.report`` equals ``student_report`` on ``panel.student``,
        ``panel.teacher`` and ``panel.labels``.
    """
    from perco_viz.analysis.projection import student_projection, teacher_projection
    from perco_viz.analysis.rank_agreement import shepard_pairs
    from perco_viz.coherence import per_sample_coherence, rank_agreement
    from perco_viz.metrics import student_report

    seconds: dict[str, float] = {}
    idx = subsample_indices(pair.n, pair.labels, max_points, seed)
    t, s = pair.teacher[idx], pair.student[idx]
    y = None if pair.labels is None else pair.labels[idx]
    if y is not None and len(np.unique(y)) < 2:
        y = None  # one class: nothing to classify
    start = time.perf_counter()
    report = student_report(s, t, y, k=k, trust_k=trust_k, metric=metric)
    seconds["metrics"] = time.perf_counter() - start
    start = time.perf_counter()
    c = per_sample_coherence(s, t, metric=metric)
    agreement = rank_agreement(s, t, metric=metric)
    seconds["ranks"] = time.perf_counter() - start
    start = time.perf_counter()
    t_xy = teacher_projection(t, method="pca", dim=2)  # a 1-column input: its centred values and zeros
    s_xy = student_projection(s, t_xy, method="pca")
    seconds["projection"] = time.perf_counter() - start
    shepard = shepard_pairs(s, t, max_pairs=SHEPARD_PAIRS, seed=seed)  # Euclidean, as the figure says
    return Panel(report, c, agreement, t, s, y, idx, t_xy, s_xy, shepard, pair.n, pair.source, pair.class_names,
                 seconds)


def panel_table(panel: Panel) -> pd.DataFrame:
    """The metric table: one row per metric of the report, with its value and meaning."""
    rows = [{"metric": METRIC_INFO[key].label, "value": format_value(key, panel.report[key]),
             "what it measures": METRIC_INFO[key].help}
            for key in CARD_ORDER if key in panel.report]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- per-input table & metadata
ROW_COLUMN = "row"
METADATA_MAX_MB = 20
METADATA_MAX_COLUMNS = 64
# columns of the per-input table: a metadata column of the same name is renamed "meta <name>"
SAMPLE_COLUMNS: tuple[str, ...] = (ROW_COLUMN, "test index", "class", "c_i", "tags")


@dataclass(frozen=True)
class Metadata:
    """Metadata columns of the rows of a pair, read by :func:`load_metadata`.

    Attributes:
        table: (n, k) one line per row of the pair, in row order (index 0..n−1); rows the
            file does not name are blank (NaN in number columns, "" in text columns).
        keyed: the file named its rows in a ``row`` column (else its lines are the rows in order).
        note: one sentence on how the file was matched to the rows.
    """

    table: pd.DataFrame
    keyed: bool
    note: str

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.table.columns]


def _whole_numbers(values: pd.Series, name: str) -> np.ndarray:
    """The (m,) int64 values of a ``row`` column, or an InputFileError saying what is wrong."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() | (numbers != np.floor(numbers))
    if bad.any():
        first = values[bad].iloc[0]
        raise InputFileError(f"{name!r}: the '{ROW_COLUMN}' column must hold whole row numbers (0, 1, 2, …); "
                             f"{int(bad.sum())} value(s) are not, e.g. {first!r}")
    return numbers.to_numpy(dtype=np.int64)


def load_metadata(data: bytes, name: str, n_rows: int, *, max_mb: int = METADATA_MAX_MB) -> Metadata:
    """Metadata columns for the ``n_rows`` rows of a pair from a CSV file (parsed by pandas; no pickles).

    The file has a header line. With a ``row`` column (any case), each line names the row of
    the pair it describes (0-based, as the per-input table numbers them; each row at most once,
    rows not named are left blank); without one, its lines are the rows in order and there must
    be exactly ``n_rows`` of them. Every other column is a metadata column (at most
    :data:`METADATA_MAX_COLUMNS`); one named like a column of the per-input table
    (:data:`SAMPLE_COLUMNS`) is renamed ``meta <name>``.

    Args:
        data: the CSV file's bytes (at most ``max_mb`` MB).
        name: its file name (for messages; must end in ``.csv``).
        n_rows: rows of the pair.
        max_mb: size limit in megabytes.

    Returns:
        :class:`Metadata` whose ``table`` is (n_rows, k).

    Raises:
        InputFileError: what to change: too large, not CSV, no columns, row numbers outside
            0..n_rows−1, repeated or not whole, or a line count that is not ``n_rows``.

    >>> m = load_metadata(b"row,site\\n2,paris\\n0,oslo\\n", "m.csv", 3)
    >>> m.table["site"].tolist(), m.keyed
    (['oslo', '', 'paris'], True)
    """
    if not str(name).lower().endswith(".csv"):
        raise InputFileError(f"{name!r}: metadata must be a .csv file with a header line (e.g. row,site,date)")
    check_size(len(data), repr(name), max_mb * 2**20)
    if not data.strip():
        raise InputFileError(f"{name!r} is empty; write a header line and one line per row")
    df = read_csv_limited(data, name)
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise InputFileError(f"{name!r} has a header but no lines; add one line per row")
    row_col = next((c for c in df.columns if c.lower() == ROW_COLUMN), None)
    values = df.drop(columns=[row_col]) if row_col is not None else df
    if values.shape[1] == 0:
        raise InputFileError(f"{name!r} has no metadata column besides '{row_col}'; add columns such as site or date")
    if values.shape[1] > METADATA_MAX_COLUMNS:
        raise InputFileError(f"{name!r} has {values.shape[1]} metadata columns, above the limit of "
                             f"{METADATA_MAX_COLUMNS}; keep the ones you want to colour or search by")
    taken = {c.lower() for c in SAMPLE_COLUMNS}
    values = values.rename(columns={c: f"meta {c}" for c in values.columns if c.lower() in taken})
    if row_col is None:
        if len(df) != n_rows:
            raise InputFileError(
                f"{name!r} has {len(df):,} lines but the features have {n_rows:,} rows; give one line per row, "
                f"in the same order, or add a '{ROW_COLUMN}' column naming the row (0 to {n_rows - 1:,}) of each line")
        table = values.reset_index(drop=True)
        note = f"{len(values.columns)} metadata column(s) from {name}, its lines taken as rows 0 to {n_rows - 1:,} in order"
        return Metadata(_blank_text(table), False, note)
    rows = _whole_numbers(df[row_col], name)
    outside = (rows < 0) | (rows >= n_rows)
    if outside.any():
        raise InputFileError(
            f"{name!r}: {int(outside.sum())} value(s) of '{row_col}' are outside 0 to {n_rows - 1:,} (e.g. "
            f"{int(rows[outside][0])}); rows are numbered from 0, as in the per-input table")
    uniq, counts = np.unique(rows, return_counts=True)
    if (counts > 1).any():
        raise InputFileError(f"{name!r}: row {int(uniq[counts > 1][0])} appears {int(counts.max())} times in "
                             f"'{row_col}'; give each row at most one line")
    table = values.set_axis(rows).reindex(np.arange(n_rows))
    note = (f"{len(values.columns)} metadata column(s) from {name}, matched by its '{row_col}' column: "
            f"{len(rows):,} of {n_rows:,} rows")
    if len(rows) < n_rows:
        note += f" (the other {n_rows - len(rows):,} are blank)"
    return Metadata(_blank_text(table.reset_index(drop=True)), True, note)


def _blank_text(table: pd.DataFrame) -> pd.DataFrame:
    """Text columns with missing cells as "" (shown blank, searched as empty), numbers as they are."""
    out = table.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]):
            out[col] = out[col].astype(object).where(out[col].notna(), "").astype(str)
    return out


def _class_names_of(labels: np.ndarray, class_names: list[str] | None) -> list[str]:
    """(m,) labels → (m,) text: the class name when known, else the label itself."""
    out = []
    for v in labels:
        i = int(v) if isinstance(v, int | np.integer) else None
        out.append(str(class_names[i]) if class_names is not None and i is not None and 0 <= i < len(class_names)
                   else str(v))
    return out


def sample_table(panel: Panel, meta: pd.DataFrame | None = None, *,
                 test_indices: np.ndarray | None = None) -> pd.DataFrame:
    """The per-input table of a panel: one line per measured row, to sort and search by c_i.

    Args:
        panel: the diagnosis (``panel.indices`` (m,) rows of the pair).
        meta: (n, k) metadata of every row of the pair (:attr:`Metadata.table`), or None.
        test_indices: (n,) the dataset's test-split index of each row of the pair (a run's probe),
            or None; a column only when it differs from the row.

    Returns:
        (m, ...) columns ``row`` (the row of the pair: a run's probe row), ``test index`` (when
        given), ``class`` (when labelled), ``c_i``, then the metadata columns; in row order.
    """
    rows = np.asarray(panel.indices, dtype=np.int64)
    table = pd.DataFrame({ROW_COLUMN: rows})
    if test_indices is not None:
        test = np.asarray(test_indices, dtype=np.int64)[rows]
        if not np.array_equal(test, rows):
            table["test index"] = test
    if panel.labels is not None:
        table["class"] = _class_names_of(panel.labels, panel.class_names)
    table["c_i"] = panel.coherence
    if meta is not None:
        if len(meta) < int(rows.max()) + 1:
            raise ValueError(f"the metadata has {len(meta)} rows but the panel uses row {int(rows.max())}")
        picked = meta.iloc[rows].reset_index(drop=True)
        table = pd.concat([table, picked], axis=1)
    return table


def worst_rows(panel: Panel, k: int = 10) -> np.ndarray:
    """(min(k, m),) rows of the pair (``panel.indices`` values, not positions) with the lowest c_i, worst first."""
    order = np.argsort(panel.coherence, kind="stable")[:k]
    return np.asarray(panel.indices, dtype=np.int64)[order]
