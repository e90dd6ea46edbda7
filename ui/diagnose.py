"""The Diagnose page's widgets: the three sources of a teacher/student pair (embedding
files, models on a dataset, a run), optional metadata columns, and the panel (cards, figures,
the per-input table to search, sort and tag, the worst inputs, the report download).

Uploaded bytes stay in this session: in memory, in ``st.session_state`` (never in the
server-wide ``st.cache_data``), and — for model files, which the loaders read from disk — in
``common.session_root()/uploads`` (through ``common.save_session_upload``, within the session's
quota). Embedding and metadata files are parsed in the worker process, within
``PERCO_VIZ_PARSE_TIMEOUT_S``. The panel computed from a pair is cached for all sessions under
the pair's content digest (:func:`compute_panel`): only a session holding the same bytes (or
the same run) reaches it, and it computes nothing new.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from perco_viz import sessions
from perco_viz.analysis import diagnose
from perco_viz.figures import diagnose as diagnose_figures
from perco_viz.safe_io import InputFileError, OptionalDependencyError
from ui import common, explore, view_state

_MEMO_KEY = "diag-memo"
_MEMO_SIZE = 6
USER_ERRORS = (InputFileError, OptionalDependencyError, ValueError, OSError)  # sessions.SessionError is a ValueError
EMBEDDING_TYPES = ["npz", "csv", "npy", "parquet"]
HEATMAP_WIDTH = 760  # px, at most (narrower screens: the page's width)


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


@dataclass
class Sourced:
    """A pair and what the page knows about where it comes from.

    Attributes:
        key: names the pair's content (digests of the files, or the run and snapshot): the cache key.
        pair: the teacher/student features (n rows).
        scope: the identity of the points, for their tags (a run's path, the teacher file's digest...).
        dataset: the dataset whose test split the rows are (thumbnails), or None.
        test_indices: (n,) the test-split index of each row of the pair, or None.
        run: the run (a ``RunDir``) for a run source, else None.
        snapshot: the run's snapshot index shown.
    """

    key: tuple
    pair: diagnose.EmbeddingPair
    scope: str
    dataset: Any = None
    test_indices: np.ndarray | None = None
    run: Any = None
    snapshot: int | None = None


# --------------------------------------------------------------------------- source 1: files


def pair_from_uploads() -> Sourced | None:
    """Two embedding files (and optionally labels) → :class:`Sourced`, or None (with a message)."""
    limit = common.upload_mb()
    left, right = st.columns(2)
    t_file = left.file_uploader("Teacher features", type=EMBEDDING_TYPES, key="diag-teacher-file",
                                max_upload_size=limit,
                                help="One row per input (up to a million): .npz with an array 'X' (labels 'y' "
                                     "optional), a .csv or .parquet table (numeric columns are features; a 'label' "
                                     "column is read as labels) or a .npy (n, d) array.")
    s_file = right.file_uploader("Student features", type=EMBEDDING_TYPES, key="diag-student-file",
                                 max_upload_size=limit,
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
                              disabled=labels_from != "file", max_upload_size=limit,
                              help="A 1-D .npy, an .npz with 'y', or a .csv with a 'label' column.")
    if t_file is None or s_file is None:
        st.info(f"Upload the teacher's and the student's features of the same inputs (ten rows to a million, "
                f"{limit:,} MB per file; larger files: `perco-viz diagnose --teacher T --student S` reads them "
                "from disk). Example: `np.savez('teacher.npz', X=teacher_features, y=labels)` and "
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
            pair = session_memo(key, lambda: sessions.run_limited(read, t_bytes, s_bytes, what="the files"))
        return Sourced(key, pair, scope=f"files:{key[1]}")
    except USER_ERRORS as exc:
        st.error(f"These files cannot be diagnosed: {exc}")
        return None


# --------------------------------------------------------------------------- source 2: models
TEACHER_KIND_LABELS = {"builtin": "built-in for this dataset (trained once, cached)",
                       "safetensors": "weights of the built-in architecture (.safetensors)",
                       "module": "your own class (module:Class)",
                       "huggingface": "a Hugging Face folder",
                       "torchscript": "TorchScript file"}
STUDENT_KIND_LABELS = {"file": "a checkpoint of a built-in student (or TorchScript, where allowed)",
                       "module": "your own class (module:Class)",
                       "huggingface": "a Hugging Face folder"}
POOLING_LABELS = {"flatten": "flatten (every value)", "cls": "first token (CLS)", "mean": "mean over tokens"}
MODULE_CAPTION = ("Your own network: its class as `package.module:Class` (an installed package) and its "
                  "state_dict as .safetensors (`perco_viz.models.save_module_safetensors(model, path, "
                  "init_kwargs={...})`). Importing a package runs its code: this server imports only the packages "
                  "its operator allows (`PERCO_VIZ_TRUSTED_MODULES=mypkg` when starting the app).")
HF_CAPTION = ("A folder written by `model.save_pretrained(folder)` with safetensors weights, read offline; the "
              "model is called with the input batch as its first argument (pixel_values for a vision model).")


def _own_model_inputs(where, who: str, kind: str, paths_on: bool) -> tuple[str | None, str | None, list[str]]:
    """The class (``module``) or folder (``huggingface``) of a teacher/student; returns (class, folder, what is missing)."""
    missing: list[str] = []
    spec = folder = None
    if kind == "module":
        spec = where.text_input(f"{who.capitalize()} class", key=f"diag-{who}-class", placeholder="mypkg.nets:ResNet8",
                                help="package.module:Class of an installed package the operator allows.").strip() or None
        if spec is None:
            missing.append(f"the {who}'s class")
    if kind == "huggingface":
        folder = where.text_input(f"{who.capitalize()} folder", key=f"diag-{who}-folder",
                                  placeholder="/models/my-vit", disabled=not paths_on,
                                  help="The folder save_pretrained wrote (config.json, model.safetensors).").strip()
        folder = folder or None
        if not paths_on:
            missing.append("folders on the server (off here)")
        elif folder is None:
            missing.append(f"the {who}'s folder")
    return spec, folder, missing


def _folder_stamp(folder: str) -> tuple:
    """A model folder's identity in a cache key: its path and its files' sizes and change times."""
    from pathlib import Path

    files = sorted(p for p in Path(folder).iterdir() if p.is_file())[:64]
    return (folder, *((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))


def pair_from_model_files() -> Sourced | None:
    """A teacher and a student (built-in, checkpoints, your own classes, Hugging Face folders) run on a
    dataset's test split → :class:`Sourced`, or None."""
    from perco_viz.config import DataConfig, StudentConfig, TeacherConfig
    from perco_viz.data import DATASET_NAMES, SYNTHETIC
    from perco_viz.models import POOLINGS

    builtin = [name for name in DATASET_NAMES if name == "digits" or name in SYNTHETIC]  # no download, no file
    c1, c2, c3 = st.columns(3)
    dataset = c1.selectbox("Dataset", builtin, key="diag-dataset",
                           help="The features are computed on its held-out test split.")
    trusted = common.trusts_torchscript()
    paths_on = common.server_paths_on()
    teacher_kind = c2.selectbox("Teacher", ["builtin", "safetensors", "module", "huggingface",
                                            *(["torchscript"] if trusted else [])],
                                key="diag-teacher-kind", format_func=TEACHER_KIND_LABELS.__getitem__)
    t_spec, t_folder, missing = _own_model_inputs(c2, "teacher", teacher_kind, paths_on)
    t_upload = None
    if teacher_kind in ("safetensors", "torchscript", "module"):
        t_upload = c2.file_uploader("Teacher file", type=["safetensors"] if teacher_kind == "module"
                                    else ["safetensors", "pt", "pth"], key="diag-teacher-model",
                                    max_upload_size=common.upload_mb())
        if t_upload is None:
            missing.append("the teacher's file")
    student_kind = c3.selectbox("Student", list(STUDENT_KIND_LABELS), key="diag-student-kind",
                                format_func=STUDENT_KIND_LABELS.__getitem__)
    s_spec, s_folder, s_missing = _own_model_inputs(c3, "student", student_kind, paths_on)
    missing += s_missing
    s_upload = None
    if student_kind in ("file", "module"):
        s_upload = c3.file_uploader("Student checkpoint", type=["safetensors"] if student_kind == "module"
                                    else ["safetensors", "pt", "pth"], key="diag-student-model",
                                    max_upload_size=common.upload_mb(),
                                    help="A student of a built-in architecture (e.g. a run's student.safetensors)"
                                         + (" or a TorchScript file whose output are the features." if trusted
                                            else ".") if student_kind == "file" else
                                    "The state_dict of your class, saved by save_module_safetensors.")
        if s_upload is None:
            missing.append("the student's checkpoint")
    if trusted:
        st.warning(common.TORCHSCRIPT_WARNING, icon=":material/warning:")
    else:
        st.caption(common.TORCHSCRIPT_OFF.replace("on Diagnose", "with the Embedding files source"))
    own = {teacher_kind, student_kind} & {"module", "huggingface"}
    if "module" in own:
        st.caption(MODULE_CAPTION)
    if "huggingface" in own:
        st.caption(HF_CAPTION + ("" if paths_on else " " + common.SERVER_PATHS_OFF))
    t_layer = s_layer = None
    t_pool = s_pool = "flatten"
    if own:
        with st.expander("Feature layers and pooling of your own models", expanded=True):
            l1, l2, l3, l4 = st.columns(4)
            t_layer = l1.text_input("Teacher layer", key="diag-teacher-layer", placeholder="default",
                                    help="Module name whose output are the teacher's features (e.g. layers.1); "
                                         "empty: an embed layer, the input of a classifier head, or the output."
                                    ).strip() or None
            t_pool = l2.selectbox("Teacher pooling", POOLINGS, key="diag-teacher-pooling",
                                  format_func=POOLING_LABELS.get,
                                  help="How a (inputs, tokens, hidden) output becomes one row: the first token or "
                                       "the mean; flatten keeps every value.")
            s_layer = l3.text_input("Student layer", key="diag-student-layer", placeholder="default",
                                    disabled=student_kind == "file",
                                    help="The same for the student (your own class or Hugging Face model)."
                                    ).strip() or None
            s_pool = l4.selectbox("Student pooling", POOLINGS, key="diag-student-pooling",
                                  format_func=POOLING_LABELS.get, disabled=student_kind == "file",
                                  help="The same for the student.")
    d1, d2, d3, _ = st.columns([1, 1, 1, 3])
    dim = d1.number_input("Student dim", 1, 4096, 8, key="diag-student-dim",
                          help="Width of the student's features (needed to rebuild a built-in student).")
    hidden = d2.number_input("Student hidden", 1, 8192, 256, key="diag-student-hidden")
    n_samples = d3.number_input("Synthetic size", 100, 20000, 2000, step=100, key="diag-n-samples",
                                help="Number of points of a synthetic dataset (ignored for digits).")
    clicked = st.button("Compute the features", type="primary", key="diag-models-go", disabled=bool(missing))
    if missing:
        st.info(f"To continue, give {', '.join(missing)}.")
    state_key = "diag-models-pair"
    inputs = (dataset, teacher_kind, getattr(t_upload, "file_id", None), student_kind,
              getattr(s_upload, "file_id", None), t_spec, t_folder, s_spec, s_folder, t_layer, t_pool, s_layer,
              s_pool, int(dim), int(hidden), int(n_samples))
    if st.session_state.get(state_key, (None, None, None))[2] != inputs:
        st.session_state.pop(state_key, None)  # the choices changed: the features must be computed again
    if clicked:
        try:
            with st.spinner("Loading the models and computing the features of the test split…"):
                from perco_viz import paths
                from perco_viz.data import load_dataset

                ds = load_dataset(DataConfig(name=dataset, n_samples=int(n_samples)))
                t_path = str(common.save_session_upload(t_upload.getvalue(), t_upload.name)) if t_upload else None
                s_path = str(common.save_session_upload(s_upload.getvalue(), s_upload.name)) if s_upload else None
                if t_folder is not None:
                    t_path = str(common.check_path(t_folder, "the teacher's folder"))
                if s_folder is not None:
                    s_path = str(common.check_path(s_folder, "the student's folder"))
                t_cfg = TeacherConfig(kind=teacher_kind, path=t_path, arch=t_spec, layer=t_layer, pooling=t_pool)
                s_cfg = StudentConfig(arch=student_kind, path=s_path, dim=int(dim), hidden=int(hidden),
                                      model_class=s_spec, layer=s_layer, pooling=s_pool)
                s_name = s_upload.name if s_upload is not None else s_folder
                pair = diagnose.pair_from_model_configs(
                    ds, t_cfg, s_cfg, trust_code=trusted, cache_dir=paths.default_cache_dir(),
                    source=f"{dataset} test split · teacher {teacher_kind} · student {s_name}")
                key = ("models", dataset, int(n_samples), teacher_kind,
                       None if t_upload is None else _digest(t_upload.getvalue()), student_kind,
                       None if s_upload is None else _digest(s_upload.getvalue()), t_spec, _folder_stamp(t_path)
                       if t_folder else None, s_spec, _folder_stamp(s_path) if s_folder else None, t_layer, t_pool,
                       s_layer, s_pool, int(dim), int(hidden))
                sourced = Sourced(key, pair, scope=f"models:{dataset}:{int(n_samples)}", dataset=ds,
                                  test_indices=np.arange(pair.n))
                st.session_state[state_key] = (sourced, None, inputs)
        except USER_ERRORS as exc:
            st.error(f"The models could not be run on {dataset}: {exc}")
            st.session_state.pop(state_key, None)
            return None
    stored = st.session_state.get(state_key)
    return None if stored is None else stored[0]


