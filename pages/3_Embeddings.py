"""Embeddings: teacher and student side by side, linked, coloured by label or c_i, over the snapshots."""

from __future__ import annotations

import numpy as np
import streamlit as st

from perco_viz.analysis import embeddings as ev
from perco_viz.figures import record_number
from ui import common, embeddings, warmup

common.page("Embeddings", "The teacher's and the student's features on the probe set, projected to 2-D or 3-D: "
            "select points in one to find them in the other, and play the training back.")
warmup.start()  # UMAP's compilation in the background, if the home page has not started it

run = common.run_picker("emb-run")
if run is None:
    st.stop()
path = str(run.path)
with common.run_guard(run):  # a run still being set up, or a damaged one: say which file, no figures
    signature = common.run_signature(run)
    probe = common.load_teacher_probe(path)
    seq = embeddings.load_sequence(path, signature)
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
n_total = len(probe["indices"])
labels = probe.get("labels")
class_names = dataset.class_names if dataset is not None else None
meta = None
if dataset is not None and dataset.meta_test is not None and len(dataset.meta_test) > int(probe["indices"].max()):
    meta = dataset.meta_test.iloc[probe["indices"]].reset_index(drop=True)

# --------------------------------------------------------------------------- controls
c1, c2, c3, c4 = st.columns([2.2, 1.2, 2.2, 1])
method = c1.radio("Projection", list(ev.METHOD_LABELS), format_func=ev.METHOD_LABELS.get, horizontal=True,
                  key="emb-method", help="PCA is instant. UMAP and t-SNE are computed in the background "
                  "(seconds to a minute) and kept for every session.")
dim = c2.radio("Dimensions", [2, 3], format_func=lambda d: f"{d}-D", horizontal=True, key="emb-dim")
color_opts = ev.color_options(labels is not None, list(meta.columns) if meta is not None else [])
color_key = c3.selectbox("Colour by", list(color_opts), format_func=color_opts.get, key="emb-color",
                         help="c_i: the share of an anchor's (pair) comparisons the student answers like the "
                         "teacher — 1 = same ranking, 0.5 = chance. Low values are drawn dark red and on top.")
playing = c4.toggle("▶ Play", key="emb-play", help="Step through the snapshots, one every 0.7 s (loops).")

rows, note = ev.display_rows(labels, n_total)
rows_key = (n_total, ev.MAX_POINTS, 0)
if note:
    st.caption(f"ℹ️ {note}.")
try:
    proj, job = embeddings.projections(path, signature, method, dim, rows_key)
except Exception as exc:  # noqa: BLE001 — e.g. too few points for the method
    common.show_error(exc, "The projection failed; choose PCA or another run")
    st.stop()
shown_method = method
if proj is None:
    embeddings.wait_status(job, ev.METHOD_LABELS[method], len(rows), len(seq["indices"]))
    proj, shown_method = embeddings.pca_projections(path, signature, dim, rows_key), "pca"
elif job is not None:
    st.caption(f"{ev.METHOD_LABELS[method]} computed in the background in {proj.seconds:.1f} s.")

# The drawn rows are positions 0..m-1 of `proj`; map the full-probe arrays onto them.
sub_labels = None if labels is None else labels[rows]
sub_meta = None if meta is None else meta.iloc[rows].reset_index(drop=True)
positions = list(range(len(seq["indices"])))

if "emb-selection" not in st.session_state:
    st.session_state["emb-selection"] = {"rows": [], "seen": {}}


def _update_selection() -> list[int]:
    """Merge the two charts' selection events into one shared selection (probe rows)."""
    state = st.session_state["emb-selection"]
    for key in ("emb-fig-teacher", "emb-fig-student"):
        picked = ev.selected_rows(st.session_state.get(key))
        if picked and state["seen"].get(key) != picked:
            state["rows"] = picked
        state["seen"][key] = picked
    return state["rows"]


