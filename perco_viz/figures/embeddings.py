"""Embedding scatters: one panel, teacher and student side by side, the Embeddings page's panel
(axes fixed over the snapshots, a highlighted selection) and its animation over the snapshots.

Up to 100,000 points and more, every point drawn: 2-D plots above :data:`WEBGL_ABOVE` points
are WebGL (``go.Scattergl``), 3-D plots are ``go.Scatter3d`` (WebGL too; it draws 100,000
points but turns slower than 2-D pans, see docs/benchmarks.md). The payload stays small:
coordinates and colour values are float32 typed arrays above :data:`WEBGL_ABOVE` points, and a :class:`~perco_viz.analysis.embeddings.Hover`
puts the tooltip's numbers in ``customdata`` with one ``hovertemplate`` instead of one string
per point. The animation draws at most ``ANIMATION_MAX_POINTS`` points (a stated sample).

Pure functions: data in, ``go.Figure`` out; no I/O, no Streamlit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from perco_viz.analysis.embeddings import (
    ANIMATION_MAX_POINTS,
    AXIS_PREFIX,
    AlignedProjections,
    Coloring,
    Hover,
)
from perco_viz.analysis.projection import stratified_subsample
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

MARKED = "inspected input"  # the ring of the one input whose neighbours the page lists
LEGEND_BELOW = {"orientation": "h", "x": 0.0, "xanchor": "left", "y": -0.16, "yanchor": "top",
                "itemsizing": "constant", "title": {"side": "left"}}  # a row under the x-axis title
OTHERS = "not matching"  # the name of the greyed trace of the points a search leaves out
OTHERS_COLOR = "#c3c8d1"


def _scatter_traces(xyz: np.ndarray, *, color, color_kind: str, labels_text, hover, ids, highlight,
                    point_size: int | None, color_title: str, showlegend: bool = True, matches=None,
                    hide_others: bool = False) -> list:
    """Traces of one embedding plot: one per class (the legend toggles classes, grouped across
    panels), or one coloured by ``coloraxis``; plus the highlighted points. customdata[:, 0] = id.

    ``hover``: (n,) strings, or a :class:`Hover` (its numbers become customdata[:, 1:], its
    template the tooltip: no per-point string). ``matches``: ids of the points a search kept
    (None: all): only they are coloured; the others are one grey trace drawn beneath them
    (:data:`OTHERS`), or left out when ``hide_others``. Above :data:`WEBGL_ABOVE` points the
    coordinates and colour values go out as float32."""
    n, dim = xyz.shape
    ids = np.arange(n) if ids is None else np.asarray(ids)
    fields = hover if isinstance(hover, Hover) else None
    hover_len = len(fields.values) if fields is not None else None if hover is None else len(hover)
    if len(ids) != n or (color is not None and len(color) != n) or (hover_len is not None and hover_len != n):
        raise ValueError(f"color, hover and ids must have one entry per point ({n})")
    keep = np.ones(n, dtype=bool) if matches is None else np.isin(ids, np.asarray(matches, dtype=ids.dtype))
    if fields is not None:
        text, extra = fields.text, fields.template
        custom = np.column_stack([ids.astype(fields.values.dtype), fields.values])  # (n, 1 + c)
    else:
        text, extra = (None, "") if hover is None else (np.asarray(hover, dtype=object), "%{text}")
        custom = ids[:, None]
    compact = np.float32 if n > WEBGL_ABOVE else np.float64  # large plots: float32 typed arrays, half the bytes
    xyz = xyz.astype(compact)
    size = point_size or marker_size(n, dim)
    scatter = go.Scatter3d if dim == 3 else (go.Scattergl if n > WEBGL_ABOVE else go.Scatter)
    what = {"label": "class %{meta}", "continuous": color_title + " %{marker.color:.3f}"}.get(color_kind, "")
    tip = "<br>".join(t for t in ("point %{customdata[0]}", what if color is not None else "", extra) if t)

    def trace(idx: np.ndarray, marker: dict, **kw):
        pts = dict(zip("xyz", xyz[idx].T))
        return scatter(mode="markers", customdata=custom[idx], text=None if text is None else text[idx],
                       hovertemplate=tip + "<extra></extra>", marker={"size": size, **marker}, **pts, **kw)

    traces = []
    if not keep.all() and not hide_others:  # the points a search leaves out: grey, beneath the others
        traces.append(trace(np.flatnonzero(~keep), {"color": OTHERS_COLOR, "opacity": 0.5}, name=OTHERS,
                            legendgroup=OTHERS, showlegend=showlegend))
    if color is None:
        traces.append(trace(np.flatnonzero(keep), {"color": PRIMARY}, name="points", showlegend=False))
    elif color_kind == "label":  # colours follow the label, so a class keeps its colour in any search
        traces += [trace(idx[keep[idx]], {"color": colour}, name=name, meta=name, legendgroup=name,
                         showlegend=showlegend)
                   for name, colour, idx in class_groups(color, labels_text) if keep[idx].any()]
    elif color_kind == "continuous":
        vals = np.asarray(color, dtype=np.float64)
        idx = np.argsort(-np.nan_to_num(vals, nan=np.inf), kind="stable")  # low values drawn last, on top
        idx = idx[keep[idx]]
        traces.append(trace(idx, {"color": vals[idx].astype(compact), "coloraxis": "coloraxis"}, name=color_title,
                            showlegend=False))
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
                     axis_titles: Sequence[str] | None = None, height: int = 560, matches=None,
                     hide_others: bool = False) -> go.Figure:
    """One embedding plot (projection) of the probe set, 2-D (Scattergl above :data:`WEBGL_ABOVE`
    points, every point drawn) or 3-D (Scatter3d).

    Args:
        coords: (n, 2) or (n, 3) projected points.
        color: (n,) class labels (``color_kind="label"``: one trace per class, the legend toggles
            them) or values (``"continuous"``, e.g. c_i: a colour bar, 0–1 when they lie there).
        labels_text: class names, a sequence indexed by integer label or a mapping label → name.
        hover: (n,) extra hover text per point, or a :class:`~perco_viz.analysis.embeddings.Hover`
            (numbers in customdata and one template: the light form for 100,000 points).
        title: figure title.
        subtitle: optional line under it.
        highlight: point ids to ring (e.g. a selection in the other panel).
        point_size: marker size in px (default: by n).
        ids: (n,) point ids (default 0..n−1), in ``customdata[:, 0]`` to link selections.
        color_title: legend / colour-bar title (default "class" or "per-sample coherence c_i (0–1)").
        color_range: (lo, hi) of the colour bar.
        axis_titles: axis titles (default "component 1", ...).
        height: px.
        matches: ids of the points a search kept (None: all): the others are drawn grey beneath
            them (one trace named "not matching"), or left out when ``hide_others``; colours and
            the colour bar's range stay those of all the points.
        hide_others: leave the points not in ``matches`` out.

    Returns:
        go.Figure.
    """
    xyz = as_coords(coords)
    color_title = color_title or ("class" if color_kind == "label" else "per-sample coherence c_i (0–1)")
    fig = new_figure(title, subtitle, height=height, **_color_layout(color, color_kind, color_title, color_range))
    fig.add_traces(_scatter_traces(xyz, color=color, color_kind=color_kind, labels_text=labels_text, hover=hover,
                                   ids=ids, highlight=highlight, point_size=point_size, color_title=color_title,
                                   matches=matches, hide_others=hide_others))
    set_axis_titles(fig, default_axis_titles(xyz.shape[1], axis_titles), xyz.shape[1])
    fig.update_layout(dragmode="lasso" if xyz.shape[1] == 2 else "orbit")
    return fig


SIDE_BY_SIDE_TITLE = "Teacher and student, side by side"


def side_by_side_embeddings(teacher_coords, student_coords, *, color=None, color_kind: str = "label",
                            labels_text=None, hover=None, highlight=None, point_size: int | None = None,
                            ids=None, titles: Sequence[str] = ("teacher", "student"),
                            title: str = SIDE_BY_SIDE_TITLE, subtitle: str | None = None,
                            color_title: str | None = None, color_range=None,
                            axis_titles: Sequence[str] | None = None, height: int = 500, matches=None,
                            hide_others: bool = False) -> go.Figure:
    """Teacher and student projections side by side, coloured the same way, points in the same order.

    Both panels hold the same traces in the same order, so a point's (trace, index) — and its id
    in ``customdata[:, 0]`` — is the same on both sides: a selection in one can be shown in the other.
    The student should already be aligned to the teacher (:func:`perco_viz.analysis.projection.align`).

    Args:
        teacher_coords: (n, 2|3) teacher projection.
        student_coords: (n, 2|3) student projection, same rows and dim.
        titles: the two panel titles.
        title: the figure's title, in plain words.
        Others: as :func:`embedding_figure` (``matches``/``hide_others`` grey or hide the same
            points in both panels).

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
                                  showlegend=col == 1, matches=matches, hide_others=hide_others):
            fig.add_trace(tr, row=1, col=col)
        set_axis_titles(fig, default_axis_titles(dim, axis_titles), dim, row=1, col=col, scene="scene" if col == 1 else "scene2")
    fig.update_layout(dragmode="lasso" if dim == 2 else "orbit")
    return fig


