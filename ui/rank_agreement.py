"""The *Rank agreement* page's widgets and cached computations: the subset and order controls,
the three heatmaps (A, R_T, R_S) with the clickable anchor rows, one anchor's neighbours and the
Shepard diagram. The computations are :mod:`perco_viz.analysis.rank_agreement`, the figures
:mod:`perco_viz.figures.rank_agreement`; :mod:`pages.4_Rank_agreement` lays them out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from perco_viz import figures
from ui import common

MAX_RANK_POINTS = 2500  # R_T, R_S and A are n × n: above this, a stratified subsample of the probe set
SHEPARD_PAIRS = 20_000
MAX_CELLS = 300  # the most rows/columns a heatmap draws (block-averaged above)


# --------------------------------------------------------------------------- cached computations
@st.cache_data(max_entries=8, show_spinner=False)
def rank_rows(path: str, n: int, max_points: int = MAX_RANK_POINTS) -> np.ndarray:
    """The probe rows the n × n matrices are computed on: all, or a stratified subsample."""
    from perco_viz.analysis.projection import stratified_subsample

    labels = common.load_teacher_probe(path).get("labels")
    return stratified_subsample(labels, n, max_points, seed=0)


@st.cache_data(max_entries=4, show_spinner=False)
def rank_data(path: str, index: int, stamp: float, metric: str, teacher_metric: str | None,
              rows_key: tuple) -> dict[str, np.ndarray]:
    """R_T, R_S and A (float32, (m, m), NaN diagonal) among the rows :func:`rank_rows` gives."""
    from perco_viz.analysis.rank_agreement import rank_matrices

    rows = rank_rows(path, *rows_key)
    teacher = common.load_teacher_probe(path)["features"][rows]
    student = common.load_snapshot(path, index)["student"][rows]
    r_t, r_s, agreement = rank_matrices(student, teacher, metric=metric, teacher_metric=teacher_metric)
    return {"R_T": r_t.astype(np.float32), "R_S": r_s.astype(np.float32), "A": agreement.astype(np.float32)}


@st.cache_data(max_entries=16, show_spinner=False)
def ordering(path: str, by: str, rows_key: tuple) -> np.ndarray:
    """Order of the rank rows (positions into :func:`rank_rows`) by label or teacher clustering."""
    from perco_viz.analysis.rank_agreement import order_points

    probe = common.load_teacher_probe(path)
    rows = rank_rows(path, *rows_key)
    labels = probe.get("labels")
    return order_points(probe["features"][rows], None if labels is None else labels[rows], by=by)


@st.cache_data(max_entries=16, show_spinner=False)
def shepard(path: str, index: int, stamp: float, metric: str, teacher_metric: str | None) -> dict[str, Any]:
    """Sampled pairs' teacher and student dissimilarities and their Spearman ρ."""
    from perco_viz.analysis.rank_agreement import shepard_pairs, spearman

    teacher = common.load_teacher_probe(path)["features"]
    student = common.load_snapshot(path, index)["student"]
    d_t, d_s = shepard_pairs(student, teacher, max_pairs=SHEPARD_PAIRS, seed=0, metric=metric,
                             teacher_metric=teacher_metric)
    return {"d_teacher": d_t, "d_student": d_s, "spearman": spearman(d_t, d_s)}


