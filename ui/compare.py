"""The *Compare* page's widgets: the runs to compare, their curves, final metrics and final
embeddings side by side, a baseline started with the same config, and the methods benchmark.
The tables are :mod:`perco_viz.analysis.compare`, the figures :mod:`perco_viz.figures.compare`
and :func:`perco_viz.figures.compare_curves`; :mod:`pages.7_Compare` lays them out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from perco_viz import figures
from perco_viz.analysis import compare
from perco_viz.runs import RunDir
from ui import common, external

CURVES = {"pc": ("PC (probe set)", "How often the student orders distances as the teacher does: 1 = always, "
                 "0.5 = chance. Higher is better."),
          "knn_acc": ("k-NN accuracy (probe set)", "5-nearest-neighbour accuracy of the student's features on the "
                      "probe set. Labels are never used in training: this shows what the geometry kept."),
          "train_loss": ("Training loss", "Each run's own loss on its batches (log scale). Losses of different methods "
                         "have different units: compare their shapes (convergence), not their heights.")}


# --------------------------------------------------------------------------- the runs
@dataclass(frozen=True)
class Picked:
    """The runs listed (``options``: label → run folder, ``labels`` newest first), the labels
    chosen, and the chosen runs that can be compared (``runs``)."""

    options: dict[str, Path]
    labels: list[str]
    chosen: list[str]
    runs: list[RunDir]


def loss_of(run: RunDir) -> str | None:
    """The run's loss name, or None when its config cannot be read."""
    try:
        return run.config().loss.name
    except Exception:  # noqa: BLE001 — an unreadable run has no loss to show
        return None


def _recent_first(options: dict[str, Path]) -> list[str]:
    def mtime(label: str) -> float:
        try:
            return options[label].stat().st_mtime
        except OSError:
            return 0.0

    return sorted(options, key=mtime, reverse=True)


def _why_not(run: RunDir, problem: str | None) -> str | None:
    """Why ``run`` cannot be compared (its listing's problem, or unreadable metrics), or None."""
    if problem:
        return problem
    try:
        run.metrics()
    except common.run_data_errors() as exc:
        return str(exc)
    return None


def choose_runs() -> Picked:
    """The multiselect of runs (the two most recent readable ones first); a damaged run is said,
    not compared. Stops the page when there is no run at all."""
    listed = common.run_problems()
    options = {label: path for label, (path, _) in listed.items()}
    if not options:
        st.info("No runs yet. Start the demo on the home page, or point `PERCO_VIZ_RUNS` at a folder of runs "
                "made with `perco-viz distill`, `perco-viz bench methods --out` or your own training "
                "(`perco_viz.open_run`).")
        st.stop()
    labels = _recent_first(options)
    readable = [label for label in labels if not listed[label][1]]
    chosen = st.multiselect("Runs to compare", labels, default=readable[:2], key="compare-runs",
                            help="Your runs and the shared ones; the two most recent readable ones are chosen first.")
    runs = []
    for label in chosen:
        run = RunDir(options[label])
        why = _why_not(run, listed[label][1])
        if why:  # a damaged run is said, not compared; the others still are
            common.show_run_problem(run.name, why, "cannot be compared")
        else:
            runs.append(run)
    return Picked(options=options, labels=labels, chosen=chosen, runs=runs)


# --------------------------------------------------------------------------- curves, table, embeddings
def show_curves(named: dict[str, list[dict]], runs: list[RunDir] | None = None) -> None:
    """One tab per curve (PC, k-NN accuracy, training loss, then every number a run of someone's
    own training logged, such as ``val_acc``), one line per run; ``runs``: the runs of ``named``,
    in its order (which of them are external)."""
    logged = [r for (_, records), run in zip(named.items(), runs or [], strict=False)
              if external.info(run) is not None for r in records]
    own = {key: (figures.metric_label(key), "Logged by the training itself (`run.log(..., name=value)`); runs "
                 "that did not log it have no line.")
           for key in external.own_scalars(logged) if key not in CURVES}
    curves = {**CURVES, **own}
    tabs = st.tabs([title for title, _ in curves.values()])
    for tab, (metric, (_title, caption)) in zip(tabs, curves.items(), strict=True):
        with tab:
            fig = figures.compare_curves(named, metric)
            if metric == "train_loss":  # losses of different methods differ by orders of magnitude
                fig.update_yaxes(type="log")
            st.plotly_chart(fig, key=f"compare-curve-{metric}", width="stretch")
            st.caption(caption)
            common.download_figure(fig, f"compare-{metric}", key=f"compare-dl-{metric}")