@st.fragment(run_every=0.7 if playing else None)
def viewer() -> None:
    """Slider, numbers, the two linked figures, thumbnails and downloads of one snapshot."""
    if st.session_state.get("emb-epoch") not in positions:
        st.session_state["emb-epoch"] = positions[-1]
    elif st.session_state.get("emb-play"):
        st.session_state["emb-epoch"] = (st.session_state["emb-epoch"] + 1) % len(positions)
    pos = st.select_slider("Snapshot", positions, key="emb-epoch",
                           format_func=lambda p: f"epoch {seq['epochs'][p]:g}",
                           help="Projections are aligned across snapshots, so points move smoothly.")
    coherence = seq["coherence"][pos]  # (n,) c_i of every probe row
    sub_coh = coherence[rows]
    selection = [r for r in _update_selection() if 0 <= r < n_total]  # probe rows
    rec = seq["metrics"][pos] or {}

    m = st.columns(5)
    m[0].metric("Epoch", f"{seq['epochs'][pos]:g}")
    m[1].metric("PC at this snapshot", f"{float(coherence.mean()):.3f}",
                help="Mean per-sample coherence c_i over the probe set (= perception coherence).")
    m[2].metric("c_i, 10th percentile", f"{float(np.quantile(coherence, 0.1)):.3f}",
                help="One input in ten is perceived worse than this by the student.")
    knn = record_number(rec, "knn_acc")
    m[3].metric("k-NN accuracy", f"{knn:.1%}" if knn is not None else "—",
                help="5-nearest-neighbour accuracy of the student's features on the probe set.")
    m[4].metric("Selected inputs", f"{len(selection):,}",
                delta=f"mean c_i {float(coherence[selection].mean()):.3f}" if selection else None,
                delta_color="off", delta_arrow="off")

    try:
        color = ev.coloring(color_key, labels=sub_labels, class_names=class_names, coherence=sub_coh, meta=sub_meta)
    except ValueError as exc:
        common.show_error(exc, "Cannot colour that way")
        return
    hover = ev.hover_text(rows, test_indices=probe["indices"], labels=labels if color_key != "label" else None,
                          class_names=class_names, coherence=coherence if color_key != "coherence" else None,
                          meta=meta)
    label = ev.METHOD_LABELS[shown_method]
    ranges = proj.ranges()
    epoch = seq["epochs"][pos]
    shared = {"method": shown_method, "ids": rows, "hover": hover, "highlight": selection}
    figs = {
        "teacher": ev.embedding_panel(proj.teacher, color, title=f"Teacher · {label} of its features",
                                      subtitle=f"{len(rows):,} probe inputs", ranges=ranges["teacher"],
                                      **shared),
        "student": ev.embedding_panel(proj.students[pos], color, title=f"Student · epoch {epoch:g}",
                                      subtitle=f"{label}, turned into the teacher's orientation",
                                      ranges=ranges["student"], **shared),
    }
    left, right = st.columns(2)
    for (side, fig), col in zip(figs.items(), (left, right)):
        with col:
            if dim == 2:
                st.plotly_chart(fig, key=f"emb-fig-{side}", width="stretch", on_select="rerun",
                                selection_mode=("box", "lasso", "points"))
            else:
                st.plotly_chart(fig, key=f"emb-fig3d-{side}", width="stretch")
    colour_note = {
        "label": "Colour: the class.",
        "coherence": "Colour: c_i of each input at this snapshot (same colour on both sides) — red inputs are "
                     "the ones whose neighbours the student ranks unlike the teacher.",
    }.get(color_key, f"Colour: {color.title}.")
    st.caption("Each dot is one probe input; both plots show the same inputs. " + colour_note + " Box- or "
               "lasso-select (2-D) in either plot to highlight the same inputs in the other: a coherent student "
               "keeps neighbours together, though it may stretch or bend the teacher's shape. The student is "
               "turned into the teacher's orientation, and its axes are fixed over the snapshots.")
    _selection_strip(selection, coherence)
    if st.session_state.get("emb-play"):
        st.caption("Pause the playback to download the figures, the embeddings and the student.")
        return
    with st.expander("Download the figures"):
        for side, fig in figs.items():
            st.markdown(f"**{side.capitalize()}** ({label}, {dim}-D, epoch {epoch:g})")
            common.download_figure(fig, f"{run.name}-{side}-{shown_method}{dim}d-epoch{epoch:g}",
                                   key=f"emb-dl-{side}")
        st.download_button("Student over all snapshots (animated HTML)", lambda: _animation_html(color_key),
                           file_name=f"{run.name}-student-{shown_method}{dim}d-animation.html",
                           mime="text/html", key="emb-dl-animation", on_click="ignore",
                           help="One self-playing figure (play button and slider) that works offline.")
    _downloads(pos)


