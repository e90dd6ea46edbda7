"""Plotly figures of perception coherence: pure functions, data in (arrays, lists, dicts), ``go.Figure`` out.

No I/O and no Streamlit here. Every figure uses :data:`TEMPLATE` (white background, the purple
:data:`PRIMARY`, the class palette :data:`PALETTE`) and :data:`COHERENCE_SCALE` for c_i and A, on
which low values are red (alarming) and high values green. 2-D scatters are SVG ``go.Scatter`` up
to :data:`WEBGL_ABOVE` points and ``go.Scattergl`` beyond (fluid up to ~100k points; WebGL costs a
context per plot and is slow where the browser has no GPU), 3-D ones ``go.Scatter3d``. Words as in
DESIGN.md §3: teacher, student, PC, c_i (per-sample coherence), R (normalized ranks), A (rank
agreement), τ, kernel.

>>> import numpy as np
>>> fig = embedding_figure(np.zeros((3, 2)), color=[0, 1, 1], title="probe set")
>>> len(fig.data)
2
"""

from __future__ import annotations

import base64
import importlib.util
import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

# ----------------------------------------------------------------------------- look
PRIMARY = "#6C4AB6"
WEBGL_ABOVE = 3000  # 2-D embedding plots switch from SVG to WebGL above this many points
PALETTE = ["#6C4AB6", "#E69F00", "#009E73", "#D55E00", "#0072B2", "#CC79A7", "#56B4E9", "#8C6D31",
           "#999999", "#117733", "#882255", "#44AA99"]  # classes; colour-blind-safe after the primary
# c_i and A: 0.5 (chance) dark red, 0.75 orange, 0.9 yellow, 1 green.
COHERENCE_SCALE = [[0.0, "#67001f"], [0.5, "#b2182b"], [0.75, "#f46d43"], [0.88, "#fee08b"],
                   [0.95, "#a6d96a"], [1.0, "#1a9850"]]
