"""Distill: start, stop and resume a training, and watch it live."""

from __future__ import annotations

import streamlit as st

from ui import common, distill

common.page("Distill", "Train the student and watch its perception converge to the teacher's, snapshot by snapshot.")

run = distill.controls()  # Start, Stop, Resume and the run to watch
if run is None:
    st.stop()
distill.show(run, key="distill")