def _animation_html(color_key: str) -> str:
    """The animated student figure, built only when its download is clicked."""
    from perco_viz.figures import figure_html

    colorings = [ev.coloring(color_key, labels=sub_labels, class_names=class_names, coherence=c[rows],
                             meta=sub_meta) for c in seq["coherence"]]
    hover = ev.hover_text(rows, test_indices=probe["indices"], labels=labels, class_names=class_names, meta=meta)
    fig = ev.animation_figure(proj, colorings, seq["epochs"], ids=rows, hover=hover,
                              title=f"Student ({ev.METHOD_LABELS[shown_method]})")
    return figure_html(fig)


def _clear_selection() -> None:
    st.session_state["emb-selection"]["rows"] = []


def _selection_strip(selection: list[int], coherence: np.ndarray) -> None:
    """Thumbnails (image data) or a table of the selected inputs (probe rows)."""
    if not selection:
        st.caption("Select points (box, lasso or click, in 2-D) to see the inputs here.")
        return
    cols = st.columns([6, 1])
    cols[1].button("Clear selection", key="emb-clear", on_click=_clear_selection)
    picked = np.asarray(sorted(selection, key=lambda r: coherence[r])[:60])  # worst perceived first
    more = f" (the first 60 of {len(selection)})" if len(selection) > 60 else ""
    with cols[0]:
        if dataset is not None and dataset.is_image:
            caps = [(f"{class_names[labels[p]]} · " if class_names is not None and labels is not None else "")
                    + f"c {coherence[p]:.2f}" for p in picked]
            st.html(ev.thumbnail_strip_html(dataset.images("test", probe["indices"][picked]), caps))
            st.caption(f"The selected inputs{more}, lowest c_i first: class · c_i at this snapshot.")
        else:
            st.dataframe(ev.selection_table(picked, test_indices=probe["indices"], labels=labels,
                                            class_names=class_names, coherence=coherence, meta=meta),
                         hide_index=True, height=180)
            st.caption(f"The selected inputs{more}, lowest c_i first.")


def _downloads(pos: int) -> None:
    """Embeddings as CSV/Parquet (built on click), and the student's weights."""

    def table():
        return ev.embedding_table(proj, pos, student_features=seq["students"][pos][rows],
                               coherence=seq["coherence"][pos][rows], labels=sub_labels,
                               class_names=class_names, test_indices=probe["indices"][rows], meta=sub_meta,
                               epoch=seq["epochs"][pos], probe_rows=rows)

    name = f"{run.name}-embeddings-{shown_method}{dim}d-epoch{seq['epochs'][pos]:g}"
    d = st.columns([1, 1, 1, 3])
    d[0].download_button("Embeddings CSV", lambda: ev.table_bytes(table(), "csv"), file_name=f"{name}.csv",
                         mime="text/csv", key="emb-dl-csv", on_click="ignore",
                         help="Teacher and student projections, raw student features, labels and c_i.")
    d[1].download_button("Embeddings Parquet", lambda: ev.table_bytes(table(), "parquet"),
                         file_name=f"{name}.parquet", mime="application/octet-stream", key="emb-dl-parquet",
                         on_click="ignore", help="The same table as Parquet (pandas.read_parquet).")
    try:  # checked through the run store's entrance: a link out of the runs folder is never served
        weights = run.student_file()
    except common.run_data_errors() as exc:
        d[2].caption(f"The student weights cannot be offered: {exc}")
    else:
        if weights is None:
            d[2].caption("No student weights saved yet.")
        else:
            d[2].download_button("Student weights", lambda: run.student_weights() or b"",
                                 file_name=f"{run.name}-student.safetensors", mime="application/octet-stream",
                                 key="emb-dl-weights", on_click="ignore",
                                 help="The latest student weights (safetensors).")
    d[3].caption("CSV/Parquet: one row per probe input at this snapshot — teacher and student projections, "
                 "the student's raw features, label and c_i.")


viewer()