# --------------------------------------------------------------------------- the three heatmaps
@st.cache_data(max_entries=8, show_spinner=False)
def matrix_view(path: str, index: int, stamp: float, metric: str, teacher_metric: str | None, rows_key: tuple,
                order_by: str, shown: np.ndarray, how: str, epoch: float, class_names: list[str] | None,
                max_cells: int = MAX_CELLS) -> dict[str, Any]:
    """Everything the three heatmaps need, for one snapshot, subset and order (figures included:
    drawing 3 × n² cells is the slow part of a rerun).

    Args:
        shown: positions into :func:`rank_rows` to draw (any order).
        how: the ordering's words, for subtitles and axes.

    Returns:
        ``drawn_rows`` (m,) probe rows in drawing order, ``mean_A`` of the drawn cells,
        ``row_mean_A`` (m,), and the figures ``A``, ``R_T``, ``R_S`` (without the anchor mark).
    """
    data = rank_data(path, index, stamp, metric, teacher_metric, rows_key)
    order_all = ordering(path, order_by, rows_key)
    universe = rank_rows(path, *rows_key)
    keep = np.zeros(len(universe), dtype=bool)
    keep[np.asarray(shown, dtype=np.int64)] = True
    order = order_all[keep[order_all]]  # positions into `universe`, in drawing order
    drawn_rows = universe[order]
    sub = np.ix_(order, order)
    labels = common.load_teacher_probe(path).get("labels")
    marks = labels[drawn_rows] if labels is not None and order_by == "label" else None  # class blocks only
    positions = np.arange(len(order))
    m = len(order)
    A = data["A"][sub]
    figs = {"A": figures.rank_agreement_heatmap(A, order=positions, labels=marks, class_names=class_names,
                                                max_cells=max_cells, height=560,
                                                title=f"rank agreement A at epoch {epoch:g}")}
    for key, which in (("R_T", "teacher"), ("R_S", "student")):
        figs[key] = figures.ranks_heatmap(data[key][sub], which=which, order=positions, labels=marks,
                                          class_names=class_names, max_cells=max_cells, height=560)
    for fig in figs.values():
        figures.compact_matrix(fig, n=m, max_cells=max_cells, how=how)
    with np.errstate(all="ignore"):
        row_mean = np.nanmean(A, axis=1).astype(np.float64)
    return {"drawn_rows": drawn_rows, "mean_A": float(np.nanmean(A)), "row_mean_A": row_mean, **figs}


# --------------------------------------------------------------------------- the page's parts
@dataclass(frozen=True)
class Matrices:
    """What the controls chose and what was computed for it: ``view`` (:func:`matrix_view`),
    ``pairs`` (:func:`shepard`), the metrics, and the drawn rows' labels (or None)."""

    choice: common.SnapshotChoice
    view: dict[str, Any]
    pairs: dict[str, Any]
    metric: str
    teacher_metric: str | None

    @property
    def drawn_rows(self) -> np.ndarray:
        return self.view["drawn_rows"]

    @property
    def drawn_labels(self):
        labels = self.choice.labels
        return None if labels is None else labels[self.drawn_rows]


