"""Embedding scatters: one panel, or teacher and student side by side.

Pure functions: data in, ``go.Figure`` out; no I/O, no Streamlit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from perco_viz.figures.style import (
    COHERENCE_SCALE,
    LEGEND_ON_TOP,
    PRIMARY,
    WEBGL_ABOVE,
    as_coords,
    class_groups,
    default_axis_titles,
    marker_size,
    new_figure,
    set_axis_titles,
)


def _scatter_traces(xyz: np.ndarray, *, color, color_kind: str, labels_text, hover, ids, highlight,
                    point_size: int | None, color_title: str, showlegend: bool = True) -> list:
    """Traces of one embedding plot: one per class (the legend toggles classes, grouped across
    panels), or one coloured by ``coloraxis``; plus the highlighted points. customdata[:, 0] = id."""
    n, dim = xyz.shape
    ids = np.arange(n) if ids is None else np.asarray(ids)
    if len(ids) != n or (color is not None and len(color) != n) or (hover is not None and len(hover) != n):
        raise ValueError(f"color, hover and ids must have one entry per point ({n})")
    text = None if hover is None else np.asarray(hover, dtype=object)
    size = point_size or marker_size(n, dim)
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
                  for name, colour, idx in class_groups(color, labels_text)]
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
    xyz = as_coords(coords)
    color_title = color_title or ("class" if color_kind == "label" else "per-sample coherence c_i (0–1)")
    fig = new_figure(title, subtitle, height=height, **_color_layout(color, color_kind, color_title, color_range))
    fig.add_traces(_scatter_traces(xyz, color=color, color_kind=color_kind, labels_text=labels_text, hover=hover,
                                   ids=ids, highlight=highlight, point_size=point_size, color_title=color_title))
    set_axis_titles(fig, default_axis_titles(xyz.shape[1], axis_titles), xyz.shape[1])
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
    t, s = as_coords(teacher_coords, "teacher_coords"), as_coords(student_coords, "student_coords")
    if t.shape != s.shape:
        raise ValueError(f"teacher and student projections must have the same shape, got {t.shape} and {s.shape}")
    dim = t.shape[1]
    kind = {"type": "scene"} if dim == 3 else {}
    fig = make_subplots(rows=1, cols=2, subplot_titles=list(titles), horizontal_spacing=0.08,
                        specs=[[kind, kind]])
    color_title = color_title or ("class" if color_kind == "label" else "per-sample coherence c_i (0–1)")
    new_figure(title, subtitle, fig=fig, height=height, **_color_layout(color, color_kind, color_title, color_range))
    for col, xyz in enumerate((t, s), start=1):
        for tr in _scatter_traces(xyz, color=color, color_kind=color_kind, labels_text=labels_text, hover=hover,
                                  ids=ids, highlight=highlight, point_size=point_size, color_title=color_title,
                                  showlegend=col == 1):
            fig.add_trace(tr, row=1, col=col)
        set_axis_titles(fig, default_axis_titles(dim, axis_titles), dim, row=1, col=col, scene="scene" if col == 1 else "scene2")
    fig.update_layout(dragmode="lasso" if dim == 2 else "orbit")
    return fig