def show_run_table(runs: list[RunDir]) -> None:
    """The last snapshot's probe-set metrics of each run (:func:`perco_viz.analysis.compare.run_table`)."""
    table = compare.run_table(runs)
    number = st.column_config.NumberColumn
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "student_dim": number("student dim"), "epoch": number("last epoch", format="%.3g"),
        "pc": number("PC", format="%.4f"), "coherence_p10": number("c_i p10", format="%.4f",
                                                                    help="10th percentile of per-sample coherence"),
        "knn_acc": number("k-NN acc", format="%.3f"), "train_loss": number("train loss", format="%.4g"),
        "wall_s": number("wall s", format="%.1f")})
    st.caption("Last snapshot of each run, measured on its probe set (held-out inputs). Runs made on different "
               "data or teachers are not comparable number for number.")
    own = [run.name for run in runs if external.info(run) is not None]
    if own:
        it, it_is, its = ("it", "it is", "its") if len(own) == 1 else ("them", "they are", "their")
        st.info(f"{', '.join(f'**{name}**' for name in own)}: written by your own training. The app has no model or "
                f"dataset of {it} to score on a held-out split, so {it_is} compared on what {it_is.split()[0]} "
                f"logged: {its} probe set's PC, c_i and k-NN accuracy, and {its} own numbers.", icon=":material/info:")


def show_embeddings(runs: list[RunDir], names: list[str]) -> None:
    """The first run's teacher and every run's last student (PCA, in the teacher's orientation),
    side by side; runs on another probe set or teacher are said, not drawn."""
    panels, coherence, ref = {}, {}, None
    for run, name in zip(runs, names, strict=True):
        try:  # cached per run and snapshot for every session (ui.common); a first visit reads and projects
            with st.spinner(f"Reading and projecting {name}'s last snapshot…"):
                indices = run.snapshot_indices()
                teacher_xy, run_labels = common.teacher_pca(str(run.path))
                if indices:
                    student_xy = common.student_pca(str(run.path), indices[-1])
                    run_coherence = common.load_snapshot(str(run.path), indices[-1])["coherence"]
        except common.run_data_errors() as exc:  # being set up (no teacher probe yet), or damaged
            if run.status().get("state") == "running":
                st.caption(f"{name}: not drawn yet ({exc}).")
            else:
                common.show_run_problem(run.name, exc, "cannot be drawn")
            continue
        if ref is None:
            ref = (run, teacher_xy, run_labels)
            panels[f"teacher ({name})"] = teacher_xy
        same_probe = len(teacher_xy) == len(ref[1]) and np.allclose(teacher_xy, ref[1])
        if indices and same_probe:
            panels[name] = student_xy
            coherence[name] = run_coherence
        elif indices:
            st.caption(f"{name}: another probe set or teacher than {ref[0].name} — not drawn beside it.")
    if len(panels) > 1:
        fig = figures.compare_embeddings(panels, ref[2], coherence, class_names=common.class_names_of(ref[0], ref[2]))
        st.plotly_chart(fig, key="compare-embeddings", width="stretch")
        st.caption("Each dot is one probe input, in the same colour in every panel. Each student's PCA is turned "
                   "into the teacher's orientation (Procrustes): compare who is near whom, not the exact shape.")
        common.download_figure(fig, "compare-embeddings", key="compare-dl-embeddings")
    else:
        st.caption("No snapshot to draw yet.")