def matrices(choice: common.SnapshotChoice) -> Matrices:
    """The subset and order controls, the matrices and Shepard pairs they need (cached), and the
    row of numbers above the heatmaps; stops the page when fewer than 3 inputs are chosen."""
    run, path, labels = choice.run, choice.path, choice.labels
    n_probe = len(choice.probe["features"])
    coherence = choice.snap["coherence"]  # (n_probe,) c_i
    metric, teacher_metric = run.coherence_metrics()

    rows_key = (n_probe, MAX_RANK_POINTS)
    universe = rank_rows(path, *rows_key)  # probe rows the matrices are computed on
    if len(universe) < n_probe:
        st.caption(f"ℹ️ The probe set has {n_probe:,} inputs; the n × n matrices use a class-stratified sample of "
                   f"{len(universe):,} of them (ranks are among those).")

    c1, c2, c3 = st.columns([1.3, 2.4, 1.3])
    subset_opts = {"all": "all probe inputs", "first": "the first N"}
    if labels is not None:
        subset_opts = {"all": "all probe inputs", "classes": "some classes", "first": "the first N"}
    subset = c1.radio("Show", list(subset_opts), format_func=subset_opts.get, key="rank-subset",
                      help="Which rows and columns to draw. Ranks are always among all the inputs listed above, "
                      "so zooming into a subset does not change any value.")
    shown = np.arange(len(universe))  # positions into `universe`
    if subset == "classes":
        present = [int(v) for v in np.unique(labels[universe])]
        picked = c2.multiselect("Classes", present, default=present[:2], key="rank-classes",
                                format_func=lambda v: figures.class_label(v, choice.class_names))
        shown = np.flatnonzero(np.isin(labels[universe], picked))
    elif subset == "first":
        first_n = c2.number_input("N", min_value=3, max_value=len(universe), value=min(200, len(universe)),
                                  step=50, key="rank-first-n",
                                  help="The first N inputs of the probe set (in probe order).")
        shown = np.arange(int(first_n))
    else:
        c2.caption(f"{len(universe):,} inputs × {len(universe):,}. Large matrices are drawn block-averaged "
                   "(the subtitle says how much); pick classes to see single cells.")
    order_opts = {"label": "by class", "cluster": "by teacher clusters"} if labels is not None else \
        {"cluster": "by teacher clusters"}
    order_by = c3.radio("Order rows and columns", list(order_opts), format_func=order_opts.get, key="rank-order",
                        help="By class: classes in blocks, each sorted along its main direction in the teacher's "
                        "space. By teacher clusters: a hierarchical clustering of the teacher's features.")
    if len(shown) < 3:
        st.warning("Choose at least 3 inputs (for example two classes) to draw the matrices.")
        st.stop()

    with st.spinner("Ranking every input from every anchor…"):
        with common.run_guard(run, "cannot be ranked at this snapshot"):  # e.g. features a metric refuses
            view = matrix_view(path, choice.index, choice.stamp, metric, teacher_metric, rows_key, order_by,
                               shown, order_opts[order_by], choice.snap["epoch"], choice.class_names, MAX_CELLS)
            pairs = shepard(path, choice.index, choice.stamp, metric, teacher_metric)

    m = st.columns(4)
    m[0].metric("PC at this snapshot", f"{float(coherence.mean()):.4f}",
                help="Perception coherence: the share of (anchor, pair) comparisons the student answers like the "
                "teacher, over the whole probe set. 1 = same perception, 0.5 = chance.")
    m[1].metric("Mean A of the drawn cells", f"{view['mean_A']:.3f}",
                help="Average rank agreement of the cells drawn below (1 = every input kept at its rank).")
    m[2].metric("Spearman ρ of distances", f"{pairs['spearman']:.3f}",
                help="Rank correlation of teacher and student dissimilarities over sampled pairs (global, "
                "across anchors). See the Shepard diagram.")
    m[3].metric("Inputs drawn", f"{len(view['drawn_rows']):,}")
    return Matrices(choice=choice, view=view, pairs=pairs, metric=metric, teacher_metric=teacher_metric)


def anchor_position(mats: Matrices) -> int:
    """The anchor's position among the drawn rows: the row of A clicked last, else the one picked
    in the anchor box below, else the drawn input with the lowest c_i (kept in ``rank-anchor``)."""
    drawn_rows, coherence = mats.drawn_rows, mats.choice.snap["coherence"]
    anchor_options = [int(r) for r in drawn_rows]
    points = common.selected_points(st.session_state.get("rank-fig-a"))  # the last click on A
    clicked = next((r for r in map(common.point_id, points) if r is not None), None)  # its row's anchor
    if clicked is not None and clicked != st.session_state.get("rank-last-click"):
        st.session_state["rank-last-click"] = clicked
        st.session_state["rank-anchor"] = clicked
    if st.session_state.get("rank-anchor") not in anchor_options:
        # start with the drawn anchor the student perceives worst
        st.session_state["rank-anchor"] = int(drawn_rows[np.argmin(coherence[drawn_rows])])
    return anchor_options.index(int(st.session_state["rank-anchor"]))


