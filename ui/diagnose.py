"""The Diagnose page's widgets: the three sources of a teacher/student pair (embedding
files, models on a dataset, a run) and the panel (cards, figures, report download).

Uploaded bytes stay in this session: in memory, in ``st.session_state`` (never in the
server-wide ``st.cache_data``), and — for model files, which the loaders read from disk — in
``common.session_root()/uploads`` (through ``common.save_session_upload``, within the session's
quota). Embedding files are parsed in the worker process, within ``PERCO_VIZ_PARSE_TIMEOUT_S``.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import streamlit as st

from perco_viz import sessions
from perco_viz.analysis import diagnose
from perco_viz.figures import diagnose as diagnose_figures
from perco_viz.safe_io import InputFileError, OptionalDependencyError
from ui import common

_MEMO_KEY = "diag-memo"
_MEMO_SIZE = 6
USER_ERRORS = (InputFileError, OptionalDependencyError, ValueError, OSError)  # sessions.SessionError is a ValueError
EMBEDDING_TYPES = ["npz", "csv", "npy"]


# --------------------------------------------------------------------------- per-session memo
def session_memo(key: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per key for this session only (a few entries, oldest dropped)."""
    memo: OrderedDict = st.session_state.setdefault(_MEMO_KEY, OrderedDict())
    if key not in memo:
        memo[key] = compute()
        while len(memo) > _MEMO_SIZE:
            memo.popitem(last=False)
    memo.move_to_end(key)
    return memo[key]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- source 1: files
Sourced = tuple[tuple, diagnose.EmbeddingPair]  # (a key naming the pair's content, the pair)


def pair_from_uploads() -> Sourced | None:
    """Two embedding files (and optionally labels) → (key, pair), or None (with a message)."""
    left, right = st.columns(2)
    t_file = left.file_uploader("Teacher features", type=EMBEDDING_TYPES, key="diag-teacher-file",
                                help="One row per input: .npz with an array 'X' (labels 'y' optional), a .csv "
                                     "with a header (numeric columns are features; a 'label' column is read as "
                                     "labels) or a .npy (n, d) array.")
    s_file = right.file_uploader("Student features", type=EMBEDDING_TYPES, key="diag-student-file",
                                 help="The same inputs in the same order; the width may differ from the teacher's.")
    c1, c2, c3 = st.columns([1.2, 1, 1.4])
    labels_from = c1.selectbox(
        "Labels", list(diagnose.LABEL_SOURCES), key="diag-labels-from",
        format_func={"auto": "from either file (y / label)", "teacher": "from the teacher file",
                     "student": "from the student file", "file": "from a labels file",
                     "none": "no labels"}.__getitem__,
        help="Labels are optional: they colour the plots and give the k-NN and linear-probe accuracies.")
    label_column = c2.text_input("Label column / array", key="diag-label-column", placeholder="y or label",
                                 help="The CSV column or .npz array holding the labels, when it is not "
                                      "called 'y' or 'label'.",
                                 disabled=labels_from in ("auto", "none")).strip() or None
    l_file = c3.file_uploader("Labels file", type=EMBEDDING_TYPES, key="diag-labels-file",
                              disabled=labels_from != "file",
                              help="A 1-D .npy, an .npz with 'y', or a .csv with a 'label' column.")
    if t_file is None or s_file is None:
        st.info("Upload the teacher's and the student's features of the same inputs (a few rows to a few hundred "
                "thousand). Example: `np.savez('teacher.npz', X=teacher_features, y=labels)` and "
                "`np.savez('student.npz', X=student_features)`.")
        return None
    t_bytes, s_bytes = t_file.getvalue(), s_file.getvalue()
    l_bytes = l_file.getvalue() if (l_file is not None and labels_from == "file") else None
    key = ("files", _digest(t_bytes), t_file.name, _digest(s_bytes), s_file.name, labels_from, label_column,
           None if l_bytes is None else (_digest(l_bytes), l_file.name))
    try:
        read = functools.partial(  # parsed in the worker process, within the time limit
            diagnose.load_pair, teacher_name=t_file.name, student_name=s_file.name, labels_from=labels_from,
            labels=l_bytes, labels_name=None if l_file is None else l_file.name, label_column=label_column)
        with st.spinner("Reading the files…"):
            return key, session_memo(key, lambda: sessions.run_limited(read, t_bytes, s_bytes, what="the files"))
    except USER_ERRORS as exc:
        st.error(f"These files cannot be diagnosed: {exc}")
        return None


