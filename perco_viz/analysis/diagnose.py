"""Diagnose a student trained anywhere: load a teacher/student pair of features and compute the
whole quality panel (its figures and HTML report: :mod:`perco_viz.figures.diagnose`).

The pair comes from two embedding files (``.npy`` — memory-mapped when given by path —,
``.npz``, ``.parquet`` or ``.csv``, read through :func:`perco_viz.safe_io.load_array_file`),
from two models run on a dataset, or from a run directory (its teacher probe and a student
snapshot). :func:`compute_panel` measures it at any size, up to millions of rows, and every
number says which rows it describes (:attr:`Panel.scopes`):

* PC and mean c_i on **all** rows: exact up to :data:`EXACT_MAX_ROWS` rows, above that
  estimated from :data:`DEFAULT_TRIPLETS` random triplets with a 95% confidence interval
  (:mod:`perco_viz.estimate`); linear CKA exact on all rows (in blocks of rows).
* c_i (its 10th percentile, the histogram, the table of inputs, the scatter) of a stratified,
  seeded sample of ``max_points`` rows, each c_i over all rows (exact or estimated).
* k-NN accuracy, linear probe, trustworthiness, k-NN overlap (O(m²) for m rows), the rank-agreement
  heatmap and the Shepard diagram on a stratified sub-sample of ``neighbour_points`` rows.

:func:`panel_records` / :func:`panel_table` are its metric table (value, interval, scope);
the page and ``perco-viz diagnose`` both print them. The figures of a panel and the
self-contained HTML report are :mod:`perco_viz.figures.diagnose` (no plotly here).

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
    read_parquet_limited,
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


LARGE_ENTRIES = 20_000_000  # n × d above which float features are kept as they are (a memory map stays one)


def _as_features(x: Any, name: str) -> np.ndarray:
    """(n, d) features: through :func:`perco_viz.checks.check_features` (float64; real, finite,
    within the magnitude limit; a 1-D array is one column), its refusal as an ``InputFileError``.
    A memory-mapped ``.npy`` or a float32/float64 numpy array of more than :data:`LARGE_ENTRIES`
    entries (a million rows) is kept as it is, unread but for the same checks in blocks."""
    if isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype in (np.float32, np.float64) \
            and (isinstance(x, np.memmap) or x.size > LARGE_ENTRIES):
        _check_large(x, name)
        return x
    try:
        return check_features(x, f"the {name}")
    except ValueError as exc:
        raise InputFileError(str(exc)) from None


def _check_large(x: np.ndarray, name: str) -> None:
    """Finite and within the float64 magnitude limit (what the estimator and the blocked CKA
    compute in), read in blocks of rows."""
    import torch

    from perco_viz.checks import magnitude_limit
    from perco_viz.safe_io import check_finite_rows

    top = 0.0
    for start in range(0, len(x), 65_536):  # one pass: the largest |x| (NaN/inf make it non-finite)
        block = np.asarray(x[start:start + 65_536])
        hi, lo = float(np.max(block)), float(np.min(block))
        if not (math.isfinite(hi) and math.isfinite(lo)):
            top = math.inf
            break
        top = max(top, hi, -lo)
    if not math.isfinite(top):
        check_finite_rows(x, f"the {name}")  # names the rows
    limit = magnitude_limit(len(x), x.shape[1], torch.float64)
    if top > limit:
        raise InputFileError(f"the {name} features reach {top:.3g} in absolute value; beyond {limit:.3g}, distances "
                             f"between {len(x)} points of width {x.shape[1]} overflow: rescale them (e.g. divide by "
                             "their standard deviation)")


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
    or a ``.csv``/``.parquet`` with a ``label``/``y`` column (or ``label_column``, or its only column).
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
        elif suffix in (".csv", ".parquet"):
            df = read_csv_limited(data, name) if suffix == ".csv" else read_parquet_limited(data, name)
            col = label_column or next((c for c in df.columns if str(c).lower() in ("label", "y", "labels")), None)
            if col is None and len(df.columns) == 1:
                col = df.columns[0]
            if col not in df.columns:
                raise InputFileError(f"{name!r} has columns {list(df.columns)[:10]}; name the label column 'label'")
            y = df[col].to_numpy()
        else:
            raise InputFileError(f"{name!r}: labels must be a .npy, .npz, .csv or .parquet file")
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
    col_t = label_column if labels_from == "teacher" else None
    col_s = label_column if labels_from == "student" else None
    T, y_t, t_name = _features_file(teacher, teacher_name, col_t)
    S, y_s, s_name = _features_file(student, student_name, col_s)
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


def _features_file(src: Source, name: str | None, label_column: str | None) -> tuple[np.ndarray, Any, str]:
    """Features and labels of one file: a path is read where it lies (a float32 ``.npy`` is
    memory-mapped), bytes or an upload as they are."""
    if isinstance(src, str | Path):
        p = check_file(src, what="array file")
        X, y, _ = load_array_file(p, name=name or p.name, label_column=label_column, mmap=True)
        return X, y, name or p.name
    data, name = _read_bytes(src, name)
    X, y, _ = load_array_file(data, name=name, label_column=label_column)
    return X, y, name


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


def pair_from_model_configs(dataset, teacher, student, *, trust_code: bool = False, cache_dir=None,
                            device=None, source: str = "") -> EmbeddingPair:
    """A teacher and a student, described by config sections, run on ``dataset``'s held-out split.

    Any teacher kind and student arch the engine takes: a built-in, your weights, a Hugging Face
    model folder (``hf``: the layer by module name, the pooling stated), your own ``module:Class``
    with a safetensors state_dict (``module``).

    Args:
        dataset: a :class:`perco_viz.data.Dataset`; its ``X_test`` (n, *input_shape) and ``y_test``.
        teacher: a :class:`perco_viz.config.TeacherConfig`.
        student: a :class:`perco_viz.config.StudentConfig` (weights as they are: a file, or a fresh model).
        trust_code: allow TorchScript files and any ``module:Class`` (else only the modules in
            ``$PERCO_VIZ_TRUSTED_MODULES``); the caller's decision, as in the engine.
        cache_dir: the built-in teacher's cache.
        device: where to compute (``None``: the CPU).
        source: one line on where the pair comes from.

    Returns:
        The pair: teacher (n, d_t), student (n, d_s), the labels, the class names.
    """
    from perco_viz import models

    t_model = models.load_teacher(teacher, dataset, cache_dir=cache_dir, trust_code=trust_code)
    s_model = models.build_student(student, dataset, trust_code=trust_code).eval()
    return pair_from_models(t_model, s_model, dataset.X_test, dataset.y_test, device=device, source=source,
                            class_names=dataset.class_names)


# --------------------------------------------------------------------------- the panel
@dataclass(eq=False)
class Panel:
    """The diagnosis of a pair: numbers on all its rows where they scale, on samples where not.

    Three sets of rows (every number says which it uses: :attr:`scopes`):

    * all ``n_total`` rows: PC and mean c_i (:attr:`pc`: exact when ``n_total`` ≤
      :data:`EXACT_MAX_ROWS`, else estimated from sampled triplets with its interval) and
      linear CKA (exact, read in blocks);
    * the sample, ``indices`` (m,): a stratified, seeded sample of at most ``max_points`` rows
      (all rows when fewer): their c_i (each over all rows: exact, or estimated with an
      interval), the c_i histogram, the per-input table and the embedding scatter;
    * the neighbourhood sample, ``neighbour_indices`` (k,) ⊂ ``indices``: k-NN accuracy, linear
      probe, trustworthiness, k-NN overlap (O(m²) for m rows), the rank-agreement heatmap, the Shepard
      diagram and, when estimated, the 10th percentile of c_i (:attr:`per_sample`: its
      anchors get the most pairs).

    Attributes:
        report: ``{metric key: value}`` (keys of :data:`METRIC_INFO`).
        pc: PC (= mean c_i) as a :class:`perco_viz.estimate.Estimate` (``exact`` or sampled).
        per_sample: c_i of the anchors the 10th percentile is taken over, as a
            :class:`perco_viz.estimate.PerSampleEstimate` (exact: every row; estimated: the
            neighbourhood sample's rows).
        coherence: (m,) c_i of the sample's rows, each over all rows.
        coherence_low: (m,) and ``coherence_high`` (m,): their 95% intervals (== ``coherence``
            when exact).
        agreement: (k, k) rank-agreement matrix A of the neighbourhood sample (NaN diagonal).
        teacher: (k, d_t) and ``student`` (k, d_s): the neighbourhood sample's features (float64).
        labels: (m,) labels of the sample, or ``None``.
        indices: (m,) rows of the pair in the sample (sorted).
        teacher_xy: (m, 2) PCA of the teacher's sample; ``student_xy`` (m, 2) PCA of the
            student's, aligned to the teacher by Procrustes.
        shepard: ``(d_teacher, d_student)``, each (p,), dissimilarities of up to
            ``SHEPARD_PAIRS`` random pairs of the neighbourhood sample.
        n_total: rows of the pair.
        neighbour_indices: (k,) rows of the neighbourhood sample (sorted, within ``indices``).
        neighbour_labels: (k,) their labels, or ``None``.
        scopes: ``{metric key: which rows it describes, in words}``.
        teacher_dim: d_t; ``student_dim``: d_s.
        seed: the seed of every sample.
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
    pc: Any = None
    per_sample: Any = None
    coherence_low: np.ndarray | None = None
    coherence_high: np.ndarray | None = None
    neighbour_indices: np.ndarray | None = None
    neighbour_labels: np.ndarray | None = None
    scopes: dict[str, str] = field(default_factory=dict)
    teacher_dim: int = 0
    student_dim: int = 0
    seed: int = 0
    source: str = ""
    class_names: list[str] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def n_used(self) -> int:
        """Rows of the sample (c_i, the table, the scatter)."""
        return len(self.indices)

    @property
    def n_neighbour(self) -> int:
        """Rows of the neighbourhood sample."""
        return len(self.teacher)

    @property
    def subsampled(self) -> bool:
        """Whether some number uses fewer rows than the pair has."""
        return self.n_neighbour < self.n_total or self.n_used < self.n_total

    @property
    def estimated(self) -> bool:
        """Whether PC and c_i are estimated from samples (else exact)."""
        return self.pc is not None and not self.pc.exact

    def scope(self) -> str:
        """Two sentences on which rows the numbers describe."""
        n = self.n_total
        how = "stratified by label" if self.labels is not None else "uniformly at random"
        if self.estimated:
            first = (f"PC and mean c_i are estimated on all {n:,} rows from random triplets "
                     f"({interval_words(self.pc)}: the interval is beside each); linear CKA is exact on all rows.")
        else:
            first = f"PC, mean c_i and linear CKA are exact on all {n:,} rows."
        if not self.subsampled:
            return first + " Every other number is exact on all rows too."
        parts = [first]
        if self.n_used < n:
            each = ("estimated on all rows" if self.estimated else "exact on all rows")
            parts.append(f"c_i is shown for a sample of {self.n_used:,} of the {n:,} rows ({how}, seed {self.seed}; "
                         f"each c_i {each}).")
        if self.n_neighbour < n:
            parts.append(f"The neighbourhood metrics, the heatmap and the Shepard diagram use a sample of "
                         f"{self.n_neighbour:,} of the {n:,} rows ({how}, seed {self.seed}): they cost O(n²).")
        return " ".join(parts)


EXACT_MAX_ROWS = 3000  # up to this many rows, PC and c_i are exact (O(n² log n), about a second); above, estimated
DEFAULT_TRIPLETS = 1_000_000  # triplets of the PC estimate: its 95% interval is about ±0.001
PAIR_BUDGET = 2_000_000  # pairs (j, k) for all the sampled anchors' c_i together (2,000 anchors: 1,000 each) ...
MIN_PAIRS, MAX_PAIRS = 500, 2000  # ... and per anchor: ±0.02 (2,000 pairs) to ±0.045 (500 pairs) at 95%
MIN_VIEW_PAIRS = 50  # pairs per anchor of the rest of a large sample (the scatter's colour, the table): ±0.14
DEFAULT_NEIGHBOUR_POINTS = 2000  # rows of the neighbourhood metrics (k-NN, probe, trustworthiness, overlap)
MAX_NEIGHBOUR_POINTS = 10_000  # their largest sample (O(m²) memory for m rows: 10,000 take about 2.4 GB)
MAX_POINTS = 100_000  # largest sample of c_i and of the scatter


def interval_words(estimate) -> str:
    """``"95% CI, 10⁶ triplets"``: the parenthesis of :meth:`perco_viz.estimate.Estimate.text`."""
    return estimate.text().rsplit(" (", 1)[1].rstrip(")")


def pairs_per_anchor(m: int) -> int:
    """Pairs sampled for each of ``m`` anchors' c_i: :data:`PAIR_BUDGET` shared, clipped to
    [:data:`MIN_PAIRS`, :data:`MAX_PAIRS`]."""
    return int(min(MAX_PAIRS, max(MIN_PAIRS, PAIR_BUDGET // max(m, 1))))


def view_pairs_per_anchor(m: int) -> int:
    """Pairs sampled for each of ``m`` further rows of the sample (beyond the neighbourhood
    sample): :data:`PAIR_BUDGET` shared, clipped to [:data:`MIN_VIEW_PAIRS`, :data:`MAX_PAIRS`]."""
    return int(min(MAX_PAIRS, max(MIN_VIEW_PAIRS, PAIR_BUDGET // max(m, 1))))


def subsample_indices(n: int, labels: np.ndarray | None, max_points: int, seed: int = 0) -> np.ndarray:
    """(min(n, max_points),) sorted row indices, stratified by label when there are labels."""
    from perco_viz.analysis.projection import stratified_subsample

    if max_points < MIN_ROWS:
        raise ValueError(f"max_points must be at least {MIN_ROWS}, got {max_points}")
    return stratified_subsample(labels, n, max_points, seed=seed)


def _float64_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.asarray(x[rows], dtype=np.float64)


def compute_panel(pair: EmbeddingPair, *, max_points: int = DEFAULT_MAX_POINTS, seed: int = 0, k: int = 5,
                  trust_k: int = 10, metric: str = "euclidean", neighbour_points: int | None = None,
                  n_triplets: int = DEFAULT_TRIPLETS, n_pairs: int | None = None,
                  exact_max: int = EXACT_MAX_ROWS) -> Panel:
    """The whole quality panel of a pair, at any size (the one function the page and
    ``perco-viz diagnose`` call: the same numbers for the same pair and seed).

    * PC and mean c_i on all n rows: exact (:func:`perco_viz.coherence.per_sample_coherence`,
      PC = its mean) when n ≤ ``exact_max``, else
      :func:`perco_viz.estimate.estimate_perception_coherence` with ``n_triplets`` seeded
      triplets and its 95% Wilson interval.
    * c_i of a stratified, seeded sample of ``max_points`` rows (each c_i over all n rows:
      exact, or :func:`perco_viz.estimate.estimate_per_sample_coherence` with
      :func:`pairs_per_anchor` pairs and an interval each); the 10th percentile of c_i is
      taken over these rows.
    * k-NN accuracy, linear probe, trustworthiness and k-NN overlap
      (:func:`perco_viz.metrics.neighbourhood_scores`), rank agreement and the Shepard pairs on a
      stratified sub-sample of ``neighbour_points`` of those rows.
    * Linear CKA exact on all rows (:func:`perco_viz.metrics.linear_cka`, in blocks when large).

    Args:
        pair: teacher and student features of the same rows (float32 memory maps welcome).
        max_points: rows of the sample (c_i, table, scatter), at most :data:`MAX_POINTS`.
        seed: seed of every sample (rows, triplets, pairs).
        k: neighbours of the k-NN classifier.
        trust_k: neighbourhood size of trustworthiness and k-NN overlap.
        metric: dissimilarity of the coherence scores.
        neighbour_points: rows of the neighbourhood sample (default
            ``min(max_points, DEFAULT_NEIGHBOUR_POINTS)``; at most :data:`MAX_NEIGHBOUR_POINTS`).
        n_triplets: triplets of the PC estimate.
        n_pairs: pairs per sampled anchor of the c_i estimates (default :func:`pairs_per_anchor`).
        exact_max: largest n computed exactly.

    Returns:
        A :class:`Panel`. When n ≤ ``exact_max`` and n ≤ both sample sizes, ``panel.report``
        equals ``student_report(student, teacher, labels)`` of all rows.
    """
    from perco_viz.analysis.projection import student_projection, teacher_projection
    from perco_viz.analysis.rank_agreement import shepard_pairs
    from perco_viz.coherence import per_sample_coherence, rank_agreement
    from perco_viz.estimate import (
        Estimate,
        PerSampleEstimate,
        estimate_per_sample_coherence,
        estimate_perception_coherence,
    )
    from perco_viz.metrics import linear_cka, neighbourhood_scores

    if not MIN_ROWS <= max_points <= MAX_POINTS:
        raise ValueError(f"max_points must be between {MIN_ROWS} and {MAX_POINTS:,}, got {max_points}")
    if neighbour_points is None:
        neighbour_points = min(max_points, DEFAULT_NEIGHBOUR_POINTS)
    if not MIN_ROWS <= neighbour_points <= MAX_NEIGHBOUR_POINTS:
        raise ValueError(f"neighbour_points must be between {MIN_ROWS} and {MAX_NEIGHBOUR_POINTS:,}, "
                         f"got {neighbour_points}")
    seconds: dict[str, float] = {}
    n = pair.n
    labels = pair.labels
    if labels is not None and len(np.unique(labels)) < 2:
        labels = None  # one class: nothing to classify
    idx = subsample_indices(n, pair.labels, max_points, seed)
    y = None if labels is None else labels[idx]
    # the neighbourhood sample: a stratified sample of the sample's rows
    sub = subsample_indices(len(idx), y, min(neighbour_points, len(idx)), seed)
    nb_idx = idx[sub]
    y_nb = None if y is None else y[sub]

    start = time.perf_counter()
    if n <= exact_max:
        s_all, t_all = _float64_rows(pair.student, np.arange(n)), _float64_rows(pair.teacher, np.arange(n))
        c_all = per_sample_coherence(s_all, t_all, metric=metric)  # (n,): PC is its mean
        pc = Estimate.of_exact(float(c_all.mean()), n)
        per_sample = PerSampleEstimate.of_exact(np.arange(n), c_all, n)
        p10 = float(np.percentile(c_all, 10))  # exact: over every row
        c = c_all[idx]
        c_low, c_high = c, c
    else:
        pc = estimate_perception_coherence(pair.student, pair.teacher, n_triplets=n_triplets, metric=metric,
                                           seed=seed)
        seconds["pc"] = time.perf_counter() - start
        # the neighbourhood sample's anchors: the most pairs each, the 10th percentile over them
        per_sample = estimate_per_sample_coherence(
            pair.student, pair.teacher, nb_idx, n_pairs=n_pairs or pairs_per_anchor(len(nb_idx)), metric=metric,
            seed=seed + 1)
        p10 = float(np.percentile(per_sample.value, 10))
        c, c_low, c_high = (np.empty(len(idx)) for _ in range(3))
        pos = np.searchsorted(idx, nb_idx)
        c[pos], c_low[pos], c_high[pos] = per_sample.value, per_sample.low, per_sample.high
        rest = np.setdiff1d(np.arange(len(idx)), pos)
        if len(rest):  # the rest of a large sample (the scatter, the table): fewer pairs each
            more = estimate_per_sample_coherence(
                pair.student, pair.teacher, idx[rest], n_pairs=n_pairs or view_pairs_per_anchor(len(rest)),
                metric=metric, seed=seed + 2)
            c[rest], c_low[rest], c_high[rest] = more.value, more.low, more.high
    seconds["coherence"] = time.perf_counter() - start
    report = {"pc": float(pc.value), "coherence_mean": float(pc.value), "coherence_p10": p10}

    start = time.perf_counter()
    t_nb, s_nb = _float64_rows(pair.teacher, nb_idx), _float64_rows(pair.student, nb_idx)
    report.update(neighbourhood_scores(s_nb, t_nb, y_nb, k=k, trust_k=trust_k))
    seconds["neighbourhoods"] = time.perf_counter() - start
    start = time.perf_counter()
    report["cka"] = linear_cka(pair.student, pair.teacher)
    seconds["cka"] = time.perf_counter() - start
    report = {key: report[key] for key in METRIC_INFO if key in report}  # the table's order

    start = time.perf_counter()
    agreement = rank_agreement(s_nb, t_nb, metric=metric)
    shepard = shepard_pairs(s_nb, t_nb, max_pairs=SHEPARD_PAIRS, seed=seed)  # Euclidean, as the figure says
    seconds["ranks"] = time.perf_counter() - start
    start = time.perf_counter()
    t_s, s_s = _float64_rows(pair.teacher, idx), _float64_rows(pair.student, idx)
    t_xy = teacher_projection(t_s, method="pca", dim=2)  # a 1-column input: its centred values and zeros
    s_xy = student_projection(s_s, t_xy, method="pca")
    del t_s, s_s
    seconds["projection"] = time.perf_counter() - start

    panel = Panel(report, c, agreement, t_nb, s_nb, y, idx, t_xy, s_xy, shepard, n, pc=pc, per_sample=per_sample,
                  coherence_low=c_low, coherence_high=c_high,
                  neighbour_indices=nb_idx, neighbour_labels=y_nb, teacher_dim=int(pair.teacher.shape[1]),
                  student_dim=int(pair.student.shape[1]), seed=seed, source=pair.source,
                  class_names=pair.class_names, seconds=seconds)
    panel.scopes = _scopes(panel, labels is not None)
    return panel


def _scopes(panel: Panel, labelled: bool) -> dict[str, str]:
    """Which rows each metric of ``panel.report`` describes, in words."""
    n, nb = panel.n_total, panel.n_neighbour
    everything = f"exact on all {n:,} rows"
    if panel.estimated:
        pc = f"estimated on all {n:,} rows, {interval_words(panel.pc)}"
    else:
        pc = everything
    if panel.estimated:
        p10 = (f"estimated: c_i of {len(panel.per_sample):,} sampled rows, each on all {n:,} rows from "
               f"{panel.per_sample.n_pairs:,} pairs")
    else:
        p10 = everything
    how = "stratified by label" if labelled else "uniform"
    neighbours = everything if nb == n else f"on a sample of {nb:,} rows, {how}"
    scopes = {"pc": pc, "coherence_mean": pc, "coherence_p10": p10, "knn_acc": neighbours, "linear_acc": neighbours,
              "trustworthiness": neighbours, "knn_overlap": neighbours, "cka": everything}
    return {key: scopes[key] for key in panel.report}


def value_text(panel: Panel, key: str) -> str:
    """A metric's value as shown everywhere: ``0.912 ± 0.002`` for an estimate (the larger
    distance to an end of its interval, as :meth:`perco_viz.estimate.Estimate.text` rounds it),
    else :func:`format_value`."""
    if key in ("pc", "coherence_mean") and panel.estimated:
        return panel.pc.text().rsplit(" (", 1)[0]  # the estimator's own rounding: "0.912 ± 0.002"
    return format_value(key, panel.report[key])


def panel_records(panel: Panel) -> list[dict[str, Any]]:
    """One record per metric of the panel, in :data:`METRIC_INFO` order: ``key``, ``label``,
    ``value``, ``low``/``high`` (the interval; ``None`` unless estimated), ``text`` (as shown),
    ``scope`` (which rows), ``help``. What the table, the report, the CLI and ``--json`` print."""
    records = []
    for key, value in panel.report.items():
        est = panel.pc if key in ("pc", "coherence_mean") and panel.estimated else None
        records.append({"key": key, "label": METRIC_INFO[key].label, "value": float(value),
                        "low": None if est is None else float(est.low),
                        "high": None if est is None else float(est.high),
                        "text": value_text(panel, key), "scope": panel.scopes.get(key, ""),
                        "help": METRIC_INFO[key].help})
    return records


def panel_table(panel: Panel) -> pd.DataFrame:
    """The metric table: one row per metric of the report (card order), with its value, the rows it
    was computed on and its meaning."""
    by_key = {r["key"]: r for r in panel_records(panel)}
    rows = [{"metric": by_key[key]["label"], "value": by_key[key]["text"], "computed on": by_key[key]["scope"],
             "what it measures": by_key[key]["help"]}
            for key in CARD_ORDER if key in by_key]
    return pd.DataFrame(rows)


def panel_lines(panel: Panel) -> list[str]:
    """One line per metric, as ``perco-viz diagnose`` prints them:
    ``PC (perception coherence)    0.912 ± 0.002    (estimated on all 1,000,000 rows, 95% CI, 10⁶ triplets)``."""
    return [f"{r['label']:<27}  {r['text']:<15}  ({r['scope']})" for r in panel_records(panel)]


def panel_json(panel: Panel) -> dict[str, Any]:
    """The panel as plain JSON data: the rows and samples, every metric's record
    (:func:`panel_records`), the PC estimate and the seconds of each part."""
    pc = panel.pc
    return {
        "n_rows": panel.n_total, "teacher_dim": panel.teacher_dim, "student_dim": panel.student_dim,
        "labelled": panel.labels is not None, "seed": panel.seed, "source": panel.source,
        "sample_rows": panel.n_used, "neighbour_rows": panel.n_neighbour, "scope": panel.scope(),
        "pc": None if pc is None else {"value": pc.value, "low": pc.low, "high": pc.high, "n_triplets": pc.n_triplets,
                                       "confidence": pc.confidence, "method": pc.method},
        "p10_anchors": None if panel.per_sample is None else len(panel.per_sample),
        "p10_pairs_per_anchor": None if panel.per_sample is None else int(panel.per_sample.n_pairs),
        "metrics": {r["key"]: {k: v for k, v in r.items() if k != "key"} for r in panel_records(panel)},
        "seconds": dict(panel.seconds),
    }


# --------------------------------------------------------------------------- per-input table & metadata
ROW_COLUMN = "row"
METADATA_MAX_MB = 20
METADATA_MAX_COLUMNS = 64
# columns of the per-input table: a metadata column of the same name is renamed "meta <name>"
SAMPLE_COLUMNS: tuple[str, ...] = (ROW_COLUMN, "test index", "class", "c_i", "c_i ±", "tags")


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
        given), ``class`` (when labelled), ``c_i``, ``c_i ±`` (the half-width of its 95%
        interval, when estimated), then the metadata columns; in row order.
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
    if panel.estimated and panel.coherence_low is not None:  # each c_i is an estimate: its 95% half-width
        table["c_i ±"] = np.maximum(panel.coherence_high - panel.coherence, panel.coherence - panel.coherence_low)
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
