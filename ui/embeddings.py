"""The Embeddings page's widgets and caching: loading a run's snapshots, the controls, the cached
PCA and the background projection worker (UMAP and t-SNE never run on the script thread), the
selection shared by the two linked figures, the snapshot viewer, thumbnails and downloads.

The data come from :mod:`perco_viz.analysis.embeddings`, the figures from
:mod:`perco_viz.figures.embeddings`; ``pages/3_Embeddings.py`` only lays the page out."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from perco_viz.analysis import embeddings as ev
from perco_viz.analysis.embeddings import AlignedProjections, run_projections
from perco_viz.figures import class_label, embedding_panel, record_number
from ui import common, explore, view_state
from ui import runs as runs_ui

MAX_JOBS = 24  # finished projections kept per server (each is k × n × dim floats)
POINT = "probe row"  # the id column of the page's table of points (searched as #12, tagged, exported)


# --------------------------------------------------------------------------- data of a run
@st.cache_data(max_entries=16, show_spinner=False)
def load_sequence(path: str, signature: tuple) -> dict[str, Any]:
    """All snapshots of a run: indices, epochs, students (k, n, d_s), coherence (k, n), metrics.

    ``signature`` (``RunDir.signature``) is only the cache key: a new snapshot reloads.
    """
    from perco_viz.runs import RunDir

    run = RunDir(path)
    indices = run.snapshot_indices()
    snaps = [common.load_snapshot(path, i) for i in indices]
    return {
        "indices": indices,
        "epochs": [float(s["epoch"]) for s in snaps],
        "students": np.stack([s["student"] for s in snaps]) if snaps else np.zeros((0, 0, 0)),
        "coherence": np.stack([s["coherence"] for s in snaps]) if snaps else np.zeros((0, 0)),
        "metrics": [s["metrics"] for s in snaps],
    }


@st.cache_data(max_entries=32, show_spinner="Projecting with PCA…")
def pca_projections(path: str, signature: tuple, dim: int, rows_key: tuple) -> Any:
    """PCA of the teacher and every snapshot (milliseconds): computed on the script thread."""
    return compute(path, signature, "pca", dim, rows_key)


def compute(path: str, signature: tuple, method: str, dim: int, rows_key: tuple,
            progress=None) -> Any:
    """The aligned projections of a run's displayed rows (``signature`` only keys caches)."""
    return run_projections(path, method, dim, rows_key, progress=progress)


# --------------------------------------------------------------------------- background worker
@dataclass
class Job:
    """One projection computed in the background."""

    future: Future
    method: str
    started: float = field(default_factory=time.perf_counter)
    progress: tuple[int, int] = (0, 1)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


class ProjectionWorker:
    """UMAP/t-SNE projections computed in a worker process, with their results kept.

    The worker is a process of its own (:func:`perco_viz.process.shared_worker`): UMAP's
    numba compilation and the projections never hold this server's GIL, so every page of every
    session stays responsive meanwhile. Keyed by ``(run path, run signature, method, dim,
    rows_key)``: a finished projection is computed once per server and shared by every session
    looking at that run.
    """

    def __init__(self, max_jobs: int = MAX_JOBS) -> None:
        from perco_viz.process import shared_worker

        self.pool = shared_worker()
        self.jobs: OrderedDict[tuple, Job] = OrderedDict()
        self.max_jobs = max_jobs
        self.lock = threading.Lock()

    def submit(self, key: tuple, fn, *args) -> Job:
        """The job for ``key``, started (``fn(*args, progress=...)`` in the worker process; ``fn``
        a module-level function of plain arguments) if it is not known yet."""
        with self.lock:
            job = self.jobs.get(key)
            if job is not None:  # running, finished or failed: failed jobs stay until forgotten
                self.jobs.move_to_end(key)
                return job
            job = Job(Future(), method=str(key[3]) if len(key) > 3 else "")

            def progress(done: int, total: int, job=job) -> None:
                job.progress = (done, total)

            job.future = self.pool.submit(fn, *args, progress=progress)
            self.jobs[key] = job
            while len(self.jobs) > self.max_jobs:
                old_key, old = next(iter(self.jobs.items()))
                if not old.future.done():
                    break
                del self.jobs[old_key]
            return job

    def forget(self, key: tuple) -> None:
        """Drop a finished (or failed) job so the next submit computes it again."""
        with self.lock:
            job = self.jobs.get(key)
            if job is not None and job.future.done():
                del self.jobs[key]