def show_heatmaps(mats: Matrices, anchor_pos: int) -> None:
    """A (clickable rows), R_T and R_S side by side, the anchor's row marked on each."""
    view, choice = mats.view, mats.choice
    drawn_rows, sub_labels = mats.drawn_rows, mats.drawn_labels
    left, mid, right = st.columns(3)
    with left:
        fig_a = view["A"]
        fig_a.add_trace(figures.row_picker_trace(
            drawn_rows, coherence=choice.snap["coherence"][drawn_rows], row_agreement=view["row_mean_A"],
            names=None if sub_labels is None else [figures.class_label(v, choice.class_names) for v in sub_labels],
            max_rows=MAX_CELLS))
        figures.mark_row(fig_a, anchor_pos)
        st.plotly_chart(fig_a, key="rank-fig-a", width="stretch", on_select="rerun", selection_mode="points")
        st.caption("Row i, column j: does the student put input j where the teacher does, seen from anchor i? "
                   "Green = yes (A = 1); red = it moved j nearer or farther. A red row is an anchor the student "
                   "perceives differently: click it to inspect it below.")
        common.download_figure(fig_a, "rank-agreement", key="rank-dl-a")
    for col, which, key in ((mid, "teacher", "R_T"), (right, "student", "R_S")):
        with col:
            fig = figures.mark_row(view[key], anchor_pos)
            st.plotly_chart(fig, key=f"rank-fig-{which}", width="stretch")
            st.caption(f"R from the {which}: dark = near the anchor (0), light = far (1). Same rows and columns "
                       "as A: where the two rank pictures differ, A is red.")
            common.download_figure(fig, f"ranks-{which}", key=f"rank-dl-{which}")


def show_anchor(mats: Matrices) -> None:
    """The anchor box, the neighbours slope chart, their thumbnails (image data) and their table."""
    from perco_viz.analysis.rank_agreement import anchor_neighbours

    choice = mats.choice
    labels, class_names, coherence = choice.labels, choice.class_names, choice.snap["coherence"]
    a1, a2 = st.columns([3, 1])
    anchor = a1.selectbox("Anchor (probe input)", [int(r) for r in mats.drawn_rows], key="rank-anchor",
                          format_func=lambda r: common.point_text(r, labels, class_names, coherence),
                          help="Any drawn input; it starts on the one with the lowest c_i. Clicking a cell of A "
                          "also picks its row's anchor.")
    k = a2.slider("Neighbours k", 3, 30, 10, key="rank-k", help="How many nearest neighbours to list on each side.")

    table = anchor_neighbours(choice.snap["student"], choice.probe["features"], anchor, k=k, metric=mats.metric,
                              teacher_metric=mats.teacher_metric, labels=labels)
    lost = int((~table["in_student_top_k"]).sum())
    st.markdown(f"Anchor **{common.point_text(anchor, labels, class_names, coherence)}** — of the teacher's {k} "
                f"nearest neighbours, the student keeps **{k - lost}** in its own {k} nearest.")
    f1, f2 = st.columns([2, 3])
    with f1:
        fig_n = figures.anchor_neighbours_figure(table, anchor=anchor, class_names=class_names, height=560,
                                                 title=f"neighbours of anchor #{anchor}: teacher → student rank")
        st.plotly_chart(fig_n, key="rank-fig-anchor", width="stretch")
        st.caption("Each line is one neighbour: its rank from the anchor by the teacher (left) and by the student "
                   "(right); 1 = nearest. Flat green lines: same perception; steep red ones: reordered.")
        common.download_figure(fig_n, f"anchor-{anchor}-neighbours", key="rank-dl-anchor")
    with f2:
        _neighbour_thumbnails(choice, table, anchor, k)
        _neighbour_table(table, class_names, k, mats.metric)


