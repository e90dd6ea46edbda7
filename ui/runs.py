"""The *Runs* page's widgets: every run this session can see as one sortable, searchable table,
and for the run picked: its title, tags and note (``RunDir.write_meta``), links that open it on
the other pages, and delete (``RunDir.delete``, only this session's own runs, never one being
trained), and its results as downloads (metrics as CSV or Parquet, the latest snapshot for
TensorBoard's Embedding Projector: :mod:`perco_viz.export`). The rows are
:func:`perco_viz.analysis.compare.run_row`; :mod:`pages.9_Runs` lays them out."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from perco_viz import export
from perco_viz.analysis import compare
from perco_viz.runs import MAX_NOTE_CHARS, MAX_TAGS, MAX_TITLE_CHARS, RunDir, RunMeta, RunStoreError
from ui import common, explore, external, view_state

TABLE_KEY = "runs-table"
SEARCH_KEY = "runs-search"
PICK_KEY = "runs-pick"
FORM_KEY = "runs-edit"
TITLE_KEY = "runs-title"
TAGS_KEY = "runs-tags"
NOTE_KEY = "runs-note"
SAVE_KEY = "runs-save"
CONFIRM_KEY = "runs-delete-confirm"
DELETE_KEY = "runs-delete"
_LOADED = "_runs_loaded"  # session_state: (run param, RunMeta) the edit widgets were last filled from
_TABLE_PICK = "_runs_table_pick"  # session_state: the run last picked by a click in the table
_FLASH = "_runs_flash"  # session_state: a message to show after the rerun that follows a change
LINKS = (("pages/2_Distill.py", "Watch on Distill", ":material/monitoring:"),
         ("pages/3_Embeddings.py", "Open on Embeddings", ":material/scatter_plot:"),
         ("pages/7_Compare.py", "Compare", ":material/balance:"))


@dataclass(frozen=True)
class Listed:
    """A run as the page lists it: its URL name (``yours/<folder>``), picker label, folder and owner."""

    param: str
    label: str
    path: Path
    whose: str  # "yours" or "shared"

    @property
    def run(self) -> RunDir:
        return RunDir(self.path)


def listed_runs() -> list[Listed]:
    """This session's runs, then the shared ones, newest first in each (``common.run_problems``)."""
    out = []
    for label, (path, _) in common.run_problems().items():
        param = common.run_param(path)
        out.append(Listed(param, label, Path(path), param.split("/", 1)[0]))
    return out


@st.cache_data(max_entries=1024, show_spinner=False)
def _row(path: str, stamp: tuple) -> dict:
    """:func:`compare.run_row`, once per version of the run's files (``stamp``: ``RunDir.stamp``)."""
    return compare.run_row(RunDir(path))


def run_table(entries: list[Listed]) -> pd.DataFrame:
    """One row per run: ``#`` (1, 2, ... in list order: what a search's ``#2`` names), title, where, state,
    loss, student, epochs, PC, k-NN acc, why (a failed or stale run's error, a damaged one's problem; ""
    for a healthy run), created, last active, tags, note."""
    rows = []
    for i, entry in enumerate(entries, start=1):
        run = entry.run
        row = dict(_row(str(entry.path), run.stamp()))
        status = run.status()
        state = "damaged" if run.problem() else status.get("state")  # live: a lock is no file
        why = external.why(run, status)  # read now: a stale run's status file does not say so
        rows.append({"#": i, "title": row["title"], "where": entry.whose, "state": state,
                     "loss": row["loss"], "student": row["student"], "epochs": row["epochs"], "PC": row["pc"],
                     "k-NN acc": row["knn_acc"], "why": why or row["problem"] or "", "created": row["created"], "last active": row["last_active"], "tags": row["tags"],
                     "note": row["note"]})
    return pd.DataFrame(rows, columns=["#", "title", "where", "state", "loss", "student", "epochs", "PC",
                                       "k-NN acc", "why", "created", "last active", "tags", "note"])