def method_axis_titles(method: str, dim: int) -> list[str]:
    """``["PC 1", "PC 2"]``, ``["UMAP 1", "UMAP 2", "UMAP 3"]``, ... of a projection method."""
    return [f"{AXIS_PREFIX[method]} {i + 1}" for i in range(dim)]


def embedding_panel(coords: np.ndarray, color: Coloring, *, method: str, title: str, ids: np.ndarray | None = None,
                    hover: np.ndarray | None = None, highlight: Sequence[int] | None = None,
                    ranges: Sequence[tuple[float, float]] | None = None, subtitle: str | None = None,
                    show_colorbar: bool = True, height: int = 540, matches: Sequence[int] | None = None,
                    hide_others: bool = False, marked: int | None = None) -> go.Figure:
    """One embedding plot of the Embeddings page: :func:`embedding_figure` with axes fixed
    over the snapshots, equal aspect (2-D), and the highlighted points standing out.

    Args:
        coords: (m, dim) projection of the points drawn.
        color: the :class:`~perco_viz.analysis.embeddings.Coloring` of those m points.
        method: ``pca``/``umap``/``tsne`` (axis titles "PC 1", "UMAP 1", ...).
        title: figure title; subtitle: a line under it.
        ids: (m,) point ids (probe rows), in ``customdata[:, 0]`` so selections map back.
        hover: (m,) hover text, or the tooltip fields (:func:`perco_viz.analysis.embeddings.hover_fields`).
        highlight: ids to emphasise: ringed, and in 2-D the others fade.
        ranges: per-axis (lo, hi), fixed over epochs so the playback does not rescale.
        show_colorbar: draw the colour bar (continuous colouring).
        height: pixels.
        matches: ids a search kept (None: all): they keep their colours, the others turn grey
            (or are left out, ``hide_others``) — as :func:`embedding_figure`.
        marked: one id to ring without fading the others (the input whose neighbours are listed):
            a trace named :data:`MARKED`.

    The legend is a row under the plot (outside the data, clear of the title and colour bar).

    Returns:
        A plotly ``go.Figure`` (Scattergl in 2-D, Scatter3d in 3-D).
    """
    xyz = np.asarray(coords, dtype=np.float64)  # (m, dim)
    m, dim = xyz.shape
    ids = np.arange(m) if ids is None else np.asarray(ids, dtype=np.int64)
    highlight = [int(h) for h in (highlight or [])]
    fig = embedding_figure(
        xyz, color=color.values, color_kind=color.kind, labels_text=color.names, hover=hover, ids=ids,
        title=title, subtitle=subtitle, highlight=highlight or None, color_title=color.title,
        color_range=color.range, axis_titles=method_axis_titles(method, dim), height=height, matches=matches,
        hide_others=hide_others)
    if color.kind == "continuous":
        fig.update_layout(coloraxis_showscale=show_colorbar)
        if color.colorscale is not None:
            fig.update_layout(coloraxis_colorscale=color.colorscale)
    hl = set(highlight)
    base_size = next((t.marker.size for t in fig.data if t.name != "selected"), 6) or 6
    for tr in fig.data:
        if tr.name == "selected":  # a thin ring: dense selections stay readable
            tr.update(marker={"size": base_size + 4, "line": {"width": 1.2, "color": "#1f2430"}}, hoverinfo="skip",
                      hovertemplate=None)
    if hl and dim == 2:  # plotly's own selection styling: everything not highlighted fades
        for tr in fig.data:
            if tr.name != "selected":
                cd = np.asarray(tr.customdata)[:, 0].astype(np.int64)
                tr.update(selectedpoints=np.flatnonzero(np.isin(cd, list(hl))).tolist(),
                          unselected={"marker": {"opacity": 0.15}})
    elif hl:
        for tr in fig.data:
            if tr.name != "selected":
                tr.marker.opacity = 0.35
    if marked is not None and int(marked) in set(ids.tolist()):
        at = np.flatnonzero(ids == int(marked))
        pts = dict(zip("xyz", xyz[at].T))
        scatter = go.Scatter3d if dim == 3 else type(fig.data[0]) if fig.data else go.Scatter
        fig.add_trace(scatter(mode="markers", customdata=ids[at, None], name=MARKED, legendgroup=MARKED,
                              hovertemplate="point %{customdata[0]}<extra>" + MARKED + "</extra>",
                              marker={"size": base_size + 8, "color": "rgba(0,0,0,0)",
                                      "line": {"width": 2.5, "color": "#111111"}}, **pts))
    fig.update_layout(uirevision=method, legend=LEGEND_BELOW)
    if dim == 2:
        fig.update_xaxes(range=list(ranges[0]) if ranges else None, constrain="range")
        fig.update_yaxes(range=list(ranges[1]) if ranges else None, scaleanchor="x", scaleratio=1,
                         constrain="range")
    else:  # a little further out than plotly's default, so the third axis title stays in view
        fig.update_layout(scene_camera={"eye": {"x": 1.45, "y": 1.45, "z": 1.1}}, margin={"b": 20})
        if ranges:
            fig.update_layout(scene={f"{a}axis": {"range": list(r)} for a, r in zip("xyz", ranges)})
    return fig


