"""The Compare page's figures: bars of a method benchmark and the final embeddings of several
runs side by side (their curves are :func:`perco_viz.figures.curves.compare_curves`).

Pure functions: data in, ``go.Figure`` out; no I/O, no Streamlit."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from perco_viz.figures.style import (
    COHERENCE_SCALE,
    PRIMARY,
    TEMPLATE,
    class_groups,
    metric_label,
    new_figure,
)


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
    label = metric_label(metric)
    fig = new_figure(title or f"{label.split(' (')[0]} by {group} (mean ± std)", height=height, showlegend=False)
    names = [g for g in stats if g != reference]
    fig.add_trace(go.Bar(x=names, y=[stats[g][0] for g in names], marker_color=PRIMARY, name=label,
                         error_y={"type": "data", "array": [stats[g][1] for g in names], "color": "#1f2430"},
                         hovertemplate="%{x}: %{y:.4f}<extra></extra>"))
    if reference in stats:
        fig.add_hline(y=stats[reference][0], line_dash="dash", line_color="#1f2430", annotation_text=reference)
    fig.update_xaxes(title_text=group)
    fig.update_yaxes(title_text=label)
    return fig


def compare_embeddings(panels: Mapping[str, np.ndarray], labels: np.ndarray | None = None,
                       coherence: Mapping[str, np.ndarray] | None = None,
                       class_names: Sequence[str] | None = None, columns: int = 3) -> go.Figure:
    """Embedding plots side by side, every panel coloured the same way.

    Args:
        panels: title → (n, 2) coordinates of the same n probe inputs (e.g. the teacher's PCA and
            each student's, aligned to it: :func:`perco_viz.analysis.projection.student_projection`).
        labels: (n,) class codes: one colour per class in every panel (legend toggles all).
        coherence: title → (n,) c_i, used for the colour when there are no labels.
        class_names: names of the class codes.
        columns: panels per row.

    Returns:
        go.Figure with one subplot per panel (a ``Scattergl`` per class, or one coloured by c_i).
    """
    titles = list(panels)
    cols = max(1, min(columns, len(titles)))
    nrows = math.ceil(len(titles) / cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles, horizontal_spacing=0.06,
                        vertical_spacing=0.12 if nrows > 1 else 0.08)
    groups = class_groups(labels, class_names) if labels is not None else []
    for i, title in enumerate(titles):
        xy, row, col = panels[title], i // cols + 1, i % cols + 1
        if labels is not None:
            for name, colour, rows in groups:
                fig.add_trace(go.Scattergl(
                    x=xy[rows, 0], y=xy[rows, 1], mode="markers", name=name, legendgroup=name,
                    showlegend=i == 0, marker={"size": 5, "color": colour},
                    hovertemplate=f"{title}<br>class {name}<extra></extra>"), row=row, col=col)
        else:
            c = (coherence or {}).get(title)
            fig.add_trace(go.Scattergl(
                x=xy[:, 0], y=xy[:, 1], mode="markers", showlegend=False,
                marker={"size": 5, "color": c, "colorscale": COHERENCE_SCALE, "cmin": 0.5, "cmax": 1.0,
                        "colorbar": {"title": "c_i"} if i == 0 and c is not None else None}), row=row, col=col)
        fig.update_xaxes(title_text="PC 1 (teacher's orientation)", row=row, col=col)
        fig.update_yaxes(title_text="PC 2", row=row, col=col)
    fig.update_layout(template=TEMPLATE, title="Final embeddings of the probe set (PCA, aligned to the teacher)",
                      height=400 * nrows + 90, margin={"t": 90, "b": 100},
                      legend={"title": "class", "orientation": "h", "yanchor": "top", "y": -0.2, "x": 0})
    return fig
