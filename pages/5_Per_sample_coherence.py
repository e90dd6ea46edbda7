"""Per-sample coherence: which inputs (and which classes) the student perceives unlike its teacher."""

from __future__ import annotations

import streamlit as st

from ui import common, per_sample, view_state

common.page("Per-sample coherence", "Which inputs does the student get wrong? For each probe input, c_i is the "
            "share of comparisons “is j nearer than k?” that the student answers like the teacher: 1 = same "
            "perception, 0.5 = chance. PC is their mean.")

run = common.run_picker("psc-run")
if run is None:
    st.stop()
choice = common.pick_snapshot(run, "psc-epoch")
view_state.share_box(own_run=common.run_param(run.path).startswith("yours/"))
per_sample.show_numbers(per_sample.coherence_of(choice))
per_sample.show_distributions(choice)

st.subheader("The inputs the student gets most wrong")
worst = per_sample.show_worst(choice)
per_sample.show_where(choice, worst)

st.subheader("Every probe input: sort, search, select, tag")
per_sample.show_all(choice)

per_sample.csv_download(choice)
