"""Rank agreement: where the student's perception (its ranking of dissimilarities) differs from the teacher's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from perco_viz import figures
from perco_viz.analysis import rank_agreement as analysis
from ui import analysis_view as av
from ui import common

common.page("Rank agreement", "Where does the student perceive differently from its teacher? Seen from every "
            "input (the anchor), both networks rank all the other inputs from nearest to farthest; this page "
            "compares the two rankings.")

with st.expander("How to read this page"):
    st.markdown(
        "- **R (normalized rank).** `R_T[i, j]` = where the teacher puts input *j* among all others, seen from "
        "anchor *i*: 0 = its nearest, 1 = its farthest. `R_S` is the same for the student.\n"
        "- **A (rank agreement)** = 1 − |R_T − R_S|: 1 (green) when the student puts *j* exactly where the teacher "
        "does, lower (red) when it moves *j* nearer or farther. A row of A is one anchor's view.\n"
        "- The student may **stretch or shrink distances** (its features are smaller and differently scaled) "
        "as long as it keeps the **order**: that is what perception coherence (PC) rewards. The Shepard "
        "diagram at the bottom shows which of the two happened.")

run = common.run_picker("rank-run")
if run is None:
    st.stop()
path = str(run.path)
with common.run_guard(run):  # a run being set up, or a damaged one: say which file, no figures
    probe = common.load_teacher_probe(path)
    indices, epochs = av.snapshot_epochs(path, common.run_signature(run))
common.note_metrics_damage(run)
if not indices:
    st.info("This run has no snapshot yet: the first one is written when training starts.")
    st.stop()

teacher = probe["features"]
labels = probe.get("labels")
n_probe = len(teacher)
class_names = av.class_names_of(run, labels)
metric, teacher_metric = av.metrics_of(run)
dataset = common.dataset_of(run)

# --------------------------------------------------------------------------- controls
index = av.snapshot_picker(run, "rank-epoch", epochs, indices)
with common.run_guard(run, "has a snapshot that cannot be read; pick another epoch"):
    snap = common.load_snapshot(path, index)
stamp = av.snapshot_stamp(path, index)
coherence = snap["coherence"]  # (n_probe,) c_i

rows_key = (n_probe, av.MAX_RANK_POINTS)
universe = av.rank_rows(path, *rows_key)  # probe rows the matrices are computed on
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
                            format_func=lambda v: av.class_name(v, class_names))
    shown = np.flatnonzero(np.isin(labels[universe], picked))
elif subset == "first":
    first_n = c2.number_input("N", min_value=3, max_value=len(universe), value=min(200, len(universe)), step=50,
                              key="rank-first-n", help="The first N inputs of the probe set (in probe order).")
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

# --------------------------------------------------------------------------- computation (cached)
max_cells = 300
ordered_how = order_opts[order_by]
with st.spinner("Ranking every input from every anchor…"):
    with common.run_guard(run, "cannot be ranked at this snapshot"):  # e.g. features a metric refuses
        view = av.matrix_view(path, index, stamp, metric, teacher_metric, rows_key, order_by, shown, ordered_how,
                              snap["epoch"], class_names, max_cells)
        pairs = av.shepard(path, index, stamp, metric, teacher_metric)
drawn_rows = view["drawn_rows"]  # probe rows, in drawing order
sub_labels = None if labels is None else labels[drawn_rows]

m = st.columns(4)
m[0].metric("PC at this snapshot", f"{float(coherence.mean()):.4f}",
            help="Perception coherence: the share of (anchor, pair) comparisons the student answers like the "
            "teacher, over the whole probe set. 1 = same perception, 0.5 = chance.")
m[1].metric("Mean A of the drawn cells", f"{view['mean_A']:.3f}",
            help="Average rank agreement of the cells drawn below (1 = every input kept at its rank).")
m[2].metric("Spearman ρ of distances", f"{pairs['spearman']:.3f}",
            help="Rank correlation of teacher and student dissimilarities over sampled pairs (global, "
            "across anchors). See the Shepard diagram.")
m[3].metric("Inputs drawn", f"{len(drawn_rows):,}")

# --------------------------------------------------------------------------- the anchor (picked below or by a click on A)
def _clicked_anchor(evt) -> int | None:
    """The anchor (probe row) of the row of A clicked last, if any (the invisible row markers)."""
    try:
        points = (evt or {}).get("selection", {}).get("points", [])
    except AttributeError:
        return None
    for p in points:
        custom = p.get("customdata")
        if isinstance(custom, dict):  # a typed array arrives as {"0": v0, "1": v1, ...}
            custom = [custom[key] for key in sorted(custom, key=int)]
        if custom:
            return int(round(float(custom[0])))
    return None


anchor_options = [int(r) for r in drawn_rows]
clicked = _clicked_anchor(st.session_state.get("rank-fig-a"))  # the last click on A
if clicked is not None and clicked != st.session_state.get("rank-last-click"):
    st.session_state["rank-last-click"] = clicked
    st.session_state["rank-anchor"] = clicked
if st.session_state.get("rank-anchor") not in anchor_options:
    # start with the drawn anchor the student perceives worst
    st.session_state["rank-anchor"] = int(drawn_rows[np.argmin(coherence[drawn_rows])])
anchor_pos = anchor_options.index(int(st.session_state["rank-anchor"]))

# --------------------------------------------------------------------------- heatmaps
left, mid, right = st.columns(3)
with left:
    fig_a = view["A"]
    fig_a.add_trace(analysis.row_picker_trace(
        drawn_rows, coherence=coherence[drawn_rows], row_agreement=view["row_mean_A"],
        names=None if sub_labels is None else [av.class_name(v, class_names) for v in sub_labels],
        max_rows=max_cells))
    av.mark_row(fig_a, anchor_pos)
    st.plotly_chart(fig_a, key="rank-fig-a", width="stretch", on_select="rerun", selection_mode="points")
    st.caption("Row i, column j: does the student put input j where the teacher does, seen from anchor i? "
               "Green = yes (A = 1); red = it moved j nearer or farther. A red row is an anchor the student "
               "perceives differently: click it to inspect it below.")
    common.download_figure(fig_a, "rank-agreement", key="rank-dl-a")
for col, which, key in ((mid, "teacher", "R_T"), (right, "student", "R_S")):
    with col:
        fig = av.mark_row(view[key], anchor_pos)
        st.plotly_chart(fig, key=f"rank-fig-{which}", width="stretch")
        st.caption(f"R from the {which}: dark = near the anchor (0), light = far (1). Same rows and columns as "
                   "A: where the two rank pictures differ, A is red.")
        common.download_figure(fig, f"ranks-{which}", key=f"rank-dl-{which}")

# --------------------------------------------------------------------------- one anchor
st.subheader("One anchor: its neighbours by the teacher and by the student")
a1, a2 = st.columns([3, 1])
anchor = a1.selectbox("Anchor (probe input)", anchor_options, key="rank-anchor",
                      format_func=lambda r: av.point_text(r, labels, class_names, coherence),
                      help="Any drawn input; it starts on the one with the lowest c_i. Clicking a cell of A "
                      "also picks its row's anchor.")
k = a2.slider("Neighbours k", 3, 30, 10, key="rank-k", help="How many nearest neighbours to list on each side.")

table = analysis.anchor_neighbours(snap["student"], teacher, anchor, k=k, metric=metric,
                                   teacher_metric=teacher_metric, labels=labels)
lost = int((~table["in_student_top_k"]).sum())
st.markdown(f"Anchor **{av.point_text(anchor, labels, class_names, coherence)}** — of the teacher's {k} nearest "
            f"neighbours, the student keeps **{k - lost}** in its own {k} nearest.")
f1, f2 = st.columns([2, 3])
with f1:
    fig_n = figures.anchor_neighbours_figure(table, anchor=anchor, class_names=class_names, height=560,
                                             title=f"neighbours of anchor #{anchor}: teacher → student rank")
    st.plotly_chart(fig_n, key="rank-fig-anchor", width="stretch")
    st.caption("Each line is one neighbour: its rank from the anchor by the teacher (left) and by the student "
               "(right); 1 = nearest. Flat green lines: same perception; steep red ones: reordered.")
    common.download_figure(fig_n, f"anchor-{anchor}-neighbours", key="rank-dl-anchor")
with f2:
    teacher_top = table[table["in_teacher_top_k"]].sort_values("teacher_rank")
    student_top = table[table["in_student_top_k"]].sort_values("student_rank")
    test_idx = probe["indices"]
    if dataset is not None and dataset.is_image:
        st.markdown("**The anchor**")
        av.show_thumbnails(dataset, test_idx[[anchor]], [f"#{anchor}"], size=72, borders=["#1f2430"])
        for title, part, rank_col in (("Teacher's nearest", teacher_top, "teacher_rank"),
                                      ("Student's nearest", student_top, "student_rank")):
            st.markdown(f"**{title}** (frame: green = in both top {k}, red = only here)")
            caps = [f"{int(r[rank_col])}. #{int(r['point'])}" +
                    (f" · {av.class_name(r['label'], class_names)}" if labels is not None else "")
                    for r in part.to_dict("records")]
            both = (part["in_teacher_top_k"] & part["in_student_top_k"]).to_numpy()
            av.show_thumbnails(dataset, test_idx[part["point"].to_numpy()], caps, size=56,
                               borders=["#1a9850" if b else "#d73027" for b in both])
    shown_table = table.assign(**{"class": [av.class_name(v, class_names) if v is not None else ""
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

# --------------------------------------------------------------------------- Shepard diagram
st.subheader("Distorting distances, or reordering them?")
s1, s2 = st.columns([3, 2])
with s1:
    fig_s = figures.shepard_figure(pairs["d_teacher"], pairs["d_student"], pc=float(coherence.mean()),
                                   spearman=pairs["spearman"], height=520,
                                   title=f"Shepard diagram at epoch {snap['epoch']:g}")
    fig_s.update_xaxes(title_text=f"teacher dissimilarity ({teacher_metric or metric})")
    fig_s.update_yaxes(title_text=f"student dissimilarity ({metric})")
    st.plotly_chart(fig_s, key="rank-fig-shepard", width="stretch")
    st.caption("Each dot is a pair of probe inputs: its dissimilarity by the teacher (x) and by the student (y); "
               "colour = how many pairs lie there. Monotone-but-curved = the student relaxed the geometry and "
               "kept the perception; scatter = reordering.")
    common.download_figure(fig_s, "shepard", key="rank-dl-shepard")
with s2:
    st.markdown(
        "**How to read it.** If the cloud rises as a thin band — straight or curved — the student orders "
        "distances as the teacher does: it may stretch near distances and shrink far ones, which perception "
        "coherence allows. A fat or flat cloud means pairs are reordered: the student confuses which inputs "
        "are near.\n\n"
        "**Spearman ρ** measures this band over all pairs at once; **PC** compares the orderings anchor by "
        "anchor, so it can be high even when the band is somewhat wide (each anchor may use its own scale).")
