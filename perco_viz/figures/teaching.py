"""The Teaching view's figures (points and arrows, soft steps, loss terms, soft vs hard ranks,
the loss history) and the home page's "one teacher, two students".

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
    TOO_FAR,
    TOO_NEAR,
    as_coords,
    default_axis_titles,
    new_figure,
    set_axis_titles,
)


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
    xyz = as_coords(points, "points")
    n, dim = xyz.shape
    rt, rs = np.asarray(ranks_teacher, dtype=np.float64), np.asarray(ranks_student, dtype=np.float64)
    if len(rt) != n or len(rs) != n or not 0 <= anchor < n:
        raise ValueError(f"need (n,) ranks for the {n} points and 0 ≤ anchor < {n}")
    scale = 1.0 if np.nanmax(np.r_[rt, rs, 0.0]) <= 1.0 else max(n - 2, 1)  # positions → normalized
    agree = 1.0 - np.abs(rt - rs) / scale
    others = np.delete(np.arange(n), anchor)
    scatter = go.Scatter3d if dim == 3 else go.Scatter
    fig = new_figure(title, "label: teacher rank / student rank (1 = nearest) · colour: agreement A",
                      height=height, legend=LEGEND_ON_TOP,
                      coloraxis={"colorscale": COHERENCE_SCALE, "cmin": 0.0, "cmax": 1.0,
                                 "colorbar": {"title": {"text": "A (0–1)"}, "thickness": 14}})
    texts = [f"{_rank_text(rt[i])} / {_rank_text(rs[i])}" for i in others]
    if dim == 2:  # each label where it overlaps no other label or point; none where nothing is free
        places = label_places(xyz[others], texts, avoid=xyz[[anchor]])
    else:  # the view turns: one place for all
        places = ["top center"] * len(others)
    fig.add_trace(scatter(**dict(zip("xyz", xyz[others].T)), mode="markers+text", name="points",
                          text=[t if p else "" for t, p in zip(texts, places)],
                          textposition=[p or "top center" for p in places],
                          customdata=[[int(i), t] for i, t in zip(others, texts)],
                          marker={"size": 11, "color": agree[others], "coloraxis": "coloraxis",
                                  "line": {"color": "#1f2430", "width": 1}},
                          hovertemplate="point %{customdata[0]}<br>teacher / student rank: %{customdata[1]}"
                                        "<extra></extra>"))
    fig.add_trace(scatter(**dict(zip("xyz", xyz[[anchor]].T)), mode="markers", name="anchor",
                          marker={"size": 18, "color": PRIMARY, "symbol": "diamond" if dim == 3 else "star"},
                          hovertemplate=f"anchor {anchor}<extra></extra>"))
    if arrows is not None:
        _draw_arrows(fig, xyz, np.asarray(arrows, dtype=np.float64))
    set_axis_titles(fig, default_axis_titles(dim, axis_titles or [f"x {i + 1}" for i in range(dim)]), dim)
    if dim == 2:
        fig.update_yaxes(scaleanchor="x")
    return fig


# Label geometry, as a share of the plot's larger side (the Teaching view's plots: ~420 px, text 13 px)
LABEL_CHAR_W = 0.019  # one character's width
LABEL_H = 0.045  # a line's height
MARKER_R = 0.013  # a point's radius and the gap to its label (the anchor's star: twice)
_PLACES = {  # textposition → (dx, dy) of the label box's centre, in units of (half width + r, half height + r)
    "top center": (0, 1), "bottom center": (0, -1), "middle right": (1, 0), "middle left": (-1, 0),
    "top right": (1, 1), "top left": (-1, 1), "bottom right": (1, -1), "bottom left": (-1, -1)}


def label_box(xy, text: str, place: str, extent: float) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) a label ``text`` drawn at ``place`` (a plotly textposition) around the
    point ``xy`` covers, in data units, for points spread over ``extent`` (the larger side)."""
    w, h, r = len(text) * LABEL_CHAR_W * extent, LABEL_H * extent, MARKER_R * extent
    dx, dy = _PLACES[place]
    cx, cy = xy[0] + dx * (w / 2 + r), xy[1] + dy * (h / 2 + r)
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def label_places(xy, texts: Sequence[str], *, avoid=None) -> list[str | None]:
    """Where to put each point's label so that no two labels, and no label and point, overlap.

    Greedy: points farthest from the others first; each label takes the first free place of
    :data:`_PLACES` (above, below, right, left, then the corners) and none when all are taken
    (its text stays in the hover).

    Args:
        xy: (n, 2) the labelled points.
        texts: n labels.
        avoid: (m, 2) other points no label may cover (the anchor), or None.

    Returns:
        n textpositions, ``None`` for a label left out.
    """
    xy = np.asarray(xy, dtype=np.float64)
    others = np.zeros((0, 2)) if avoid is None else np.asarray(avoid, dtype=np.float64).reshape(-1, 2)
    everything = np.vstack([xy, others])
    extent = float(np.ptp(everything, axis=0).max()) or 1.0
    r = MARKER_R * extent
    markers = [(p[0] - r, p[1] - r, p[0] + r, p[1] + r) for p in xy]
    markers += [(p[0] - 2 * r, p[1] - 2 * r, p[0] + 2 * r, p[1] + 2 * r) for p in others]
    if len(xy) > 1:  # crowded points choose last
        d = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
        np.fill_diagonal(d, np.inf)
        order = np.argsort(-d.min(axis=1), kind="stable")
    else:
        order = np.arange(len(xy))
    placed: list[tuple] = []
    out: list[str | None] = [None] * len(xy)
    for i in order:
        for place in _PLACES:
            box = label_box(xy[i], texts[i], place, extent)
            if any(_overlaps(box, b) for b in placed) or any(
                    _overlaps(box, m) for k, m in enumerate(markers) if k != i):
                continue
            out[i] = place
            placed.append(box)
            break
    return out


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
    fig = new_figure(title or f"soft step g_τ at τ = {tau:g}", "g_τ(x): how much k counts as closer than j", height=height, legend={"title": {"text": "step"}})
    fig.add_trace(go.Scatter(x=[-span, 0, 0, span], y=[0, 0, 1, 1], name="hard 1[x > 0]", mode="lines",
                             line={"color": "#1f2430", "width": 1.5, "dash": "dot"}))
    for name, colour in (("sigmoid", TOO_NEAR), ("ramp", PRIMARY)):
        bold = name == kernel
        fig.add_trace(go.Scatter(x=x, y=y[name], name=f"{name}{' (in use)' if bold else ''}", mode="lines",
                                 line={"color": colour, "width": 3.5 if bold else 1.5, "dash": None if bold else "dash"}))
    fig.update_xaxes(title_text="x = D̂[i, j] − D̂[i, k]")
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
    fig = new_figure(title or f"loss terms of one anchor (mean = {loss:.4f})",
                      "(R̃_S − R_T)² per neighbour, the teacher's nearest left",
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


def soft_vs_hard_figure(view: dict) -> go.Figure:
    """The anchor's soft ranks R̃ against its hard ranks R^S, one dot per neighbour.

    Args:
        view: an ``analysis.teaching.anchor_view`` result: (n,) arrays ``student_hard`` and
            ``student_soft`` (NaN at the anchor), ``tau`` and ``kernel``.

    Returns:
        A plotly figure: x = hard rank, y = soft rank at ``view["tau"]``, the diagonal soft = hard
        dashed, each dot labelled with its point's index.
    """
    hard, soft = view["student_hard"], view["student_soft"]
    others = np.flatnonzero(np.isfinite(hard))
    gap = float(np.max(np.abs(soft[others] - hard[others]))) if len(others) else 0.0
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="soft = hard",
                             line={"color": "#8a909c", "dash": "dash", "width": 1.5}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=hard[others], y=soft[others], mode="markers+text", name="neighbours of the anchor",
        text=[str(j) for j in others], textposition="top center", textfont={"size": 11, "color": "#5b6270"},
        marker={"size": 11, "color": PRIMARY, "line": {"width": 1, "color": "white"}},
        customdata=others, hovertemplate="point %{customdata}<br>hard rank %{x:.3f}<br>soft rank %{y:.3f}"
                                         "<extra></extra>"))
    new_figure(f"Soft vs hard ranks of the student (τ = {view['tau']:g}, {view['kernel']})",
               f"largest gap |R̃ − R| = {gap:.3f}", fig=fig)
    fig.update_xaxes(title_text="hard rank R (0 = nearest, 1 = farthest)", range=[-0.05, 1.05], zeroline=False)
    fig.update_yaxes(title_text="soft rank R̃", range=[-0.05, 1.1], zeroline=False)
    fig.update_layout(showlegend=False)
    return fig


