"""The rank-agreement page's figures: A and R heatmaps (with a clickable row picker), the Shepard
diagram, one anchor's neighbours.

Pure functions: data in, ``go.Figure`` out; no I/O, no Streamlit."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from perco_viz.figures.style import (
    COHERENCE_SCALE,
    DENSITY_SCALE,
    RANK_SCALE,
    class_label,
    new_figure,
    no_data,
)


def block_mean(M, max_cells: int = 400) -> tuple[np.ndarray, int]:
    """Shrink a square matrix for drawing: the NaN-mean of b × b blocks, b = ceil(n / max_cells).

    Args:
        M: (n, n) matrix, NaN allowed (the diagonal of A and R).
        max_cells: the most rows/columns drawn.

    Returns:
        ``(Z, b)``: Z (m, m) with m = ceil(n / b) ≤ max_cells (M itself when b = 1), and b.
    """
    M = np.asarray(M)
    if not np.issubdtype(M.dtype, np.floating):
        M = M.astype(np.float64)
    n = len(M)
    b = max(1, math.ceil(n / max(1, int(max_cells))))
    if b == 1:
        return M.astype(np.float64, copy=False), 1
    m = math.ceil(n / b)
    padded = np.zeros((m * b, m * b), dtype=M.dtype)
    padded[:n, :n] = M
    missing = np.ones((m * b, m * b), dtype=bool)
    missing[:n, :n] = np.isnan(M)
    padded[missing] = 0.0
    sums = padded.reshape(m, b, m, b).sum(axis=(1, 3), dtype=np.float64)
    counts = (~missing).reshape(m, b, m, b).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):  # blocks of only diagonal/padding: NaN
        return np.where(counts > 0, sums / counts, np.nan), b


def _matrix_figure(M, *, title: str, colorbar_title: str, colorscale, order, labels, class_names,
                   max_cells: int, height: int) -> go.Figure:
    """Heatmap of an (n, n) matrix with rows/cols in ``order`` (default: by label), block-averaged
    above ``max_cells``, class boundaries as lines and class names as ticks. Axes in point positions."""
    M = np.asarray(M)
    n = len(M)
    if M.ndim != 2 or M.shape != (n, n) or n < 2:
        raise ValueError(f"expected a square (n, n) matrix with n ≥ 2, got shape {M.shape}")
    y = None if labels is None else np.asarray(labels)
    if order is None:
        order = np.arange(n) if y is None else np.argsort(y, kind="stable")
    order = np.asarray(order, dtype=np.int64)
    Z, b = block_mean(M[np.ix_(order, order)], max_cells)
    centres = np.arange(len(Z)) * b + (b - 1) / 2  # each cell at the middle of the positions it averages
    how = "ordered by class" if y is not None else "in the given order"
    sub = f"n = {n:,} points, {how}" + (
        f"; downsampled: each of the {len(Z)}×{len(Z)} cells is the mean of {b}×{b} entries" if b > 1 else "")
    fig = new_figure(title, sub, height=height)
    fig.add_trace(go.Heatmap(z=Z, x=centres, y=centres, colorscale=colorscale, zmin=0.0, zmax=1.0,
                             colorbar={"title": {"text": colorbar_title}, "thickness": 14},
                             hovertemplate="row %{y:.0f}, column %{x:.0f}: %{z:.3f}<extra></extra>"))
    axis = {"range": [-0.5, n - 0.5], "showgrid": False, "zeroline": False, "constrain": "domain"}
    fig.update_xaxes(title_text=f"point j ({how})", **axis)
    fig.update_yaxes(title_text=f"anchor i ({how})", autorange="reversed", scaleanchor="x", **axis)
    if y is not None:
        _class_marks(fig, y[order], class_names, n)
    return fig


def _class_marks(fig: go.Figure, y_sorted: np.ndarray, class_names, n: int) -> None:
    """Lines at the class boundaries of a label-ordered matrix, class names as ticks at the middles."""
    starts = np.flatnonzero(np.r_[True, y_sorted[1:] != y_sorted[:-1]])
    ends = np.r_[starts[1:], len(y_sorted)]
    for p in starts[1:]:
        for axis in ("x", "y"):
            fig.add_shape(type="line", xref="x", yref="y", line={"color": "#1f2430", "width": 1},
                          **({"x0": p - 0.5, "x1": p - 0.5, "y0": -0.5, "y1": n - 0.5} if axis == "x"
                             else {"y0": p - 0.5, "y1": p - 0.5, "x0": -0.5, "x1": n - 0.5}))
    if len(starts) <= 40:
        ticks = {"tickvals": ((starts + ends - 1) / 2).tolist(),
                 "ticktext": [class_label(v, class_names) for v in y_sorted[starts]]}
        fig.update_xaxes(**ticks)
        fig.update_yaxes(**ticks)


def rank_agreement_heatmap(A, *, order=None, labels=None, class_names=None, max_cells: int = 400,
                           title: str = "rank agreement A", height: int = 600) -> go.Figure:
    """Heatmap of A[i, j] = 1 − |R_T_i(j) − R_S_i(j)| (1: the student places j where the teacher does).

    Args:
        A: (n, n) rank agreement, NaN on the diagonal.
        order: (n,) row/column order (default: by label, else as given).
        labels: (n,) class labels: sort key, boundary lines and tick names.
        class_names: names of the labels (sequence by int label, or mapping).
        max_cells: above this n the drawn matrix is block-averaged (NaN-mean); the subtitle says so.
        title: figure title.
        height: px.

    Returns:
        go.Figure with one Heatmap (colour range 0–1, low = red).
    """
    return _matrix_figure(A, title=title, colorbar_title="A (0–1)", colorscale=COHERENCE_SCALE, order=order,
                          labels=labels, class_names=class_names, max_cells=max_cells, height=height)


def ranks_heatmap(R, *, which: str = "teacher", order=None, labels=None, class_names=None, max_cells: int = 400,
                  title: str | None = None, height: int = 600) -> go.Figure:
    """Heatmap of normalized ranks R[i, j] (where anchor i puts j: 0 = nearest, 1 = farthest).

    Draw R_T and R_S with the same ``order``/``labels`` as :func:`rank_agreement_heatmap` to compare them.

    Args:
        R: (n, n) normalized ranks in [0, 1], NaN on the diagonal.
        which: ``teacher`` or ``student`` (title: R_T or R_S).
        title: default "normalized ranks R_T (teacher)".
        Others: as :func:`rank_agreement_heatmap`.

    Returns:
        go.Figure with one Heatmap (range 0–1, nearest dark).
    """
    sym = {"teacher": "R_T", "student": "R_S"}.get(which, "R")
    return _matrix_figure(R, title=title or f"normalized ranks {sym} ({which})",
                          colorbar_title="R (0 = nearest, 1 = farthest)", colorscale=RANK_SCALE, order=order,
                          labels=labels, class_names=class_names, max_cells=max_cells, height=height)


def compact_matrix(fig: go.Figure, *, n: int, max_cells: int, how: str) -> go.Figure:
    """Fit a matrix heatmap into a third of the page: colour bar under the plot, short subtitle,
    axis titles that say how rows and columns are ordered.

    Args:
        fig: a figure of :func:`rank_agreement_heatmap` or :func:`ranks_heatmap` (changed in place).
        n: rows (= columns) of the matrix drawn.
        max_cells: the ``max_cells`` it was drawn with.
        how: the ordering's words (``"by class"``), for the subtitle and the axes.

    Returns:
        ``fig``.
    """
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


def mark_row(fig: go.Figure, pos: int, text: str = "anchor") -> go.Figure:
    """An arrow left of a matrix heatmap pointing at row ``pos`` (point-position coordinates); returns ``fig``."""
    fig.add_annotation(x=-0.5, y=pos, xref="x", yref="y", ax=-26, ay=0, text="", showarrow=True,
                       arrowhead=2, arrowsize=1.2, arrowwidth=2, arrowcolor="#1f2430", hovertext=text)
    return fig


# ----------------------------------------------------------------------------- Shepard diagram
def _pair_values(d) -> np.ndarray:
    """(m,) pair dissimilarities, or the upper triangle of an (n, n) matrix."""
    d = np.asarray(d, dtype=np.float64)
    if d.ndim == 2 and d.shape[0] == d.shape[1]:
        return d[np.triu_indices(len(d), 1)]
    return d.ravel()


def _density(x: np.ndarray, y: np.ndarray, bins: int) -> np.ndarray:
    """(m,) number of points in each point's cell of a bins × bins grid."""
    counts, ex, ey = np.histogram2d(x, y, bins=bins)
    ix = np.clip(np.searchsorted(ex, x, side="right") - 1, 0, bins - 1)
    iy = np.clip(np.searchsorted(ey, y, side="right") - 1, 0, bins - 1)
    return counts[ix, iy]


