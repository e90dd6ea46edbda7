"""Images: PNG data URIs of small images and thumbnail grids.

Pure functions: data in, ``go.Figure`` out; no I/O, no Streamlit."""

from __future__ import annotations

import base64
import math
import struct
import zlib
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from perco_viz.figures.style import (
    MARGIN,
    new_figure,
    no_data,
)


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
    fig = new_figure(title, height=int(MARGIN["t"] + MARGIN["b"] + max(nrows, 1) * cell_px), showlegend=False)
    if not k:
        return no_data(fig, "no images")
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