# --------------------------------------------------------------------------- source 2: models
def pair_from_model_files() -> Sourced | None:
    """A teacher and a student checkpoint run on a dataset's test split → (key, pair), or None."""
    from perco_viz.config import DataConfig, StudentConfig, TeacherConfig
    from perco_viz.data import DATASET_NAMES, SYNTHETIC

    builtin = [name for name in DATASET_NAMES if name == "digits" or name in SYNTHETIC]  # no download, no file
    c1, c2, c3 = st.columns(3)
    dataset = c1.selectbox("Dataset", builtin, key="diag-dataset",
                           help="The features are computed on its held-out test split.")
    trusted = common.trusts_torchscript()
    teacher_kind = c2.selectbox("Teacher", ["builtin", "safetensors", *(["torchscript"] if trusted else [])],
                                key="diag-teacher-kind",
                                format_func={"builtin": "built-in for this dataset (trained once, cached)",
                                             "safetensors": "weights of the built-in architecture (.safetensors)",
                                             "torchscript": "TorchScript file"}.__getitem__)
    t_upload = None
    if teacher_kind != "builtin":
        t_upload = c2.file_uploader("Teacher file", type=["safetensors", "pt", "pth"], key="diag-teacher-model")
    s_upload = c3.file_uploader("Student checkpoint", type=["safetensors", "pt", "pth"], key="diag-student-model",
                                help="A student of a built-in architecture (e.g. a run's student.safetensors)"
                                     + (" or a TorchScript file whose output are the features." if trusted else "."))
    if trusted:
        st.warning(common.TORCHSCRIPT_WARNING, icon=":material/warning:")
    else:
        st.caption(common.TORCHSCRIPT_OFF.replace("on Diagnose", "with the Embedding files source"))
    d1, d2, d3, _ = st.columns([1, 1, 1, 3])
    dim = d1.number_input("Student dim", 1, 4096, 8, key="diag-student-dim",
                          help="Width of the student's features (needed to rebuild a built-in student).")
    hidden = d2.number_input("Student hidden", 1, 8192, 256, key="diag-student-hidden")
    n_samples = d3.number_input("Synthetic size", 100, 20000, 2000, step=100, key="diag-n-samples",
                                help="Number of points of a synthetic dataset (ignored for digits).")
    clicked = st.button("Compute the features", type="primary", key="diag-models-go",
                   disabled=s_upload is None or (teacher_kind != "builtin" and t_upload is None))
    if s_upload is None:
        st.info("Upload the student's checkpoint (and the teacher's, unless you use the built-in one).")
    state_key = "diag-models-pair"
    inputs = (dataset, teacher_kind, getattr(t_upload, "file_id", None), getattr(s_upload, "file_id", None),
              int(dim), int(hidden), int(n_samples))
    if st.session_state.get(state_key, (None, None, None))[2] != inputs:
        st.session_state.pop(state_key, None)  # the choices changed: the features must be computed again
    if clicked:
        try:
            with st.spinner("Loading the models and computing the features of the test split…"):
                from perco_viz import models, paths
                from perco_viz.data import load_dataset

                ds = load_dataset(DataConfig(name=dataset, n_samples=int(n_samples)))
                t_path = str(common.save_session_upload(t_upload.getvalue(), t_upload.name)) if t_upload else None
                s_path = str(common.save_session_upload(s_upload.getvalue(), s_upload.name))
                teacher = models.load_teacher(TeacherConfig(kind=teacher_kind, path=t_path), ds,
                                              cache_dir=paths.default_cache_dir(), trust_code=trusted)
                student = models.build_student(
                    StudentConfig(arch="file", path=s_path, dim=int(dim), hidden=int(hidden)), ds, trust_code=trusted)
                pair = diagnose.pair_from_models(
                    teacher, student, ds.X_test, ds.y_test, class_names=ds.class_names,
                    source=f"{dataset} test split · teacher {teacher_kind} · student {s_upload.name}")
                st.session_state[state_key] = (("models", uuid.uuid4().hex), pair, inputs)
        except USER_ERRORS as exc:
            st.error(f"The models could not be run on {dataset}: {exc}")
            st.session_state.pop(state_key, None)
            return None
    stored = st.session_state.get(state_key)
    return None if stored is None else stored[:2]