def shepard_figure(d_teacher, d_student, *, pc: float | None = None, spearman: float | None = None,
                   max_points: int = 20_000, seed: int = 0, bins: int = 60,
                   title: str = "Shepard diagram: teacher vs student dissimilarities", height: int = 520) -> go.Figure:
    """Teacher vs student dissimilarity of the same pairs, coloured by how many pairs lie nearby.

    Perfect perception coherence needs only a monotone cloud (per anchor), not a straight line.

    Args:
        d_teacher: (m,) dissimilarities of sampled pairs (or an (n, n) matrix: its upper triangle).
        d_student: (m,) the same pairs under the student.
        pc: PC to annotate, if known.
        spearman: Spearman ρ to annotate (default: computed on all the finite pairs given).
        max_points: the most pairs drawn (a seeded random sample above it).
        seed: fixes that sample.
        bins: grid of the density colouring.
        title: figure title.
        height: px.

    Returns:
        go.Figure with one Scattergl (density colour bar, log₁₀) and an annotation.
    """
    t, s = _pair_values(d_teacher), _pair_values(d_student)
    if t.shape != s.shape:
        raise ValueError(f"d_teacher and d_student must hold the same pairs, got {t.shape} and {s.shape}")
    keep = np.isfinite(t) & np.isfinite(s)
    t, s = t[keep], s[keep]
    if spearman is None and len(t) > 2 and np.ptp(t) > 0 and np.ptp(s) > 0:
        from scipy.stats import spearmanr

        spearman = float(spearmanr(t, s).statistic)
    m = len(t)
    if m > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(m, max_points, replace=False))
        t, s = t[idx], s[idx]
    dens = np.log10(_density(t, s, bins)) if len(t) else np.zeros(0)
    idx = np.argsort(dens, kind="stable")  # dense cells drawn last, on top
    fig = new_figure(title, f"{len(t):,} of {m:,} pairs drawn" if m > len(t) else f"{m:,} pairs", height=height)
    fig.add_trace(go.Scattergl(x=t[idx], y=s[idx], mode="markers", name="pairs", showlegend=False,
                               marker={"size": 3, "color": dens[idx], "colorscale": DENSITY_SCALE, "opacity": 0.8,
                                       "colorbar": {"title": {"text": "pairs per cell (log₁₀)"}, "thickness": 14}},
                               hovertemplate="teacher %{x:.3g}<br>student %{y:.3g}<extra></extra>"))
    notes = [f"PC = {pc:.3f}" if pc is not None else "", f"Spearman ρ = {spearman:.3f}" if spearman is not None else ""]
    if any(notes):
        fig.add_annotation(text=" · ".join(n for n in notes if n), xref="paper", yref="paper", x=0.01, y=0.99,
                           xanchor="left", yanchor="top", showarrow=False, bgcolor="rgba(255,255,255,0.85)")
    fig.update_xaxes(title_text="teacher dissimilarity")
    fig.update_yaxes(title_text="student dissimilarity")
    return fig if m else no_data(fig, "no pairs")