@st.cache_resource(show_spinner=False)
def worker() -> ProjectionWorker:
    """The server's one projection worker."""
    return ProjectionWorker()


def job_key(path: str, signature: tuple, method: str, dim: int, rows_key: tuple) -> tuple:
    """The worker's key of one projection."""
    return (path, signature, method, dim, rows_key)


def projections(path: str, signature: tuple, method: str, dim: int, rows_key: tuple) -> tuple[Any, Job | None]:
    """``(result, job)``: PCA at once; UMAP/t-SNE from the worker (``result`` None until ready).

    Raises the worker's exception when the background computation failed (and forgets it,
    so the next attempt computes it again).
    """
    if method == "pca":
        return pca_projections(path, signature, dim, rows_key), None
    key = job_key(path, signature, method, dim, rows_key)
    job = worker().submit(key, run_projections, path, method, dim, rows_key)
    if job.future.done():
        if job.future.exception() is not None:
            worker().forget(key)
            raise job.future.exception()
        return job.future.result(), job
    return None, job


def wait_status(job: Job, method_label: str, n_points: int, n_snapshots: int, note: str | None = None) -> None:
    """A status line that polls every second until the job is done, then reruns the page
    (``note``: how many points the method is fitted on, when not all)."""

    @st.fragment(run_every=1.0)
    def _poll() -> None:
        if job.future.done():  # ready (or failed): the whole page draws it (or says why)
            st.rerun()
        from ui import warmup

        done, total = job.progress
        total = max(total, n_snapshots + 1)  # teacher + every snapshot
        compiling = method_label == "UMAP" and not warmup.status().get("numba", "").startswith("ready")
        hint = " The first UMAP in a server also compiles its kernels (about 15 s)." if compiling else ""
        st.progress(min(1.0, done / total),
                    text=f"Computing {method_label} in the background: {done} of {total} projections "
                         f"({n_points:,} points each), {job.elapsed:.0f} s.{hint} Showing PCA meanwhile."
                         + (f" {note}." if note else ""))

    _poll()


# --------------------------------------------------------------------------- the page's run and controls
@dataclass
class RunData:
    """What the page reads of one run: its probe set, snapshots and dataset."""

    run: Any
    path: str
    signature: tuple
    probe: dict[str, Any]
    seq: dict[str, Any]
    dataset: Any
    labels: np.ndarray | None
    class_names: list[str] | None
    meta: pd.DataFrame | None

    @property
    def n_total(self) -> int:
        return len(self.probe["indices"])


def load_run(run) -> RunData:
    """Read ``run`` for the page (a damaged or unready run: a message and the page stops)."""
    path = str(run.path)
    with common.run_guard(run):  # a run still being set up, or a damaged one: say which file, no figures
        signature = run.signature()
        probe = common.load_teacher_probe(path)
        seq = load_sequence(path, signature)
    common.note_metrics_damage(run)
    if not seq["indices"]:
        st.info("This run has no snapshot yet: the first one is written when training starts.")
        st.stop()
    if run.status().get("state") == "running":
        r1, r2 = st.columns([6, 1])
        r1.info(f"This run is still training ({len(seq['indices'])} snapshots so far). Refresh for the latest; "
                "the **Distill** page follows it live.")
        if r2.button("⟳ Refresh", key="emb-refresh"):
            st.rerun()
    dataset = common.dataset_of(run)
    meta = None
    if dataset is not None and dataset.meta_test is not None and len(dataset.meta_test) > int(probe["indices"].max()):
        meta = dataset.meta_test.iloc[probe["indices"]].reset_index(drop=True)
    return RunData(run, path, signature, probe, seq, dataset, probe.get("labels"),
                   common.class_names_of(run, probe.get("labels")), meta)


@dataclass
class Controls:
    """The page's choices: projection method, dimensions, colouring."""

    method: str
    dim: int
    color_key: str


