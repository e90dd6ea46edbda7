"""What the Embeddings page shows, as plain functions: aligned projections of a run's snapshots,
the colouring and hover text of each point, the linked teacher/student figures, the
subsampling note, thumbnails and the downloadable embedding table.

Data in, arrays/figures/bytes out; nothing here knows about Streamlit.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> teacher = rng.normal(size=(50, 6))
>>> students = [rng.normal(size=(50, 3)) for _ in range(3)]
>>> proj = aligned_projections(teacher, students, "pca", 2)
>>> proj.teacher.shape, proj.students.shape
((50, 2), (3, 50, 2))
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

METHODS = ("pca", "umap", "tsne")
METHOD_LABELS = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
AXIS_PREFIX = {"pca": "PC", "umap": "UMAP", "tsne": "t-SNE"}
MAX_POINTS = 100_000  # beyond this the page draws a stratified subsample
COLOR_LABEL = "label"
COLOR_COHERENCE = "coherence"


# ----------------------------------------------------------------------------- projections


@dataclass
class AlignedProjections:
    """A run's projections, all in one frame of reference.

    Attributes:
        method: ``pca``, ``umap`` or ``tsne``.
        dim: 2 or 3.
        teacher: (n, dim) the teacher's projection.
        students: (k, n, dim) the student at each snapshot, each aligned to the one before and
            the whole sequence rotated into the teacher's orientation.
        seconds: wall time of the computation.
    """

    method: str
    dim: int
    teacher: np.ndarray
    students: np.ndarray
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def ranges(self) -> dict[str, list[tuple[float, float]]]:
        """Padded axis ranges ``{"teacher": [(lo, hi)] * dim, "student": ...}`` fixed over all snapshots."""
        return {"teacher": _ranges(self.teacher[None]), "student": _ranges(self.students)}


def _ranges(x: np.ndarray) -> list[tuple[float, float]]:
    """(k, n, dim) -> per-axis (lo, hi) with 5 % padding."""
    flat = x.reshape(-1, x.shape[-1])
    lo, hi = np.nanmin(flat, axis=0), np.nanmax(flat, axis=0)
    pad = 0.05 * np.maximum(hi - lo, 1e-9)
    return [(float(a), float(b)) for a, b in zip(lo - pad, hi + pad)]


def _pad_columns(x: np.ndarray, dim: int) -> np.ndarray:
    """(n, d) -> (n, max(d, dim)) with zero columns added (a 2-d student drawn in 3-D)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1] >= dim:
        return x
    return np.column_stack([x, np.zeros((len(x), dim - x.shape[1]))])


