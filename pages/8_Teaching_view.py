"""Teaching view: one mini-batch of the coherence loss, step by step, on a few visible points."""

from __future__ import annotations

import streamlit as st

from ui import common

common.page("Teaching view", "What does it mean for a student to rank like its teacher? A few points, one anchor, "
            "one step of training at a time.")

# the title first: on a server's first visit PyTorch is still being loaded (seconds on a busy machine)
with st.spinner("Loading PyTorch and setting up the toy problem…"):
    from perco_viz.analysis import teaching
    from ui import teaching as teaching_ui

ctl = teaching_ui.controls()
points, labels = teaching.toy_points(ctl.toy, ctl.n_points, ctl.seed, ctl.dim)
state = teaching_ui.trained_state(ctl, points, labels)
view, arrows, of_anchor = teaching_ui.anchor_row(ctl, state, points)

teaching_ui.show_pictures(state, points, view, arrows, of_anchor)
teaching_ui.show_loss_terms(view)
teaching_ui.show_soft_ranks(view)
teaching_ui.show_history(state)