RANK_SCALE = [[0.0, "#3f007d"], [0.35, "#6a51a3"], [0.7, "#bcbddc"], [1.0, "#fcfbfd"]]  # R: 0 = nearest, dark
DENSITY_SCALE = "Viridis"
TOO_FAR, TOO_NEAR = "#D55E00", "#0072B2"
HEIGHT = 480
MARGIN = {"l": 60, "r": 30, "t": 80, "b": 55}
TEMPLATE = go.layout.Template(pio.templates["plotly_white"])
TEMPLATE.layout.update(
    colorway=PALETTE, paper_bgcolor="white", plot_bgcolor="white", margin=MARGIN,
    font={"family": "Inter, system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13, "color": "#1f2430"},
    title={"font": {"size": 17}, "x": 0.01, "xanchor": "left"},
    legend={"itemsizing": "constant"}, hoverlabel={"bgcolor": "white"},
)
LEGEND_ON_TOP = {"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.02, "yanchor": "bottom"}  # beside a colour bar
METRIC_LABELS = {
    "train_loss": "training loss", "pc": "PC (0–1)", "knn_acc": "k-NN accuracy (0–1)",
    "coherence_mean": "mean c_i (0–1)", "coherence_p10": "10th percentile of c_i (0–1)",
    "linear_acc": "linear-probe accuracy (0–1)", "trustworthiness": "trustworthiness (0–1)",
    "knn_overlap": "k-NN overlap with the teacher (0–1)", "cka": "linear CKA (0–1)",
    "wall_s": "wall time (s)", "train_s": "training time (s)",
}


# ----------------------------------------------------------------------------- shared helpers
def _new_figure(title: str, subtitle: str | None = None, *, fig: go.Figure | None = None,
                height: int = HEIGHT, **layout: Any) -> go.Figure:
    """A figure (or ``fig``) in :data:`TEMPLATE` with its title, optional subtitle and height."""
    fig = go.Figure() if fig is None else fig
    head = {"text": title, **({"subtitle": {"text": subtitle}} if subtitle else {})}
    fig.update_layout(template=TEMPLATE, title=head, height=height, margin=MARGIN, **layout)
    return fig


def _no_data(fig: go.Figure, text: str = "nothing to show yet") -> go.Figure:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font={"size": 15, "color": "#8a909c"})
    return fig


def _metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def _class_name(value: Any, class_names: Sequence[str] | Mapping | None) -> str:
    if isinstance(class_names, Mapping):
        return str(class_names.get(value, value))
    if class_names is not None and isinstance(value, (int, np.integer)) and 0 <= value < len(class_names):
        return str(class_names[int(value)])
    return str(value)


def _classes(labels, class_names=None) -> list[tuple[str, str, np.ndarray]]:
    """(name, colour, (m,) row indices) per class, in sorted label order; colours follow the label value."""
    y = np.asarray(labels)
    out = []
    for pos, value in enumerate(np.unique(y)):
        code = int(value) if np.issubdtype(y.dtype, np.integer) else pos
        out.append((_class_name(value, class_names), PALETTE[code % len(PALETTE)], np.flatnonzero(y == value)))
    return out


def _coords(coords, name: str = "coords") -> np.ndarray:
    xyz = np.asarray(coords, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] not in (2, 3):
        raise ValueError(f"{name} must be (n, 2) or (n, 3), got shape {xyz.shape}")
    return xyz


def _point_size(n: int, dim: int) -> int:
    return 3 if dim == 3 or n > 20_000 else 4 if n > 2000 else 6


def _axis_titles(dim: int, axis_titles: Sequence[str] | None) -> list[str]:
    return list(axis_titles) if axis_titles else [f"component {i + 1}" for i in range(dim)]


def _set_axes(fig: go.Figure, titles: Sequence[str], dim: int, *, row=None, col=None, scene: str = "scene"):
    """Axis titles of a 2-D subplot or of a 3-D scene."""
    if dim == 3:
        fig.update_layout({scene: {f"{a}axis": {"title": {"text": t}} for a, t in zip("xyz", titles)}
                           | {"aspectmode": "cube"}})
        return
    fig.update_xaxes(title_text=titles[0], zeroline=False, row=row, col=col)
    fig.update_yaxes(title_text=titles[1], zeroline=False, row=row, col=col)


# ----------------------------------------------------------------------------- embeddings
def _scatter_traces(xyz: np.ndarray, *, color, color_kind: str, labels_text, hover, ids, highlight,
                    point_size: int | None, color_title: str, showlegend: bool = True) -> list:
    """Traces of one embedding plot: one per class (the legend toggles classes, grouped across
    panels), or one coloured by ``coloraxis``; plus the highlighted points. customdata[:, 0] = id."""
    n, dim = xyz.shape
    ids = np.arange(n) if ids is None else np.asarray(ids)
    if len(ids) != n or (color is not None and len(color) != n) or (hover is not None and len(hover) != n):
        raise ValueError(f"color, hover and ids must have one entry per point ({n})")
    text = None if hover is None else np.asarray(hover, dtype=object)
    size = point_size or _point_size(n, dim)
    scatter = go.Scatter3d if dim == 3 else (go.Scattergl if n > WEBGL_ABOVE else go.Scatter)
    what = {"label": "class %{meta}", "continuous": color_title + " %{marker.color:.3f}"}.get(color_kind, "")

    def trace(idx: np.ndarray, marker: dict, **kw):
        pts = dict(zip("xyz", xyz[idx].T))
        tip = "point %{customdata[0]}<br>" + (what if color is not None else "") + ("<br>%{text}" if text is not None else "")
        return scatter(mode="markers", customdata=ids[idx, None], text=None if text is None else text[idx],
                       hovertemplate=tip + "<extra></extra>", marker={"size": size, **marker}, **pts, **kw)

    if color is None:
        traces = [trace(np.arange(n), {"color": PRIMARY}, name="points", showlegend=False)]
    elif color_kind == "label":
        traces = [trace(idx, {"color": colour}, name=name, meta=name, legendgroup=name, showlegend=showlegend)
                  for name, colour, idx in _classes(color, labels_text)]
    elif color_kind == "continuous":
        vals = np.asarray(color, dtype=np.float64)
        idx = np.argsort(-np.nan_to_num(vals, nan=np.inf), kind="stable")  # low values drawn last, on top
        traces = [trace(idx, {"color": vals[idx], "coloraxis": "coloraxis"}, name=color_title, showlegend=False)]
    else:
        raise ValueError(f"color_kind must be 'label' or 'continuous', got {color_kind!r}")
    if highlight is not None and len(highlight):
        idx = np.flatnonzero(np.isin(ids, np.asarray(highlight)))
        ring = {"size": size + 6, "color": "rgba(0,0,0,0)", "line": {"color": "#111111", "width": 2}}
        traces.append(trace(idx, ring, name="selected", legendgroup="selected", showlegend=showlegend))
    return traces


def _color_layout(color, color_kind: str, color_title: str, color_range) -> dict:
    """The shared colour axis of continuous colouring (0–1 when the values lie there)."""
    if color is None or color_kind != "continuous":
        return {"legend": {"title": {"text": color_title if color is not None else ""}}}
    vals = np.asarray(color, dtype=np.float64)
    if color_range is None:
        lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
        color_range = (0.0, 1.0) if lo >= 0 and hi <= 1 else (lo, hi)
    return {"coloraxis": {"colorscale": COHERENCE_SCALE, "cmin": color_range[0], "cmax": color_range[1],
                          "colorbar": {"title": {"text": color_title}, "thickness": 14, "len": 0.8}},
            "legend": LEGEND_ON_TOP}


def embedding_figure(coords, *, color=None, color_kind: str = "label", labels_text=None, hover=None,
                     title: str = "embedding plot", subtitle: str | None = None, highlight=None,
                     point_size: int | None = None, ids=None, color_title: str | None = None,
                     color_range: tuple[float, float] | None = None,
                     axis_titles: Sequence[str] | None = None, height: int = 560) -> go.Figure:
    """One embedding plot (projection) of the probe set, 2-D (Scattergl) or 3-D (Scatter3d).

    Args:
        coords: (n, 2) or (n, 3) projected points.
        color: (n,) class labels (``color_kind="label"``: one trace per class, the legend toggles
            them) or values (``"continuous"``, e.g. c_i: a colour bar, 0–1 when they lie there).
        labels_text: class names, a sequence indexed by integer label or a mapping label → name.
        hover: (n,) extra hover text per point.
        title: figure title.
        subtitle: optional line under it.
        highlight: point ids to ring (e.g. a selection in the other panel).
        point_size: marker size in px (default: by n).
        ids: (n,) point ids (default 0..n−1), in ``customdata[:, 0]`` to link selections.
        color_title: legend / colour-bar title (default "class" or "per-sample coherence c_i (0–1)").
        color_range: (lo, hi) of the colour bar.
        axis_titles: axis titles (default "component 1", ...).
        height: px.

    Returns:
        go.Figure.
    """
    xyz = _coords(coords)
    color_title = color_title or ("class" if color_kind == "label" else "per-sample coherence c_i (0–1)")
    fig = _new_figure(title, subtitle, height=height, **_color_layout(color, color_kind, color_title, color_range))
    fig.add_traces(_scatter_traces(xyz, color=color, color_kind=color_kind, labels_text=labels_text, hover=hover,
                                   ids=ids, highlight=highlight, point_size=point_size, color_title=color_title))
    _set_axes(fig, _axis_titles(xyz.shape[1], axis_titles), xyz.shape[1])
    fig.update_layout(dragmode="lasso" if xyz.shape[1] == 2 else "orbit")
    return fig


def side_by_side_embeddings(teacher_coords, student_coords, *, color=None, color_kind: str = "label",
                            labels_text=None, hover=None, highlight=None, point_size: int | None = None,
                            ids=None, titles: Sequence[str] = ("teacher", "student"),
                            title: str = "teacher | student embedding plots", subtitle: str | None = None,
                            color_title: str | None = None, color_range=None,
                            axis_titles: Sequence[str] | None = None, height: int = 500) -> go.Figure:
    """Teacher and student projections side by side, coloured the same way, points in the same order.

    Both panels hold the same traces in the same order, so a point's (trace, index) — and its id
    in ``customdata[:, 0]`` — is the same on both sides: a selection in one can be shown in the other.
    The student should already be aligned to the teacher (:func:`perco_viz.projection.align_to`).

    Args:
        teacher_coords: (n, 2|3) teacher projection.
        student_coords: (n, 2|3) student projection, same rows and dim.
        titles: the two panel titles.
        Others: as :func:`embedding_figure`.

    Returns:
        go.Figure with two subplots; the class legend toggles a class in both.
    """
    t, s = _coords(teacher_coords, "teacher_coords"), _coords(student_coords, "student_coords")
    if t.shape != s.shape:
        raise ValueError(f"teacher and student projections must have the same shape, got {t.shape} and {s.shape}")
    dim = t.shape[1]
    kind = {"type": "scene"} if dim == 3 else {}
    fig = make_subplots(rows=1, cols=2, subplot_titles=list(titles), horizontal_spacing=0.08,
                        specs=[[kind, kind]])
    color_title = color_title or ("class" if color_kind == "label" else "per-sample coherence c_i (0–1)")
    _new_figure(title, subtitle, fig=fig, height=height, **_color_layout(color, color_kind, color_title, color_range))
    for col, xyz in enumerate((t, s), start=1):
        for tr in _scatter_traces(xyz, color=color, color_kind=color_kind, labels_text=labels_text, hover=hover,
                                  ids=ids, highlight=highlight, point_size=point_size, color_title=color_title,
                                  showlegend=col == 1):
            fig.add_trace(tr, row=1, col=col)
        _set_axes(fig, _axis_titles(dim, axis_titles), dim, row=1, col=col, scene="scene" if col == 1 else "scene2")
    fig.update_layout(dragmode="lasso" if dim == 2 else "orbit")
    return fig


# ----------------------------------------------------------------------------- curves
def record_number(record: Mapping, key: str) -> float | None:
    """``record[key]`` of a ``metrics.jsonl`` line when it is a finite real number, else None (a
    line written by another tool, or damaged, may hold text, lists or NaN there)."""
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float range
        return None
    return value if math.isfinite(value) else None


def _series(records: Sequence[Mapping], key: str) -> tuple[list[float], list[float], list[str]]:
    """(x = epoch, y, hover text) over the records that hold a finite ``key`` and a finite epoch."""
    xs, ys, tips = [], [], []
    for r in records:
        x, y = record_number(r, "epoch"), record_number(r, key)
        if x is None or y is None:
            continue
        xs.append(x)
        ys.append(y)
        wall, step = record_number(r, "wall_s"), record_number(r, "step")
        tips.append(" · ".join(t for t in (f"step {int(step)}" if step is not None else "",
                                           f"{wall:.1f} s" if wall is not None else "") if t))
    return xs, ys, tips


def _line(x, y, tips, name: str, colour: str, **kw) -> go.Scatter:
    return go.Scatter(x=x, y=y, text=tips, name=name, mode="lines+markers" if len(x) < 60 else "lines",
                      line={"color": colour, "width": 2}, marker={"size": 5},
                      hovertemplate=f"{name}<br>epoch %{{x:.3g}}: %{{y:.4g}}<br>%{{text}}<extra></extra>", **kw)


CURVE_PANELS = (("train_loss", "training loss", "loss"), ("pc", "PC on the probe set (dotted: chance)", "PC (0–1)"),
                ("knn_acc", "k-NN accuracy on the probe set", "k-NN accuracy (0–1)"))


def training_curves(records: Sequence[Mapping], *, title: str = "training curves", stacked: bool = False,
                    height: int | None = None) -> go.Figure:
    """Loss | PC | k-NN accuracy against epoch, from ``metrics.jsonl`` rows.

    Args:
        records: dicts with ``epoch`` (fractional allowed) and some of ``train_loss``, ``pc``,
            ``knn_acc``, ``step``, ``wall_s``; missing or None values are skipped.
        title: figure title.
        stacked: panels one under the other (for a narrow column) instead of side by side.
        height: px (default 360 side by side, 640 stacked).

    Returns:
        go.Figure with three subplots (one trace each that has data), a dotted chance line at PC 0.5.
    """
    shape = {"rows": 3, "cols": 1, "vertical_spacing": 0.12} if stacked else {"rows": 1, "cols": 3,
                                                                               "horizontal_spacing": 0.09}
    fig = make_subplots(**shape, subplot_titles=[p[1] for p in CURVE_PANELS])
    _new_figure(title, fig=fig, height=height or (640 if stacked else 360), showlegend=False)
    for i, (key, name, y_title) in enumerate(CURVE_PANELS):
        cell = {"row": i + 1, "col": 1} if stacked else {"row": 1, "col": i + 1}
        x, y, tips = _series(records, key)
        if x:
            fig.add_trace(_line(x, y, tips, name, PRIMARY), **cell)
        fig.update_xaxes(title_text="epoch", **cell)
        fig.update_yaxes(title_text=y_title, **cell)
        if key == "pc":
            fig.add_hline(y=0.5, line_dash="dot", line_color="#8a909c", **cell)
    if not fig.data:
        _no_data(fig, "no metrics yet")
    return fig


def compare_curves(runs: Mapping[str, Sequence[Mapping]], metric: str, *, title: str | None = None,
                   height: int = 420) -> go.Figure:
    """One line per run of ``metric`` against epoch.

    Args:
        runs: run name → its metrics records (as :func:`training_curves`).
        metric: record key, e.g. ``pc``, ``knn_acc``, ``train_loss``.
        title: default "<metric> by run".
        height: px.

    Returns:
        go.Figure with one trace per run that has the metric.
    """
    label = _metric_label(metric)
    fig = _new_figure(title or f"{label.split(' (')[0]} by run", height=height, legend={"title": {"text": "run"}})
    for i, (name, records) in enumerate(runs.items()):
        x, y, tips = _series(records, metric)
        if x:
            fig.add_trace(_line(x, y, tips, str(name), PALETTE[i % len(PALETTE)]))
    if metric == "pc":
        fig.add_hline(y=0.5, line_dash="dot", line_color="#8a909c", annotation_text="chance")
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text=label)
    return fig if fig.data else _no_data(fig, f"no run has recorded {metric!r} yet")