def show_table(entries: list[Listed]) -> list[Listed]:
    """The searchable, sortable table of runs; returns the runs the search keeps (the picker's
    choices), with a click on a row picking that run."""
    with st.spinner("Reading the runs…"):
        table = run_table(entries)
    mask = explore.search(table, SEARCH_KEY, id_column="#", label="Search runs",
                          placeholder="e.g. coherence  tags=baseline  pc>0.9  where=yours")
    shown = table[mask]
    kept = [entry for entry, keep in zip(entries, mask, strict=True) if keep]
    column = st.column_config
    # keyed by the rows shown: a search that changes them starts a fresh selection (a row number
    # of the old rows would pick another run)
    key = f"{TABLE_KEY}-{hashlib.sha1(' '.join(e.param for e in kept).encode()).hexdigest()[:12]}"
    event = st.dataframe(shown, key=key, hide_index=True, width="stretch", on_select="rerun",
                         selection_mode="single-row", column_order=[c for c in shown.columns if c != "#"],
                         column_config={
                             "title": column.TextColumn("title", width="medium",
                                                        help="The run's title, else its folder name"),
                             "why": column.TextColumn("why", width="medium",
                                                      help="Why its training failed or went stale, or why it "
                                                           "cannot be read"),
                             "where": column.TextColumn("where", width="small",
                                                        help="yours: this session's; shared: the server's run folder"),
                             "epochs": column.NumberColumn("epochs", width="small", help="Epochs asked for"),
                             "PC": column.NumberColumn("PC", format="%.3f", help="Last snapshot, probe set"),
                             "k-NN acc": column.NumberColumn("k-NN acc", format="%.3f",
                                                             help="Last snapshot, probe set"),
                             "created": column.DatetimeColumn("created", format="YYYY-MM-DD HH:mm",
                                                              help="When its training started (UTC)"),
                             "last active": column.DatetimeColumn("last active", format="YYYY-MM-DD HH:mm",
                                                                  help="Its training's last sign of life (UTC)"),
                             "note": column.TextColumn("note", help="The start of the run's note")})
    st.caption("Click a column's header to sort; click a row to pick that run below.")
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    if rows and rows[0] < len(kept):
        clicked = kept[rows[0]].param
        if st.session_state.get(_TABLE_PICK) != clicked:  # a new click: it picks the run
            st.session_state[_TABLE_PICK] = clicked
            st.session_state[PICK_KEY] = clicked
    return kept


def pick(kept: list[Listed], entries: list[Listed]) -> Listed | None:
    """The run to manage (a select box of the runs the search keeps; in the URL as ``run=``)."""
    by_param = {entry.param: entry for entry in entries}
    view_state.seed(PICK_KEY, "run", valid=lambda p: p in by_param)
    if not kept:
        st.info("No run matches the search.")
        return None
    params = [entry.param for entry in kept]
    if st.session_state.get(PICK_KEY) not in params:
        st.session_state[PICK_KEY] = params[0]
    choice = st.selectbox("Run", params, key=PICK_KEY, format_func=lambda p: by_param[p].label,
                          help="The run to rename, tag, note, open or delete.")
    view_state.publish("run", choice)
    if st.session_state.get(common.LAST_RUN) != choice:  # the sidebar's links carry it to the next page
        st.session_state[common.LAST_RUN] = choice
        common.navigation()
    return by_param[choice]


def flash() -> None:
    """The message of the change made just before this rerun (saved, deleted), once."""
    message = st.session_state.pop(_FLASH, None)
    if message:
        st.success(message, icon=":material/check_circle:")


def links(entry: Listed) -> None:
    """Links that open the run on Distill, Embeddings and Compare (``run=`` carried)."""
    params = view_state.page_link_params(run=entry.param)
    row = st.container(horizontal=True, gap="small")
    for script, label, icon in LINKS:
        if not common.link(row, script, label=label, icon=icon, query_params=params):  # no app around (tests)
            row.caption(label)


def _fill(entry: Listed, meta: RunMeta) -> None:
    """Put the run's saved words in the edit widgets when another run is picked or they changed."""
    if st.session_state.get(_LOADED) != (entry.param, meta):
        st.session_state[_LOADED] = (entry.param, meta)
        st.session_state[TITLE_KEY] = meta.title
        st.session_state[TAGS_KEY] = list(meta.tags)
        st.session_state[NOTE_KEY] = meta.note
        st.session_state[CONFIRM_KEY] = False