# --------------------------------------------------------------------------- source 3: a run
def pair_from_app_run() -> Sourced | None:
    """A run's teacher probe features and one student snapshot → (key, pair), or None."""
    c1, c2 = st.columns([3, 1])
    with c1:
        run = common.run_picker("diag-run", label="Run",
                                help="Its teacher's probe-set features and the student's snapshot.")
    if run is None:
        return None
    try:
        indices = run.snapshot_indices()
    except common.run_data_errors() as exc:  # a snapshots folder leading out of the runs folder
        common.show_run_problem(run.name, exc)
        return None
    if not indices:
        st.info("This run has no snapshot yet.")
        return None
    snapshot = c2.selectbox("Snapshot", indices[::-1], key="diag-snapshot",
                            format_func=lambda i: "latest" if i == indices[-1] else f"#{i}",
                            help="0 is the untrained student; the latest is where the run stands.")
    key = ("run", *run.signature(), snapshot)
    try:
        return key, session_memo(key, lambda: diagnose.pair_from_run(run, snapshot))
    except Exception as exc:  # noqa: BLE001 — a run being written, or an unreadable one
        common.show_error(exc, "This run cannot be read yet")
        return None


# --------------------------------------------------------------------------- the panel
def compute_panel(key: tuple, pair: diagnose.EmbeddingPair, max_points: int) -> tuple[diagnose.Panel, dict]:
    """The panel and its figures, once per (pair key, max_points) in this session."""
    def work():
        panel = diagnose.compute_panel(pair, max_points=max_points)
        return panel, diagnose_figures.panel_figures(panel)

    with st.spinner(f"Measuring {min(pair.n, max_points):,} inputs: ranks, coherence, neighbours, probes…"):
        return session_memo(("panel", key, max_points), work)


def show_cards(panel: diagnose.Panel) -> None:
    """The metric panel as cards, two rows, each with a one-sentence help."""
    keys = [k for k in diagnose.CARD_ORDER if k in panel.report]
    for row in (keys[:4], keys[4:]):
        cols = st.columns(4)
        for col, key in zip(cols, row):
            info = diagnose.METRIC_INFO[key]
            col.metric(info.label, diagnose.format_value(key, panel.report[key]), help=info.help, border=True)
    if panel.labels is None:
        st.caption("No labels: the k-NN and linear-probe accuracies need them.")


def show_figures(panel: diagnose.Panel, figs: dict, key: str) -> None:
    """Every figure of the panel with its caption and download buttons."""
    def one(heading: str, slot) -> None:
        with slot:
            fig = figs[heading]
            st.plotly_chart(fig, key=f"{key}-{heading}", width="stretch")
            st.caption(diagnose_figures.FIGURE_CAPTIONS[heading])
            common.download_figure(fig, heading.lower().replace(" ", "-"), key=f"{key}-dl-{heading}")

    one("Embeddings", st.container())
    left, right = st.columns(2, gap="large")
    one("Per-sample coherence", left)
    one("Shepard diagram", right)
    left, right = st.columns([3, 2], gap="large")
    one("Rank agreement", left)
    with right:
        worst_inputs(panel)


def worst_inputs(panel: diagnose.Panel, k: int = 10) -> None:
    """The inputs whose perception differs most from the teacher's (lowest c_i)."""
    import numpy as np

    st.markdown("**Inputs perceived worst**")
    order = np.argsort(panel.coherence, kind="stable")[:k]
    table = {"row": panel.indices[order], "c_i": panel.coherence[order]}
    if panel.labels is not None:
        table["label"] = [str(v) for v in panel.labels[order]]
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"row": st.column_config.NumberColumn("row", format="%d", help="Row of the teacher/student arrays."),
                                "c_i": st.column_config.ProgressColumn("c_i", min_value=0.0, max_value=1.0,
                                                                       format="%.3f")})
    st.caption(f"The {len(order)} inputs with the lowest per-sample coherence c_i: from their point of view the "
               "student orders the other inputs least like the teacher. Look at them first (mislabelled, "
               "ambiguous or rare inputs are typical).")


def show_downloads(panel: diagnose.Panel, figs: dict, key: str) -> None:
    """The HTML report and the per-input c_i as CSV."""
    import pandas as pd

    c1, c2, _ = st.columns([1.3, 1.3, 3])
    c1.download_button("⬇ Download report (HTML)", diagnose_figures.html_report(panel, figs), file_name="perco-diagnosis.html",
                       mime="text/html", type="primary", key=f"{key}-report",
                       help="One self-contained file: the metric table, what each metric means and every figure, "
                            "interactive; it opens offline.")
    table = pd.DataFrame({"row": panel.indices, "c_i": panel.coherence})
    if panel.labels is not None:
        table["label"] = panel.labels
    c2.download_button("⬇ Per-input c_i (CSV)", table.to_csv(index=False), file_name="per-sample-coherence.csv",
                       mime="text/csv", key=f"{key}-csv",
                       help="The per-sample coherence of every measured input, by its row in your files.")
