"""UI helpers of the *Rank agreement* and *Per-sample coherence* pages: cached computations
keyed by run path + snapshot, the snapshot slider, point names and thumbnail strips.
The computations themselves are in :mod:`perco_viz.analysis.rank_agreement`."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import streamlit as st

from ui import common

MAX_RANK_POINTS = 2500  # R_T, R_S and A are n × n: above this, a stratified subsample of the probe set
SHEPARD_PAIRS = 20_000


# --------------------------------------------------------------------------- run facts
def snapshot_stamp(path: str, index: int) -> float:
    """The snapshot file's modification time: part of every cache key (a resumed run rewrites it)."""
    from perco_viz.runs import RunDir

    return RunDir(path).snapshot_stamp(index)


def metrics_of(run) -> tuple[str, str | None]:
    """The run's (student metric, teacher metric): the dissimilarities c_i was measured with."""
    try:
        loss = run.config().loss
        return loss.metric, loss.teacher_metric
    except Exception:  # noqa: BLE001 — an unreadable config: the library default
        return "euclidean", None


def snapshot_picker(run, key: str, epochs: list[float], indices: list[int]) -> int:
    """A slider over the run's snapshots (labelled by epoch); returns the chosen snapshot index."""
    positions = list(range(len(indices)))
    if st.session_state.get(key) not in positions:
        st.session_state[key] = positions[-1]
    if len(positions) == 1:
        st.caption(f"One snapshot so far (epoch {epochs[0]:g}).")
        return indices[0]
    pos = st.select_slider("Snapshot", positions, key=key, format_func=lambda p: f"epoch {epochs[p]:g}",
                           help="The moment of training to look at: epoch 0 is the untrained student.")
    return indices[pos]


@st.cache_data(max_entries=32, show_spinner=False)
def snapshot_epochs(path: str, signature: tuple) -> tuple[list[int], list[float]]:
    """(snapshot indices, their epochs) of a run; ``signature`` keys the cache."""
    from perco_viz.runs import RunDir, RunStoreError

    run = RunDir(path)
    indices = run.snapshot_indices()
    try:
        by_index = {r.get("snapshot"): r for r in run.metrics()}
    except RunStoreError:  # damaged metrics (the page says so): the snapshots' own epochs
        by_index = {}
    epochs = []
    for i in indices:
        rec = by_index.get(i)
        epochs.append(float(rec["epoch"]) if rec and rec.get("epoch") is not None
                      else float(common.load_snapshot(path, i)["epoch"]))
    return indices, epochs


def class_names_of(run, labels) -> list[str] | None:
    """The dataset's class names when it can be loaded here, else None (labels shown as numbers)."""
    if labels is None:
        return None
    dataset = common.dataset_of(run)
    return None if dataset is None or dataset.class_names is None else list(dataset.class_names)


def class_name(value, class_names) -> str:
    if class_names is not None and 0 <= int(value) < len(class_names):
        return str(class_names[int(value)])
    return str(value)


def point_text(row: int, labels, class_names, coherence=None) -> str:
    """``#12 · class 3 · c_i 0.871`` for a probe row."""
    parts = [f"#{row}"]
    if labels is not None:
        parts.append(f"class {class_name(labels[row], class_names)}")
    if coherence is not None:
        parts.append(f"c_i {coherence[row]:.3f}")
    return " · ".join(parts)


# --------------------------------------------------------------------------- cached computations
@st.cache_data(max_entries=8, show_spinner=False)
def rank_rows(path: str, n: int, max_points: int = MAX_RANK_POINTS) -> np.ndarray:
    """The probe rows the n × n matrices are computed on: all, or a stratified subsample."""
    from perco_viz.analysis.projection import stratified_subsample

    labels = common.load_teacher_probe(path).get("labels")
    return stratified_subsample(labels, n, max_points, seed=0)


