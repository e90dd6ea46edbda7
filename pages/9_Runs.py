"""Runs: every run this session can see, to find, rename, tag, note, open elsewhere or delete."""

from __future__ import annotations

import streamlit as st

from ui import common
from ui import runs as runs_ui

common.page("Runs", "All the runs you can open — yours and the shared ones — in one table: search and sort them, "
            "give yours a title, tags and a note, or delete them.")

runs_ui.flash()  # "Saved." / "Deleted …" after the change that reran the page
entries = runs_ui.listed_runs()
if not entries:
    st.info("No runs yet. Start the demo on the home page or set one up on **Setup**. Runs of another tab or "
            "device: open them with its link or workspace name (sidebar → Your workspace).")
    st.stop()
kept = runs_ui.show_table(entries)
st.subheader("The run picked")
entry = runs_ui.pick(kept, entries)
if entry is not None:
    runs_ui.manage(entry, entries)
    runs_ui.downloads(entry)  # metrics (CSV, Parquet) and the TensorBoard projector (zip), made on click