def controls(data: RunData) -> Controls:
    """The row of controls above the figures."""
    c1, c2, c3 = st.columns([2.2, 1.2, 2.4])
    view_state.seed("emb-method", "proj", valid=lambda m: m in ev.METHOD_LABELS)  # a shared link's view
    view_state.seed("emb-dim", "dim", int, valid=lambda d: d in (2, 3))
    method = c1.radio("Projection", list(ev.METHOD_LABELS), format_func=ev.METHOD_LABELS.get, horizontal=True,
                      key="emb-method", help="PCA is instant. UMAP and t-SNE are computed in the background "
                      "(seconds to a minute) and kept for every session.")
    dim = c2.radio("Dimensions", [2, 3], format_func=lambda d: f"{d}-D", horizontal=True, key="emb-dim")
    color_opts = ev.color_options(data.labels is not None, list(data.meta.columns) if data.meta is not None else [])
    view_state.seed("emb-color", "color", valid=lambda c: c in color_opts)
    color_key = c3.selectbox("Colour by", list(color_opts), format_func=color_opts.get, key="emb-color",
                             help="c_i: the share of an anchor's (pair) comparisons the student answers like the "
                             "teacher — 1 = same ranking, 0.5 = chance. Low values are drawn dark red and on top.")
    view_state.publish("proj", method)
    view_state.publish("dim", dim)
    view_state.publish("color", color_key)
    return Controls(method, dim, color_key)


# --------------------------------------------------------------------------- what is drawn
@dataclass
class View:
    """One run's projections as drawn: the rows shown (positions 0..m-1 of ``proj``) and the
    method actually shown (PCA while UMAP/t-SNE is computed)."""

    data: RunData
    controls: Controls
    rows: np.ndarray
    proj: AlignedProjections
    method: str

    @property
    def sub_labels(self) -> np.ndarray | None:
        return None if self.data.labels is None else self.data.labels[self.rows]

    @property
    def sub_meta(self) -> pd.DataFrame | None:
        return None if self.data.meta is None else self.data.meta.iloc[self.rows].reset_index(drop=True)


def projected(data: RunData, chosen: Controls) -> View:
    """The aligned projections of the drawn rows: PCA at once, UMAP/t-SNE from the background
    worker (a progress line and PCA meanwhile); a failure is shown and the page stops."""
    rows, note = ev.display_rows(data.labels, data.n_total)
    rows_key = (data.n_total, ev.MAX_POINTS, 0)
    if note:
        st.caption(f"ℹ️ {note}.")
    try:
        proj, job = projections(data.path, data.signature, chosen.method, chosen.dim, rows_key)
    except Exception as exc:  # noqa: BLE001 — e.g. too few points for the method
        common.show_error(exc, "The projection failed; choose PCA or another run")
        st.stop()
    shown_method = chosen.method
    if proj is None:
        from perco_viz.analysis.projection import fit_note, fit_size

        note = fit_note(chosen.method, fit_size(len(rows), chosen.method), len(rows))
        wait_status(job, ev.METHOD_LABELS[chosen.method], len(rows), len(data.seq["indices"]), note)
        proj, shown_method = pca_projections(data.path, data.signature, chosen.dim, rows_key), "pca"
    elif job is not None:
        fitted = f" {proj.note}." if proj.note else ""
        st.caption(f"{ev.METHOD_LABELS[chosen.method]} computed in the background in {proj.seconds:.1f} s.{fitted}")
    if "emb-selection" not in st.session_state:
        st.session_state["emb-selection"] = {"rows": [], "seen": {}}
    return View(data, chosen, rows, proj, shown_method)


# --------------------------------------------------------------------------- selection
def selected_rows(event: object) -> list[int]:
    """Probe rows of a plotly selection event: the ids in ``customdata[0]`` of its points
    (:func:`ui.common.selected_points`), sorted and unique."""
    return sorted({r for r in map(common.point_id, common.selected_points(event)) if r is not None})


def update_selection() -> list[int]:
    """Merge the two charts' selection events into one shared selection (probe rows); a click on
    one point also makes it the point whose neighbours are listed (``emb-row``)."""
    state = st.session_state["emb-selection"]
    for key in ("emb-fig-teacher", "emb-fig-student"):
        picked = selected_rows(st.session_state.get(key))
        if picked and state["seen"].get(key) != picked:
            state["rows"] = picked
            if len(picked) == 1:
                st.session_state["emb-row"] = picked[0]
        state["seen"][key] = picked
    return state["rows"]


def _clear_selection() -> None:
    st.session_state["emb-selection"]["rows"] = []
    st.session_state["emb-row"] = None


