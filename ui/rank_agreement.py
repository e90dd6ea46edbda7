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
from ui import common, view_state

MAX_RANK_POINTS = 2500  # R_T, R_S and A are n × n: above this, a stratified subsample of the probe set
SHEPARD_PAIRS = 20_000
MAX_CELLS = 300  # the most rows/columns a heatmap draws (block-averaged above)
HEATMAP_HEIGHT = 620  # px: a heatmap in half the page is about as tall as it is wide (1024–1920 px screens)


# --------------------------------------------------------------------------- cached computations
@st.cache_data(max_entries=8, show_spinner=False)
def rank_rows(path: str, n: int, max_points: int = MAX_RANK_POINTS) -> np.ndarray:
    """The probe rows the n × n matrices are computed on: all, or a stratified subsample."""
    from perco_viz.analysis.projection import stratified_subsample

    labels = common.load_teacher_probe(path).get("labels")
    return stratified_subsample(labels, n, max_points, seed=0)


@st.cache_resource(max_entries=4, show_spinner=False)
def rank_data(path: str, index: int, stamp: float, metric: str, teacher_metric: str | None,
              rows_key: tuple) -> dict[str, np.ndarray]:
    """R_T, R_S and A (float32, (m, m), NaN diagonal) among the rows :func:`rank_rows` gives.

    Computed once per (run, snapshot, file stamp, metrics) for every session of the server and
    shared without copies (a resource, not data: up to 3 × 2500² floats), so read-only."""
    from perco_viz.analysis.rank_agreement import rank_matrices

    rows = rank_rows(path, *rows_key)
    teacher = common.load_teacher_probe(path)["features"][rows]
    student = common.load_snapshot(path, index)["student"][rows]
    r_t, r_s, agreement = rank_matrices(student, teacher, metric=metric, teacher_metric=teacher_metric,
                                        dtype=np.float32)  # built in float32: no float64 copies
    out = {"R_T": r_t, "R_S": r_s, "A": agreement}
    for matrix in out.values():
        matrix.setflags(write=False)
    return out


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
                                                max_cells=max_cells, height=HEATMAP_HEIGHT,
                                                title=f"rank agreement A at epoch {epoch:g}")}
    for key, which in (("R_T", "teacher"), ("R_S", "student")):
        figs[key] = figures.ranks_heatmap(data[key][sub], which=which, order=positions, labels=marks,
                                          class_names=class_names, max_cells=max_cells, height=HEATMAP_HEIGHT)
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

    n_ranked = len(universe)
    with st.spinner(f"Ranking {n_ranked:,} inputs from each of the {n_ranked:,} anchors, by the teacher and by the "
                    "student (once per snapshot, for everyone)…"):
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


ANCHOR_KEY = "rank-anchor"


def anchor_options(mats: Matrices) -> list[int]:
    """The anchors the picker offers: the drawn rows, and the current anchor when a link (or a
    click) chose an input outside them (e.g. one left out of a subsampled probe set)."""
    options = [int(r) for r in mats.drawn_rows]
    current = st.session_state.get(ANCHOR_KEY)
    if isinstance(current, int) and current not in set(options):
        options.append(current)
    return options


def anchor_position(mats: Matrices) -> int | None:
    """Settle the anchor before its widgets are drawn; returns its position among the drawn rows
    (None when it is not drawn).

    The anchor (kept in ``rank-anchor``, in the URL as ``anchor=<probe row>``) is, in this order:
    a new ``anchor=`` of the URL (a shared view, a link from Per-sample coherence), the row of A
    clicked last, the one picked in the anchor box, else the drawn input with the lowest c_i. An
    anchor outside the drawn rows is kept until the person changes the rows drawn.
    """
    drawn_rows, coherence = mats.drawn_rows, mats.choice.snap["coherence"]
    n_probe = len(coherence)
    drawn = {int(r) for r in drawn_rows}
    linked = view_state.seed(ANCHOR_KEY, "anchor", int, valid=lambda r: 0 <= r < n_probe)
    points = common.selected_points(st.session_state.get("rank-fig-a"))  # the last click on A
    clicked = next((r for r in map(common.point_id, points) if r is not None), None)  # its row's anchor
    if clicked is not None and clicked != st.session_state.get("rank-last-click"):
        st.session_state["rank-last-click"] = clicked
        st.session_state[ANCHOR_KEY] = clicked
    current = st.session_state.get(ANCHOR_KEY)
    rows_now = (mats.choice.path, hash(np.sort(drawn_rows).tobytes()))
    rows_changed = st.session_state.get("rank-drawn-rows") not in (None, rows_now)
    st.session_state["rank-drawn-rows"] = rows_now
    if not (isinstance(current, int) and 0 <= current < n_probe) or (
            current not in drawn and rows_changed and not linked):
        # start with the drawn anchor the student perceives worst
        current = int(drawn_rows[np.argmin(coherence[drawn_rows])])
        st.session_state[ANCHOR_KEY] = current
    shown_at = (mats.choice.path, mats.choice.index)
    if st.session_state.get("rank-anchor-shown-at") != shown_at:
        # the picker's labels carry each input's c_i at the snapshot shown: when the snapshot changes,
        # set the value again so the browser shows the new label (it keeps the old text otherwise)
        st.session_state["rank-anchor-shown-at"] = shown_at
        st.session_state[ANCHOR_KEY] = int(current)
    return int(np.flatnonzero(drawn_rows == current)[0]) if current in drawn else None


