"""Setup: choose the data, the teacher, the student, the loss and the training; then start.

Every widget sets one RunConfig field (its key is ``setup-<section>-<field>``); the resolved
config is shown as YAML, downloadable, and can be uploaded back. The sections are in ui/setup.py.
"""

from __future__ import annotations

import streamlit as st

from ui import common, setup

common.page("Setup", "Choose the data, the teacher, the student and the loss. Everything starts at the demo's "
            "settings: change what you want, then start the training.")
ctx = setup.open_form()  # fills the widgets on the first visit; collects what stops a start

left, right = st.columns([3, 2], gap="large")
with right:
    panel = st.container()  # filled last, above the upload and reset drawn now
    setup.config_io()
    files = st.container()
with left:
    with st.container(border=True):
        dataset = setup.data_section(ctx)
    with st.container(border=True):
        teacher_dim = setup.teacher_section(ctx, dataset)
    with st.container(border=True):
        setup.student_section(ctx, dataset, teacher_dim)
    with st.container(border=True):
        setup.loss_section()
    with st.container(border=True):
        setup.training_section(ctx)
with panel:
    setup.config_panel(ctx)
with files:
    setup.files_panel()