def _mean_std(rows: Sequence[Mapping], metric: str, group: str) -> dict[str, tuple[float, float]]:
    """group → (mean, std): from ``<metric>_mean``/``_std`` when summarised, else over the rows (sample std)."""
    values: dict[str, list[float]] = {}
    out: dict[str, tuple[float, float]] = {}
    for r in rows:
        name = str(r.get(group))
        if r.get(f"{metric}_mean") is not None:
            out[name] = (float(r[f"{metric}_mean"]), float(r.get(f"{metric}_std") or 0.0))
        elif r.get(metric) is not None and math.isfinite(float(r[metric])):
            values.setdefault(name, []).append(float(r[metric]))
    for name, v in values.items():
        out.setdefault(name, (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0))
    return out


def metrics_bar(rows: Sequence[Mapping], metric: str, *, group: str = "method", reference: str | None = "teacher",
                title: str | None = None, height: int = 420) -> go.Figure:
    """Bars of ``metric`` per method: mean ± std over its rows (seeds).

    Args:
        rows: one dict per run (``{"method": ..., "pc": ...}``) or per method already summarised
            (``{"method": ..., "pc_mean": ..., "pc_std": ...}``).
        metric: the key to draw.
        group: the key naming the bar of a row.
        reference: a group drawn as a dashed line instead of a bar (the teacher), if present.
        title: default "<metric> by method (mean ± std)".
        height: px.

    Returns:
        go.Figure with one Bar trace (error bars = std).
    """
    stats = _mean_std(rows, metric, group)
    label = _metric_label(metric)
    fig = _new_figure(title or f"{label.split(' (')[0]} by {group} (mean ± std)", height=height, showlegend=False)
    names = [g for g in stats if g != reference]
    fig.add_trace(go.Bar(x=names, y=[stats[g][0] for g in names], marker_color=PRIMARY, name=label,
                         error_y={"type": "data", "array": [stats[g][1] for g in names], "color": "#1f2430"},
                         hovertemplate="%{x}: %{y:.4f}<extra></extra>"))
    if reference in stats:
        fig.add_hline(y=stats[reference][0], line_dash="dash", line_color="#1f2430", annotation_text=reference)
    fig.update_xaxes(title_text=group)
    fig.update_yaxes(title_text=label)
    return fig