def orthogonal_map(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """The rotation/reflection and scale that best maps ``source`` onto ``target``.

    Args:
        source: (n, d) points.
        target: (n, d) points, same rows.

    Returns:
        ``(R, s, mu_source, mu_target)`` with ``(x - mu_source) @ R * s + mu_target`` the map,
        R (d, d) orthogonal.
    """
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    a, b = source - mu_s, target - mu_t
    u, sv, vt = np.linalg.svd(a.T @ b)
    rot = u @ vt
    norm = float((a**2).sum())
    scale = float(sv.sum() / norm) if norm > 0 else 1.0
    return rot, scale, mu_s, mu_t


def aligned_projections(
    teacher: np.ndarray,
    students: Sequence[np.ndarray],
    method: str = "pca",
    dim: int = 2,
    *,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> AlignedProjections:
    """Project the teacher and every student snapshot, aligned across epochs and to the teacher.

    The student sequence is projected so that points do not jump between epochs: PCA +
    Procrustes to the previous snapshot and t-SNE initialised from the previous snapshot (both
    :func:`perco_viz.analysis.projection.project_sequence`), UMAP initialised from the previous snapshot
    (:func:`umap_chain`). Each frame is centred and
    scaled to the teacher's spread (coherence ignores scale), then one orthogonal map, fitted
    from the last snapshot to the teacher's projection, is applied to the whole sequence: the
    student is drawn in the teacher's orientation and stays continuous in time.

    Args:
        teacher: (n, d_t) teacher features on the probe set.
        students: k arrays (n, d_s), the student at each snapshot, in order.
        method: ``pca``, ``umap`` or ``tsne``.
        dim: 2 or 3.
        seed: fixes UMAP/t-SNE.
        progress: called as ``progress(done, total)`` while it works.

    Returns:
        :class:`AlignedProjections` with teacher (n, dim) and students (k, n, dim).
    """
    from perco_viz.analysis import projection

    if method not in METHODS:
        raise ValueError(f"projection method must be one of {METHODS}, got {method!r}")
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    if not len(students):
        raise ValueError("no student snapshots to project")
    n = len(teacher)
    if any(len(s) != n for s in students):
        raise ValueError(f"every snapshot must have the teacher's {n} probe rows")
    start = time.perf_counter()
    total = len(students) + 1
    t_xy = projection.project(_pad_columns(teacher, dim), method, dim=dim, seed=seed)
    if progress is not None:
        progress(1, total)
    step = None if progress is None else (lambda done, k: progress(1 + done, 1 + k))
    xs = [_pad_columns(s, dim) for s in students]
    if method == "umap":
        seq = umap_chain(xs, dim=dim, seed=seed, progress=step)
    else:
        seq = projection.project_sequence(xs, method, dim=dim, seed=seed, progress=step)
    seq = np.stack([np.asarray(s, dtype=np.float64) for s in seq])  # (k, n, dim)
    t_xy = np.asarray(t_xy, dtype=np.float64)
    seq = _unit_spread(seq) * _rms(t_xy - t_xy.mean(axis=0))  # each frame at the teacher's spread
    rot, _, mu_s, mu_t = orthogonal_map(seq[-1], t_xy)
    seq = (seq - mu_s) @ rot + mu_t
    if progress is not None:
        progress(total, total)
    return AlignedProjections(method, dim, t_xy, seq, seconds=time.perf_counter() - start)


def run_projections(path: str, method: str, dim: int, rows_key: tuple[int, int | None, int], *,
                    progress: Callable[[int, int], None] | None = None) -> AlignedProjections:
    """:func:`aligned_projections` of a run directory's displayed rows, read from disk.

    Args:
        path: run directory.
        method: ``pca``, ``umap`` or ``tsne``; dim: 2 or 3.
        rows_key: ``(n_total, max_points, seed)`` of :func:`display_rows` (the rows drawn).
        progress: optional ``progress(done, total)``.
    """
    from perco_viz.runs import RunDir

    run = RunDir(path)
    probe = run.teacher_probe()
    rows, _ = display_rows(probe.get("labels"), rows_key[0], rows_key[1], seed=rows_key[2])
    students = [run.load_snapshot(i).student[rows] for i in run.snapshot_indices()]
    return aligned_projections(probe["features"][rows], students, method, dim, seed=0, progress=progress)


def umap_chain(xs: Sequence[np.ndarray], *, dim: int = 2, seed: int | None = 0,
               progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """UMAP of each snapshot initialised from the previous snapshot's layout (then Procrustes
    to it), so points stay in place from epoch to epoch.

    Measured on the 2-core dev machine, 449 points: about 0.5 s per snapshot once numba is
    compiled, against about 5 s per snapshot for ``umap.AlignedUMAP`` (what
    :func:`perco_viz.analysis.projection.project_sequence` uses), with the same continuity in practice.

    Args:
        xs: k arrays (n, d), the snapshots in order.
        dim: output dimensions.
        seed: fixes every UMAP.
        progress: called as ``progress(done, k)`` after each snapshot.

    Returns:
        k arrays (n, dim) float64.
    """
    from perco_viz.analysis import projection

    out: list[np.ndarray] = []
    for t, x in enumerate(xs):
        y = projection.project(x, "umap", dim=dim, seed=seed, init=out[-1] if out else None)
        if out:
            y = projection.align_procrustes(y, out[-1])
        out.append(y)
        if progress is not None:
            progress(t + 1, len(xs))
    return out


def _rms(x: np.ndarray) -> float:
    """Root-mean-square distance of (n, d) centred points from the origin (1 when degenerate)."""
    r = float(np.sqrt((x**2).sum(axis=-1).mean()))
    return r if r > 0 else 1.0


def _unit_spread(seq: np.ndarray) -> np.ndarray:
    """(k, n, d) frames, each centred and scaled to unit RMS radius: the student's scale carries
    no meaning for coherence, and a frame that shrinks or grows would hide its shape."""
    centred = seq - seq.mean(axis=1, keepdims=True)
    return np.stack([f / _rms(f) for f in centred])


# ----------------------------------------------------------------------------- rows shown


def display_rows(labels: np.ndarray | None, n: int, max_points: int = MAX_POINTS,
                 seed: int = 0) -> tuple[np.ndarray, str | None]:
    """Which probe rows to draw, and the note to show when not all of them are.

    Args:
        labels: (n,) class labels (the subsample keeps their proportions) or ``None``.
        n: number of probe rows.
        max_points: most points drawn.
        seed: fixes the subsample.

    Returns:
        ``(rows, note)``: (m,) sorted row indices, m = min(n, max_points), and ``None`` or
        e.g. ``"showing 100,000 of 250,000 points, stratified by class"``.
    """
    if n <= max_points:
        return np.arange(n), None
    from perco_viz.analysis.projection import stratified_subsample

    rows = np.sort(stratified_subsample(labels, n, max_points, seed=seed))
    return rows, subsample_note(len(rows), n, stratified=labels is not None)


def subsample_note(shown: int, total: int, *, stratified: bool = True) -> str | None:
    """``"showing 100,000 of 250,000 points, stratified by class"``; ``None`` when all are shown."""
    if shown >= total:
        return None
    how = "stratified by class" if stratified else "drawn at random"
    return f"showing {shown:,} of {total:,} points, {how}"


# ----------------------------------------------------------------------------- colour & hover


def color_options(has_labels: bool, meta_columns: Sequence[str] = ()) -> dict[str, str]:
    """Colour-by choices: key → label shown in the select box."""
    opts = {}
    if has_labels:
        opts[COLOR_LABEL] = "label"
    opts[COLOR_COHERENCE] = "per-sample coherence c_i"
    for col in meta_columns:
        opts[f"meta:{col}"] = f"metadata: {col}"
    return opts


@dataclass
class Coloring:
    """How points are coloured.

    Attributes:
        kind: ``"label"`` (categories: one legend entry each) or ``"continuous"`` (a colour bar).
        values: (m,) category codes or numbers, one per drawn point.
        title: legend / colour-bar title.
        names: category names by code (``label``).
        range: (lo, hi) of the colour bar; ``None`` = the data's range.
        colorscale: plotly colour scale; ``None`` = the figures' c_i scale (low = red).
    """

    kind: str
    values: np.ndarray
    title: str
    names: list[str] | None = None
    range: tuple[float, float] | None = None
    colorscale: object = None


def coloring(key: str, *, labels: np.ndarray | None = None, class_names: Sequence[str] | None = None,
             coherence: np.ndarray | None = None, meta: pd.DataFrame | None = None) -> Coloring:
    """Build the colouring for a colour-by choice of :func:`color_options`.

    Args:
        key: ``"label"``, ``"coherence"`` or ``"meta:<column>"``.
        labels: (m,) int labels of the drawn points.
        class_names: names by label.
        coherence: (m,) c_i in [0, 1].
        meta: metadata rows aligned with the drawn points.
    """
    if key == COLOR_LABEL:
        if labels is None:
            raise ValueError("this run has no labels to colour by")
        labels = np.asarray(labels).astype(np.int64)
        return Coloring("label", labels, "class", list(class_names) if class_names is not None else None)
    if key == COLOR_COHERENCE:
        if coherence is None:
            raise ValueError("no per-sample coherence to colour by")
        return Coloring("continuous", np.asarray(coherence, dtype=np.float64), "c_i", range=(0.0, 1.0))
    if key.startswith("meta:"):
        col = key[5:]
        if meta is None or col not in meta.columns:
            raise ValueError(f"no metadata column {col!r} in this dataset")
        series = meta[col]
        if pd.api.types.is_numeric_dtype(series) and series.nunique() > 12:
            return Coloring("continuous", series.to_numpy(dtype=np.float64), col, colorscale="Viridis")
        cats = pd.Categorical(series.astype(str))
        return Coloring("label", cats.codes.astype(np.int64), col, [str(c) for c in cats.categories])
    raise ValueError(f"unknown colour-by choice {key!r}")


def _class_text(labels: np.ndarray, class_names: Sequence[str] | None) -> np.ndarray:
    """(k,) labels → (k,) names (the label itself when it has no name)."""
    names = list(class_names) if class_names is not None else []
    return np.array([names[v] if 0 <= v < len(names) else str(v) for v in np.asarray(labels, dtype=np.int64)],
                    dtype=object)


def hover_text(rows: np.ndarray, *, test_indices: np.ndarray | None = None, labels: np.ndarray | None = None,
               class_names: Sequence[str] | None = None, coherence: np.ndarray | None = None,
               meta: pd.DataFrame | None = None) -> np.ndarray:
    """One hover line set per drawn point (plotly ``text``; the figure adds the id and colour value).

    Args:
        rows: (m,) probe rows drawn; the other arrays are indexed by probe row.
        test_indices: (n,) index of each probe row in the test split.
        labels: (n,) labels; class_names: names by label.
        coherence: (n,) c_i.
        meta: (n rows) metadata (its first 4 columns are shown).

    Returns:
        (m,) object array of ``"test #12<br>class 3<br>c_i 0.912"``-like strings.
    """
    rows = np.asarray(rows, dtype=np.int64)
    parts: list[np.ndarray] = []
    if test_indices is not None:
        parts.append(np.array([f"test #{i}" for i in np.asarray(test_indices)[rows]], dtype=object))
    if labels is not None:
        parts.append("class " + _class_text(np.asarray(labels)[rows], class_names))
    if coherence is not None:
        parts.append(np.array([f"c_i {c:.3f}" for c in np.asarray(coherence, dtype=np.float64)[rows]], dtype=object))
    if meta is not None:
        for col in list(meta.columns)[:4]:
            vals = meta[col].to_numpy()[rows]
            fmt = (lambda v: f"{v:.4g}") if np.issubdtype(vals.dtype, np.number) else str
            parts.append(np.array([f"{col} {fmt(v)}" for v in vals], dtype=object))
    if not parts:
        return np.full(len(rows), "", dtype=object)
    out = parts[0]
    for p in parts[1:]:
        out = out + "<br>" + p
    return out


def selected_rows(event: object) -> list[int]:
    """Probe rows of a Streamlit plotly selection event (``customdata[0]`` of each point).

    ``customdata`` of a point arrives as a list, a scalar, or — when plotly sent it as a typed
    array — a dict ``{"0": id}``; all three are read.
    """
    if not event:
        return []
    sel = event.get("selection", event) if isinstance(event, dict) else getattr(event, "selection", None)
    if not sel:
        return []
    points = sel.get("points", []) if isinstance(sel, dict) else getattr(sel, "points", [])
    rows = set()
    for p in points or []:
        cd = p.get("customdata") if isinstance(p, dict) else None
        if cd is None:
            continue
        if isinstance(cd, dict):  # a typed-array row comes back as {"0": id}
            cd = cd.get("0", next(iter(cd.values()), None))
        first = cd[0] if isinstance(cd, (list, tuple)) else cd
        try:
            rows.add(int(first))
        except (TypeError, ValueError):
            continue
    return sorted(rows)


# ----------------------------------------------------------------------------- figures


def axis_titles(method: str, dim: int) -> list[str]:
    """``["PC 1", "PC 2"]``, ``["UMAP 1", "UMAP 2", "UMAP 3"]``, ..."""
    return [f"{AXIS_PREFIX[method]} {i + 1}" for i in range(dim)]


def embedding_panel(coords: np.ndarray, color: Coloring, *, method: str, title: str, ids: np.ndarray | None = None,
                    hover: np.ndarray | None = None, highlight: Sequence[int] | None = None,
                    ranges: Sequence[tuple[float, float]] | None = None, subtitle: str | None = None,
                    show_colorbar: bool = True, height: int = 540):
    """One embedding plot of the page: :func:`perco_viz.figures.embedding_figure` with axes fixed
    over the snapshots, equal aspect (2-D), and the highlighted points standing out.

    Args:
        coords: (m, dim) projection of the points drawn.
        color: the :class:`Coloring` of those m points.
        method: ``pca``/``umap``/``tsne`` (axis titles "PC 1", "UMAP 1", ...).
        title: figure title; subtitle: a line under it.
        ids: (m,) point ids (probe rows), in ``customdata[:, 0]`` so selections map back.
        hover: (m,) hover text (:func:`hover_text`).
        highlight: ids to emphasise: ringed, and in 2-D the others fade.
        ranges: per-axis (lo, hi), fixed over epochs so the playback does not rescale.
        show_colorbar: draw the colour bar (continuous colouring).
        height: pixels.

    Returns:
        A plotly ``go.Figure`` (Scattergl in 2-D, Scatter3d in 3-D).
    """
    from perco_viz import figures

    xyz = np.asarray(coords, dtype=np.float64)  # (m, dim)
    m, dim = xyz.shape
    ids = np.arange(m) if ids is None else np.asarray(ids, dtype=np.int64)
    highlight = [int(h) for h in (highlight or [])]
    fig = figures.embedding_figure(
        xyz, color=color.values, color_kind=color.kind, labels_text=color.names, hover=hover, ids=ids,
        title=title, subtitle=subtitle, highlight=highlight or None, color_title=color.title,
        color_range=color.range, axis_titles=axis_titles(method, dim), height=height)
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
    fig.update_layout(uirevision=method, legend={"itemsizing": "constant"})
    if dim == 2:
        fig.update_xaxes(range=list(ranges[0]) if ranges else None, constrain="domain")
        fig.update_yaxes(range=list(ranges[1]) if ranges else None, scaleanchor="x", scaleratio=1,
                         constrain="domain")
    else:  # a little further out than plotly's default, so the third axis title stays in view
        fig.update_layout(scene_camera={"eye": {"x": 1.45, "y": 1.45, "z": 1.1}}, margin={"b": 20})
        if ranges:
            fig.update_layout(scene={f"{a}axis": {"range": list(r)} for a, r in zip("xyz", ranges)})
    return fig


def animation_figure(proj: AlignedProjections, colorings: Sequence[Coloring], epochs: Sequence[float], *,
                     ids: np.ndarray | None = None, hover: np.ndarray | None = None,
                     title: str = "Student over the snapshots", frame_ms: int = 700):
    """The student at every snapshot as one self-playing plotly figure (play button and slider).

    Args:
        proj: aligned projections, students (k, m, dim).
        colorings: k colourings (c_i changes from snapshot to snapshot) or one for all.
        epochs: k epochs (frame names).
        ids, hover: point ids and hover text (:func:`hover_text`).
        title: figure title.
        frame_ms: milliseconds per frame.

    Returns:
        A ``go.Figure`` with k frames, axes fixed over all of them.
    """
    import plotly.graph_objects as go

    k = len(proj.students)
    if len(colorings) == 1:
        colorings = list(colorings) * k
    if len(colorings) != k or len(epochs) != k:
        raise ValueError(f"need one colouring and one epoch per snapshot ({k})")
    ranges = proj.ranges()["student"]

    def panel(i: int):
        return embedding_panel(proj.students[i], colorings[i], method=proj.method, ids=ids, hover=hover,
                               ranges=ranges, title=f"{title} — epoch {epochs[i]:g}")

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



# ----------------------------------------------------------------------------- thumbnails


def thumbnail_uris(images: np.ndarray) -> list[str]:
    """PNG data URIs of some images (what an ``<img src=...>`` shows).

    Args:
        images: (k, H, W) or (k, H, W, 3) uint8.

    Returns:
        k strings ``"data:image/png;base64,..."``.
    """
    from perco_viz.figures import image_data_uri

    return [image_data_uri(img) for img in np.asarray(images)]


def thumbnail_strip_html(images: np.ndarray, captions: Sequence[str], *, size: int = 56) -> str:
    """A wrapping strip of crisp (pixelated) thumbnails with captions, as HTML.

    Args:
        images: (k, H, W) or (k, H, W, 3) uint8.
        captions: k short captions (also the tooltip).
        size: displayed side in pixels.
    """
    import html

    cells = []
    for uri, cap in zip(thumbnail_uris(images), captions):
        cap = html.escape(str(cap))
        cells.append(
            f'<figure style="margin:0;text-align:center" title="{cap}">'
            f'<img src="{uri}" width="{size}" height="{size}" alt="{cap}" '
            'style="image-rendering:pixelated;border:1px solid #ccc;border-radius:3px"/>'
            f'<figcaption style="font-size:11px;color:#555;max-width:{size + 16}px">{cap}</figcaption></figure>'
        )
    return f'<div style="display:flex;flex-wrap:wrap;gap:8px">{"".join(cells)}</div>'


def selection_table(rows: np.ndarray, *, test_indices: np.ndarray | None = None, labels: np.ndarray | None = None,
                    class_names: Sequence[str] | None = None, coherence: np.ndarray | None = None,
                    meta: pd.DataFrame | None = None) -> pd.DataFrame:
    """The selected probe rows as a small table (vector data: no thumbnails).

    Args:
        rows: (k,) probe rows; the other arrays are indexed by probe row.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols: dict[str, object] = {"probe row": rows}
    if test_indices is not None:
        cols["test index"] = np.asarray(test_indices)[rows]
    if labels is not None:
        cols["class"] = _class_text(np.asarray(labels)[rows], class_names)
    if coherence is not None:
        cols["c_i"] = np.asarray(coherence, dtype=np.float64)[rows]
    df = pd.DataFrame(cols)
    if meta is not None:
        for c in list(meta.columns)[:4]:
            df[str(c)] = meta[c].to_numpy()[rows]
    return df


# ----------------------------------------------------------------------------- table & downloads


def embedding_table(proj: AlignedProjections, snapshot_pos: int, *, student_features: np.ndarray,
                    coherence: np.ndarray, labels: np.ndarray | None = None,
                    class_names: Sequence[str] | None = None, test_indices: np.ndarray | None = None,
                    meta: pd.DataFrame | None = None, epoch: float | None = None,
                    probe_rows: np.ndarray | None = None) -> pd.DataFrame:
    """One row per probe point: projections, raw student features, label and c_i.

    Args:
        proj: the aligned projections.
        snapshot_pos: position of the snapshot in ``proj.students``.
        student_features: (n, d_s) the student's raw features at that snapshot.
        coherence: (n,) c_i at that snapshot.
        labels: (n,) labels; class_names: names by label.
        test_indices: (n,) index of each probe row in the test split.
        meta: (n rows) metadata.
        epoch: the snapshot's epoch (a column, for the record).
        probe_rows: (n,) probe row of each point (default 0..n-1; a subsample's rows otherwise).

    Returns:
        DataFrame with ``probe_row``, ``test_index``, ``label``, ``class``, ``c_i``, ``epoch``,
        ``teacher_<M>_1..``, ``student_<M>_1..``, ``student_f0..``, ``meta_<col>``.
    """
    n = len(proj.teacher)
    cols: dict[str, object] = {"probe_row": np.arange(n) if probe_rows is None else np.asarray(probe_rows)}
    if test_indices is not None:
        cols["test_index"] = np.asarray(test_indices, dtype=np.int64)
    if labels is not None:
        lab = np.asarray(labels, dtype=np.int64)
        cols["label"] = lab
        if class_names is not None:
            names = np.asarray(list(class_names), dtype=object)
            cols["class"] = names[np.clip(lab, 0, len(names) - 1)].astype(str)
    cols["c_i"] = np.asarray(coherence, dtype=np.float64)
    if epoch is not None:
        cols["epoch"] = np.full(n, float(epoch))
    prefix = AXIS_PREFIX[proj.method].replace("-", "").lower()
    for j in range(proj.dim):
        cols[f"teacher_{prefix}_{j + 1}"] = proj.teacher[:, j]
    for j in range(proj.dim):
        cols[f"student_{prefix}_{j + 1}"] = proj.students[snapshot_pos][:, j]
    feats = np.asarray(student_features, dtype=np.float64)
    for j in range(feats.shape[1]):
        cols[f"student_f{j}"] = feats[:, j]
    df = pd.DataFrame(cols)
    if meta is not None:
        for c in meta.columns:
            df[f"meta_{c}"] = meta[c].to_numpy()
    return df


def table_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    """The table as ``csv`` or ``parquet`` bytes."""
    if fmt == "csv":
        return df.to_csv(index=False).encode()
    if fmt == "parquet":
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return buf.getvalue()
    raise ValueError(f"format must be 'csv' or 'parquet', got {fmt!r}")


def read_table_bytes(data: bytes, fmt: str) -> pd.DataFrame:
    """Inverse of :func:`table_bytes`."""
    if fmt == "csv":
        return pd.read_csv(io.BytesIO(data))
    if fmt == "parquet":
        return pd.read_parquet(io.BytesIO(data))
    raise ValueError(f"format must be 'csv' or 'parquet', got {fmt!r}")