# --------------------------------------------------------------------------- source 3: a run
def pair_from_app_run() -> Sourced | None:
    """A run's teacher probe features and one student snapshot → :class:`Sourced`, or None."""
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
    view_state.seed("diag-snapshot", "snap", int, valid=lambda i: i in indices)
    snapshot = c2.selectbox("Snapshot", indices[::-1], key="diag-snapshot",
                            format_func=lambda i: "latest" if i == indices[-1] else f"#{i}",
                            help="0 is the untrained student; the latest is where the run stands.")
    view_state.publish("snap", snapshot)
    key = ("run", *run.signature(), snapshot)
    try:
        pair = session_memo(key, lambda: diagnose.pair_from_run(run, snapshot))
        probe_indices = common.load_teacher_probe(str(run.path)).get("indices")
    except Exception as exc:  # noqa: BLE001 — a run being written, or an unreadable one
        common.show_error(exc, "This run cannot be read yet")
        return None
    test_indices = None if probe_indices is None else np.asarray(probe_indices, dtype=np.int64)
    if pair.class_names is None:  # the dataset's names, or those an external run's writer was given
        pair.class_names = common.class_names_of(run, pair.labels)
    return Sourced(key, pair, scope=f"run:{run.path}", dataset=common.dataset_of(run), test_indices=test_indices,
                   run=run, snapshot=int(snapshot))