# ----------------------------------------------------------------------------- matrices (A, R)
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
    fig = _new_figure(title, sub, height=height)
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
                 "ticktext": [_class_name(v, class_names) for v in y_sorted[starts]]}
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
    fig = _new_figure(title, f"{len(t):,} of {m:,} pairs drawn" if m > len(t) else f"{m:,} pairs", height=height)
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
    return fig if m else _no_data(fig, "no pairs")


# ----------------------------------------------------------------------------- one anchor's neighbours
def _anchor_row(d, anchor: int) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64)
    return d[anchor] if d.ndim == 2 else d


def _normalized_ranks(v: np.ndarray) -> np.ndarray:
    """(m,) → (m,) R of DESIGN.md §1 for one row: (#smaller + ½ #equal others) / (m − 1)."""
    s = np.sort(v)
    less = np.searchsorted(s, v, side="left")
    return (less + 0.5 * (np.searchsorted(s, v, side="right") - less - 1)) / max(len(v) - 1, 1)


def anchor_neighbours_table(d_teacher, d_student, anchor: int, *, k: int = 10, labels=None) -> pd.DataFrame:
    """The anchor's k nearest neighbours by the teacher and by the student, side by side.

    Same columns as :func:`perco_viz.analysis.anchor_neighbours` (which starts from features).

    Args:
        d_teacher: (n,) teacher dissimilarities from the anchor (or the (n, n) matrix).
        d_student: (n,) student dissimilarities from the anchor (or the (n, n) matrix).
        anchor: the anchor's row (its own entry is ignored).
        k: neighbours listed from each side.
        labels: (n,) optional labels.

    Returns:
        DataFrame, one row per point in either top k (k…2k rows), sorted by teacher rank, with
        ``point``, ``teacher_rank``, ``student_rank`` (1 = nearest), ``rank_shift`` (student −
        teacher: > 0 = the student pushes it away), ``teacher_dissimilarity``,
        ``student_dissimilarity``, ``agreement`` (A[anchor, point]), ``in_teacher_top_k``,
        ``in_student_top_k``, ``label``.
    """
    t, s = _anchor_row(d_teacher, anchor), _anchor_row(d_student, anchor)
    n = len(t)
    if len(s) != n or not 0 <= anchor < n or n < 3:
        raise ValueError(f"need two rows of the same n ≥ 3 dissimilarities and 0 ≤ anchor < n; got "
                         f"{len(t)}, {len(s)}, anchor {anchor}")
    others = np.delete(np.arange(n), anchor)
    t, s = t[others], s[others]
    rank_t, rank_s = (np.argsort(np.argsort(v, kind="stable"), kind="stable") + 1 for v in (t, s))
    k = min(int(k), n - 1)
    keep = np.flatnonzero((rank_t <= k) | (rank_s <= k))
    keep = keep[np.argsort(rank_t[keep], kind="stable")]
    return pd.DataFrame({
        "point": others[keep], "teacher_rank": rank_t[keep], "student_rank": rank_s[keep],
        "rank_shift": rank_s[keep] - rank_t[keep], "teacher_dissimilarity": t[keep],
        "student_dissimilarity": s[keep],
        "agreement": 1.0 - np.abs(_normalized_ranks(t) - _normalized_ranks(s))[keep],
        "in_teacher_top_k": rank_t[keep] <= k, "in_student_top_k": rank_s[keep] <= k,
        "label": [None] * len(keep) if labels is None else np.asarray(labels)[others[keep]],
    })


