"""The Embeddings page's data, as plain functions: aligned projections of a run's snapshots, the
rows drawn (and the subsampling note), the colouring and hover text of each point, the table of a
selection and the downloadable embedding table.

Data in, arrays/tables/bytes out; no plotly (the figures are in :mod:`perco_viz.figures.embeddings`),
no Streamlit (the page's widgets are in ``ui/embeddings.py``).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> teacher = rng.normal(size=(50, 6))
>>> students = [rng.normal(size=(50, 3)) for _ in range(3)]
>>> proj = aligned_projections(teacher, students, "pca", 2)
>>> proj.teacher.shape, proj.students.shape
((50, 2), (3, 50, 2))
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from perco_viz.analysis import projection
from perco_viz.analysis.projection import METHODS

METHOD_LABELS = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
AXIS_PREFIX = {"pca": "PC", "umap": "UMAP", "tsne": "t-SNE"}
MAX_POINTS = 100_000  # every point drawn up to this many (WebGL); beyond it a stated stratified subsample
ANIMATION_MAX_POINTS = 20_000
"""The downloadable animation (every snapshot in one HTML file) draws at most this many points, a
stratified sample: k frames of 100,000 points make a file of k × ~3 MB that a browser replays slowly."""
COLOR_LABEL = "label"
COLOR_COHERENCE = "coherence"


# ----------------------------------------------------------------------------- projections


@dataclass
class AlignedProjections:
    """A run's projections, all in one frame of reference.

    Attributes:
        method: ``pca``, ``umap`` or ``tsne``.
        dim: 2 or 3.
        teacher: (n, dim) the teacher's projection.
        students: (k, n, dim) the student at each snapshot, each aligned to the one before and
            the whole sequence rotated into the teacher's orientation.
        seconds: wall time of the computation.
        n_fit: rows UMAP/t-SNE were fitted on (the others placed); ``None``: every row.
    """

    method: str
    dim: int
    teacher: np.ndarray
    students: np.ndarray
    seconds: float = 0.0
    n_fit: int | None = None

    @property
    def note(self) -> str | None:
        """``"UMAP fitted on 10,000 of 100,000 points; the others placed by UMAP's transform"``, or
        ``None`` when every point was fitted (:func:`perco_viz.analysis.projection.fit_note`)."""
        n = len(self.teacher)
        return projection.fit_note(self.method, n if self.n_fit is None else self.n_fit, n)

    def ranges(self) -> dict[str, list[tuple[float, float]]]:
        """Padded axis ranges ``{"teacher": [(lo, hi)] * dim, "student": ...}`` fixed over all snapshots."""
        return {"teacher": _ranges(self.teacher[None]), "student": _ranges(self.students)}


def _ranges(x: np.ndarray) -> list[tuple[float, float]]:
    """(k, n, dim) -> per-axis (lo, hi) with 5 % padding."""
    flat = x.reshape(-1, x.shape[-1])
    lo, hi = np.nanmin(flat, axis=0), np.nanmax(flat, axis=0)
    pad = 0.05 * np.maximum(hi - lo, 1e-9)
    return [(float(a), float(b)) for a, b in zip(lo - pad, hi + pad)]


def aligned_projections(
    teacher: np.ndarray,
    students: Sequence[np.ndarray],
    method: str = "pca",
    dim: int = 2,
    *,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    labels: np.ndarray | None = None,
    fit_points: int | None = None,
) -> AlignedProjections:
    """Project the teacher and every student snapshot, aligned across epochs and to the teacher.

    The teacher: :func:`~perco_viz.analysis.projection.teacher_projection`. The student sequence:
    :func:`~perco_viz.analysis.projection.project_sequence` (points do not jump between epochs).
    Each frame is centred and scaled to the teacher's spread (coherence ignores scale), then one
    rotation, fitted from the last snapshot to the teacher's projection
    (:func:`~perco_viz.analysis.projection.align` with ``scale=False``), is applied to the whole
    sequence: the student is drawn in the teacher's orientation and stays continuous in time.

    Args:
        teacher: (n, d_t) teacher features on the probe set.
        students: k arrays (n, d_s), the student at each snapshot, in order.
        method: ``pca``, ``umap`` or ``tsne``.
        dim: 2 or 3.
        seed: fixes UMAP/t-SNE.
        progress: called as ``progress(done, total)`` while it works.
        labels: (n,) classes the UMAP/t-SNE fit sample keeps the shares of (large sets).
        fit_points: the most rows UMAP/t-SNE are fitted on, the rest placed (default
            :data:`perco_viz.analysis.projection.FIT_POINTS`); the same rows for the teacher and
            every snapshot.

    Returns:
        :class:`AlignedProjections` with teacher (n, dim), students (k, n, dim) and ``n_fit``.
    """
    if method not in METHODS:
        raise ValueError(f"projection method must be one of {METHODS}, got {method!r}")
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    if not len(students):
        raise ValueError("no student snapshots to project")
    n = len(teacher)
    if any(len(s) != n for s in students):
        raise ValueError(f"every snapshot must have the teacher's {n} probe rows")
    start = time.perf_counter()
    total = len(students) + 1
    fit = {"labels": labels, "fit_points": fit_points}
    t_xy = projection.teacher_projection(teacher, method=method, dim=dim, seed=seed, **fit)
    if progress is not None:
        progress(1, total)
    step = None if progress is None else (lambda done, k: progress(1 + done, 1 + k))
    xs = [projection.pad_columns(s, dim) for s in students]
    seq = projection.project_sequence(xs, method, dim=dim, seed=seed, progress=step, **fit)
    seq = np.stack([np.asarray(s, dtype=np.float64) for s in seq])  # (k, n, dim)
    k = len(seq)
    seq = _unit_spread(seq) * _rms(t_xy - t_xy.mean(axis=0))  # each frame at the teacher's spread
    turned = projection.align(seq.reshape(k * n, dim), np.tile(t_xy, (k, 1)),
                              fit_rows=np.arange((k - 1) * n, k * n), scale=False)  # fitted on the last frame
    seq = turned.reshape(k, n, dim)
    if progress is not None:
        progress(total, total)
    return AlignedProjections(method, dim, t_xy, seq, seconds=time.perf_counter() - start,
                              n_fit=projection.fit_size(n, method, fit_points))


def run_projections(path: str, method: str, dim: int, rows_key: tuple[int, int | None, int], *,
                    progress: Callable[[int, int], None] | None = None) -> AlignedProjections:
    """:func:`aligned_projections` of a run directory's displayed rows, read from disk.

    Args:
        path: run directory.
        method: ``pca``, ``umap`` or ``tsne``; dim: 2 or 3.
        rows_key: ``(n_total, max_points, seed)`` of :func:`display_rows` (the rows drawn).
        progress: optional ``progress(done, total)``.
    """
    from perco_viz.runs import RunDir

    run = RunDir(path)
    probe = run.teacher_probe()
    rows, _ = display_rows(probe.get("labels"), rows_key[0], rows_key[1], seed=rows_key[2])
    students = [run.load_snapshot(i).student[rows] for i in run.snapshot_indices()]
    labels = probe.get("labels")
    return aligned_projections(probe["features"][rows], students, method, dim, seed=0, progress=progress,
                               labels=None if labels is None else labels[rows])


def _rms(x: np.ndarray) -> float:
    """Root-mean-square distance of (n, d) centred points from the origin (1 when degenerate)."""
    r = float(np.sqrt((x**2).sum(axis=-1).mean()))
    return r if r > 0 else 1.0


def _unit_spread(seq: np.ndarray) -> np.ndarray:
    """(k, n, d) frames, each centred and scaled to unit RMS radius: the student's scale carries
    no meaning for coherence, and a frame that shrinks or grows would hide its shape."""
    centred = seq - seq.mean(axis=1, keepdims=True)
    return np.stack([f / _rms(f) for f in centred])


# ----------------------------------------------------------------------------- rows shown


def display_rows(labels: np.ndarray | None, n: int, max_points: int = MAX_POINTS,
                 seed: int = 0) -> tuple[np.ndarray, str | None]:
    """Which probe rows to draw, and the note to show when not all of them are.

    Args:
        labels: (n,) class labels (the subsample keeps their proportions) or ``None``.
        n: number of probe rows.
        max_points: most points drawn.
        seed: fixes the subsample.

    Returns:
        ``(rows, note)``: (m,) sorted row indices, m = min(n, max_points), and ``None`` or
        e.g. ``"showing 100,000 of 250,000 points, stratified by class"``.
    """
    if n <= max_points:
        return np.arange(n), None
    rows = np.sort(projection.stratified_subsample(labels, n, max_points, seed=seed))
    return rows, subsample_note(len(rows), n, stratified=labels is not None)


def subsample_note(shown: int, total: int, *, stratified: bool = True) -> str | None:
    """``"showing 100,000 of 250,000 points, stratified by class"``; ``None`` when all are shown."""
    if shown >= total:
        return None
    how = "stratified by class" if stratified else "drawn at random"
    return f"showing {shown:,} of {total:,} points, {how}"


# ----------------------------------------------------------------------------- colour & hover


def color_options(has_labels: bool, meta_columns: Sequence[str] = ()) -> dict[str, str]:
    """Colour-by choices: key → label shown in the select box."""
    opts = {}
    if has_labels:
        opts[COLOR_LABEL] = "label"
    opts[COLOR_COHERENCE] = "coherence c_i"
    for col in meta_columns:
        opts[f"meta:{col}"] = f"metadata: {col}"
    return opts


@dataclass
class Coloring:
    """How points are coloured.

    Attributes:
        kind: ``"label"`` (categories: one legend entry each) or ``"continuous"`` (a colour bar).
        values: (m,) category codes or numbers, one per drawn point.
        title: legend / colour-bar title.
        names: category names by code (``label``).
        range: (lo, hi) of the colour bar; ``None`` = the data's range.
        colorscale: plotly colour scale; ``None`` = the figures' c_i scale (low = red).
    """

    kind: str
    values: np.ndarray
    title: str
    names: list[str] | None = None
    range: tuple[float, float] | None = None
    colorscale: object = None


def coloring(key: str, *, labels: np.ndarray | None = None, class_names: Sequence[str] | None = None,
             coherence: np.ndarray | None = None, meta: pd.DataFrame | None = None) -> Coloring:
    """Build the colouring for a colour-by choice of :func:`color_options`.

    Args:
        key: ``"label"``, ``"coherence"`` or ``"meta:<column>"``.
        labels: (m,) int labels of the drawn points.
        class_names: names by label.
        coherence: (m,) c_i in [0, 1].
        meta: metadata rows aligned with the drawn points.
    """
    if key == COLOR_LABEL:
        if labels is None:
            raise ValueError("this run has no labels to colour by")
        labels = np.asarray(labels).astype(np.int64)
        return Coloring("label", labels, "class", list(class_names) if class_names is not None else None)
    if key == COLOR_COHERENCE:
        if coherence is None:
            raise ValueError("no per-sample coherence to colour by")
        return Coloring("continuous", np.asarray(coherence, dtype=np.float64), "c_i", range=(0.0, 1.0))
    if key.startswith("meta:"):
        col = key[5:]
        if meta is None or col not in meta.columns:
            raise ValueError(f"no metadata column {col!r} in this dataset")
        series = meta[col]
        if pd.api.types.is_numeric_dtype(series) and series.nunique() > 12:
            return Coloring("continuous", series.to_numpy(dtype=np.float64), col, colorscale="Viridis")
        cats = pd.Categorical(series.astype(str))
        return Coloring("label", cats.codes.astype(np.int64), col, [str(c) for c in cats.categories])
    raise ValueError(f"unknown colour-by choice {key!r}")


def _class_text(labels: np.ndarray, class_names: Sequence[str] | None) -> np.ndarray:
    """(k,) labels → (k,) names (the label itself when it has no name)."""
    names = list(class_names) if class_names is not None else []
    return np.array([names[v] if 0 <= v < len(names) else str(v) for v in np.asarray(labels, dtype=np.int64)],
                    dtype=object)


@dataclass
class Hover:
    """What each point's tooltip shows, without building one string per point (100,000 points:
    a tenth of the time and about half the figure's bytes of one string per point).

    Attributes:
        values: (m, c) float32 numbers (float64 when an index passes 2²⁴), one row per drawn point:
            plotly ``customdata`` columns 1..c (column 0 is the point id).
        template: plotly hovertemplate lines showing them, e.g. ``"test #%{customdata[1]:d}"``.
        text: (m,) short strings of the categorical fields (class, text metadata) or ``None``,
            shown by ``%{text}`` in ``template``.
    """

    values: np.ndarray
    template: str
    text: np.ndarray | None = None

    def take(self, idx: np.ndarray) -> Hover:
        """The fields of the points at positions ``idx`` ((k,) ints)."""
        return Hover(self.values[idx], self.template, None if self.text is None else self.text[idx])


def hover_fields(rows: np.ndarray, *, test_indices: np.ndarray | None = None, labels: np.ndarray | None = None,
                 class_names: Sequence[str] | None = None, coherence: np.ndarray | None = None,
                 meta: pd.DataFrame | None = None) -> Hover:
    """The tooltip fields of the drawn points as numbers + one template (:class:`Hover`): the
    page's hover at 100,000 points: the test index, the class, c_i and the first 4 metadata columns.

    Args:
        rows: (m,) probe rows drawn; the other arrays are indexed by probe row.
        test_indices: (n,) index of each probe row in the test split.
        labels: (n,) labels; class_names: names by label.
        coherence: (n,) c_i.
        meta: (n rows) metadata (its first 4 columns are shown).

    Returns:
        :class:`Hover` with ``values`` (m, c), ``template`` and ``text`` (m,) or None.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols: list[np.ndarray] = []
    lines: list[str] = []
    texts: list[np.ndarray] = []

    def number(values: np.ndarray, prefix: str, fmt: str) -> None:  # one customdata column, one line
        cols.append(np.asarray(values, dtype=np.float64))
        lines.append(f"{prefix}%{{customdata[{len(cols)}]:{fmt}}}")

    def category(values: np.ndarray) -> None:
        texts.append(np.asarray(values, dtype=object))

    if test_indices is not None:
        number(np.asarray(test_indices)[rows], "test #", "d")
    if labels is not None:
        category("class " + _class_text(np.asarray(labels)[rows], class_names))
    if coherence is not None:
        number(np.asarray(coherence, dtype=np.float64)[rows], "c_i ", ".3f")
    if meta is not None:
        for col in list(meta.columns)[:4]:
            vals = meta[col].to_numpy()[rows]
            name = str(col).replace("{", "(").replace("}", ")")
            if np.issubdtype(vals.dtype, np.number) and not np.issubdtype(vals.dtype, np.complexfloating):
                number(vals, f"{name} ", ".4g")
            else:
                cats = pd.Categorical(pd.Series(vals).astype(str))
                names = np.asarray([f"{name} {c}" for c in cats.categories], dtype=object)
                category(names[cats.codes])
    template = "<br>".join(lines + (["%{text}"] if texts else []))
    text = None
    if texts:
        text = texts[0]
        for t in texts[1:]:
            text = text + "<br>" + t
    wide = any(np.abs(c[np.isfinite(c)]).max(initial=0) > 2**24 for c in cols)
    values = (np.column_stack(cols) if cols else np.zeros((len(rows), 0))).astype(np.float64 if wide else np.float32)
    return Hover(values, template, text)