def points_table(data: RunData, coherence: np.ndarray) -> pd.DataFrame:
    """Every probe input as one row (``probe row``, ``test index``, ``class``, ``c_i`` at this
    snapshot, the dataset's metadata columns and this session's ``tags``): what the search runs over.

    ``coherence``: (n,) c_i of every probe row."""
    table = ev.selection_table(np.arange(data.n_total), test_indices=data.probe["indices"], labels=data.labels,
                               class_names=data.class_names, coherence=coherence, meta=data.meta, meta_columns=None)
    return explore.with_tags(table, data.path, id_column=POINT)


# --------------------------------------------------------------------------- the viewer
def show(view: View) -> None:
    """Slider, numbers, the two linked figures, thumbnails and downloads of one snapshot; steps
    through the snapshots every 0.7 s while playing."""

    playing = st.toggle("▶ Play the snapshots", key="emb-play",
                        help="Step through the snapshots, one every 0.7 s (loops).")

    @st.fragment(run_every=0.7 if playing else None)
    def _viewer() -> None:
        _snapshot(view)

    _viewer()


def _snapshot(view: View) -> None:
    data, seq, rows = view.data, view.data.seq, view.rows
    indices = seq["indices"]
    positions = list(range(len(indices)))
    view_state.seed("emb-epoch", "snap", lambda raw: indices.index(int(raw)))  # snap=: a snapshot's index
    if st.session_state.get("emb-epoch") not in positions:
        st.session_state["emb-epoch"] = positions[-1]
    elif st.session_state.get("emb-play"):
        st.session_state["emb-epoch"] = (st.session_state["emb-epoch"] + 1) % len(positions)
    pos = st.select_slider("Snapshot", positions, key="emb-epoch",
                           format_func=lambda p: f"epoch {seq['epochs'][p]:g}",
                           help="Projections are aligned across snapshots, so points move smoothly.")
    view_state.publish("snap", indices[pos])
    coherence = seq["coherence"][pos]  # (n,) c_i of every probe row
    table = points_table(data, coherence)
    matches = _search(table)  # probe rows the search keeps, or None (no search)
    selection = [r for r in update_selection() if 0 <= r < data.n_total]  # probe rows
    view_state.seed("emb-row", "row", int, valid=lambda r: 0 <= r < data.n_total)
    row = st.session_state.get("emb-row")
    row = int(row) if row is not None and 0 <= int(row) < data.n_total else None
    _cards(seq, pos, coherence, selection)

    color_key = view.controls.color_key
    try:
        color = ev.coloring(color_key, labels=view.sub_labels, class_names=data.class_names,
                            coherence=coherence[rows], meta=view.sub_meta)
    except ValueError as exc:
        common.show_error(exc, "Cannot colour that way")
        return
    hover = ev.hover_fields(rows, test_indices=data.probe["indices"],
                            labels=data.labels if color_key != "label" else None, class_names=data.class_names,
                            coherence=coherence if color_key != "coherence" else None, meta=data.meta)
    label = ev.METHOD_LABELS[view.method]
    ranges = view.proj.ranges()
    epoch = seq["epochs"][pos]
    dim = view.controls.dim
    shared = {"method": view.method, "ids": rows, "hover": hover, "highlight": selection, "marked": row,
              "matches": matches, "hide_others": bool(st.session_state.get("emb-hide"))}
    figs = {
        "teacher": embedding_panel(view.proj.teacher, color, title=f"Teacher · {label} of its features",
                                   subtitle=f"{len(rows):,} probe inputs", ranges=ranges["teacher"], **shared),
        "student": embedding_panel(view.proj.students[pos], color, title=f"Student · epoch {epoch:g}",
                                   subtitle=f"{label}, turned into the teacher's orientation",
                                   ranges=ranges["student"], **shared),
    }
    playing = bool(st.session_state.get("emb-play"))
    left, right = st.columns(2)
    for (side, fig), col in zip(figs.items(), (left, right)):
        with col:
            name = None if playing else f"{data.run.name}-{side}-{view.method}{dim}d-epoch{epoch:g}"
            if dim == 2:
                common.show_figure(fig, key=f"emb-fig-{side}", name=name, on_select="rerun",
                                   selection_mode=("box", "lasso", "points"))
            else:
                common.show_figure(fig, key=f"emb-fig3d-{side}", name=name)
    colour_note = {
        "label": "Colour: the class.",
        "coherence": "Colour: c_i of each input at this snapshot (same colour on both sides) — red inputs are "
                     "the ones whose neighbours the student ranks unlike the teacher.",
    }.get(color_key, f"Colour: {color.title}.")
    search_note = "" if matches is None else " Grey: the inputs the search leaves out."
    st.caption("Each dot is one probe input; both plots show the same inputs. " + colour_note + search_note +
               " Box- or lasso-select (2-D) in either plot to highlight the same inputs in the other, or click one "
               "to list its nearest neighbours below: a coherent student keeps neighbours together, though it may "
               "stretch or bend the teacher's shape. The student is turned into the teacher's orientation, and its "
               "axes are fixed over the snapshots.")
    _selection_strip(view, selection, coherence)
    _neighbours(view, pos, coherence, row)
    if not common.presenting():
        _tagging(data, table, selection, matches)
    if playing:
        st.caption("Pause the playback to download the figures, the embeddings and the student.")
        return
    if not common.presenting():
        _downloads(view, pos)


