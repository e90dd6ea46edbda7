"""Rank agreement: where the student's perception (its ranking of dissimilarities) differs from the teacher's."""

from __future__ import annotations

import streamlit as st

from ui import common, rank_agreement, view_state

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
choice = common.pick_snapshot(run, "rank-epoch")
view_state.share_box(own_run=common.run_param(run.path).startswith("yours/"))
mats = rank_agreement.matrices(choice)  # the subset and order controls, the numbers
anchor_pos = rank_agreement.anchor_position(mats)  # from a link, a click on A or the box below
rank_agreement.show_heatmaps(mats, anchor_pos)

st.subheader("One anchor: its neighbours by the teacher and by the student")
rank_agreement.show_anchor(mats)

st.subheader("Distorting distances, or reordering them?")
rank_agreement.show_shepard(mats)