# ----------------------------------------------------------------------------- one anchor's neighbours
LABEL_GAP_PX = 16  # the least vertical distance between two labels of a side of the slope chart (≈ a line of text)


def _shift_colour(shift: float, k: int) -> str:
    """Green for an unchanged rank, red for a shift of k places or more (the c_i scale's 1 → 0.5)."""
    return sample_colorscale(COHERENCE_SCALE, [1.0 - 0.5 * min(abs(shift) / max(k, 1), 1.0)])[0]


def _labels_that_fit(log_y: np.ndarray, priority: np.ndarray, min_gap: float) -> np.ndarray:
    """(m,) bool: which of m labels at heights ``log_y`` to write so that no two are nearer than
    ``min_gap`` (same units); labels of higher ``priority`` are placed first (ties: list order)."""
    keep = np.zeros(len(log_y), dtype=bool)
    placed: list[float] = []
    for i in np.argsort(-np.asarray(priority, dtype=np.float64), kind="stable"):
        if all(abs(log_y[i] - y) >= min_gap for y in placed):
            keep[i] = True
            placed.append(float(log_y[i]))
    return keep


def anchor_neighbours_figure(table: pd.DataFrame, *, anchor: int | None = None, class_names=None,
                             title: str | None = None, height: int = 520) -> go.Figure:
    """Slope chart: each neighbour's rank by the teacher (left) joined to its rank by the student (right).

    Labels (``#point``) are written only where they fit: on each side, no two closer than
    :data:`LABEL_GAP_PX` pixels (the most moved neighbours first); every line tells its point on hover.

    Args:
        table: from :func:`perco_viz.analysis.rank_agreement.anchor_neighbours` (columns ``point``, ``teacher_rank``, ``student_rank``; ``label`` optional).
        anchor: the anchor's id, for the title.
        class_names: names of the labels, for hover.
        title: default "neighbours of anchor <anchor>: teacher rank → student rank".
        height: px.

    Returns:
        go.Figure with one line trace per neighbour (text: its label at each end where it fits, else
        ``""``), a log-scale rank axis with 1 = nearest on top and a fixed range.
    """
    k = int(table.get("in_teacher_top_k", pd.Series([True] * len(table))).sum()) or len(table)
    head = title or f"neighbours of anchor {anchor if anchor is not None else ''}: teacher rank → student rank"
    fig = new_figure(head, f"green: same rank · red: moved by ≥ {k} places", height=height, showlegend=False)
    top = int(max(table["teacher_rank"].max(), table["student_rank"].max())) if len(table) else 1
    lo, hi = math.log10(0.8), math.log10(max(top, 1) * 1.25)  # the axis range, in decades
    plot_px = max(height - fig.layout.margin.t - fig.layout.margin.b, 50)
    min_gap = LABEL_GAP_PX * (hi - lo) / plot_px  # LABEL_GAP_PX in decades
    ranks = table[["teacher_rank", "student_rank"]].to_numpy(dtype=np.float64)  # (m, 2)
    moved = np.abs(ranks[:, 1] - ranks[:, 0])
    written = np.column_stack([_labels_that_fit(np.log10(ranks[:, side]), moved, min_gap) for side in (0, 1)])
    for row, (t_on, s_on) in zip(table.itertuples(index=False), written.reshape(-1, 2)):
        label = getattr(row, "label", None)
        cls = "" if label is None or label != label else f" (class {class_label(label, class_names)})"
        fig.add_trace(go.Scatter(
            x=["teacher", "student"], y=[row.teacher_rank, row.student_rank], mode="lines+markers+text",
            text=[f"#{row.point}" if t_on else "", f"#{row.point}" if s_on else ""],
            textposition=["middle left", "middle right"],
            line={"color": _shift_colour(row.student_rank - row.teacher_rank, k), "width": 2}, marker={"size": 7},
            name=f"#{row.point}",
            hovertemplate=f"input #{row.point}{cls}<br>teacher rank {row.teacher_rank} → student rank "
                          f"{row.student_rank}<extra></extra>"))
    fig.update_xaxes(title_text="who ranks", range=[-0.6, 1.6])
    ticks = [t for t in (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000) if t <= top]
    if top >= 1.3 * ticks[-1]:  # the farthest rank, unless a round tick is next to it (their texts would overlap)
        ticks.append(top)
    fig.update_yaxes(title_text="rank from the anchor (1 = nearest, log scale)", type="log", range=[hi, lo],
                     autorange=False, tickmode="array", tickvals=sorted(set(ticks)))
    return fig if len(table) else no_data(fig, "no neighbours")


