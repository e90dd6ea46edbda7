"""The *Per-sample coherence* page's widgets and cached computations: the numbers, c_i over the
epochs and at this snapshot, the worst inputs (each a link to Rank agreement with it as the
anchor), where they lie in the student's space, the per-class summary, the table of every probe
input (sort, search, select, tag, export) and the CSV. The computations are
:mod:`perco_viz.analysis.per_sample`, the figures :mod:`perco_viz.figures.per_sample`;
:mod:`pages.5_Per_sample_coherence` lays them out."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import streamlit as st

from perco_viz import figures
from perco_viz.analysis import per_sample
from ui import common, explore

MAX_LINKS = 24  # the most "open in Rank agreement" links drawn for the selected rows
MAX_THUMBNAILS = 48  # the most thumbnails drawn for the selected rows


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


@st.cache_data(max_entries=16, show_spinner=False)
def points(path: str, index: int, stamp: float, class_names: list[str] | None) -> pd.DataFrame:
    """Every probe input of a snapshot (:func:`perco_viz.analysis.per_sample.points_table`):
    ``point``, ``test_index`` (only when it differs from ``point``), ``class``, ``c_i``, ``rank``;
    sorted by c_i, lowest first."""
    probe = common.load_teacher_probe(path)
    table = per_sample.points_table(common.load_snapshot(path, index)["coherence"], indices=probe["indices"],
                                    labels=probe.get("labels"), class_names=class_names)
    return table.sort_values("rank", kind="stable").reset_index(drop=True)


def coherence_of(choice: common.SnapshotChoice) -> np.ndarray:
    """(n_probe,) c_i of the chosen snapshot, float64."""
    return np.asarray(choice.snap["coherence"], dtype=np.float64)


def points_of(choice: common.SnapshotChoice) -> pd.DataFrame:
    """:func:`points` of the chosen snapshot."""
    return points(choice.path, choice.index, choice.stamp, choice.class_names)


def column_config(table: pd.DataFrame) -> dict:
    """How the page's tables of inputs name their columns (plain words, each saying what it is)."""
    number = st.column_config.NumberColumn
    config = {
        "point": number("input", help="The input's number in the probe set: #12 on every page (search `#12`)"),
        "test_index": number("test-split index", help="Where the input is in the dataset's test split (the "
                             "probe set is a sample of it)"),
        "class": st.column_config.Column("class"),
        "c_i": number("c_i", format="%.4f", help="Per-sample coherence: 1 = perceived like the teacher, "
                      "0.5 = chance"),
        "rank": number("rank", help="By c_i among all probe inputs: 1 = the lowest (the worst perceived)"),
        "tags": st.column_config.TextColumn("tags", help="Your tags of this input (search `tags=suspect`)"),
    }
    return {k: v for k, v in config.items() if k in table.columns}


def rank_link_params(choice: common.SnapshotChoice, row: int) -> dict[str, str]:
    """Query parameters of a link to Rank agreement that opens this run, this snapshot and
    ``row`` (a probe row) as its anchor."""
    return common.anchor_params(row, choice.index)


def rank_links(choice: common.SnapshotChoice, rows, *, title: str) -> bool:
    """A row of links "#12" to Rank agreement, one per probe row of ``rows``, each opening it with
    that input as the anchor; False (nothing drawn) when the app's pages are unknown (a page run
    on its own, as in tests)."""
    rows = [int(r) for r in rows]
    if not rows:
        return False
    box = st.container(horizontal=True, gap="small", vertical_alignment="center")
    box.markdown(title)
    for row in rows:
        if not common.link(box, common.RANK_AGREEMENT_PAGE, label=f"#{row}", icon=":material/grid_view:",
                           query_params=rank_link_params(choice, row),
                           help=f"Open Rank agreement with input #{row} as the anchor: which of its neighbours "
                                "did the student move?"):
            return False
    return True


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
            common.show_figure(
                figures.coherence_over_epochs(history, history_epochs, height=440), key="psc-fig-epochs",
                name="coherence-over-epochs",
                caption="One violin per snapshot (c_i of every probe input; box = quartiles, line = mean). Watch "
                        "the lower tail: does it catch up with the mean, or do a few inputs stay behind?")
    with right:
        common.show_figure(
            figures.coherence_histogram(c, height=440, title=f"distribution of c_i at epoch {epoch:g}"),
            key="psc-fig-hist", name="coherence-histogram",
            caption="How many probe inputs have each c_i. The dashed red line is the 10th percentile (the worst "
                    "tenth lies to its left), the purple line the mean, which is PC.")