def _shift_colour(shift: float, k: int) -> str:
    """Green for an unchanged rank, red for a shift of k places or more (the c_i scale's 1 → 0.5)."""
    return sample_colorscale(COHERENCE_SCALE, [1.0 - 0.5 * min(abs(shift) / max(k, 1), 1.0)])[0]


def anchor_neighbours_figure(table: pd.DataFrame, *, anchor: int | None = None, class_names=None,
                             title: str | None = None, height: int = 520) -> go.Figure:
    """Slope chart: each neighbour's rank by the teacher (left) joined to its rank by the student (right).

    Args:
        table: from :func:`anchor_neighbours_table` or :func:`perco_viz.analysis.anchor_neighbours`
            (columns ``point``, ``teacher_rank``, ``student_rank``; ``label`` optional).
        anchor: the anchor's id, for the title.
        class_names: names of the labels, for hover.
        title: default "neighbours of anchor <anchor>: teacher rank → student rank".
        height: px.

    Returns:
        go.Figure with one line trace per neighbour (log-scale rank axis, 1 = nearest on top).
    """
    k = int(table.get("in_teacher_top_k", pd.Series([True] * len(table))).sum()) or len(table)
    head = title or f"neighbours of anchor {anchor if anchor is not None else ''}: teacher rank → student rank"
    fig = _new_figure(head, f"green: the student keeps the rank; red: it moves by ≥ {k} places", height=height,
                      showlegend=False)
    for row in table.itertuples(index=False):
        label = getattr(row, "label", None)
        cls = "" if label is None or label != label else f" (class {_class_name(label, class_names)})"
        fig.add_trace(go.Scatter(
            x=["teacher", "student"], y=[row.teacher_rank, row.student_rank], mode="lines+markers+text",
            text=[f"#{row.point}", f"#{row.point}"], textposition=["middle left", "middle right"],
            line={"color": _shift_colour(row.student_rank - row.teacher_rank, k), "width": 2}, marker={"size": 7},
            name=f"#{row.point}", hovertemplate=f"point {row.point}{cls}<br>%{{x}} rank %{{y}}<extra></extra>"))
    fig.update_xaxes(title_text="who ranks", range=[-0.6, 1.6])
    top = int(max(table["teacher_rank"].max(), table["student_rank"].max())) if len(table) else 1
    ticks = [t for t in (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000) if t <= top] + [top]
    fig.update_yaxes(title_text="rank from the anchor (1 = nearest, log scale)", type="log", autorange="reversed",
                     tickmode="array", tickvals=sorted(set(ticks)))
    return fig if len(table) else _no_data(fig, "no neighbours")