def editor(entry: Listed, all_tags: list[str]) -> None:
    """Title, tags and note of one of this session's runs, saved with one button."""
    run = entry.run
    meta = run.meta()
    if meta.problem:
        st.warning(f"Its title, tags and note cannot be read ({meta.problem}); saving replaces them.",
                   icon=":material/warning:")
    _fill(entry, meta)
    with st.form(FORM_KEY, border=True):
        st.text_input("Title", key=TITLE_KEY, max_chars=MAX_TITLE_CHARS, placeholder=run.name,
                      help="Shown instead of the folder name wherever runs are picked. Empty: the folder name.")
        options = sorted(set(all_tags) | set(st.session_state.get(TAGS_KEY) or []))
        st.multiselect("Tags", options, key=TAGS_KEY, accept_new_options=True, max_selections=MAX_TAGS,
                       placeholder="Pick or type a tag, then Enter",
                       help=f"Words to find runs by (search `tags=baseline`); at most {MAX_TAGS}.")
        st.text_area("Note", key=NOTE_KEY, max_chars=MAX_NOTE_CHARS, height=120,
                     placeholder="What you tried, what you saw…")
        saved = st.form_submit_button("Save", key=SAVE_KEY, type="primary", icon=":material/save:")
    if saved:
        try:
            run.write_meta(title=st.session_state[TITLE_KEY], tags=st.session_state[TAGS_KEY] or [],
                           note=st.session_state[NOTE_KEY])
        except RunStoreError as exc:
            common.show_error(exc, "Not saved")
            return
        st.session_state[_FLASH] = "Saved."
        st.rerun()


def deleter(entry: Listed) -> None:
    """Delete one of this session's runs, after a confirmation; refused while it is trained."""
    run = entry.run
    with st.expander("Delete this run", icon=":material/delete:"):
        if run.is_locked() or run.status().get("state") == "running":
            st.info("This run is being trained: stop it on Distill first, then delete it.", icon=":material/lock:")
            return
        title = run.meta().title or run.name
        sure = st.checkbox(f"Yes, delete **{title}** and all its files (this cannot be undone)", key=CONFIRM_KEY)
        if st.button("Delete run", key=DELETE_KEY, type="primary", disabled=not sure, icon=":material/delete:"):
            try:
                run.delete(root=common.session_root())
            except RunStoreError as exc:
                common.show_error(exc, "Not deleted")
                return
            st.session_state[_FLASH] = f"Deleted {title}."
            st.session_state.pop(common.LAST_RUN, None)
            view_state.publish("run", None)
            st.rerun()


def manage(entry: Listed, entries: list[Listed]) -> None:
    """The picked run: where it is, links to the other pages, and (yours) edit and delete."""
    run = entry.run
    state = run.status().get("state")
    st.caption(f"Folder **{run.name}** · {'this session' if entry.whose == 'yours' else 'shared run folder'} · "
               f"{state}")
    external.show_status(run)  # a failed or stale run's error; an external run's writer and config
    links(entry)
    if entry.whose != "yours":
        meta = run.meta()
        if meta.tags or meta.note:
            st.markdown(f"Tags: {', '.join(meta.tags) or '—'}")
            if meta.note:
                st.text(meta.note)
        st.info("This run is in the server's shared run folder: it is read-only here (no rename, tags, note or "
                "delete). Whoever runs the server can remove it there: delete its folder "
                f"**{run.name}** from the runs folder (`PERCO_VIZ_RUNS`).", icon=":material/lock:")
        return
    all_tags = sorted({tag for item in entries for tag in item.run.meta().tags})
    editor(entry, all_tags)
    deleter(entry)


# --------------------------------------------------------------------------- downloads
AUTO_NAMES = "auto"  # class names looked up from the run's built-in dataset (never a file a config names)
DOWNLOAD_CACHE_ENTRIES = 4  # files kept for the next click (server-wide)...
DOWNLOAD_CACHE_MAX_BYTES = 64 << 20  # ...each at most this big (a 100,000-point projector zip is ~300 MB)
_made: OrderedDict[tuple, bytes] = OrderedDict()
_made_lock = threading.Lock()