def _search(table: pd.DataFrame) -> np.ndarray | None:
    """The search box (in the URL as ``q=``) and the "hide the others" switch; returns the (k,)
    probe rows that match, or None when there is no search (every point drawn as usual)."""
    s1, s2 = st.columns([3, 1.4], vertical_alignment="bottom")
    with s1:
        mask = explore.search(table, "emb-search", id_column=POINT, label="Search points",
                              placeholder="e.g. class=3  c_i<0.7  #12  tags=suspect")
    s2.toggle("Hide the others", key="emb-hide", help="Leave out the inputs the search does not find, instead "
              "of drawing them grey.")
    return None if mask.all() else np.flatnonzero(mask)


def _neighbours(view: View, pos: int, coherence: np.ndarray, row: int | None) -> None:
    """The clicked point's k nearest neighbours by the teacher and by the student, in their full
    feature spaces, side by side (thumbnails for images, else tables), and a link to Rank agreement."""
    data = view.data
    labels, class_names = data.labels, data.class_names
    st.markdown("**Nearest neighbours of one input**")
    c = st.columns([1.2, 1.2, 3], vertical_alignment="bottom")
    c[0].number_input("Input (probe row)", min_value=0, max_value=data.n_total - 1, value=None, step=1,
                      key="emb-row", placeholder="click a point",
                      help="Click a point in either plot, or type its number (the 'point' of its tooltip).")
    k = int(c[1].number_input("Neighbours", min_value=1, max_value=max(1, min(30, data.n_total - 1)),
                              value=min(ev.NEIGHBOURS_K, max(1, data.n_total - 1)), step=1, key="emb-k",
                              help="How many nearest neighbours to list for the teacher and for the student."))
    view_state.publish("row", row)
    if row is None:
        c[2].caption("Click a point in either plot (or type its number) to list its nearest neighbours by the "
                     "teacher and by the student, measured on their full features (not on the picture).")
        return
    metric, teacher_metric = data.run.coherence_metrics()
    try:
        lists = ev.nearest_neighbours(data.probe["features"], data.seq["students"][pos], row, k, metric=metric,
                                      teacher_metric=teacher_metric, labels=labels)
    except ValueError as exc:
        common.show_error(exc, "The neighbours cannot be listed")
        return
    k = len(lists["teacher"])
    both = int(lists["teacher"]["shared"].sum())
    with c[2]:
        _rank_link(row, data.seq["indices"][pos])
    st.markdown(f"Input **{common.point_text(row, labels, class_names, coherence)}**: **{both} of its {k}** "
                "nearest neighbours are the same for the teacher and the student.")
    test_idx = data.probe["indices"]
    if common.show_thumbnails(data.dataset, test_idx[[row]], [f"#{row}"], size=64, borders=["#1f2430"]):
        cols = st.columns(2)
        for col, side in zip(cols, ("teacher", "student")):
            part = lists[side]
            caps = [f"{int(r['rank'])}. #{int(r['point'])}" +
                    (f" · {class_label(r['label'], class_names)}" if labels is not None else "")
                    for r in part.to_dict("records")]
            with col:
                st.markdown(f"**The {side}'s {k} nearest**")
                common.show_thumbnails(data.dataset, test_idx[part["point"].to_numpy()], caps, size=56,
                                       borders=["#1a9850" if b else "#d73027" for b in part["shared"]])
        st.caption("Nearest first (1 = nearest), as number · input · class. Green frame: in both lists; red: in "
                   "this list only.")
        return
    cols = st.columns(2)
    for col, side in zip(cols, ("teacher", "student")):
        with col:
            st.markdown(f"**The {side}'s {k} nearest**")
            st.dataframe(ev.neighbour_list_table(lists[side], side, class_names=class_names, coherence=coherence),
                         hide_index=True, width="stretch", height=min(36 * (k + 1) + 4, 320))
    st.caption("Nearest first. 'In both lists': the input is among the k nearest of the teacher and of the student.")