# --------------------------------------------------------------------------- metadata
METADATA_TYPES = ["csv"]


def metadata_upload(pair: diagnose.EmbeddingPair) -> diagnose.Metadata | None:
    """An optional CSV of metadata columns for the pair's rows (colour and search by them);
    None when there is none or it does not fit (then a message says what to change)."""
    with st.expander("Metadata columns (optional): colour and search the points by them"):
        upload = st.file_uploader(
            "Metadata (CSV)", type=METADATA_TYPES, key="diag-meta-file",
            max_upload_size=min(common.upload_mb(), diagnose.METADATA_MAX_MB),
            help=f"A CSV with a header line. With a '{diagnose.ROW_COLUMN}' column, each line names the row it "
                 f"describes (0 to {pair.n - 1:,}, as in the table of inputs; rows left out stay blank); without "
                 f"one, its {pair.n:,} lines are the rows in order. Every other column (site, date, "
                 "annotator…) can colour the plots and be searched (e.g. site:paris).")
        if upload is None:
            st.caption(f"Example: `row,site,annotator` then one line per row (0 to {pair.n - 1:,}).")
            return None
        data = upload.getvalue()
        key = ("meta", _digest(data), upload.name, pair.n)
        try:
            read = functools.partial(diagnose.load_metadata, name=upload.name, n_rows=pair.n)
            with st.spinner("Reading the metadata…"):
                meta = session_memo(key, lambda: sessions.run_limited(read, data, what="the metadata file"))
        except USER_ERRORS as exc:
            st.error(f"This metadata cannot be used: {exc}")
            return None
        st.caption(meta.note + ".")
        return meta