def selection_table(rows: np.ndarray, *, test_indices: np.ndarray | None = None, labels: np.ndarray | None = None,
                    class_names: Sequence[str] | None = None, coherence: np.ndarray | None = None,
                    meta: pd.DataFrame | None = None, meta_columns: int | None = 4) -> pd.DataFrame:
    """The probe rows ``rows`` as a table: the selection's (vector data: no thumbnails), or every
    point's — the table the page's search runs over (``rows = arange(n)``, ``meta_columns=None``).

    Args:
        rows: (k,) probe rows; the other arrays are indexed by probe row.
        test_indices: (n,); labels: (n,); class_names: names by label; coherence: (n,) c_i;
        meta: (n rows) metadata.
        meta_columns: how many metadata columns to keep (``None``: all).

    Returns:
        (k rows) ``probe row``, ``test index``, ``class``, ``c_i`` (those given) and the metadata columns.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols: dict[str, object] = {"probe row": rows}
    if test_indices is not None:
        cols["test index"] = np.asarray(test_indices)[rows]
    if labels is not None:
        cols["class"] = _class_text(np.asarray(labels)[rows], class_names)
    if coherence is not None:
        cols["c_i"] = np.asarray(coherence, dtype=np.float64)[rows]
    df = pd.DataFrame(cols)
    if meta is not None:
        for c in list(meta.columns)[:meta_columns]:
            if str(c) not in df.columns:  # a metadata column never hides the page's own
                df[str(c)] = meta[c].to_numpy()[rows]
    return df


NEIGHBOURS_K = 8  # the page's default number of nearest neighbours


def nearest_neighbours(teacher: np.ndarray, student: np.ndarray, row: int, k: int = NEIGHBOURS_K, *,
                       metric: str = "euclidean", teacher_metric: str | None = None,
                       labels: np.ndarray | None = None) -> dict[str, pd.DataFrame]:
    """The ``k`` nearest neighbours of one point by the teacher and by the student, in their full
    feature spaces (not the 2-D projection): :func:`perco_viz.analysis.rank_agreement.anchor_neighbours`
    split into the two lists shown side by side.

    Args:
        teacher: (n, d_t) teacher features; student: (n, d_s) student features, same rows.
        row: the point (probe row), 0 ≤ row < n.
        k: neighbours per list (at most n − 1).
        metric: the student's dissimilarity (and the teacher's unless ``teacher_metric``).
        labels: (n,) optional labels.

    Returns:
        ``{"teacher": df, "student": df}``, each (k rows), nearest first, with columns ``rank``
        (1 = nearest on this side), ``point`` (probe row), ``other_rank`` (its rank on the other
        side), ``label`` (None without labels) and ``shared`` (also among the other side's k nearest).
    """
    from perco_viz.analysis.rank_agreement import anchor_neighbours

    table = anchor_neighbours(student, teacher, int(row), k=k, metric=metric, teacher_metric=teacher_metric,
                              labels=labels)
    shared = (table["in_teacher_top_k"] & table["in_student_top_k"]).to_numpy()
    out = {}
    for side, other in (("teacher", "student"), ("student", "teacher")):
        part = table.assign(shared=shared)[table[f"in_{side}_top_k"]].sort_values(f"{side}_rank", kind="stable")
        out[side] = pd.DataFrame({"rank": part[f"{side}_rank"].to_numpy(), "point": part["point"].to_numpy(),
                                  "other_rank": part[f"{other}_rank"].to_numpy(), "label": part["label"].to_numpy(),
                                  "shared": part["shared"].to_numpy(dtype=bool)})
    return out


def neighbour_list_table(part: pd.DataFrame, side: str, *, class_names: Sequence[str] | None = None,
                         coherence: np.ndarray | None = None) -> pd.DataFrame:
    """One list of :func:`nearest_neighbours` as a table to show (vector data: no thumbnails).

    Args:
        part: ``nearest_neighbours(...)[side]`` (k rows).
        side: ``"teacher"`` or ``"student"`` (names the other side's rank column).
        class_names: names by label; coherence: (n,) c_i by probe row (a column when given).

    Returns:
        (k rows) ``rank``, ``input`` (probe row), ``class`` (with labels), ``c_i`` (when given),
        ``rank by the <other side>`` and ``in both lists`` (bool).
    """
    other = {"teacher": "student", "student": "teacher"}[side]
    cols: dict[str, object] = {"rank": part["rank"].to_numpy(), "input": part["point"].to_numpy()}
    if part["label"].notna().all() and len(part):
        cols["class"] = _class_text(part["label"].to_numpy(dtype=np.int64), class_names)
    if coherence is not None:
        cols["c_i"] = np.asarray(coherence, dtype=np.float64)[part["point"].to_numpy(dtype=np.int64)]
    cols[f"rank by the {other}"] = part["other_rank"].to_numpy()
    cols["in both lists"] = part["shared"].to_numpy(dtype=bool)
    return pd.DataFrame(cols)

# ----------------------------------------------------------------------------- table & downloads


def embedding_table(proj: AlignedProjections, snapshot_pos: int, *, student_features: np.ndarray,
                    coherence: np.ndarray, labels: np.ndarray | None = None,
                    class_names: Sequence[str] | None = None, test_indices: np.ndarray | None = None,
                    meta: pd.DataFrame | None = None, epoch: float | None = None,
                    probe_rows: np.ndarray | None = None) -> pd.DataFrame:
    """One row per probe point: projections, raw student features, label and c_i.

    Args:
        proj: the aligned projections.
        snapshot_pos: position of the snapshot in ``proj.students``.
        student_features: (n, d_s) the student's raw features at that snapshot.
        coherence: (n,) c_i at that snapshot.
        labels: (n,) labels; class_names: names by label.
        test_indices: (n,) index of each probe row in the test split.
        meta: (n rows) metadata.
        epoch: the snapshot's epoch (a column, for the record).
        probe_rows: (n,) probe row of each point (default 0..n-1; a subsample's rows otherwise).

    Returns:
        DataFrame with ``probe_row``, ``test_index``, ``label``, ``class``, ``c_i``, ``epoch``,
        ``teacher_<M>_1..``, ``student_<M>_1..``, ``student_f0..``, ``meta_<col>``.
    """
    n = len(proj.teacher)
    cols: dict[str, object] = {"probe_row": np.arange(n) if probe_rows is None else np.asarray(probe_rows)}
    if test_indices is not None:
        cols["test_index"] = np.asarray(test_indices, dtype=np.int64)
    if labels is not None:
        lab = np.asarray(labels, dtype=np.int64)
        cols["label"] = lab
        if class_names is not None:
            names = np.asarray(list(class_names), dtype=object)
            cols["class"] = names[np.clip(lab, 0, len(names) - 1)].astype(str)
    cols["c_i"] = np.asarray(coherence, dtype=np.float64)
    if epoch is not None:
        cols["epoch"] = np.full(n, float(epoch))
    prefix = AXIS_PREFIX[proj.method].replace("-", "").lower()
    for j in range(proj.dim):
        cols[f"teacher_{prefix}_{j + 1}"] = proj.teacher[:, j]
    for j in range(proj.dim):
        cols[f"student_{prefix}_{j + 1}"] = proj.students[snapshot_pos][:, j]
    feats = np.asarray(student_features, dtype=np.float64)
    for j in range(feats.shape[1]):
        cols[f"student_f{j}"] = feats[:, j]
    df = pd.DataFrame(cols)
    if meta is not None:
        for c in meta.columns:
            df[f"meta_{c}"] = meta[c].to_numpy()
    return df


def table_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    """The table as ``csv`` or ``parquet`` bytes."""
    if fmt == "csv":
        return df.to_csv(index=False).encode()
    if fmt == "parquet":
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return buf.getvalue()
    raise ValueError(f"format must be 'csv' or 'parquet', got {fmt!r}")