def show_heatmaps(mats: Matrices, anchor_pos: int | None) -> None:
    """A (clickable rows) in one half of the page; R_T or R_S in the other (a switch between them:
    only the one looked at is sent): each heatmap about as tall as it is wide. The anchor's row is marked."""
    view, choice = mats.view, mats.choice
    drawn_rows, sub_labels = mats.drawn_rows, mats.drawn_labels
    left, right = st.columns(2, gap="medium")

    def marked(fig):
        return fig if anchor_pos is None else figures.mark_row(fig, anchor_pos)

    with left:
        fig_a = view["A"]
        fig_a.add_trace(figures.row_picker_trace(
            drawn_rows, coherence=choice.snap["coherence"][drawn_rows], row_agreement=view["row_mean_A"],
            names=None if sub_labels is None else [figures.class_label(v, choice.class_names) for v in sub_labels],
            max_rows=MAX_CELLS))
        common.show_figure(
            marked(fig_a), key="rank-fig-a", name="rank-agreement", on_select="rerun", selection_mode="points",
            caption="Row i, column j: does the student put input j where the teacher does, seen from anchor i? "
                    "Green = yes (A = 1); red = it moved j nearer or farther. A red row is an anchor the student "
                    "perceives differently: click it to inspect it below.")
    with right:
        which = st.segmented_control(
            "Ranks of", ["teacher", "student"], default="teacher", required=True, key="rank-which",
            format_func=lambda w: f"the {w} (R_{w[0].upper()})",
            help="Switch between the teacher's and the student's ranks: where the two pictures differ, A is red. "
                 "One at a time: the page sends one figure less.")
        key = "R_T" if which == "teacher" else "R_S"
        common.show_figure(
            marked(view[key]), key=f"rank-fig-{which}", name=f"ranks-{which}",
            caption=f"R from the {which}: dark = near the anchor (0), light = far (1). Same rows and columns as A: "
                    "where the teacher's and the student's pictures differ (switch above), A is red.")
    if anchor_pos is None:
        st.caption("ℹ️ The anchor below is not among the drawn rows: its row is not marked on the heatmaps.")


def _anchor_label(row: int, choice: common.SnapshotChoice) -> str:
    """``#12 · class 3 · c_i 0.871`` with the c_i of the snapshot shown: the picker and the
    sentence under it both use this."""
    return common.point_text(row, choice.labels, choice.class_names, choice.snap["coherence"])


def show_anchor(mats: Matrices) -> None:
    """The anchor box, the neighbours slope chart, their thumbnails (image data) and their table."""
    from perco_viz.analysis.rank_agreement import anchor_neighbours

    choice = mats.choice
    labels, class_names = choice.labels, choice.class_names
    a1, a2 = st.columns([3, 1])
    anchor = a1.selectbox("Anchor (probe input)", anchor_options(mats), key=ANCHOR_KEY,
                          format_func=lambda r: _anchor_label(r, choice),
                          help="Any drawn input; it starts on the one with the lowest c_i. Clicking a row of A "
                          "also picks it, and a link from Per-sample coherence opens with its input here.")
    view_state.publish("anchor", int(anchor))
    k = a2.slider("Neighbours k", 3, 30, 10, key="rank-k", help="How many nearest neighbours to list on each side.")

    table = anchor_neighbours(choice.snap["student"], choice.probe["features"], anchor, k=k, metric=mats.metric,
                              teacher_metric=mats.teacher_metric, labels=labels)
    lost = int((~table["in_student_top_k"]).sum())
    st.markdown(f"Anchor **{_anchor_label(anchor, choice)}** — of the teacher's {k} nearest neighbours, the "
                f"student keeps **{k - lost}** in its own {k} nearest.")
    f1, f2 = st.columns([2, 3])
    with f1:
        fig_n = figures.anchor_neighbours_figure(table, anchor=anchor, class_names=class_names, height=560,
                                                 title=f"neighbours of anchor #{anchor}")
        common.show_figure(
            fig_n, key="rank-fig-anchor", name=f"anchor-{anchor}-neighbours",
            caption="Each line is one neighbour: its rank from the anchor by the teacher (left) and by the student "
                    "(right); 1 = nearest. Flat green lines: same perception; steep red ones: reordered. Labels "
                    "where there is room: hover a line for its input.")
    with f2:
        _neighbour_thumbnails(choice, table, anchor, k)
    _neighbour_table(table, class_names, k, mats.metric)  # the page's width: every column readable


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