def show_worst(choice: common.SnapshotChoice) -> pd.DataFrame:
    """The k slider, the worst inputs' thumbnails (image data), their table and their links to
    Rank agreement; returns that table (:func:`points` rows, lowest c_i first)."""
    c, dataset = coherence_of(choice), choice.dataset
    k = st.slider("How many (k)", 1, min(60, len(c)), min(12, len(c)), key="psc-k",
                  help="The k probe inputs with the lowest c_i at this snapshot.")
    worst = points_of(choice).head(k)
    has_images = dataset is not None and dataset.is_image
    w1, w2 = st.columns(2) if has_images else (None, st.container())
    if w1 is not None:
        with w1:
            caps = [f"#{int(r['point'])}" + (f" · {r['class']}" if "class" in r else "") + f" · {r['c_i']:.3f}"
                    for r in worst.to_dict("records")]
            common.show_thumbnails(dataset, choice.probe["indices"][worst["point"].to_numpy()], caps, size=64)
            st.caption("Worst first: input #, class and its c_i.")
    with w2:
        st.dataframe(worst, hide_index=True, width="stretch", height=320, column_config=column_config(worst))
        if not has_images:
            st.caption("Worst first. These inputs are vectors, not images: find them in the embedding below.")
    rank_links(choice, worst["point"], title="**Open in Rank agreement** (as the anchor, to see which neighbours "
               "the student moved):")
    return worst


def show_where(choice: common.SnapshotChoice, worst: pd.DataFrame) -> None:
    """The student's features (PCA) coloured by c_i, the worst ringed; c_i per class."""
    c, labels, class_names = coherence_of(choice), choice.labels, choice.class_names
    test_idx, epoch, k = choice.probe["indices"], choice.snap["epoch"], len(worst)
    e1, e2 = st.columns([3, 2])
    with e1:
        with st.spinner("Projecting the student's features…"), common.run_guard(choice.run, "cannot be projected"):
            xy = student_pca(choice.path, choice.index, choice.stamp)
        same_index = np.array_equal(test_idx, np.arange(len(c)))
        hover = [common.point_text(i, labels, class_names) + ("" if same_index else f" · test index {int(test_idx[i])}")
                 for i in range(len(c))]
        fig_emb = figures.embedding_figure(
            xy, color=c, color_kind="continuous", color_range=(0.0, 1.0), hover=hover,
            highlight=worst["point"].to_numpy(), title=f"student features at epoch {epoch:g}, coloured by c_i",
            subtitle=f"PCA of the student's features; ringed: the {k} worst inputs",
            axis_titles=("principal component 1", "principal component 2"), height=520)
        fig_emb.update_layout(showlegend=False)  # the subtitle says what the rings are
        common.show_figure(
            fig_emb, key="psc-fig-emb", name="student-pca-by-coherence",
            caption="Each dot is a probe input placed by the student (PCA of its features); colour = its c_i on a "
                    "0–1 scale (dark red ≤ 0.5 = chance, orange 0.75, yellow 0.9, green 1), low values drawn on "
                    "top. Do the badly perceived inputs gather somewhere — between two groups, or in one class?")
    with e2:
        if labels is None:
            st.info("This probe set has no labels: there is no per-class summary.")
            return
        common.show_figure(figures.per_class_coherence(c, labels, class_names, height=400), key="psc-fig-class",
                           name="coherence-by-class",
                           caption="One box per class: which classes the student perceives worse (lower boxes).")
        summary = per_sample.per_class_summary(c, labels, class_names)
        if (summary["class"] == summary["label"].astype(str)).all():
            summary = summary.drop(columns=["class"])  # names are just the numbers
        st.dataframe(summary, hide_index=True, width="stretch", column_config={
            "mean": st.column_config.NumberColumn("mean c_i", format="%.4f"),
            "p10": st.column_config.NumberColumn("10th pct", format="%.4f"),
            "min": st.column_config.NumberColumn("min", format="%.4f")})