def _cached_file(key: tuple, make) -> bytes:
    """``make()``, kept for the same ``key`` (a run's version) while it is small and recent."""
    with _made_lock:
        if key in _made:
            _made.move_to_end(key)
            return _made[key]
    data = make()
    if len(data) <= DOWNLOAD_CACHE_MAX_BYTES:
        with _made_lock:
            _made[key] = data
            while len(_made) > DOWNLOAD_CACHE_ENTRIES:
                _made.popitem(last=False)
    return data


def metrics_download(path: str, signature: tuple, fmt: str) -> bytes:
    """The run's metrics as ``csv`` or ``parquet`` bytes (:func:`perco_viz.export.metrics_bytes`),
    made on the first click, then kept for that version of the run (``signature``: ``RunDir.signature``)."""
    return _cached_file(("metrics", path, signature, fmt), lambda: export.metrics_bytes(RunDir(path), fmt))


def projector_download(path: str, signature: tuple, index: int, stamp: float,
                       class_names: tuple[str, ...] | str | None) -> bytes:
    """Snapshot ``index`` of the run for TensorBoard's Embedding Projector, zipped
    (:func:`perco_viz.export.projector_zip`), kept for that snapshot file (``stamp``:
    ``RunDir.snapshot_stamp``). ``class_names``: the names, None (integers) or :data:`AUTO_NAMES`
    (the run's dataset's names when it is a built-in one that loads here without a download)."""
    def make() -> bytes:
        run = RunDir(path)
        names = export.class_names_for(run, allow_paths=False) if class_names == AUTO_NAMES else class_names
        return export.projector_zip(run, snapshot=index, class_names=names)

    return _cached_file(("projector", path, signature, index, stamp, class_names), make)


def downloads(entry: Listed) -> None:
    """The picked run's results as files, each made when clicked: its metrics (CSV, Parquet) and
    its latest snapshot for TensorBoard's Embedding Projector (zip). None in presentation mode."""
    if common.presenting():
        return
    run = entry.run
    st.markdown("**Downloads**")
    problem = run.problem()
    if problem:
        st.caption(f"Nothing to download: {problem}")
        return
    path, signature = str(run.path), run.signature()
    try:
        indices = run.snapshot_indices()
    except RunStoreError as exc:
        indices, note = [], f" The projector file cannot be offered: {exc}"
    else:
        note = "" if indices else " The projector file needs a snapshot: this run has none yet."
    icon = ":material/download:"
    row = st.container(horizontal=True, gap="small")
    row.download_button("Metrics (CSV)", lambda: metrics_download(path, signature, "csv"),
                        file_name=f"{run.name}-metrics.csv", mime="text/csv", key="runs-dl-csv", on_click="ignore",
                        icon=icon, help="Every recorded line of the run (epoch, step, snapshot, loss, PC, k-NN "
                                        "accuracy, ...), one row each; empty cells where a value was not recorded.")
    row.download_button("Metrics (Parquet)", lambda: metrics_download(path, signature, "parquet"),
                        file_name=f"{run.name}-metrics.parquet", mime="application/octet-stream",
                        key="runs-dl-parquet", on_click="ignore", icon=icon,
                        help="The same table as Parquet (pandas.read_parquet).")
    if indices:
        index = indices[-1]
        stamp = run.snapshot_stamp(index)
        row.download_button("TensorBoard projector (zip)",
                            lambda: projector_download(path, signature, index, stamp, AUTO_NAMES),
                            file_name=f"{run.name}-projector-snapshot{index}.zip", mime="application/zip",
                            key="runs-dl-projector", on_click="ignore", icon=icon,
                            help="The latest snapshot's student and teacher features with each input's label "
                                 "and c_i, for TensorBoard's Embedding Projector.")
    st.caption("**Metrics**: every line the run recorded, as a table. **TensorBoard projector**: the latest "
               "snapshot; unzip it and run `tensorboard --logdir` on the folder, then open the *Projector* tab "
               "(switch between the student and the teacher, colour or search by label and c_i)." + note)
