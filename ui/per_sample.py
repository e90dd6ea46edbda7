"""The *Per-sample coherence* page's widgets and cached computations: the numbers, c_i over the
epochs and at this snapshot, the worst inputs, where they lie in the student's space, the
per-class summary and the CSV. The computations are :mod:`perco_viz.analysis.per_sample`, the
figures :mod:`perco_viz.figures.per_sample`; :mod:`pages.5_Per_sample_coherence` lays them out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from perco_viz import figures
from perco_viz.analysis import per_sample
from ui import common


# --------------------------------------------------------------------------- cached computations
@st.cache_data(max_entries=16, show_spinner=False)
def coherence_history(path: str, signature: tuple) -> tuple[list[float], list[np.ndarray]]:
    """(epochs, c_i arrays) of every snapshot; ``signature`` keys the cache (new snapshots reload)."""
    return per_sample.coherence_by_epoch(path)


@st.cache_data(max_entries=16, show_spinner=False)
def student_pca(path: str, index: int, stamp: float) -> np.ndarray:
    """(n, 2) PCA of the snapshot's student features."""
    from perco_viz.analysis.projection import project

    return project(common.load_snapshot(path, index)["student"], "pca", dim=2)


def coherence_of(choice: common.SnapshotChoice) -> np.ndarray:
    """(n_probe,) c_i of the chosen snapshot, float64."""
    return np.asarray(choice.snap["coherence"], dtype=np.float64)


# --------------------------------------------------------------------------- the page's parts
def show_numbers(c: np.ndarray) -> None:
    """PC, the 10th percentile, the lowest c_i and how many inputs are at chance or worse."""
    m = st.columns(4)
    m[0].metric("PC (mean c_i)", f"{float(c.mean()):.4f}", help="Perception coherence of this snapshot on the "
                "probe set.")
    m[1].metric("c_i, 10th percentile", f"{float(np.quantile(c, 0.1)):.4f}",
                help="One input in ten is perceived worse than this.")
    m[2].metric("Lowest c_i", f"{float(c.min()):.4f}",
                help="The input the student perceives least like the teacher.")
    m[3].metric("Inputs at chance or worse", f"{int((c <= 0.5).sum()):,} of {len(c):,}",
                help="c_i ≤ 0.5: for these anchors the student's ranking is no better than a random one.")


def show_distributions(choice: common.SnapshotChoice) -> None:
    """c_i over every snapshot (violins) next to its histogram at this one."""
    c, epoch = coherence_of(choice), choice.snap["epoch"]
    left, right = st.columns(2)
    with left:
        history = None
        with common.run_guard(choice.run, "has a snapshot that cannot be read: no history over epochs", stop=False):
            with st.spinner("Reading every snapshot…"):  # one damaged snapshot: the rest of the page still works
                history_epochs, history = coherence_history(choice.path, choice.signature)
        if history is not None:
            fig_e = figures.coherence_over_epochs(history, history_epochs, height=440)
            st.plotly_chart(fig_e, key="psc-fig-epochs", width="stretch")
            st.caption("One violin per snapshot (c_i of every probe input; box = quartiles, line = mean). Watch "
                       "the lower tail: does it catch up with the mean, or do a few inputs stay behind?")
            common.download_figure(fig_e, "coherence-over-epochs", key="psc-dl-epochs")
    with right:
        fig_h = figures.coherence_histogram(c, height=440, title=f"distribution of c_i at epoch {epoch:g}")
        st.plotly_chart(fig_h, key="psc-fig-hist", width="stretch")
        st.caption("How many probe inputs have each c_i. The dashed red line is the 10th percentile (the worst "
                   "tenth lies to its left), the purple line the mean, which is PC.")
        common.download_figure(fig_h, "coherence-histogram", key="psc-dl-hist")