# ----------------------------------------------------------------------------- per-sample coherence c_i
def _coherence_values(c, name: str = "c") -> np.ndarray:
    v = np.asarray(c, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def _c_axis_range(values: np.ndarray) -> list[float]:
    lo = float(values.min()) if len(values) else 0.5
    return [max(0.0, min(0.5, lo) - 0.03), 1.01]


def coherence_over_epochs(c_by_epoch: Sequence, epochs: Sequence[float], *, max_points: int = 5000, seed: int = 0,
                          title: str = "per-sample coherence c_i over epochs", height: int = 460) -> go.Figure:
    """One violin of c_i per snapshot: does the lower tail catch up, or only the mean?

    Args:
        c_by_epoch: k arrays (n,) of c_i, one per snapshot.
        epochs: k epochs (fractional allowed).
        max_points: violins are drawn from at most this many c_i per snapshot (seeded sample).
        seed: fixes the sample.
        title: figure title.
        height: px.

    Returns:
        go.Figure with one Violin per snapshot, filled by its median (red = low) and a chance line.
    """
    if len(c_by_epoch) != len(epochs):
        raise ValueError(f"{len(c_by_epoch)} c_i arrays for {len(epochs)} epochs")
    rng = np.random.default_rng(seed)
    values = [_coherence_values(c) for c in c_by_epoch]
    sampled = any(len(v) > max_points for v in values)
    fig = _new_figure(title, f"each violin drawn from {max_points:,} sampled points" if sampled else None,
                      height=height, showlegend=False)
    for epoch, v in zip(epochs, values):
        v = rng.choice(v, max_points, replace=False) if len(v) > max_points else v
        fill = sample_colorscale(COHERENCE_SCALE, [float(np.median(v)) if len(v) else 0.0])[0]
        fig.add_trace(go.Violin(y=v, name=f"{epoch:g}", fillcolor=fill,
                                line={"color": PRIMARY, "width": 1}, opacity=0.85, box={"visible": True},
                                meanline={"visible": True}, points=False, spanmode="hard"))
    fig.add_hline(y=0.5, line_dash="dot", line_color="#8a909c", annotation_text="chance")
    fig.update_xaxes(title_text="epoch", type="category")
    fig.update_yaxes(title_text="per-sample coherence c_i (0–1)",
                     range=_c_axis_range(np.concatenate(values) if values else np.zeros(0)))
    return fig


def coherence_histogram(c, *, bins: int = 40, title: str = "distribution of per-sample coherence c_i",
                        height: int = 400) -> go.Figure:
    """Histogram of c_i, bars coloured by c_i (low = red), the mean and the 10th percentile marked.

    Args:
        c: (n,) per-sample coherence.
        bins: number of bars between the lowest c_i (rounded down to 0.05) and 1.
        title: figure title.
        height: px.

    Returns:
        go.Figure with one Bar trace and two vertical lines.
    """
    v = _coherence_values(c)
    fig = _new_figure(title, f"n = {len(v):,}", height=height, bargap=0.02, legend=LEGEND_ON_TOP)
    if not len(v):
        return _no_data(fig, "no c_i")
    lo = min(math.floor(v.min() * 20) / 20, 0.95)
    counts, edges = np.histogram(v, bins=bins, range=(lo, 1.0))
    mids = (edges[:-1] + edges[1:]) / 2
    fig.add_trace(go.Bar(x=mids, y=counts, width=np.diff(edges), marker_color=sample_colorscale(COHERENCE_SCALE, mids),
                         name="samples", showlegend=False, hovertemplate="c_i %{x:.3f}: %{y} samples<extra></extra>"))
    top = float(counts.max()) * 1.05
    for name, x, line in ((f"10th percentile {np.percentile(v, 10):.3f}", np.percentile(v, 10), {"dash": "dash", "color": "#b2182b"}),
                          (f"mean (= PC) {v.mean():.3f}", v.mean(), {"color": PRIMARY})):
        fig.add_trace(go.Scatter(x=[x, x], y=[0, top], mode="lines", name=name, line={"width": 2.5, **line},
                                 hovertemplate=f"{name}<extra></extra>"))
    fig.update_xaxes(title_text="per-sample coherence c_i (0–1)", range=[lo, 1.0])
    fig.update_yaxes(title_text="number of samples")
    return fig


def per_class_coherence(c, labels, class_names=None, *, title: str = "per-sample coherence c_i by class",
                        height: int = 440) -> go.Figure:
    """Box per class from precomputed quantiles (light for 100k points): which classes the student gets worse.

    Args:
        c: (n,) per-sample coherence.
        labels: (n,) class labels.
        class_names: names of the labels (sequence by int label, or mapping).
        title: figure title.
        height: px.

    Returns:
        go.Figure with one Box per class (boxes: quartiles, whiskers: 5th–95th percentile, dashed: mean).
    """
    v = np.asarray(c, dtype=np.float64)
    if len(v) != len(labels):
        raise ValueError(f"c has {len(v)} entries, labels {len(labels)}")
    fig = _new_figure(title, "box: quartiles · whiskers: 5th–95th percentile · dashed: mean", height=height,
                      showlegend=False)
    for name, colour, idx in _classes(labels, class_names):
        x = v[idx][np.isfinite(v[idx])]
        if not len(x):
            continue
        p5, q1, med, q3, p95 = np.percentile(x, [5, 25, 50, 75, 95])
        fig.add_trace(go.Box(x=[name], q1=[q1], median=[med], q3=[q3], lowerfence=[p5], upperfence=[p95],
                             mean=[x.mean()], name=f"{name} (n = {len(x)})", marker_color=colour,
                             boxmean=True, hoverinfo="y+name"))
    fig.add_hline(y=0.5, line_dash="dot", line_color="#8a909c", annotation_text="chance")
    fig.update_xaxes(title_text="class", type="category")
    fig.update_yaxes(title_text="per-sample coherence c_i (0–1)", range=_c_axis_range(v[np.isfinite(v)]))
    return fig


# ----------------------------------------------------------------------------- teaching view
def _rank_text(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"


def _arrow_segments(xyz: np.ndarray, arrows: np.ndarray) -> dict[str, list]:
    """x/y(/z) of line segments point → point + arrow, separated by None (one Scatter3d trace)."""
    out: dict[str, list] = {a: [] for a in "xyz"[: xyz.shape[1]]}
    for p, v in zip(xyz, arrows):
        for j, a in enumerate(out):
            out[a] += [p[j], p[j] + v[j], None]
    return out


def teaching_points_figure(points, anchor: int, ranks_teacher, ranks_student, arrows=None, *,
                           title: str = "what the anchor perceives: teacher rank / student rank",
                           axis_titles: Sequence[str] | None = None, height: int = 520) -> go.Figure:
    """Toy points with the anchor starred and each point labelled "teacher rank / student rank".

    Points are coloured by how well the two ranks agree (A, green = same place). ``arrows`` (e.g.
    −lr × the loss gradient) are drawn from each point: arrow annotations in 2-D, segments in 3-D.

    Args:
        points: (n, 2) or (n, 3) student points (what is drawn).
        anchor: the anchor's index.
        ranks_teacher: (n,) the teacher's rank of each point from the anchor (NaN at the anchor):
            positions 1..n−1 or normalized ranks in [0, 1].
        ranks_student: (n,) the student's, same kind.
        arrows: (n, 2|3) displacement of each point, or None.
        title: figure title.
        axis_titles: default "x 1", "x 2" (, "x 3").
        height: px.

    Returns:
        go.Figure: a "points" trace, an "anchor" trace (and in 3-D an "update" trace).
    """
    xyz = _coords(points, "points")
    n, dim = xyz.shape
    rt, rs = np.asarray(ranks_teacher, dtype=np.float64), np.asarray(ranks_student, dtype=np.float64)
    if len(rt) != n or len(rs) != n or not 0 <= anchor < n:
        raise ValueError(f"need (n,) ranks for the {n} points and 0 ≤ anchor < {n}")
    scale = 1.0 if np.nanmax(np.r_[rt, rs, 0.0]) <= 1.0 else max(n - 2, 1)  # positions → normalized
    agree = 1.0 - np.abs(rt - rs) / scale
    others = np.delete(np.arange(n), anchor)
    scatter = go.Scatter3d if dim == 3 else go.Scatter
    fig = _new_figure(title, "label: teacher rank / student rank (1 = nearest) · colour: agreement A",
                      height=height, legend=LEGEND_ON_TOP,
                      coloraxis={"colorscale": COHERENCE_SCALE, "cmin": 0.0, "cmax": 1.0,
                                 "colorbar": {"title": {"text": "A (0–1)"}, "thickness": 14}})
    fig.add_trace(scatter(**dict(zip("xyz", xyz[others].T)), mode="markers+text", name="points",
                          text=[f"{_rank_text(rt[i])} / {_rank_text(rs[i])}" for i in others], textposition="top center",
                          customdata=others[:, None], marker={"size": 11, "color": agree[others], "coloraxis": "coloraxis",
                                                              "line": {"color": "#1f2430", "width": 1}},
                          hovertemplate="point %{customdata[0]}<br>teacher / student rank: %{text}<extra></extra>"))
    fig.add_trace(scatter(**dict(zip("xyz", xyz[[anchor]].T)), mode="markers", name="anchor",
                          marker={"size": 18, "color": PRIMARY, "symbol": "diamond" if dim == 3 else "star"},
                          hovertemplate=f"anchor {anchor}<extra></extra>"))
    if arrows is not None:
        _draw_arrows(fig, xyz, np.asarray(arrows, dtype=np.float64))
    _set_axes(fig, _axis_titles(dim, axis_titles or [f"x {i + 1}" for i in range(dim)]), dim)
    if dim == 2:
        fig.update_yaxes(scaleanchor="x")
    return fig


def _draw_arrows(fig: go.Figure, xyz: np.ndarray, arrows: np.ndarray) -> None:
    if arrows.shape != xyz.shape:
        raise ValueError(f"arrows must be (n, {xyz.shape[1]}) like the points, got {arrows.shape}")
    if xyz.shape[1] == 3:
        fig.add_trace(go.Scatter3d(**_arrow_segments(xyz, arrows), mode="lines", name="update",
                                   line={"color": TOO_FAR, "width": 5}, hoverinfo="skip"))
        return
    for p, v in zip(xyz, arrows):
        if np.hypot(*v) > 0:
            fig.add_annotation(x=p[0] + v[0], y=p[1] + v[1], ax=p[0], ay=p[1], xref="x", yref="y", axref="x",
                               ayref="y", showarrow=True, arrowhead=2, arrowsize=1.2, arrowwidth=1.8,
                               arrowcolor=TOO_FAR, text="")


def soft_step_functions(x: np.ndarray, tau: float) -> dict[str, np.ndarray]:
    """The hard step 1[x > 0] (½ at 0) and its soft versions g_τ(x): sigmoid σ(x/τ), ramp clamp(x/(2τ) + ½, 0, 1)."""
    return {"hard": np.where(x > 0, 1.0, np.where(x < 0, 0.0, 0.5)),
            "sigmoid": 0.5 * (1.0 + np.tanh(x / (2.0 * tau))),  # = σ(x/τ), without overflow
            "ramp": np.clip(x / (2.0 * tau) + 0.5, 0.0, 1.0)}


def soft_step_figure(tau: float, kernel: str = "ramp", *, title: str | None = None, height: int = 380) -> go.Figure:
    """The soft step g_τ of both kernels against the hard step it replaces in the student's ranks.

    Args:
        tau: soft-rank temperature τ > 0.
        kernel: the kernel in use (``ramp`` or ``sigmoid``), drawn bold.
        title: default "soft step g_τ at τ = <tau>".
        height: px.

    Returns:
        go.Figure with three traces: hard step, sigmoid, ramp.
    """
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    span = max(2.0, 4.0 * tau)
    x = np.linspace(-span, span, 801)
    y = soft_step_functions(x, tau)
    fig = _new_figure(title or f"soft step g_τ at τ = {tau:g}", "g_τ(x) = how much k counts as closer than j; "
                      "smaller τ: closer to the hard step, but gradients only near x = 0", height=height, legend={"title": {"text": "step"}})
    fig.add_trace(go.Scatter(x=[-span, 0, 0, span], y=[0, 0, 1, 1], name="hard 1[x > 0]", mode="lines",
                             line={"color": "#1f2430", "width": 1.5, "dash": "dot"}))
    for name, colour in (("sigmoid", TOO_NEAR), ("ramp", PRIMARY)):
        bold = name == kernel
        fig.add_trace(go.Scatter(x=x, y=y[name], name=f"{name}{' (in use)' if bold else ''}", mode="lines",
                                 line={"color": colour, "width": 3.5 if bold else 1.5, "dash": None if bold else "dash"}))
    fig.update_xaxes(title_text="x = D̂[i, j] − D̂[i, k]  (row-normalized student distances)")
    fig.update_yaxes(title_text="g_τ(x) (0–1)", range=[-0.05, 1.05])
    return fig


def loss_terms_figure(R_T_row, R_S_soft_row, *, point_ids=None, title: str | None = None,
                      height: int = 400) -> go.Figure:
    """One anchor's loss terms (R̃_S(j) − R_T(j))² per neighbour j, in the teacher's order.

    Args:
        R_T_row: (n,) teacher's hard normalized ranks from the anchor (NaN at the anchor).
        R_S_soft_row: (n,) student's soft ranks (NaN at the anchor).
        point_ids: (n,) ids shown on the x axis (default 0..n−1).
        title: default "loss terms of one anchor (mean = …)".
        height: px.

    Returns:
        go.Figure with two Bar traces: neighbours the student puts too far, and too near.
    """
    rt, rs = np.asarray(R_T_row, dtype=np.float64), np.asarray(R_S_soft_row, dtype=np.float64)
    if rt.shape != rs.shape or rt.ndim != 1:
        raise ValueError(f"R_T_row and R_S_soft_row must be (n,) rows of the same anchor, got {rt.shape}, {rs.shape}")
    ids = np.arange(len(rt)) if point_ids is None else np.asarray(point_ids)
    keep = np.flatnonzero(np.isfinite(rt) & np.isfinite(rs))
    keep = keep[np.argsort(rt[keep], kind="stable")]
    terms = (rs[keep] - rt[keep]) ** 2
    names = [f"#{i}" for i in ids[keep]]
    loss = float(terms.mean()) if len(terms) else float("nan")
    fig = _new_figure(title or f"loss terms of one anchor (mean = {loss:.4f})",
                      "bar height (R̃_S − R_T)²; neighbours ordered by the teacher's rank (nearest left)",
                      height=height, legend={"title": {"text": "the student ranks it"}}, barmode="overlay")
    for label, colour, mask in (("too far (R̃_S > R_T)", TOO_FAR, rs[keep] > rt[keep]),
                                ("too near (R̃_S ≤ R_T)", TOO_NEAR, rs[keep] <= rt[keep])):
        fig.add_trace(go.Bar(x=[n for n, m in zip(names, mask) if m], y=terms[mask], name=label, marker_color=colour,
                             customdata=np.column_stack([rt[keep][mask], rs[keep][mask]]),
                             hovertemplate="%{x}: R_T %{customdata[0]:.3f}, R̃_S %{customdata[1]:.3f}, "
                                           "term %{y:.4f}<extra></extra>"))
    fig.update_xaxes(title_text="neighbour j (ordered by teacher rank)", type="category",
                     categoryorder="array", categoryarray=names)
    fig.update_yaxes(title_text="(R̃_S(j) − R_T(j))²")
    return fig


# ----------------------------------------------------------------------------- thumbnails
def _png(img: np.ndarray) -> bytes:
    """Minimal PNG encoder: 8-bit greyscale (H, W), RGB (H, W, 3) or RGBA (H, W, 4), no filtering."""
    h, w = img.shape[:2]
    colour_type = {2: 0, 3: 2 if img.ndim == 3 and img.shape[2] == 3 else 6}[img.ndim]
    rows = np.ascontiguousarray(img).reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), rows], axis=1).tobytes()  # filter byte 0 per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def image_data_uri(img, scale: int = 4) -> str:
    """A small image as a PNG data URI (for ``<img src=...>`` and figure layout images).

    Args:
        img: (H, W) or (H, W, 3|4) uint8 (a trailing channel of 1 is dropped).
        scale: nearest-neighbour upscaling factor (pixel-art thumbnails stay sharp).

    Returns:
        ``"data:image/png;base64,..."``.
    """
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))) or 0 in a.shape:
        raise ValueError(f"expected a (H, W) or (H, W, 3) uint8 image, got {a.dtype} {a.shape}; "
                         "convert floats in [0, 1] with (img * 255).round().astype(np.uint8)")
    if int(scale) > 1:
        a = np.repeat(np.repeat(a, int(scale), axis=0), int(scale), axis=1)
    return "data:image/png;base64," + base64.b64encode(_png(a)).decode("ascii")