# ----------------------------------------------------------------------------- clicking a heatmap row
def row_picker_trace(
    ids,
    *,
    coherence=None,
    row_agreement=None,
    names: Sequence[str] | None = None,
    max_rows: int = 300,
    max_cols: int = 12,
) -> go.Scattergl:
    """An invisible, clickable grid laid over an (n, n) matrix heatmap, one row of markers per
    drawn row: plotly heatmaps emit no selection events, markers do.

    Rows are grouped like :func:`block_mean` groups them (b = ceil(n / max_rows)
    per drawn row), so each marker sits on a drawn row; a block's representative anchor is its row
    with the lowest c_i (its middle row without ``coherence``). Hovering shows that anchor, a
    click selects it (``customdata[0]`` = its id).

    Args:
        ids: (n,) ids of the rows in drawing order (e.g. probe rows).
        coherence: (n,) c_i of those rows, optional.
        row_agreement: (n,) mean A of each drawn row, optional (hover).
        names: (n,) class names of the rows, optional (hover).
        max_rows: the heatmap's ``max_cells``.
        max_cols: markers per row (across the x axis).

    Returns:
        A ``go.Scattergl`` in point-position coordinates (x, y in [0, n − 1]), to ``fig.add_trace``.
    """
    ids = np.asarray(ids).reshape(-1)
    n = len(ids)
    b = max(1, math.ceil(n / max(1, int(max_rows))))
    m = math.ceil(n / b)
    rep = np.empty(m, dtype=np.int64)  # representative position of each drawn row
    for r in range(m):
        lo, hi = r * b, min((r + 1) * b, n)
        rep[r] = lo + int(np.argmin(np.asarray(coherence)[lo:hi])) if coherence is not None else (lo + hi - 1) // 2
    y = np.arange(m) * b + (b - 1) / 2  # the drawn rows' centres (as block_mean draws them)
    bc = max(1, math.ceil(n / max(1, int(max_cols))))
    x = np.arange(math.ceil(n / bc)) * bc + (bc - 1) / 2
    xx, yy = np.meshgrid(x, y)  # (m, c)
    rows = np.repeat(rep, len(x))  # (m·c,) position of each marker's anchor
    custom = [ids[rows].astype(np.float64)]
    tip = "anchor #%{customdata[0]}"
    if names is not None:
        tip += " · class %{text}"
    for values, label in ((coherence, "c_i"), (row_agreement, "mean A of its row")):
        if values is not None:
            tip += f" · {label} %{{customdata[{len(custom)}]:.3f}}"
            custom.append(np.asarray(values, dtype=np.float64)[rows])
    return go.Scattergl(
        x=xx.ravel(), y=yy.ravel(), mode="markers", name="anchors", showlegend=False,  # customdata as lists:
        # a clicked point's customdata then comes back as a list, not a typed-array dict
        customdata=np.column_stack(custom).tolist(), text=None if names is None else np.asarray(names, dtype=object)[rows],
        marker={"size": 14, "opacity": 0, "color": "#000000"},
        selected={"marker": {"opacity": 0}}, unselected={"marker": {"opacity": 0}},
        hovertemplate=tip + "<br><i>click: inspect this anchor</i><extra></extra>")
