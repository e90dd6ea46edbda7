"""Figure export: standalone HTML and static images.

Pure functions: data in, ``go.Figure`` out; no I/O, no Streamlit."""

from __future__ import annotations

import importlib.util

import plotly.graph_objects as go


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
