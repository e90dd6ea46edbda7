"""Embeddings: teacher and student side by side, linked, coloured by label or c_i, over the snapshots."""

from __future__ import annotations

import streamlit as st

from ui import common, embeddings

common.page("Embeddings", "The teacher's and the student's features on the probe set, projected to 2-D or 3-D: "
            "select points in one to find them in the other, and play the training back.")

run = common.run_picker("emb-run")
if run is None:
    st.stop()
data = embeddings.load_run(run)  # a damaged run or one without snapshots: a message, and the page stops
chosen = embeddings.controls(data)  # projection, dimensions, colour, playback
view = embeddings.projected(data, chosen)  # PCA at once; UMAP/t-SNE from the background worker
embeddings.show(view)  # the snapshot slider, search, the two linked figures, neighbours, tags and downloads
embeddings.share(run)  # the link that reopens this view