def explore_key(query: str, index: int) -> str:
    """The key of the table of every input: a new one for each search and snapshot (a selection
    is row positions, which mean other inputs once the rows change)."""
    digest = hashlib.sha1(f"{index}\x00{query}".encode()).hexdigest()[:10]
    return f"psc-all-{digest}"


def selected_rows(event) -> list[int]:
    """The row positions of a ``st.dataframe`` selection event (``{"selection": {"rows": [...]}}``)."""
    if not event:
        return []
    selection = event.get("selection", {}) if isinstance(event, dict) else getattr(event, "selection", None)
    rows = selection.get("rows", []) if isinstance(selection, dict) else getattr(selection, "rows", [])
    return [int(r) for r in rows or []]


def show_all(choice: common.SnapshotChoice) -> np.ndarray:
    """The table of every probe input, sorted by c_i (any column sorts it): a search over it, row
    selection, tags for the selected inputs (or every match), the tagged list as CSV, and the
    selected inputs' thumbnails and links to Rank agreement. Returns the (m,) selected probe rows."""
    scope = choice.path  # tags belong to the run's probe set
    base = points_of(choice)
    table = explore.with_tags(base, scope, id_column="point")
    mask = explore.search(table, "psc-search", id_column="point")
    query = str(st.session_state.get("psc-search") or "")
    shown = table[mask].reset_index(drop=True)
    key = explore_key(query, choice.index)
    event = st.dataframe(shown, key=key, on_select="rerun", selection_mode="multi-row", hide_index=True,
                         width="stretch", height=380, column_config=column_config(shown))
    rows = [r for r in selected_rows(event or st.session_state.get(key)) if 0 <= r < len(shown)]
    selected = shown["point"].to_numpy()[rows].astype(np.int64)
    if len(selected):
        st.caption(f"{len(selected):,} selected.")
    else:
        st.caption("Sorted by c_i, lowest first; click a column's name to sort by it. Tick rows (left edge) to select "
                   "inputs: tag them, see them, open them in Rank agreement.")
    if not common.presenting():
        chosen = selected if len(selected) else (shown["point"].to_numpy() if query else np.zeros(0, np.int64))
        explore.tag_panel(base, scope, "psc-tags", id_column="point", chosen=chosen,
                          file_name=f"{choice.run.name}-tagged-inputs.csv")
        st.caption("Tag the selected inputs — or, with nothing selected, every input the search matches.")
    if len(selected):
        dataset = choice.dataset
        if dataset is not None and dataset.is_image:
            pick = selected[:MAX_THUMBNAILS]
            caps = [common.point_text(int(r), choice.labels, choice.class_names, coherence_of(choice)) for r in pick]
            common.show_thumbnails(dataset, choice.probe["indices"][pick], caps, size=64)
        rank_links(choice, selected[:MAX_LINKS], title="**Open in Rank agreement:**")
    return selected


def csv_download(choice: common.SnapshotChoice) -> None:
    """Every probe input's c_i at this snapshot as a CSV (:func:`perco_viz.analysis.per_sample.per_sample_table`);
    none in presentation mode."""
    if common.presenting():
        return
    table = per_sample.per_sample_table(coherence_of(choice), indices=choice.probe["indices"], labels=choice.labels,
                                        class_names=choice.class_names)
    st.download_button("Download every c_i (CSV)", table.to_csv(index=False), key="psc-csv", mime="text/csv",
                       file_name=f"{choice.run.name}-epoch{choice.snap['epoch']:g}-per-sample-coherence.csv",
                       help="One row per probe input: its row, its index in the test split, label, class and c_i.")
