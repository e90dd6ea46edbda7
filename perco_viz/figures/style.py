"""The look shared by every figure: palette, colour scales, template, and the small helpers that give a figure its title, axes and classes.

Pure functions: data in, ``go.Figure`` out; no I/O, no Streamlit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

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
def new_figure(title: str, subtitle: str | None = None, *, fig: go.Figure | None = None,
                height: int = HEIGHT, **layout: Any) -> go.Figure:
    """A figure (or ``fig``) in :data:`TEMPLATE` with its title, optional subtitle and height."""
    fig = go.Figure() if fig is None else fig
    head = {"text": title, **({"subtitle": {"text": subtitle}} if subtitle else {})}
    fig.update_layout(template=TEMPLATE, title=head, height=height, margin=MARGIN, **layout)
    return fig


def no_data(fig: go.Figure, text: str = "nothing to show yet") -> go.Figure:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font={"size": 15, "color": "#8a909c"})
    return fig


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def class_label(value: Any, class_names: Sequence[str] | Mapping | None) -> str:
    if isinstance(class_names, Mapping):
        return str(class_names.get(value, value))
    if class_names is not None and isinstance(value, (int, np.integer)) and 0 <= value < len(class_names):
        return str(class_names[int(value)])
    return str(value)


def class_groups(labels, class_names=None) -> list[tuple[str, str, np.ndarray]]:
    """(name, colour, (m,) row indices) per class, in sorted label order; colours follow the label value."""
    y = np.asarray(labels)
    out = []
    for pos, value in enumerate(np.unique(y)):
        code = int(value) if np.issubdtype(y.dtype, np.integer) else pos
        out.append((class_label(value, class_names), PALETTE[code % len(PALETTE)], np.flatnonzero(y == value)))
    return out


def as_coords(coords, name: str = "coords") -> np.ndarray:
    xyz = np.asarray(coords, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] not in (2, 3):
        raise ValueError(f"{name} must be (n, 2) or (n, 3), got shape {xyz.shape}")
    return xyz


def marker_size(n: int, dim: int) -> int:
    return 3 if dim == 3 or n > 20_000 else 4 if n > 2000 else 6


def default_axis_titles(dim: int, axis_titles: Sequence[str] | None) -> list[str]:
    return list(axis_titles) if axis_titles else [f"component {i + 1}" for i in range(dim)]


def set_axis_titles(fig: go.Figure, titles: Sequence[str], dim: int, *, row=None, col=None, scene: str = "scene"):
    """Axis titles of a 2-D subplot or of a 3-D scene."""
    if dim == 3:
        fig.update_layout({scene: {f"{a}axis": {"title": {"text": t}} for a, t in zip("xyz", titles)}
                           | {"aspectmode": "cube"}})
        return
    fig.update_xaxes(title_text=titles[0], zeroline=False, row=row, col=col)
    fig.update_yaxes(title_text=titles[1], zeroline=False, row=row, col=col)


def for_presentation(fig: go.Figure, scale: float = 1.4) -> go.Figure:
    """A copy of ``fig`` for a projector: every font ``scale`` times larger (the base font, the
    title, axis titles and ticks, the legend, annotations), the height grown to fit them."""
    out = go.Figure(fig)
    base = out.layout.font.size or TEMPLATE.layout.font.size or 13
    title = out.layout.title.font.size or TEMPLATE.layout.title.font.size or 17
    out.update_layout(font_size=round(base * scale), title_font_size=round(title * scale),
                      height=round((out.layout.height or HEIGHT) * (1 + (scale - 1) / 2)))
    for annotation in out.layout.annotations or ():
        annotation.font.size = round((annotation.font.size or base) * scale)
    return out