# --------------------------------------------------------------------------- the panel
@st.cache_data(max_entries=4, ttl=3600, show_spinner=False)  # a 10,000-row neighbourhood sample holds 0.8 GB matrices
def _shared_panel(key: tuple, _pair: diagnose.EmbeddingPair, max_points: int,
                  neighbour_points: int | None = None) -> tuple[diagnose.Panel, dict]:
    """The panel and its figures, once per (content key, sample sizes) for all sessions. ``key``
    names the pair's content (digests, or the run's signature and snapshot): the pair itself is
    not hashed."""
    panel = diagnose.compute_panel(_pair, max_points=max_points, neighbour_points=neighbour_points)
    return panel, diagnose_figures.panel_figures(panel)


def compute_panel(key: tuple, pair: diagnose.EmbeddingPair, max_points: int,
                  neighbour_points: int | None = None) -> tuple[diagnose.Panel, dict]:
    """The panel and its figures (:func:`perco_viz.analysis.diagnose.compute_panel`, the same
    numbers as ``perco-viz diagnose``): computed once per (pair content, sample sizes) for all sessions."""
    how = (f"estimating PC on all {pair.n:,} inputs from random triplets" if pair.n > diagnose.EXACT_MAX_ROWS
           else f"exact PC and c_i of all {pair.n:,} inputs")
    with st.spinner(f"Measuring: {how}, neighbours and probes on a sample, the pictures…"):
        return _shared_panel(key, pair, max_points, neighbour_points)


