"""Diagnose: the whole quality panel of any student, trained here or elsewhere — no training needed."""

from __future__ import annotations

import streamlit as st

from perco_viz.analysis import diagnose
from ui import common
from ui import diagnose as diagnose_ui

common.page("Diagnose", "Bring a student trained anywhere — its features, or its weights — and see how well it "
            "perceives its inputs like the teacher. Nothing is trained here.")

SOURCES = {
    "files": ("Embedding files", diagnose_ui.pair_from_uploads),
    "models": ("Models on a dataset", diagnose_ui.pair_from_model_files),
    "run": ("A run of this app", diagnose_ui.pair_from_app_run),
}
source = st.radio("Source of the features", list(SOURCES), format_func=lambda k: SOURCES[k][0], horizontal=True,
                  key="diag-source",
                  help="Embedding files: the teacher's and the student's features of the same inputs. Models: a "
                       "teacher and a student checkpoint, run here on a dataset's test split. Run: a run's teacher "
                       "probe features and one of its student snapshots.")
with st.container(border=True):
    sourced = SOURCES[source][1]()
if sourced is None:
    st.stop()
pair = sourced.pair

c1, c2, c3 = st.columns([1, 1, 2])
max_points = c1.number_input(
    "Inputs in the sample", min_value=diagnose.MIN_ROWS, max_value=diagnose.MAX_POINTS,
    value=diagnose.DEFAULT_MAX_POINTS, step=1000, key="diag-max-points",
    help="PC and linear CKA always describe every input. Up to this many inputs (a stratified, seeded sample) get "
         "their own c_i — over all the inputs — in the histogram, the table and the scatter (up to 100,000).")
neighbour_points = c2.number_input(
    "Inputs for neighbourhoods", min_value=diagnose.MIN_ROWS, max_value=diagnose.MAX_NEIGHBOUR_POINTS,
    value=diagnose.DEFAULT_NEIGHBOUR_POINTS, step=500, key="diag-neighbour-points",
    help="k-NN accuracy, the linear probe, trustworthiness, k-NN overlap, the heatmap and the Shepard diagram "
         "compare every input with every other (O(n²)): they use a stratified sample of the sample, this large.")
labels_line = "labelled" if pair.labels is not None else "no labels"
c3.markdown(f"**{pair.n:,} inputs** · teacher {pair.teacher.shape[1]}-d · student {pair.student.shape[1]}-d · "
            f"{labels_line}  \n{pair.source}" + (f"  \n_{'; '.join(pair.notes)}_" if pair.notes else ""))
meta = diagnose_ui.metadata_upload(pair)

try:
    panel, figs = diagnose_ui.compute_panel(sourced.key, pair, int(max_points), int(neighbour_points))
except (ValueError, RuntimeError) as exc:
    common.show_error(exc, "The diagnosis failed")
    st.stop()

if panel.subsampled:
    st.info(panel.scope())
else:
    st.caption(panel.scope())
diagnose_ui.show_cards(panel)
table = diagnose_ui.points_table(panel, sourced, meta)
diagnose_ui.show_downloads(panel, figs, table, key="diag")

st.divider()
st.subheader("Every input, by c_i")
ringed = diagnose_ui.explore_points(panel, sourced, table)
diagnose_ui.worst_inputs(panel, sourced)
st.divider()
coloring = diagnose_ui.color_choice(panel, meta)
diagnose_ui.show_figures(panel, figs, key="diag", coloring=coloring, highlight=ringed)
