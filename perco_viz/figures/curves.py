"""Training curves of a run and curves of several runs (the bars of a method benchmark:
:mod:`perco_viz.figures.compare`).

Pure functions: data in, ``go.Figure`` out; no I/O, no Streamlit."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from perco_viz.figures.style import (
    PALETTE,
    PRIMARY,
    metric_label,
    new_figure,
    no_data,
)


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
    new_figure(title, fig=fig, height=height or (640 if stacked else 360), showlegend=False)
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
        no_data(fig, "no metrics yet")
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
    label = metric_label(metric)
    fig = new_figure(title or f"{label.split(' (')[0]} by run", height=height, legend={"title": {"text": "run"}})
    for i, (name, records) in enumerate(runs.items()):
        x, y, tips = _series(records, metric)
        if x:
            fig.add_trace(_line(x, y, tips, str(name), PALETTE[i % len(PALETTE)]))
    if metric == "pc":
        fig.add_hline(y=0.5, line_dash="dot", line_color="#8a909c", annotation_text="chance")
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text=label)
    return fig if fig.data else no_data(fig, f"no run has recorded {metric!r} yet")
