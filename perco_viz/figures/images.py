"""Images: PNG data URIs of small images (Pillow) and the one HTML strip of thumbnails.

Pure functions: data in, a string out; no I/O, no Streamlit.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

THUMBNAIL_BORDER = "#c9ccd3"  # the frame of a thumbnail without a colour of its own


def image_data_uri(img, scale: int = 4) -> str:
    """A small image as a PNG data URI (for ``<img src=...>`` and figure layout images).

    Args:
        img: (H, W) or (H, W, 3|4) uint8 (a trailing channel of 1 is dropped).
        scale: nearest-neighbour upscaling factor (pixel-art thumbnails stay sharp).

    Returns:
        ``"data:image/png;base64,..."`` (greyscale, RGB or RGBA PNG, encoded by Pillow).
    """
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))) or 0 in a.shape:
        raise ValueError(f"expected a (H, W) or (H, W, 3) uint8 image, got {a.dtype} {a.shape}; "
                         "convert floats in [0, 1] with (img * 255).round().astype(np.uint8)")
    image = Image.fromarray(np.ascontiguousarray(a))
    if int(scale) > 1:
        image = image.resize((a.shape[1] * int(scale), a.shape[0] * int(scale)), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail_strip_html(images, captions: Sequence[str], *, size: int = 64,
                         borders: Sequence[str] | None = None) -> str:
    """A wrapping strip of crisp (pixelated) thumbnails, a caption under each, as HTML.

    Args:
        images: k images (H, W) or (H, W, 3) uint8.
        captions: k captions (HTML-escaped; also the tooltips).
        size: displayed side of each thumbnail in px.
        borders: k CSS colours of each frame (default :data:`THUMBNAIL_BORDER`).

    Returns:
        One ``<div>`` of k ``<figure>`` elements (for ``st.html``).
    """
    borders = list(borders) if borders is not None and len(borders) else [THUMBNAIL_BORDER] * len(captions)
    cells = []
    for img, cap, colour in zip(images, captions, borders):
        cap = html.escape(str(cap))
        cells.append(
            f'<figure style="margin:0;text-align:center" title="{cap}">'
            f'<img src="{image_data_uri(img, 1)}" width="{size}" height="{size}" alt="{cap}" '
            f'style="image-rendering:pixelated;border:3px solid {html.escape(str(colour))};border-radius:4px"/>'
            f'<figcaption style="font-size:11px;line-height:1.25;color:#444;max-width:{size + 20}px">'
            f'{cap}</figcaption></figure>')
    return f'<div style="display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start">{"".join(cells)}</div>'