def show_cards(panel: diagnose.Panel) -> None:
    """The metric panel as cards that wrap to the next line (none cut at 1024 px), each with a
    one-sentence help."""
    keys = [k for k in diagnose.CARD_ORDER if k in panel.report]
    row = st.container(horizontal=True, gap="small")
    for key in keys:
        info = diagnose.METRIC_INFO[key]
        scope = panel.scopes.get(key, "")
        row.metric(info.label, diagnose.value_text(panel, key), help=f"{info.help} Computed {scope}.", border=True,
                   width="content")
    if panel.estimated:
        st.caption(f"PC: {panel.pc.text()} — the ± is the half-width of its 95% confidence interval. "
                   "Hover a card's ? for the rows it describes.")
    if panel.labels is None:
        st.caption("No labels: the k-NN and linear-probe accuracies need them.")
    with st.expander("Every number and the rows it describes"):
        st.dataframe(diagnose.panel_table(panel).drop(columns=["what it measures"]), hide_index=True,
                     width="stretch", key="diag-scopes")


def color_choice(panel: diagnose.Panel, meta: diagnose.Metadata | None):
    """The colour-by box of the embedding plots: class, c_i or a metadata column (in the URL as
    ``color=``); returns the Coloring of the panel's points, or None for the default (class)."""
    from perco_viz.analysis import embeddings as ev

    options = ev.color_options(panel.labels is not None, meta.columns if meta is not None else [])
    keys = list(options)
    view_state.seed("diag-color", "color", valid=lambda k: k in options)
    if st.session_state.get("diag-color") not in options:
        st.session_state["diag-color"] = keys[0]
    choice = st.selectbox("Colour the points by", keys, key="diag-color", format_func=options.__getitem__,
                          help="Class, per-sample coherence c_i, or a column of your metadata (a column of "
                               "numbers with many values gets a colour bar, others one colour per value).")
    view_state.publish("color", choice)
    if choice == keys[0]:
        return None  # the panel's own figure: by class (string labels too), else by c_i
    table = None if meta is None else meta.table.iloc[panel.indices].reset_index(drop=True)
    return ev.coloring(choice, labels=None, coherence=panel.coherence, meta=table)