def loss_history_figure(history: Sequence[float]) -> go.Figure:
    """The batch loss before training (step 0) and after each step.

    Args:
        history: losses, one per step (``TeachingState.history``).
    """
    fig = go.Figure(go.Scatter(x=list(range(len(history))), y=list(history), mode="lines+markers",
                               line={"color": PRIMARY, "width": 2.5}, marker={"size": 6},
                               hovertemplate="step %{x}<br>loss %{y:.5f}<extra></extra>", name="batch loss"))
    new_figure("Batch loss, step by step", fig=fig, height=320)
    fig.update_xaxes(title_text="optimizer steps", rangemode="tozero")
    fig.update_yaxes(title_text="coherence loss", rangemode="tozero")
    return fig


def two_students_figure(example: dict, *, height: int = 400) -> go.Figure:
    """Teacher | bent student | scrambled student, each point coloured by its place on the arcs.

    Args:
        example: an ``analysis.teaching.two_students()`` result: (n, 2) ``teacher``, ``bent``,
            ``scrambled``, (n,) ``order`` and the PCs ``pc_bent``, ``pc_scrambled``.
        height: px.
    """
    ex = example
    titles = ("<b>teacher</b>", f"<b>student A</b> · PC {ex['pc_bent']:.2f}<br>geometry bent, order kept",
              f"<b>student B</b> · PC {ex['pc_scrambled']:.2f}<br>scale kept, order shuffled")
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.05)
    for col, key in enumerate(("teacher", "bent", "scrambled"), start=1):
        xy = ex[key]
        fig.add_trace(go.Scatter(
            x=xy[:, 0], y=xy[:, 1], mode="markers", name=titles[col - 1], showlegend=False,
            marker={"size": 9, "color": ex["order"], "colorscale": "Viridis", "line": {"width": 0.6, "color": "white"}},
            customdata=np.arange(len(xy)), hovertemplate="point %{customdata}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(showticklabels=False, title_text=None, row=1, col=col)
        fig.update_yaxes(showticklabels=False, title_text=None, scaleanchor=f"x{col if col > 1 else ''}", row=1, col=col)
    new_figure("One teacher, two students", "colour: each point's place along the teacher's arcs", fig=fig,
               height=height)
    fig.update_layout(margin={"t": 110, "b": 10, "l": 10, "r": 10})
    fig.update_annotations(font_size=13)
    return fig