@st.cache_data(max_entries=4, show_spinner=False)
def rank_data(path: str, index: int, stamp: float, metric: str, teacher_metric: str | None,
              rows_key: tuple) -> dict[str, np.ndarray]:
    """R_T, R_S and A (float32, (m, m), NaN diagonal) among the rows :func:`rank_rows` gives."""
    from perco_viz.analysis.rank_agreement import rank_matrices

    rows = rank_rows(path, *rows_key)
    teacher = common.load_teacher_probe(path)["features"][rows]
    student = common.load_snapshot(path, index)["student"][rows]
    r_t, r_s, agreement = rank_matrices(student, teacher, metric=metric, teacher_metric=teacher_metric)
    return {"R_T": r_t.astype(np.float32), "R_S": r_s.astype(np.float32), "A": agreement.astype(np.float32)}


@st.cache_data(max_entries=16, show_spinner=False)
def ordering(path: str, by: str, rows_key: tuple) -> np.ndarray:
    """Order of the rank rows (positions into :func:`rank_rows`) by label or teacher clustering."""
    from perco_viz.analysis.rank_agreement import order_points

    probe = common.load_teacher_probe(path)
    rows = rank_rows(path, *rows_key)
    labels = probe.get("labels")
    return order_points(probe["features"][rows], None if labels is None else labels[rows], by=by)


@st.cache_data(max_entries=16, show_spinner=False)
def shepard(path: str, index: int, stamp: float, metric: str, teacher_metric: str | None) -> dict[str, Any]:
    """Sampled pairs' teacher and student dissimilarities and their Spearman ρ."""
    from perco_viz.analysis.rank_agreement import shepard_pairs, spearman

    teacher = common.load_teacher_probe(path)["features"]
    student = common.load_snapshot(path, index)["student"]
    d_t, d_s = shepard_pairs(student, teacher, max_pairs=SHEPARD_PAIRS, seed=0, metric=metric,
                             teacher_metric=teacher_metric)
    return {"d_teacher": d_t, "d_student": d_s, "spearman": spearman(d_t, d_s)}


@st.cache_data(max_entries=16, show_spinner=False)
def coherence_history(path: str, signature: tuple) -> tuple[list[float], list[np.ndarray]]:
    """(epochs, c_i arrays) of every snapshot; ``signature`` keys the cache (new snapshots reload)."""
    from perco_viz.analysis.rank_agreement import coherence_by_epoch

    return coherence_by_epoch(path)


@st.cache_data(max_entries=16, show_spinner=False)
def student_pca(path: str, index: int, stamp: float) -> np.ndarray:
    """(n, 2) PCA of the snapshot's student features."""
    from perco_viz.analysis.projection import project

    return project(common.load_snapshot(path, index)["student"], "pca", dim=2)


# --------------------------------------------------------------------------- thumbnails
def thumbnail_strip(images, captions, *, size: int = 64, borders=None) -> str:
    """A wrapping strip of crisp thumbnails, a caption under each, as HTML.

    Args:
        images: k images (H, W) or (H, W, 3) uint8.
        captions: k captions (also the tooltips).
        size: displayed side in px.
        borders: k CSS colours of each frame (default grey).
    """
    from perco_viz.figures import image_data_uri

    borders = borders or ["#c9ccd3"] * len(captions)
    cells = []
    for img, cap, colour in zip(images, captions, borders):
        cap = html.escape(str(cap))
        cells.append(
            f'<figure style="margin:0;text-align:center" title="{cap}">'
            f'<img src="{image_data_uri(img, 1)}" width="{size}" height="{size}" alt="{cap}" '
            f'style="image-rendering:pixelated;border:3px solid {colour};border-radius:4px"/>'
            f'<figcaption style="font-size:11px;line-height:1.25;color:#444;max-width:{size + 20}px">'
            f'{cap}</figcaption></figure>')
    return f'<div style="display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start">{"".join(cells)}</div>'


def show_thumbnails(dataset, test_indices, captions, *, size: int = 64, borders=None) -> bool:
    """Draw thumbnails of some test-split inputs; False (nothing drawn) when the data are not images."""
    if dataset is None or not dataset.is_image or len(test_indices) == 0:
        return False
    try:
        images = dataset.images("test", np.array(test_indices, dtype=np.int64))  # a writable copy
    except Exception:  # noqa: BLE001 — a dataset changed since the run: skip the pictures
        return False
    st.html(thumbnail_strip(images, captions, size=size, borders=borders))
    return True