def _rank_link(row: int, snapshot: int) -> None:
    """A link to Rank agreement with ``row`` as the anchor, at the same snapshot (and run)."""
    from urllib.parse import urlencode

    params = common.anchor_params(row, snapshot)
    label = "Open as anchor on Rank agreement"
    if not common.link(st, common.RANK_AGREEMENT_PAGE, label=label, icon=":material/grid_view:",
                       query_params=params):  # the page run on its own (no app around it): a plain link
        st.markdown(f"[{label}](Rank_agreement?{urlencode(params)})")


def _tagging(data: RunData, table: pd.DataFrame, selection: list[int], matches: np.ndarray | None) -> None:
    """Tag the selected inputs (or, with none selected, those the search finds); export the list."""
    chosen = np.asarray(selection if selection else ([] if matches is None else matches), dtype=np.int64)
    what = ("the selected inputs" if selection else "the inputs the search finds" if matches is not None
            else "selected or searched inputs")
    st.markdown("**Tag inputs**")
    st.caption(f"Tags go on {what}; search them with `tags=suspect`, and export the tagged list as CSV.")
    explore.tag_panel(table, data.path, "emb-tag", id_column=POINT, chosen=chosen,
                      file_name=f"{data.run.name}-tagged-inputs.csv")


def share(run) -> None:
    """The "Share this view" link (run, snapshot, projection, dimensions, colours, search, point)."""
    view_state.share_box(own_run=common.run_param(run.path).startswith("yours/"))


def _cards(seq: dict[str, Any], pos: int, coherence: np.ndarray, selection: list[int]) -> None:
    """The numbers of the snapshot at ``pos``."""
    rec = seq["metrics"][pos] or {}
    row = st.container(horizontal=True, gap="medium")  # wraps instead of cutting (1024×768, presentation)
    row.metric("Epoch", f"{seq['epochs'][pos]:g}", width="content")
    row.metric("PC at this snapshot", f"{float(coherence.mean()):.3f}", width="content",
               help="Mean per-sample coherence c_i over the probe set (= perception coherence).")
    row.metric("c_i, 10th percentile", f"{float(np.quantile(coherence, 0.1)):.3f}", width="content",
               help="One input in ten is perceived worse than this by the student.")
    knn = record_number(rec, "knn_acc")
    row.metric("k-NN accuracy", f"{knn:.1%}" if knn is not None else "—", width="content",
               help="5-nearest-neighbour accuracy of the student's features on the probe set.")
    row.metric("Selected inputs", f"{len(selection):,}", width="content",
               delta=f"mean c_i {float(coherence[selection].mean()):.3f}" if selection else None,
               delta_color="off", delta_arrow="off")


def _animation_html(view: View) -> str:
    """The animated student figure, built only when its download is clicked."""
    from perco_viz.figures import animation_figure, figure_html

    data, rows = view.data, view.rows
    colorings = [ev.coloring(view.controls.color_key, labels=view.sub_labels, class_names=data.class_names,
                             coherence=c[rows], meta=view.sub_meta) for c in data.seq["coherence"]]
    hover = ev.hover_fields(rows, test_indices=data.probe["indices"], labels=data.labels,
                            class_names=data.class_names, meta=data.meta)
    fig = animation_figure(view.proj, colorings, data.seq["epochs"], ids=rows, hover=hover,
                           title=f"Student ({ev.METHOD_LABELS[view.method]})")
    return figure_html(fig)


