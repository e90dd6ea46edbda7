"""Distill: start, stop and resume a training, and watch it live."""

from __future__ import annotations

import streamlit as st

from ui import common, live_view

common.page("Distill", "Train the student and watch its perception converge to the teacher's, snapshot by snapshot.")

run_state = common.live_run()
alive = run_state is not None and run_state.alive
config = st.session_state.get("setup_config") or common.demo_config()

c1, c2, c3, c4 = st.columns([1.2, 1, 1, 3])
if c1.button("▶ Start", type="primary", disabled=alive, key="distill-start",
             help="Start a run with the configuration from Setup (or the demo's)."):
    if common.start_run(config):
        st.rerun()
if c2.button("■ Stop", disabled=not alive, key="distill-stop", help="Stops within one batch; the run is kept."):
    run_state.stop()
    st.toast("Stopping after this batch…")
run = common.run_picker("distill-run", label="Run to watch")
resumable = (run is not None and not alive and run.status().get("state") in ("cancelled", "failed", "stale")
             and not run.is_locked())  # another process (a CLI resume) is writing it
if c3.button("⟳ Resume", disabled=not resumable, key="distill-resume",
             help="Continue the selected run from its last checkpoint (runs of yours only)."):
    if run is not None and common.session_root() in run.path.parents:
        with common.run_guard(run, "cannot be resumed"):
            config_to_resume = run.config()
        if common.start_run(config_to_resume, resume_dir=str(run.path)):
            st.rerun()
    else:
        st.warning("Shared runs are read-only here: resume them with `perco-viz resume <run dir>`.")
c4.caption(f"Configuration: **{config.data.name}** · teacher **{config.teacher.kind}** · "
           f"student **{config.student.arch}-{config.student.dim}d** · loss **{config.loss.name}** · "
           f"{config.train.epochs} epochs. Change it on **Setup**.")

if run is None:
    st.stop()

live_view.show(run, key="distill")