# --------------------------------------------------------------------------- layout
def compact_matrix(fig, *, n: int, max_cells: int, how: str):
    """Fit a matrix heatmap into a third of the page: colour bar under the plot, short subtitle,
    axis titles that say how rows and columns are ordered."""
    import math

    b = max(1, math.ceil(n / max_cells))
    sub = f"{n:,} inputs, {how}" + (f"; each cell = mean of {b}×{b}" if b > 1 else "")
    fig.update_traces(selector={"type": "heatmap"}, colorbar={
        "orientation": "h", "x": 0.5, "xanchor": "center", "y": -0.16, "yanchor": "top", "thickness": 10,
        "len": 0.95, "title": {"side": "top"}})
    fig.update_layout(title_subtitle_text=sub, margin={"l": 55, "r": 15, "t": 75, "b": 105})
    fig.update_xaxes(title_text=f"input j ({how})")
    # fixed, reversed rows (autorange would pad around the invisible row markers of the A figure)
    fig.update_yaxes(title_text=f"anchor i ({how})", autorange=False, range=[n - 0.5, -0.5])
    return fig


def mark_row(fig, pos: int, text: str = "anchor"):
    """An arrow left of a matrix heatmap pointing at row ``pos`` (point-position coordinates)."""
    fig.add_annotation(x=-0.5, y=pos, xref="x", yref="y", ax=-26, ay=0, text="", showarrow=True,
                       arrowhead=2, arrowsize=1.2, arrowwidth=2, arrowcolor="#1f2430", hovertext=text)
    return fig


@st.cache_data(max_entries=8, show_spinner=False)
def matrix_view(path: str, index: int, stamp: float, metric: str, teacher_metric: str | None, rows_key: tuple,
                order_by: str, shown: np.ndarray, how: str, epoch: float, class_names: list[str] | None,
                max_cells: int = 300) -> dict[str, Any]:
    """Everything the three heatmaps need, for one snapshot, subset and order (figures included:
    drawing 3 × n² cells is the slow part of a rerun).

    Args:
        shown: positions into :func:`rank_rows` to draw (any order).
        how: the ordering's words, for subtitles and axes.

    Returns:
        ``drawn_rows`` (m,) probe rows in drawing order, ``mean_A`` of the drawn cells,
        ``row_mean_A`` (m,), and the figures ``A``, ``R_T``, ``R_S`` (without the anchor mark).
    """
    from perco_viz import figures

    data = rank_data(path, index, stamp, metric, teacher_metric, rows_key)
    order_all = ordering(path, order_by, rows_key)
    universe = rank_rows(path, *rows_key)
    keep = np.zeros(len(universe), dtype=bool)
    keep[np.asarray(shown, dtype=np.int64)] = True
    order = order_all[keep[order_all]]  # positions into `universe`, in drawing order
    drawn_rows = universe[order]
    sub = np.ix_(order, order)
    labels = common.load_teacher_probe(path).get("labels")
    marks = labels[drawn_rows] if labels is not None and order_by == "label" else None  # class blocks only
    positions = np.arange(len(order))
    m = len(order)
    A = data["A"][sub]
    figs = {"A": figures.rank_agreement_heatmap(A, order=positions, labels=marks, class_names=class_names,
                                                max_cells=max_cells, height=560,
                                                title=f"rank agreement A at epoch {epoch:g}")}
    for key, which in (("R_T", "teacher"), ("R_S", "student")):
        figs[key] = figures.ranks_heatmap(data[key][sub], which=which, order=positions, labels=marks,
                                          class_names=class_names, max_cells=max_cells, height=560)
    for fig in figs.values():
        compact_matrix(fig, n=m, max_cells=max_cells, how=how)
    with np.errstate(all="ignore"):
        row_mean = np.nanmean(A, axis=1).astype(np.float64)
    return {"drawn_rows": drawn_rows, "mean_A": float(np.nanmean(A)), "row_mean_A": row_mean, **figs}