def _neighbour_thumbnails(choice: common.SnapshotChoice, table: pd.DataFrame, anchor: int, k: int) -> None:
    dataset, labels, class_names = choice.dataset, choice.labels, choice.class_names
    if dataset is None or not dataset.is_image:
        return
    test_idx = choice.probe["indices"]
    teacher_top = table[table["in_teacher_top_k"]].sort_values("teacher_rank")
    student_top = table[table["in_student_top_k"]].sort_values("student_rank")
    st.markdown("**The anchor**")
    common.show_thumbnails(dataset, test_idx[[anchor]], [f"#{anchor}"], size=72, borders=["#1f2430"])
    for title, part, rank_col in (("Teacher's nearest", teacher_top, "teacher_rank"),
                                  ("Student's nearest", student_top, "student_rank")):
        st.markdown(f"**{title}** (frame: green = in both top {k}, red = only here)")
        caps = [f"{int(r[rank_col])}. #{int(r['point'])}" +
                (f" · {figures.class_label(r['label'], class_names)}" if labels is not None else "")
                for r in part.to_dict("records")]
        both = (part["in_teacher_top_k"] & part["in_student_top_k"]).to_numpy()
        common.show_thumbnails(dataset, test_idx[part["point"].to_numpy()], caps, size=56,
                               borders=["#1a9850" if b else "#d73027" for b in both])


def _neighbour_table(table: pd.DataFrame, class_names, k: int, metric: str) -> None:
    shown_table = table.assign(**{"class": [figures.class_label(v, class_names) if v is not None else ""
                                            for v in table["label"]]}).drop(columns=["label"])
    number = st.column_config.NumberColumn
    st.dataframe(pd.DataFrame(shown_table), hide_index=True, width="stretch", height=300, column_config={
        "point": number("input #", help="Row in the probe set"),
        "teacher_rank": number("teacher rank", help="1 = the teacher's nearest"),
        "student_rank": number("student rank", help="1 = the student's nearest"),
        "rank_shift": number("rank shift", help="student − teacher: > 0 = the student pushes it away"),
        "teacher_dissimilarity": number("teacher dist.", format="%.3g"),
        "student_dissimilarity": number("student dist.", format="%.3g"),
        "agreement": number("A", format="%.3f", help="1 − |R_T − R_S| for this anchor and input"),
        "in_teacher_top_k": st.column_config.CheckboxColumn(f"teacher top {k}"),
        "in_student_top_k": st.column_config.CheckboxColumn(f"student top {k}")})
    st.caption(f"The union of both top-{k} lists, sorted by the teacher's rank. Dissimilarity: {metric}.")


def show_shepard(mats: Matrices) -> None:
    """The Shepard diagram of the sampled pairs, and how to read it."""
    pairs, snap = mats.pairs, mats.choice.snap
    s1, s2 = st.columns([3, 2])
    with s1:
        fig_s = figures.shepard_figure(pairs["d_teacher"], pairs["d_student"], pc=float(snap["coherence"].mean()),
                                       spearman=pairs["spearman"], height=520,
                                       title=f"Shepard diagram at epoch {snap['epoch']:g}")
        fig_s.update_xaxes(title_text=f"teacher dissimilarity ({mats.teacher_metric or mats.metric})")
        fig_s.update_yaxes(title_text=f"student dissimilarity ({mats.metric})")
        st.plotly_chart(fig_s, key="rank-fig-shepard", width="stretch")
        st.caption("Each dot is a pair of probe inputs: its dissimilarity by the teacher (x) and by the student "
                   "(y); colour = how many pairs lie there. Monotone-but-curved = the student relaxed the geometry "
                   "and kept the perception; scatter = reordering.")
        common.download_figure(fig_s, "shepard", key="rank-dl-shepard")
    with s2:
        st.markdown(
            "**How to read it.** If the cloud rises as a thin band — straight or curved — the student orders "
            "distances as the teacher does: it may stretch near distances and shrink far ones, which perception "
            "coherence allows. A fat or flat cloud means pairs are reordered: the student confuses which inputs "
            "are near.\n\n"
            "**Spearman ρ** measures this band over all pairs at once; **PC** compares the orderings anchor by "
            "anchor, so it can be high even when the band is somewhat wide (each anchor may use its own scale).")