def animation_figure(proj: AlignedProjections, colorings: Sequence[Coloring], epochs: Sequence[float], *,
                     ids: np.ndarray | None = None, hover: np.ndarray | Hover | None = None,
                     title: str = "Student over the snapshots", frame_ms: int = 700,
                     max_points: int = ANIMATION_MAX_POINTS) -> go.Figure:
    """The student at every snapshot as one self-playing plotly figure (play button and slider).

    Every frame holds every point drawn, so more than ``max_points`` points are cut to a seeded
    sample (stratified by the colouring's classes when it has classes) that the subtitle states.

    Args:
        proj: aligned projections, students (k, m, dim).
        colorings: k colourings (c_i changes from snapshot to snapshot) or one for all.
        epochs: k epochs (frame names).
        ids, hover: (m,) point ids and hover text or fields (:func:`perco_viz.analysis.embeddings.hover_fields`).
        title: figure title.
        frame_ms: milliseconds per frame.
        max_points: the most points drawn (default :data:`~perco_viz.analysis.embeddings.ANIMATION_MAX_POINTS`).

    Returns:
        A ``go.Figure`` with k frames, axes fixed over all of them.
    """
    k = len(proj.students)
    if len(colorings) == 1:
        colorings = list(colorings) * k
    if len(colorings) != k or len(epochs) != k:
        raise ValueError(f"need one colouring and one epoch per snapshot ({k})")
    ranges = proj.ranges()["student"]
    m = proj.students.shape[1]
    students, subtitle = proj.students, None
    ids = np.arange(m) if ids is None else np.asarray(ids)
    if m > max_points:
        strata = colorings[-1].values if colorings[-1].kind == "label" else None
        keep = stratified_subsample(strata, m, max_points, seed=0)
        students, ids = students[:, keep], ids[keep]
        colorings = [replace(c, values=np.asarray(c.values)[keep]) for c in colorings]
        hover = None if hover is None else hover.take(keep) if isinstance(hover, Hover) else np.asarray(hover)[keep]
        subtitle = f"a {'stratified ' if strata is not None else ''}sample of {len(keep):,} of the {m:,} points"

    def panel(i: int):
        return embedding_panel(students[i], colorings[i], method=proj.method, ids=ids, hover=hover,
                               ranges=ranges, title=f"{title} — epoch {epochs[i]:g}", subtitle=subtitle)

    fig = panel(k - 1)
    names = [f"{e:g}" for e in epochs]
    fig.frames = [go.Frame(data=panel(i).data, name=names[i],
                           layout={"title": {"text": f"{title} — epoch {epochs[i]:g}"}}) for i in range(k)]
    play = {"frame": {"duration": frame_ms, "redraw": True}, "fromcurrent": True, "transition": {"duration": 0}}
    fig.update_layout(
        updatemenus=[{"type": "buttons", "direction": "left", "x": 0.0, "y": -0.12, "xanchor": "left",
                      "buttons": [{"label": "▶ play", "method": "animate", "args": [None, play]},
                                  {"label": "❚❚ pause", "method": "animate",
                                   "args": [[None], {"mode": "immediate", "frame": {"duration": 0}}]}]}],
        sliders=[{"active": k - 1, "x": 0.22, "len": 0.78, "y": -0.08,
                  "currentvalue": {"prefix": "epoch ", "xanchor": "right"},
                  "steps": [{"label": n, "method": "animate",
                             "args": [[n], {"mode": "immediate", "frame": {"duration": 0, "redraw": True}}]}
                            for n in names]}],
        margin={"b": 120}, height=620)
    return fig