def neighbour_table_view(table: pd.DataFrame, class_names, k: int) -> pd.DataFrame:
    """The neighbour table as shown: one column per fact. ``point``, ``class`` (when labelled),
    the two ranks, their difference, ``top_k_of`` (whose top k lists it: ``both``, ``teacher
    only``, ``student only`` — the thumbnails' frame colours) instead of two check boxes that
    repeat the ranks, then A and the two dissimilarities. ``table``: :func:`anchor_neighbours`'s."""
    in_t, in_s = table["in_teacher_top_k"].to_numpy(), table["in_student_top_k"].to_numpy()
    out = pd.DataFrame({"point": table["point"].to_numpy()})
    if table["label"].notna().any():
        out["class"] = [figures.class_label(v, class_names) if v is not None else "" for v in table["label"]]
    out["teacher_rank"] = table["teacher_rank"].to_numpy()
    out["student_rank"] = table["student_rank"].to_numpy()
    out["rank_shift"] = table["rank_shift"].to_numpy()
    out["top_k_of"] = np.where(in_t & in_s, "both", np.where(in_t, "teacher only", "student only"))
    out["agreement"] = table["agreement"].to_numpy()
    out["teacher_dissimilarity"] = table["teacher_dissimilarity"].to_numpy()
    out["student_dissimilarity"] = table["student_dissimilarity"].to_numpy()
    return out


def _neighbour_table(table: pd.DataFrame, class_names, k: int, metric: str) -> None:
    number = st.column_config.NumberColumn
    st.dataframe(neighbour_table_view(table, class_names, k), hide_index=True, width="stretch", height=300,
                 column_config={
                     "point": number("input", width="small", help="The input's number in the probe set (#12 on every page)"),
                     "class": st.column_config.TextColumn("class", width="small"),
                     "teacher_rank": number("teacher's rank", width="small", help="1 = the teacher's nearest to the anchor"),
                     "student_rank": number("student's rank", width="small", help="1 = the student's nearest to the anchor"),
                     "rank_shift": number("moved by", width="small", help="Student's rank − teacher's rank: > 0 = the student "
                                          "pushes it away, < 0 = pulls it nearer"),
                     "top_k_of": st.column_config.TextColumn(f"in the top {k} of",
                                                             help="Whose nearest k list it is in"),
                     "agreement": number("A", format="%.3f", width="small", help="Rank agreement 1 − |R_T − R_S| for this anchor "
                                         "and input (1 = same place)"),
                     "teacher_dissimilarity": number("teacher's dissimilarity", format="%.3g"),
                     "student_dissimilarity": number("student's dissimilarity", format="%.3g")})
    st.caption(f"Every input in the teacher's or the student's {k} nearest, sorted by the teacher's rank. "
               f"Dissimilarity: {metric}.")


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
        common.show_figure(
            fig_s, key="rank-fig-shepard", name="shepard",
            caption="Each dot is a pair of probe inputs: its dissimilarity by the teacher (x) and by the student "
                    "(y); colour = how many pairs lie there. Monotone-but-curved = the student relaxed the geometry "
                    "and kept the perception; scatter = reordering.")
    with s2:
        st.markdown(
            "**How to read it.** If the cloud rises as a thin band — straight or curved — the student orders "
            "distances as the teacher does: it may stretch near distances and shrink far ones, which perception "
            "coherence allows. A fat or flat cloud means pairs are reordered: the student confuses which inputs "
            "are near.\n\n"
            "**Spearman ρ** measures this band over all pairs at once; **PC** compares the orderings anchor by "
            "anchor, so it can be high even when the band is somewhat wide (each anchor may use its own scale).")
