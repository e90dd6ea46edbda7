"""Per-sample coherence c_i: over epochs, as a histogram, by class.

Pure functions: data in, ``go.Figure`` out; no I/O, no Streamlit."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from perco_viz.figures.style import (
    COHERENCE_SCALE,
    MARGIN,
    PRIMARY,
    class_groups,
    new_figure,
    no_data,
)

# the histogram's legend (its two lines) under the x axis: on top it ran into the title in half a 1024 px page
LEGEND_UNDER = {"orientation": "h", "x": 0.0, "xanchor": "left", "y": -0.2, "yanchor": "top"}


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
    fig = new_figure(title, f"each violin drawn from {max_points:,} sampled points" if sampled else None,
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
        go.Figure with one Bar trace and two vertical lines (named in a legend under the plot).
    """
    v = _coherence_values(c)
    fig = new_figure(title, f"n = {len(v):,}", height=height, bargap=0.02, legend=LEGEND_UNDER)
    fig.update_layout(margin_b=MARGIN["b"] + 45)  # room for the legend under the axis title
    if not len(v):
        return no_data(fig, "no c_i")
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
    fig = new_figure(title, "box: quartiles · whiskers: 5th–95th percentile · dashed: mean", height=height,
                      showlegend=False)
    for name, colour, idx in class_groups(labels, class_names):
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