def show_figures(panel: diagnose.Panel, figs: dict, key: str, *, coloring=None, highlight=None) -> None:
    """Every figure of the panel with its caption (and download buttons unless presenting)."""
    captions = diagnose_figures.panel_captions(panel)

    def one(heading: str, slot, fig=None, **kwargs) -> None:
        with slot:
            common.show_figure(fig if fig is not None else figs[heading], key=f"{key}-{heading}",
                               name=heading.lower().replace(" ", "-"), caption=captions[heading], **kwargs)

    emb = None
    if coloring is not None or highlight is not None:
        emb = diagnose_figures.embeddings_figure(panel, coloring, highlight=highlight)
    one("Embeddings", st.container(), emb)
    left, right = st.columns(2, gap="large")
    one("Per-sample coherence", left)
    one("Shepard diagram", right)
    one("Rank agreement", st.container(), width=HEATMAP_WIDTH)  # square: no wide empty band on a wide screen


def points_table(panel: diagnose.Panel, sourced: Sourced, meta: diagnose.Metadata | None) -> pd.DataFrame:
    """The per-input table (row, test index, class, c_i, metadata) with this session's tags."""
    table = diagnose.sample_table(panel, None if meta is None else meta.table, test_indices=sourced.test_indices)
    return explore.with_tags(table, sourced.scope, id_column=diagnose.ROW_COLUMN)


def explore_points(panel: diagnose.Panel, sourced: Sourced, table: pd.DataFrame) -> np.ndarray | None:
    """Search, sort and tag every measured input by c_i; returns the row ids to ring in the
    embedding plots (the selected rows, else the search's matches), or None."""
    mask = explore.search(table, "diag-search", id_column=diagnose.ROW_COLUMN, label="Search the inputs",
                          placeholder="e.g. c_i<0.7  class=3  #12  tags=suspect  site:paris")
    shown = table.loc[mask].sort_values("c_i", kind="stable").reset_index(drop=True)
    config = {
        diagnose.ROW_COLUMN: st.column_config.NumberColumn(
            "row", format="%d", help="Row of the teacher/student arrays (for a run: its probe input)."),
        "c_i": st.column_config.ProgressColumn("c_i", min_value=0.0, max_value=1.0, format="%.3f",
                                               help="Per-sample coherence: 1 = perceived like the teacher."),
        "c_i ±": st.column_config.NumberColumn("c_i ±", format="%.3f",
                                               help="Half-width of the 95% confidence interval of this c_i, "
                                                    "estimated from random pairs of all the rows."),
    }
    if "test index" in shown.columns:
        config["test index"] = st.column_config.NumberColumn("test index", format="%d",
                                                             help="Its index in the dataset's test split.")
    event = st.dataframe(shown, key="diag-table", hide_index=True, width="stretch", height=320,
                         column_config=config, on_select="rerun", selection_mode="multi-row")
    picked = list(getattr(getattr(event, "selection", None), "rows", None) or [])
    selected = shown[diagnose.ROW_COLUMN].to_numpy()[picked] if picked else np.array([], dtype=np.int64)
    searched = bool(st.session_state.get("diag-search"))
    st.caption(("Sorted by c_i, lowest first (click a header to sort by another column). " if not picked else "")
               + ("Select rows (left edge) to tag them; without a selection the tag buttons act on every match of "
                  "the search." if not common.presenting() else ""))
    chosen = selected if len(selected) else (shown[diagnose.ROW_COLUMN].to_numpy() if searched else selected)
    if not common.presenting():
        explore.tag_panel(table, sourced.scope, "diag-tags", id_column=diagnose.ROW_COLUMN, chosen=chosen,
                          file_name="diagnose-tagged-inputs.csv")
    if len(selected):
        return selected
    return shown[diagnose.ROW_COLUMN].to_numpy() if searched and len(shown) < len(table) else None