def _selection_strip(view: View, selection: list[int], coherence: np.ndarray) -> None:
    """Thumbnails (image data) or a table of the selected inputs (probe rows)."""
    if not selection:
        st.caption("Select points (box, lasso or click, in 2-D) to see the inputs here.")
        return
    data = view.data
    labels, class_names = data.labels, data.class_names
    cols = st.columns([6, 1])
    cols[1].button("Clear selection", key="emb-clear", on_click=_clear_selection)
    picked = np.asarray(sorted(selection, key=lambda r: coherence[r])[:60])  # worst perceived first
    more = f" (the first 60 of {len(selection):,})" if len(selection) > 60 else ""
    caps = [(f"{class_names[labels[p]]} · " if class_names is not None and labels is not None else "")
            + f"c {coherence[p]:.2f}" for p in picked]
    with cols[0]:
        if common.show_thumbnails(data.dataset, data.probe["indices"][picked], caps, size=56):
            st.caption(f"The selected inputs{more}, lowest c_i first: class · c_i at this snapshot.")
        else:
            st.dataframe(ev.selection_table(picked, test_indices=data.probe["indices"], labels=labels,
                                            class_names=class_names, coherence=coherence, meta=data.meta),
                         hide_index=True, height=180)
            st.caption(f"The selected inputs{more}, lowest c_i first.")


def _downloads(view: View, pos: int) -> None:
    """One row of short download buttons (each file built on click): the embeddings as CSV or
    Parquet, the student's weights, the student over all snapshots; a caption says what each is."""
    data, rows, seq, run = view.data, view.rows, view.data.seq, view.data.run

    def table():
        return ev.embedding_table(view.proj, pos, student_features=seq["students"][pos][rows],
                                  coherence=seq["coherence"][pos][rows], labels=view.sub_labels,
                                  class_names=data.class_names, test_indices=data.probe["indices"][rows],
                                  meta=view.sub_meta, epoch=seq["epochs"][pos], probe_rows=rows)

    name = f"{run.name}-embeddings-{view.method}{view.controls.dim}d-epoch{seq['epochs'][pos]:g}"
    st.markdown("**Downloads**")
    row = st.container(horizontal=True, gap="small")
    icon = ":material/download:"
    row.download_button("CSV", lambda: ev.table_bytes(table(), "csv"), file_name=f"{name}.csv", mime="text/csv",
                        key="emb-dl-csv", on_click="ignore", icon=icon,
                        help="The embeddings at this snapshot: teacher and student projections, the student's raw "
                             "features, labels and c_i, one row per probe input.")
    row.download_button("Parquet", lambda: ev.table_bytes(table(), "parquet"), file_name=f"{name}.parquet",
                        mime="application/octet-stream", key="emb-dl-parquet", on_click="ignore", icon=icon,
                        help="The same table as Parquet (pandas.read_parquet).")
    row.download_button("Animation", lambda: _animation_html(view),
                        file_name=f"{run.name}-student-{view.method}{view.controls.dim}d-animation.html",
                        mime="text/html", key="emb-dl-animation", on_click="ignore", icon=icon,
                        help="The student over all snapshots: one self-playing figure (play button and slider) "
                             "that works offline.")
    index = seq["indices"][pos]
    path, signature, stamp = data.path, data.signature, run.snapshot_stamp(index)
    names = None if data.class_names is None else tuple(str(c) for c in data.class_names)
    row.download_button("Projector", lambda: runs_ui.projector_download(path, signature, index, stamp, names),
                        file_name=f"{run.name}-projector-snapshot{index}.zip", mime="application/zip",
                        key="emb-dl-projector", on_click="ignore", icon=icon,
                        help="TensorBoard projector (zip): this snapshot's student and teacher features with each "
                             "input's label and c_i, for TensorBoard's Embedding Projector.")
    note = ""
    try:  # checked through the run store's entrance: a link out of the runs folder is never served
        weights = run.student_file()
    except common.run_data_errors() as exc:
        note = f" The student weights cannot be offered: {exc}"
    else:
        if weights is None:
            note = (" No student weights: your own training keeps them (the run holds its features only)."
                    if run.is_external() else " No student weights saved yet.")
        else:
            row.download_button("Weights", lambda: run.student_weights() or b"",
                                file_name=f"{run.name}-student.safetensors", mime="application/octet-stream",
                                key="emb-dl-weights", on_click="ignore", icon=icon,
                                help="The latest student weights (safetensors).")
    st.caption("**CSV** / **Parquet**: the embeddings at this snapshot, one row per probe input (projections, the "
               "student's raw features, label, c_i). **Animation**: the student over all snapshots (HTML). "
               "**Projector**: this snapshot for TensorBoard's Embedding Projector (zip: unzip it, run "
               "`tensorboard --logdir` on the folder, open the *Projector* tab). "
               "**Weights**: the latest student (safetensors)." + note)