def show_config_diff(runs: list[RunDir], names: list[str]) -> None:
    """The configuration fields on which the chosen runs differ (:func:`perco_viz.analysis.compare.config_diff`):
    one row per field, one column per run; plain words when they all agree."""
    configs = {}
    for run, name in zip(runs, names, strict=True):
        try:  # an external run: only what its config means, then its own config (``your config.*``)
            configs[name] = compare.run_settings(run)
        except common.run_data_errors() as exc:
            common.show_run_problem(run.name, exc, "has no configuration that can be read")
    if len(configs) < 2:
        st.caption("Choose at least two runs to see how their configurations differ.")
        return
    diff = compare.config_diff(configs)
    if diff.empty:
        st.info(f"These {len(configs)} runs were made with the same configuration (names aside): "
                "data, teacher, student, loss, training and seeds are all the same.", icon=":material/check:")
        return
    st.dataframe(diff, width="stretch", key="compare-config-diff")
    total = len({field for settings in configs.values() for field in settings})
    st.caption(f"The {len(diff)} setting(s) that differ; the other {max(total - len(diff), 0)} are the same in every "
               "run. *none*: left empty; *(not set)*: the loss's default, or a setting the run does not have (a run "
               "of your own training has only its probe rows, feature width, epochs, dissimilarity and your config).")


# --------------------------------------------------------------------------- a baseline, the benchmark
def baseline_starter(picked: Picked) -> None:
    """Pick a run's config and another loss; the button starts that baseline and opens Distill."""
    from perco_viz.losses import LOSS_NAMES

    candidates = [label for label in (picked.chosen or picked.labels)  # an external run names no data to train on
                  if external.info(RunDir(picked.options[label])) is None]
    if not candidates:
        st.caption("The runs chosen were written by your own training: they name no dataset, teacher or student "
                   "the app could train again. Choose a run made here or with `perco-viz distill`.")
        return
    bases = [RunDir(picked.options[label]) for label in candidates]
    first_coherence = next((i for i, r in enumerate(bases) if loss_of(r) == "coherence"), 0)
    c1, c2, c3 = st.columns([2, 1, 3])
    base_label = c1.selectbox("Configuration of", candidates, index=first_coherence, key="compare-baseline-run")
    base = RunDir(picked.options[base_label])
    other = next((i for i, name in enumerate(LOSS_NAMES) if name != loss_of(base)), 0)
    loss = c2.selectbox("Loss", LOSS_NAMES, index=other, key="compare-baseline-loss",
                        help="Only the loss changes: data, teacher, student, seed, epochs, batch and learning rate "
                             "stay. Baselines use their papers' default weights.")
    c3.caption(f"Trains **{loss}** on the configuration of **{base.name}**, as run **{base.name}-{loss}**, "
               "then opens Distill to watch it.")
    if st.button("▶ Start the baseline", type="primary", key="compare-baseline-start"):
        try:
            config = base.config().override(**{"loss.name": loss, "name": f"{base.name}-{loss}"})
        except Exception as exc:  # noqa: BLE001
            common.show_error(exc, "This run's configuration cannot be read")
        else:
            if common.start_run(config):
                st.switch_page("pages/2_Distill.py")


def show_benchmark() -> None:
    """A ``perco-viz bench methods`` result of the shared run folder: its table and a bar chart."""
    benches = compare.find_benches(common.runs_root())
    if not benches:
        st.caption("No benchmark in the shared run folder. Make one with `perco-viz bench methods --dataset digits "
                   "--student-dim 8 --seeds 3 --epochs 20 --out <runs folder>/bench-d8` (see docs/results.md).")
        return
    root = common.runs_root()
    pick = st.selectbox("Benchmark", benches, key="compare-bench",
                        format_func=lambda p: str(p.parent.relative_to(root)) if p.parent != root else "(run folder)")
    try:
        doc = compare.load_bench(pick)
    except ValueError as exc:
        common.show_error(exc, "This benchmark cannot be read")
        return
    st.caption(f"Machine: {doc.get('machine', '?')}")
    st.caption(f"Protocol: {doc.get('protocol', '?')}")
    st.dataframe(compare.summary_frame(doc["rows"]), hide_index=True, width="stretch", key="compare-bench-table")
    st.caption("Mean ± std over seeds on the held-out test split; bold = best student. `teacher` scores the "
               "teacher's own features (PC = 1 by definition), `untrained` the student at its initialisation.")
    metric = st.selectbox("Metric", list(compare.TABLE_COLUMNS), key="compare-bench-metric",
                          format_func=compare.TABLE_COLUMNS.get)
    fig = figures.metrics_bar(doc["rows"], metric)
    st.plotly_chart(fig, key="compare-bench-bars", width="stretch")
    st.caption("One bar per method (untrained: the student before training), dashed line: the teacher. "
               "Error bars are the spread (std) over seeds.")
    common.download_figure(fig, f"bench-{metric}", key="compare-dl-bench")