def show_worst(choice: common.SnapshotChoice) -> pd.DataFrame:
    """The k slider, the worst inputs' thumbnails (image data) and table; returns that table."""
    c, labels, dataset = coherence_of(choice), choice.labels, choice.dataset
    k = st.slider("How many (k)", 1, min(60, len(c)), min(12, len(c)), key="psc-k",
                  help="The k probe inputs with the lowest c_i at this snapshot.")
    worst = per_sample.worst_samples(c, k, labels, indices=choice.probe["indices"], class_names=choice.class_names)
    has_images = dataset is not None and dataset.is_image
    w1, w2 = st.columns([3, 2]) if has_images else (None, st.container())
    if w1 is not None:
        with w1:
            caps = [f"#{int(r['point'])}" + (f" · {r['class']}" if labels is not None else "") + f" · {r['c_i']:.3f}"
                    for r in worst.to_dict("records")]
            common.show_thumbnails(dataset, worst["test_index"].to_numpy(), caps, size=64)
            st.caption("Worst first: probe input #, class and its c_i. Open **Rank agreement** with one of them as "
                       "the anchor to see which neighbours the student moved.")
    with w2:
        number = st.column_config.NumberColumn
        shown = worst
        if labels is not None and (worst["class"] == worst["label"].astype(str)).all():
            shown = worst.drop(columns=["class"])  # class names are just the numbers
        st.dataframe(shown, hide_index=True, width="stretch", height=320, column_config={
            "point": number("input #", help="Row in the probe set"),
            "test_index": number("test index", help="Row in the dataset's test split"),
            "c_i": number("c_i", format="%.4f")})
        if not has_images:
            st.caption("Worst first. These inputs are vectors, not images: find them in the embedding below, or "
                       "open **Rank agreement** with one of them as the anchor to see which neighbours the "
                       "student moved.")
    return worst


def show_where(choice: common.SnapshotChoice, worst: pd.DataFrame) -> None:
    """The student's features (PCA) coloured by c_i, the worst ringed; c_i per class."""
    c, labels, class_names = coherence_of(choice), choice.labels, choice.class_names
    test_idx, epoch, k = choice.probe["indices"], choice.snap["epoch"], len(worst)
    e1, e2 = st.columns([3, 2])
    with e1:
        with st.spinner("Projecting the student's features…"), common.run_guard(choice.run, "cannot be projected"):
            xy = student_pca(choice.path, choice.index, choice.stamp)
        hover = [common.point_text(i, labels, class_names) + f" · test index {int(test_idx[i])}"
                 for i in range(len(c))]
        fig_emb = figures.embedding_figure(
            xy, color=c, color_kind="continuous", color_range=(0.0, 1.0), hover=hover,
            highlight=worst["point"].to_numpy(), title=f"student features at epoch {epoch:g}, coloured by c_i",
            subtitle=f"PCA of the student's features; ringed: the {k} worst inputs",
            axis_titles=("principal component 1", "principal component 2"), height=520)
        fig_emb.update_layout(showlegend=False)  # the subtitle says what the rings are
        st.plotly_chart(fig_emb, key="psc-fig-emb", width="stretch")
        st.caption("Each dot is a probe input placed by the student (PCA of its features); colour = its c_i on a "
                   "0–1 scale (dark red ≤ 0.5 = chance, orange 0.75, yellow 0.9, green 1), low values drawn on "
                   "top. Do the badly perceived inputs gather somewhere — between two groups, or in one class?")
        common.download_figure(fig_emb, "student-pca-by-coherence", key="psc-dl-emb")
    with e2:
        if labels is None:
            st.info("This probe set has no labels: there is no per-class summary.")
            return
        fig_c = figures.per_class_coherence(c, labels, class_names, height=400)
        st.plotly_chart(fig_c, key="psc-fig-class", width="stretch")
        st.caption("One box per class: which classes the student perceives worse (lower boxes).")
        common.download_figure(fig_c, "coherence-by-class", key="psc-dl-class")
        summary = per_sample.per_class_summary(c, labels, class_names)
        if (summary["class"] == summary["label"].astype(str)).all():
            summary = summary.drop(columns=["class"])  # names are just the numbers
        st.dataframe(summary, hide_index=True, width="stretch", column_config={
            "mean": st.column_config.NumberColumn("mean c_i", format="%.4f"),
            "p10": st.column_config.NumberColumn("10th pct", format="%.4f"),
            "min": st.column_config.NumberColumn("min", format="%.4f")})


def csv_download(choice: common.SnapshotChoice) -> None:
    """Every probe input's c_i at this snapshot as a CSV (:func:`perco_viz.analysis.per_sample.per_sample_table`)."""
    table = per_sample.per_sample_table(coherence_of(choice), indices=choice.probe["indices"], labels=choice.labels,
                                        class_names=choice.class_names)
    st.download_button("Download every c_i (CSV)", table.to_csv(index=False), key="psc-csv", mime="text/csv",
                       file_name=f"{choice.run.name}-epoch{choice.snap['epoch']:g}-per-sample-coherence.csv",
                       help="One row per probe input: its row, its index in the test split, label, class and c_i.")
