"""Compare: several runs side by side, a baseline with the same config, the methods benchmark."""

from __future__ import annotations

import streamlit as st

from perco_viz.analysis import compare
from ui import common
from ui import compare as compare_ui

common.page("Compare", "Put runs side by side — coherence against the baselines, or any runs you made — "
            "and start a baseline with the same configuration.")

picked = compare_ui.choose_runs()
if picked.runs:
    named = compare.curves(picked.runs)  # run name → its metrics records
    st.subheader("Curves")
    compare_ui.show_curves(named, picked.runs)
    st.subheader("Final metrics")
    compare_ui.show_run_table(picked.runs)
    st.subheader("What differs in their configurations")
    compare_ui.show_config_diff(picked.runs, list(named))
    st.subheader("Final embeddings")
    compare_ui.show_embeddings(picked.runs, list(named))

st.subheader("Run a baseline with the same config")
compare_ui.baseline_starter(picked)

st.subheader("Methods benchmark (held-out test split)")
compare_ui.show_benchmark()