def thumbnail_grid(images, captions: Sequence[str] | None = None, ncols: int = 8, *, scale: int = 4,
                   title: str = "samples", cell_px: int = 110) -> go.Figure:
    """Images in a grid with a caption under each (e.g. the worst-k samples by c_i).

    Args:
        images: k images (H, W) or (H, W, 3) uint8.
        captions: k strings (default "#0", "#1", ...), also shown on hover.
        ncols: images per row.
        scale: upscaling of each thumbnail.
        title: figure title.
        cell_px: height of one grid row in px.

    Returns:
        go.Figure with the images as layout images, captions as annotations and one invisible
        hover trace; axes hidden.
    """
    k = len(images)
    captions = [f"#{i}" for i in range(k)] if captions is None else [str(c) for c in captions]
    if len(captions) != k:
        raise ValueError(f"{k} images but {len(captions)} captions")
    ncols = max(1, min(int(ncols), k or 1))
    nrows = math.ceil(k / ncols)
    fig = _new_figure(title, height=int(MARGIN["t"] + MARGIN["b"] + max(nrows, 1) * cell_px), showlegend=False)
    if not k:
        return _no_data(fig, "no images")
    cells = [(i % ncols, -1.3 * (i // ncols)) for i in range(k)]  # (x left, y top) of each cell
    for (x, y), img, cap in zip(cells, images, captions):
        fig.add_layout_image(source=image_data_uri(img, scale), xref="x", yref="y", x=x + 0.05, y=y, sizex=0.9,
                             sizey=0.9, xanchor="left", yanchor="top", sizing="contain", layer="above")
        fig.add_annotation(x=x + 0.5, y=y - 0.95, text=cap, showarrow=False, yanchor="top", font={"size": 11})
    fig.add_trace(go.Scatter(x=[x + 0.5 for x, _ in cells], y=[y - 0.45 for _, y in cells], text=captions,
                             mode="markers", marker={"opacity": 0, "size": 30}, hovertemplate="%{text}<extra></extra>"))
    fig.update_xaxes(visible=False, range=[0, ncols])
    fig.update_yaxes(visible=False, range=[-1.3 * nrows, 0.05], scaleanchor="x")
    return fig


# ----------------------------------------------------------------------------- export
def figure_html(fig: go.Figure) -> str:
    """A standalone HTML page of the figure, plotly.js inlined: interactive and offline."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False})


def figure_image(fig: go.Figure, fmt: str = "png", *, scale: float = 2.0) -> bytes:
    """A static PNG or SVG of the figure (needs the optional ``kaleido`` package).

    Args:
        fig: the figure.
        fmt: ``png`` or ``svg``.
        scale: pixel density of PNGs.

    Returns:
        The image file's bytes.

    Raises:
        ImportError: kaleido is not installed (``pip install kaleido``); HTML export needs nothing.
    """
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be 'png' or 'svg', got {fmt!r}")
    if importlib.util.find_spec("kaleido") is None:
        raise ImportError("static image export needs kaleido: pip install kaleido "
                          "(or use figure_html, which needs nothing)")
    return fig.to_image(format=fmt, scale=scale)