def worst_inputs(panel: diagnose.Panel, sourced: Sourced, k: int = 10) -> None:
    """The inputs whose perception differs most from the teacher's (lowest c_i): a table, their
    thumbnails (image inputs of a run or a dataset) and, for a run, a link to Rank agreement
    with one of them as the anchor."""
    st.markdown("**Inputs perceived worst**")
    rows = diagnose.worst_rows(panel, k)
    pos = np.searchsorted(panel.indices, rows)  # panel.indices is sorted: positions in the panel
    c = panel.coherence[pos]
    table = {"row": rows, "c_i": c}
    if panel.labels is not None:
        table["class"] = diagnose.sample_table(panel)["class"].to_numpy()[pos]
    left, right = st.columns([2, 3], gap="large")
    left.dataframe(table, hide_index=True, width="stretch",
                   column_config={"row": st.column_config.NumberColumn("row", format="%d",
                                                                       help="Row of the teacher/student arrays."),
                                  "c_i": st.column_config.ProgressColumn("c_i", min_value=0.0, max_value=1.0,
                                                                         format="%.3f")})
    with right:
        if sourced.test_indices is not None:
            common.show_thumbnails(sourced.dataset, sourced.test_indices[rows],
                                   [f"#{r} · {ci:.2f}" for r, ci in zip(rows, c)], size=64)
        if sourced.run is not None:
            anchor_link(sourced, rows, c)
    st.caption(f"The {len(rows)} inputs with the lowest per-sample coherence c_i: from their point of view the "
               "student orders the other inputs least like the teacher. Look at them first (mislabelled, "
               "ambiguous or rare inputs are typical).")


def anchor_link(sourced: Sourced, rows: np.ndarray, coherence: np.ndarray) -> None:
    """A link to Rank agreement with a worst input as the anchor (its probe row in the run:
    ``rows`` are rows of the pair, never positions in the measured subsample)."""
    options = [int(r) for r in rows]
    c_of = dict(zip(options, coherence))
    if st.session_state.get("diag-anchor") not in options:
        st.session_state["diag-anchor"] = options[0]
    anchor = st.selectbox("See one in Rank agreement", options, key="diag-anchor",
                          format_func=lambda r: f"#{r} · c_i {c_of[r]:.3f}",
                          help="Opens Rank agreement on this run and snapshot with this input as the anchor: "
                               "its neighbours by the teacher and by the student.")
    common.link(st, common.RANK_AGREEMENT_PAGE, label=f"Open #{anchor} as the anchor in Rank agreement",
                icon=":material/grid_view:", query_params=common.anchor_params(anchor, sourced.snapshot,
                                                                              sourced.run.path))


def show_downloads(panel: diagnose.Panel, figs: dict, table: pd.DataFrame, key: str) -> None:
    """The HTML report and the per-input table as CSV, made only when clicked; none when presenting."""
    if common.presenting():
        return
    row = st.container(horizontal=True, gap="small")
    row.download_button("Download report (HTML)", lambda: diagnose_figures.html_report(panel, figs),
                        file_name="perco-diagnosis.html", mime="text/html", type="primary", key=f"{key}-report",
                        icon=":material/download:", on_click="ignore",
                        help="One self-contained file: the metric table, what each metric means and every figure, "
                             "interactive; it opens offline.")
    row.download_button("Per-input c_i (CSV)", lambda: table.to_csv(index=False), file_name="per-sample-coherence.csv",
                        mime="text/csv", key=f"{key}-csv", icon=":material/download:", on_click="ignore",
                        help="Every measured input by its row in your files: c_i, class, your metadata and tags.")
