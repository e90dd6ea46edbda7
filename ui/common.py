"""What every page shares: the session's identity, the run registry, run pickers, cached
loaders and download buttons. Pages lay out widgets; the work happens in ``perco_viz``."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

APP_TITLE = "perco_viz"
ICON = ":material/blur_on:"  # material icons come with the app: drawn offline
FAVICON = str(Path(__file__).resolve().parent.parent / "assets" / "favicon.png")  # a file: no CDN

# The app's pages, in order: (script, label, icon, what it answers). The sidebar and the home
# page's "Where to go" list are both drawn from it.
PAGES: list[tuple[str, str, str, str]] = [
    ("app.py", "Home", ":material/home:", "what perception coherence is; the demo in one click"),
    ("pages/1_Setup.py", "Setup", ":material/tune:", "choose data, teacher, student, loss"),
    ("pages/2_Distill.py", "Distill", ":material/monitoring:", "train and watch it live"),
    ("pages/3_Embeddings.py", "Embeddings", ":material/scatter_plot:", "teacher and student side by side"),
    ("pages/4_Rank_agreement.py", "Rank agreement", ":material/grid_view:", "where perception differs"),
    ("pages/5_Per_sample_coherence.py", "Per-sample coherence", ":material/my_location:",
     "which inputs go wrong"),
    ("pages/6_Diagnose.py", "Diagnose", ":material/stethoscope:", "any student, no training needed"),
    ("pages/7_Compare.py", "Compare", ":material/balance:", "coherence against the baselines"),
    ("pages/9_Runs.py", "Runs", ":material/folder_open:", "all your runs: rename, tag, note, delete"),
    ("pages/8_Teaching_view.py", "Teaching view", ":material/school:", "one mini-batch, step by step"),
]


# --------------------------------------------------------------------------- page & session
def page(title: str, caption: str | None = None) -> None:
    """Page config, the sidebar's navigation, the title and the one-line purpose of the page."""
    st.set_page_config(page_title=f"{title} · {APP_TITLE}", page_icon=FAVICON, layout="wide")
    session_id()
    from ui import warmup

    warmup.start()  # once per server: a first visit to any page warms the others (in the background)
    with st.sidebar:
        st.markdown(f"### {ICON} {APP_TITLE}")
        st.session_state[_NAV_SLOT] = st.empty()
        navigation()
        st.caption("See knowledge transfer happen: a student learns to rank like its teacher.")
        presentation_toggle()
        from ui import workspace

        workspace.sidebar()
    st.html(LAYOUT_CSS + (PRESENTATION_CSS if presenting() else ""))
    st.title(title)
    if caption:
        st.caption(caption)
    _housekeeping()


# Room for the content on a laptop or projector (1024–1280 px wide): a narrower sidebar and less
# padding than Streamlit's wide layout gives (300 px and 5rem a side: a 560 px column at 1024).
LAYOUT_CSS = """<style>
[data-testid="stMainBlockContainer"] { padding-top: 3rem; }
@media (max-width: 1400px) {
  [data-testid="stMainBlockContainer"] { padding-left: 1.5rem; padding-right: 1.5rem; }
  [data-testid="stSidebar"][data-collapsed="false"] { width: 232px !important; min-width: 232px !important; }
}
</style>"""
PRESENT_KEY = "present"  # the sidebar toggle's key
# Presentation mode: every rem-sized text of the page 25 % larger (Streamlit sizes its text in rem).
PRESENTATION_CSS = """<style>
html { font-size: 20px; } [data-testid='stMetricValue'] { font-size: 2.4rem; }
[data-testid="stSidebar"] { font-size: 16px; }
[data-testid="stSidebar"][data-collapsed="false"] { width: 288px !important; min-width: 288px !important; }
[data-testid="stSidebar"] p, [data-testid="stSidebar"] span { white-space: normal !important; }
</style>"""
_PRESENTING = "_presenting"  # session_state: the mode itself, kept across pages (widget state is per page)


def _keep_presenting() -> None:
    st.session_state[_PRESENTING] = bool(st.session_state.get(PRESENT_KEY))


def presentation_toggle() -> None:
    """The sidebar's "Presentation mode" switch (in the URL as ``present=1``)."""
    from ui import view_state

    view_state.seed(_PRESENTING, "present", view_state.parse_flag)
    st.session_state[PRESENT_KEY] = presenting()  # the same on every page
    st.toggle("Presentation mode", key=PRESENT_KEY, on_change=_keep_presenting,
              help="For a projector or a lecture: larger text and figures, fewer controls (no download "
                   "buttons). The link keeps it on.")
    view_state.publish("present", 1 if presenting() else None)


def presenting() -> bool:
    """True in presentation mode: pages show larger figures and fewer controls (no downloads)."""
    return bool(st.session_state.get(_PRESENTING, False))


_NAV_SLOT = "_nav_slot"  # session_state: the sidebar's slot of page links, redrawn when the run changes


def navigation() -> None:
    """The sidebar's page links (drawn again by :func:`run_picker` once a run is picked, so the
    links carry it to the next page)."""
    slot = st.session_state.get(_NAV_SLOT)
    if slot is None:
        return
    with slot.container():
        page_links([(script, label, icon) for script, label, icon, _ in PAGES])


RANK_AGREEMENT_PAGE = "pages/4_Rank_agreement.py"


def link(where, page: str, *, label: str, icon: str | None = None, query_params=None, help: str | None = None) -> bool:
    """``where.page_link(page, ...)`` (``where``: ``st`` or a container); False, with nothing drawn,
    when the app's pages are unknown (a page run on its own, as in tests, has no app around it)."""
    try:
        where.page_link(page, label=label, icon=icon, query_params=query_params, help=help)
    except StreamlitPageNotFoundError:
        return False
    return True


def anchor_params(anchor: int, snapshot: int, run_path=None) -> dict[str, str]:
    """Query parameters of a link to Rank agreement that opens ``anchor`` (a probe row) at
    ``snapshot`` of the run ``run_path`` (default: this view's run)."""
    from ui import view_state

    run = None if run_path is None else run_param(Path(run_path))
    return view_state.page_link_params(run=run, anchor=int(anchor), snap=int(snapshot))


def page_links(links: list[tuple[str, str, str]]) -> None:
    """``st.page_link`` for each ``(script, label, icon)``, carrying the session, the run last
    picked and presentation mode to the next page (``view_state.page_link_params``); none when the
    pages are unknown (a page run as its own entry point, as in tests, has no app around it)."""
    from ui import view_state

    carried = view_state.page_link_params(run=st.session_state.get(LAST_RUN))  # the same run on the next page
    for script, label, icon in links:
        if not link(st, script, label=label, icon=icon, query_params=carried):
            return


def session_id() -> str:
    """A random id for this browser session, kept in the URL so a reload finds its runs."""
    if "sid" not in st.session_state:
        sid = st.query_params.get("sid")
        if not (isinstance(sid, str) and re.fullmatch(r"[0-9a-f]{32}", sid)):
            sid = uuid.uuid4().hex
        st.session_state.sid = sid
    if st.query_params.get("sid") != st.session_state.sid:
        st.query_params["sid"] = st.session_state.sid
    return st.session_state.sid


@st.cache_resource(show_spinner=False)
def registry():
    """The server's one registry of background trainings (shared by all sessions)."""
    from perco_viz.live import RunRegistry

    return RunRegistry(max_concurrent=int(os.environ.get("PERCO_VIZ_MAX_TRAININGS", "4")))


def runs_root() -> Path:
    """Shared, operator-configured run directories (CLI runs land here): read by everyone."""
    return Path(os.environ.get("PERCO_VIZ_RUNS", "runs"))


def sessions_dir() -> Path:
    """The folder of every session's own folder (``perco_viz.sessions.SESSIONS_DIRNAME``)."""
    return runs_root() / "app-sessions"


def session_root() -> Path:
    """This session's own runs and uploads; other sessions never list or read them."""
    return sessions_dir() / session_id()


def session_space():
    """This session's folder with its quota (``perco_viz.sessions.SessionSpace``)."""
    from perco_viz.sessions import SessionSpace

    return SessionSpace(session_root(), how_to_free=(
        "delete your uploads (Setup → This session's files → Delete my uploads); a session's runs are deleted "
        "a while after the session ends"))


def server_paths_on() -> bool:
    """Whether the operator lets sessions type paths on the server (``PERCO_VIZ_DATA_ROOTS``)."""
    from perco_viz.sessions import data_roots

    return bool(data_roots())


def trusts_torchscript() -> bool:
    """Whether the operator started the server trusting TorchScript uploads (they can run code)."""
    from perco_viz.safe_io import server_trusts_torchscript

    return server_trusts_torchscript()


SERVER_PATHS_OFF = ("Paths on the server are off here: upload your files (or use a built-in dataset). The operator "
                    "can allow folders with `PERCO_VIZ_DATA_ROOTS=/data:/models` when starting the app.")
TORCHSCRIPT_OFF = ("TorchScript files are not accepted on this server: loading one can run code on it. Bring the "
                   "model's state_dict as .safetensors with its architecture name instead (or its features, on "
                   "Diagnose). The operator can allow TorchScript with `PERCO_VIZ_TRUST_TORCHSCRIPT=1`.")
TORCHSCRIPT_WARNING = ("Loading a TorchScript file runs the code inside it on this server: upload only files "
                       "whose origin you trust.")


def check_path(path: str, field: str):
    """The resolved ``path`` typed into ``field`` if this session may read it; else raises
    ``perco_viz.sessions.PathNotAllowed`` (see ``sessions.check_user_path``)."""
    return session_space().check_path(path, field=field)


def save_session_upload(data: bytes, name: str) -> Path:
    """Keep an upload in this session's own folder, within its quota (the one saver of every page).

    Raises:
        QuotaExceeded: the session's folder is full (the message says how to free it).
        InputFileError: the file is above the size limit.
        OSError: the disk refused it.
    """
    return session_space().save_upload(data, name)


def upload_mb() -> int:
    """The upload limit every uploader of the app must state (``st.file_uploader(...,
    max_upload_size=upload_mb())``): :func:`upload_limit_mb` of this server's two settings. A
    misconfigured ``PERCO_VIZ_MAX_FILE_MB`` is said on the page (Streamlit's limit holds then)."""
    from perco_viz.safe_io import InputFileError, max_file_bytes
    try:
        file_mb = max_file_bytes() // 2**20
    except InputFileError as exc:
        show_error(exc, "The upload size limit is misconfigured")
        file_mb = None
    return upload_limit_mb(file_mb, st.get_option("server.maxUploadSize"))


def upload_limit_mb(file_mb: int | None, server_mb: int | None) -> int:
    """The largest upload, in MB, that both the app (``PERCO_VIZ_MAX_FILE_MB``: ``file_mb``, None
    when misconfigured) and Streamlit's server (``server.maxUploadSize``) accept: what every
    uploader must say (``max_upload_size=``), not Streamlit's own figure.

    >>> upload_limit_mb(2048, 200), upload_limit_mb(64, 2048), upload_limit_mb(None, 2048)
    (200, 64, 2048)
    """
    limits = [int(v) for v in (file_mb, server_mb) if v is not None]
    return max(1, min(limits)) if limits else 200


_TOUCH_EVERY_S = 60.0


def _housekeeping() -> None:
    """Keep this session's folder marked as in use, and now and then delete abandoned ones —
    in a background thread, at most once a minute per session (pages never wait for it)."""
    import threading
    import time

    now = time.monotonic()
    if now - st.session_state.get("_housekeeping_at", -_TOUCH_EVERY_S) < _TOUCH_EVERY_S:
        return
    st.session_state["_housekeeping_at"] = now
    threading.Thread(target=_sweep_and_touch, args=(session_root(), sessions_dir()), daemon=True,
                     name="perco-viz-housekeeping").start()


def _sweep_and_touch(own: Path, folder: Path) -> None:
    from perco_viz import sessions

    sessions.SessionSpace(own).touch()
    try:
        sessions.maybe_sweep(folder, is_live=lambda f: any(r.alive for r in registry().runs_of(f.name)))
    except sessions.SessionError:  # a bad PERCO_VIZ_SESSION_TTL_HOURS: no sweep (said on Setup)
        pass


def demo_config():
    """The built-in demo: digits, the built-in CNN teacher, an 8-d MLP student, coherence."""
    from perco_viz.config import RunConfig

    return RunConfig(name="demo")


# --------------------------------------------------------------------------- runs
def start_run(config, *, resume_dir: str | None = None) -> bool:
    """Start (or resume) a background training for this session; False (with a message) if refused."""
    from perco_viz.live import RegistryFull
    from perco_viz.runs import RunStoreError
    from perco_viz.sessions import SessionError

    try:  # a config from an upload or a shared run may name files this session may not read
        space = session_space()
        space.check_config(config)
        space.check_room()
    except SessionError as exc:
        show_error(exc, "The run was not started")
        return False
    try:
        run = registry().start(session_id(), config, session_root(), config.name, resume_dir=resume_dir)
    except RegistryFull as exc:
        st.error(str(exc))
        return False
    except (RunStoreError, OSError) as exc:  # an unwritable runs folder, a full disk
        show_error(exc, "The run could not be started")
        return False
    st.session_state.selected_run = None  # follow the new run
    st.session_state.live_run_id = run.id
    return True


def live_run():
    """This session's latest background run, if any."""
    return registry().latest(session_id())


DAMAGED = "damaged"  # the mark of a run the pickers list but cannot open
LAST_RUN = "_last_run"  # session_state: the URL name of the run last picked on any page


def run_problems() -> dict[str, tuple[Path, str | None]]:
    """Label → (run directory, what is wrong with it or None): this session's runs first, then the
    shared ones, newest first in each. A label is the run's title (``RunDir.meta``), else its
    folder name — with the folder added when two titles are the same — then its tags in brackets,
    then whose it is: ``"baseline [good, d8]  ·  yours"``. A run whose config or status cannot be
    read (``RunDir.problem()``) is listed too, marked ``· damaged`` in its label, so one bad run
    never hides the others."""
    from perco_viz.runs import list_runs

    found = [(run, whose) for root, whose in ((session_root(), "yours"), (runs_root(), "shared"))
             for run in list_runs(root)]
    metas = [run.meta() for run, _ in found]
    titles = [meta.title or run.name for (run, _), meta in zip(found, metas, strict=True)]
    listed: dict[str, tuple[Path, str | None]] = {}
    for (run, whose), meta, title in zip(found, metas, titles, strict=True):
        problem = run.problem()
        shown = title if titles.count(title) == 1 or title == run.name else f"{title} ({run.name})"
        tags = f"  [{', '.join(meta.tags)}]" if meta.tags else ""
        label, n = f"{shown}{tags}  ·  {whose}" + (f"  ·  {DAMAGED}" if problem else ""), 2
        while label in listed:  # a title that reads like another run's "title (folder)": keep both
            label, n = f"{shown} #{n}{tags}  ·  {whose}" + (f"  ·  {DAMAGED}" if problem else ""), n + 1
        listed[label] = (run.path, problem)
    return listed


def run_param(path: Path) -> str:
    """A run's name in the URL: ``yours/<folder>`` for this session's runs, ``shared/<folder>`` else."""
    whose = "yours" if session_root() in Path(path).parents else "shared"
    return f"{whose}/{Path(path).name}"


def run_picker(key: str, *, label: str = "Run", help: str | None = None):
    """A select box of runs; defaults to the run in the URL (``run=``), else the session's live
    run, else the newest run it can read. The choice goes to the URL. Returns a RunDir, or None
    (with a message in its place) when there is none or the chosen run is damaged."""
    from perco_viz.runs import RunDir
    from ui import view_state

    listed = run_problems()
    if not listed:
        st.info("No runs yet. Start the demo on the home page, set one up on **Setup**, or point "
                "`PERCO_VIZ_RUNS` at a folder of runs made with `perco-viz distill` or by your own training "
                "(`perco_viz.open_run`, the Lightning and Hugging Face callbacks).")
        return None
    labels = list(listed)
    by_param = {run_param(path): lab for lab, (path, _) in listed.items()}
    view_state.seed(key, "run", by_param.get, valid=lambda lab: lab is not None)
    if st.session_state.get(key) not in listed:  # first visit, or the run is gone: the default
        default = next((lab for lab in labels if not listed[lab][1]), labels[0])  # the newest readable run
        live = live_run()
        if live is not None and live.run_dir is not None:
            default = next((lab for lab in labels if listed[lab][0] == live.run_dir.path), default)
        st.session_state[key] = default
    choice = st.selectbox(label, labels, key=key, help=help or
                          "Runs made in this session (yours) and in the shared run folder.")
    path, problem = listed[choice]
    view_state.publish("run", run_param(path))
    if st.session_state.get(LAST_RUN) != run_param(path):
        st.session_state[LAST_RUN] = run_param(path)
        navigation()
    if problem:
        show_run_problem(path.name, problem)
        return None
    return RunDir(path)


def show_run_problem(name: str, problem: object, what: str = "cannot be shown") -> None:
    """The one message a damaged run gets in place of its figures: ``Run **name** {what}: {problem}``."""
    st.error(f"Run **{name}** {what}: {problem}", icon=":material/broken_image:")


def run_data_errors() -> tuple[type[BaseException], ...]:
    """What reading a run's files may raise when they are damaged: ``RunStoreError`` (the run
    store's one entrance), ``InputFileError`` and ``ConfigError`` (both ValueErrors), OSError."""
    from perco_viz.runs import RunStoreError

    return (RunStoreError, ValueError, OSError)


@contextmanager
def run_guard(run, what: str = "cannot be shown", *, stop: bool = True) -> Iterator[None]:
    """Show a run's damaged files as one message in place of what the block draws.

    Reading a run inside the block may raise :func:`run_data_errors`: the message names the run,
    ``what`` happened and the error's own words; then the page stops (``stop=True``) or goes on
    after the block (in a fragment, or when the rest of the page does not need the block).
    """
    try:
        yield
    except run_data_errors() as exc:
        show_run_problem(run.name, exc, what)
        if stop:
            st.stop()


def note_metrics_damage(run) -> None:
    """Say when the run's ``metrics.jsonl`` cannot be read (a warning: the page goes on with the
    snapshots alone) or has lines left out (``RunDir.metrics_skipped``: torn, corrupt or wrongly
    typed lines, a caption)."""
    try:
        skipped = run.metrics_skipped()
    except run_data_errors() as exc:
        st.warning(f"Run **{run.name}**: its metrics cannot be read, so epochs and scores come from the "
                   f"snapshots alone: {exc}", icon=":material/warning:")
        return
    if skipped:
        st.caption(f"ℹ️ {skipped} line(s) of this run's metrics.jsonl are damaged (torn, not JSON, or of the wrong "
                   "types) and are left out.")


# --------------------------------------------------------------------------- cached loaders
@st.cache_data(max_entries=64, show_spinner=False)
def load_snapshot(path: str, index: int) -> dict[str, Any]:
    """One snapshot, checked against its run (``RunDir.load_snapshot``; raises ``RunStoreError``):
    ``student`` (n_probe, d_s), ``coherence`` (n_probe,), ``epoch``, ``step``, ``metrics``."""
    from perco_viz.runs import RunDir

    snap = RunDir(path).load_snapshot(index)
    return {"student": snap.student, "coherence": snap.coherence, "epoch": snap.epoch, "step": snap.step,
            "metrics": snap.metrics}


@st.cache_data(max_entries=32, show_spinner=False)
def load_teacher_probe(path: str) -> dict[str, Any]:
    """The run's ``features`` (n_probe, d_t), ``indices`` (n_probe,) and optional ``labels``."""
    from perco_viz.runs import RunDir

    return RunDir(path).teacher_probe()


@st.cache_data(max_entries=32, show_spinner=False)
def teacher_pca(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(n_probe, 2) PCA of a run's teacher probe features (the reference frame of the Distill and
    Compare pages' pictures) and the probe's (n_probe,) labels, or None."""
    from perco_viz.analysis.projection import teacher_projection

    probe = load_teacher_probe(path)
    return teacher_projection(probe["features"], method="pca", dim=2), probe.get("labels")


@st.cache_data(max_entries=128, show_spinner=False)
def student_pca(path: str, index: int) -> np.ndarray:
    """(n_probe, 2) PCA of a snapshot's student features, turned into its teacher's orientation."""
    from perco_viz.analysis.projection import student_projection

    return student_projection(load_snapshot(path, index)["student"], teacher_pca(path)[0])


@st.cache_data(max_entries=8, show_spinner="Loading the dataset…")
def load_dataset_cached(data_config_json: str):
    """The run's dataset (for thumbnails and class names). A person's own array file (csv, npz,
    npy) is parsed in the worker process within ``PERCO_VIZ_PARSE_TIMEOUT_S``, never here."""
    import json

    from perco_viz import sessions
    from perco_viz.config import DataConfig
    from perco_viz.data import load_dataset
    from perco_viz.safe_io import ARRAY_SUFFIXES

    cfg = DataConfig(**json.loads(data_config_json))
    if cfg.path and f".{cfg.name}" in ARRAY_SUFFIXES:
        return sessions.run_limited(load_dataset, cfg, what=f"the {cfg.name} file")
    return load_dataset(cfg)


def dataset_of(run):
    """The dataset a run was made on, or None when it cannot be loaded here — always None for a run
    of someone's own training (``RunDir.is_external``: its config names no dataset)."""
    import dataclasses
    import json

    try:
        if run.is_external():
            return None
        data = run.config().data
        if data.path:  # a shared run's config may name any file: only what this session may read
            check_path(data.path, "data.path")
        return load_dataset_cached(json.dumps(dataclasses.asdict(data), sort_keys=True))
    except Exception:  # noqa: BLE001 — thumbnails and names are optional extras
        return None


# --------------------------------------------------------------------------- one run's snapshots
@dataclass(frozen=True)
class SnapshotChoice:
    """A run and the snapshot picked on a page that reads one snapshot of it (Rank agreement,
    Per-sample coherence): what both pages need, loaded once.

    ``probe``: the teacher probe (``features`` (n, d_t), ``indices`` (n,), optional ``labels`` (n,));
    ``snap``: :func:`load_snapshot`'s dict (``student`` (n, d_s), ``coherence`` (n,), ``epoch``...);
    ``index``: the snapshot's index; ``stamp``: its file's modification time (a cache key);
    ``class_names``: the dataset's names of the labels, or None; ``dataset``: the run's dataset or None.
    """

    run: Any
    signature: tuple
    probe: dict[str, Any]
    index: int
    snap: dict[str, Any]
    stamp: float
    class_names: list[str] | None
    dataset: Any

    @property
    def path(self) -> str:
        return str(self.run.path)

    @property
    def labels(self):
        return self.probe.get("labels")


def pick_snapshot(run, key: str) -> SnapshotChoice:
    """Load a run's probe, say what is damaged, and let the person pick a snapshot (a slider keyed
    ``key``); stops the page (with a message) when the run has no snapshot yet or it cannot be read."""
    path = str(run.path)
    with run_guard(run):  # a run being set up, or a damaged one: say which file, no figures
        signature = run.signature()
        probe = load_teacher_probe(path)
        indices, epochs = snapshot_epochs(path, signature)
    note_metrics_damage(run)
    if not indices:
        st.info("This run has no snapshot yet: the first one is written when training starts.")
        st.stop()
    class_names = class_names_of(run, probe.get("labels"))
    dataset = dataset_of(run)
    index = snapshot_picker(key, epochs, indices)
    with run_guard(run, "has a snapshot that cannot be read; pick another epoch"):
        snap = load_snapshot(path, index)
    return SnapshotChoice(run=run, signature=signature, probe=probe, index=index, snap=snap,
                          stamp=run.snapshot_stamp(index), class_names=class_names, dataset=dataset)


def snapshot_picker(key: str, epochs: list[float], indices: list[int]) -> int:
    """A slider over the run's snapshots (labelled by epoch; in the URL as ``snap=<index>``);
    returns the chosen snapshot index."""
    from ui import view_state

    positions = list(range(len(indices)))
    view_state.seed(key, "snap", lambda raw: indices.index(int(raw)))
    if st.session_state.get(key) not in positions:
        st.session_state[key] = positions[-1]
    if len(positions) == 1:
        st.caption(f"One snapshot so far (epoch {epochs[0]:g}).")
        view_state.publish("snap", indices[0])
        return indices[0]
    pos = st.select_slider("Snapshot", positions, key=key, format_func=lambda p: f"epoch {epochs[p]:g}",
                           help="The moment of training to look at: epoch 0 is the untrained student.")
    view_state.publish("snap", indices[pos])
    return indices[pos]


@st.cache_data(max_entries=32, show_spinner=False)
def snapshot_epochs(path: str, signature: tuple) -> tuple[list[int], list[float]]:
    """(snapshot indices, their epochs) of a run (``RunDir.snapshot_indices`` and the epochs its
    metrics give, else the snapshots' own); ``signature`` keys the cache."""
    from perco_viz.runs import RunDir, RunStoreError

    run = RunDir(path)
    indices = run.snapshot_indices()
    try:
        by_index = {r.get("snapshot"): r for r in run.metrics()}
    except RunStoreError:  # damaged metrics (the page says so): the snapshots' own epochs
        by_index = {}
    epochs = []
    for i in indices:
        rec = by_index.get(i)
        epochs.append(float(rec["epoch"]) if rec and rec.get("epoch") is not None
                      else float(load_snapshot(path, i)["epoch"]))
    return indices, epochs


def class_names_of(run, labels) -> list[str] | None:
    """The dataset's class names when it can be loaded here (an external run: the names its writer
    was given), else None (labels shown as numbers)."""
    if labels is None:
        return None
    from ui import external

    if external.info(run) is not None:
        return external.class_names(run, labels)
    dataset = dataset_of(run)
    return None if dataset is None or dataset.class_names is None else list(dataset.class_names)


def point_text(row: int, labels, class_names, coherence=None) -> str:
    """``#12 · class 3 · c_i 0.871`` for a probe row."""
    from perco_viz.figures import class_label

    parts = [f"#{row}"]
    if labels is not None:
        parts.append(f"class {class_label(labels[row], class_names)}")
    if coherence is not None:
        parts.append(f"c_i {coherence[row]:.3f}")
    return " · ".join(parts)


def show_thumbnails(dataset, test_indices, captions, *, size: int = 64, borders=None) -> bool:
    """Draw thumbnails of some test-split inputs; False (nothing drawn) when the data are not images."""
    if dataset is None or not dataset.is_image or len(test_indices) == 0:
        return False
    try:
        images = dataset.images("test", np.array(test_indices, dtype=np.int64))  # a writable copy
    except Exception:  # noqa: BLE001 — a dataset changed since the run: skip the pictures
        return False
    from perco_viz.figures import thumbnail_strip_html

    st.html(thumbnail_strip_html(images, captions, size=size, borders=borders))
    return True


# --------------------------------------------------------------------------- figure events
def selected_points(event: object) -> list[dict[str, Any]]:
    """The points of a Streamlit plotly selection or click event (``st.plotly_chart(...,
    on_select="rerun")``, read back from ``st.session_state[key]``): the one parser of the app.

    The event is a dict (or an object with attributes) ``{"selection": {"points": [...], ...}}``;
    ``None``, an empty event or anything else gives ``[]``. Each point is returned as a new dict
    (``curve_number``, ``point_index``, ``x``, ``y``, ``customdata``...); a ``customdata`` that
    plotly sent as a typed array (``{"0": v0, "1": v1, ...}``) comes back as the list ``[v0, v1, ...]``.

    >>> selected_points({"selection": {"points": [{"point_index": 2, "customdata": {"1": 8, "0": 7}}]}})
    [{'point_index': 2, 'customdata': [7, 8]}]
    """
    if not event:
        return []
    if isinstance(event, dict):
        selection = event.get("selection", event)
    else:
        selection = getattr(event, "selection", None)
    if not selection:
        return []
    points = selection.get("points") if isinstance(selection, dict) else getattr(selection, "points", None)
    if not isinstance(points, list | tuple):
        return []
    out = []
    for point in points:
        if not isinstance(point, dict):
            continue
        point = dict(point)
        custom = point.get("customdata")
        if isinstance(custom, dict):
            keys = sorted(custom, key=lambda k: int(k) if str(k).isdigit() else float("inf"))
            point["customdata"] = [custom[k] for k in keys]
        out.append(point)
    return out


def point_id(point: dict[str, Any]) -> int | None:
    """The first value of a selected point's ``customdata`` as an int (the row id the app's figures
    put there), or ``None`` when it has none or it is not a number.

    >>> point_id({"customdata": [5.0, 0.3]}), point_id({"customdata": 7}), point_id({"x": 1})
    (5, 7, None)
    """
    custom = point.get("customdata")
    if isinstance(custom, list | tuple):
        custom = custom[0] if custom else None
    try:
        return int(round(float(custom)))
    except (TypeError, ValueError, OverflowError):
        return None


# --------------------------------------------------------------------------- output
def show_figure(fig, *, key: str, name: str | None = None, caption: str | None = None, **plotly_kwargs: Any):
    """Draw a figure the app's way: full width, larger fonts in presentation mode, then its
    ``caption`` and (when ``name`` is given and not presenting) its download buttons.

    ``plotly_kwargs`` go to ``st.plotly_chart`` (e.g. ``on_select="rerun"``); its return value
    (the selection state when ``on_select`` is set) is returned.
    """
    from perco_viz.figures import for_presentation

    plotly_kwargs.setdefault("width", "stretch")
    plotly_kwargs.setdefault("config", {"displaylogo": False})
    shown = for_presentation(fig) if presenting() else fig
    state = st.plotly_chart(shown, key=key, **plotly_kwargs)
    if caption:
        st.caption(caption)
    if name:
        download_figure(fig, name, key=f"{key}-dl")
    return state


def download_figure(fig, name: str, *, key: str) -> None:
    """Download buttons for a figure in one flowing row: interactive HTML always, PNG/SVG when
    kaleido is installed. The files are made only when clicked (no work on every rerun). None
    in presentation mode (fewer controls)."""
    import importlib.util

    if presenting():
        return

    from perco_viz.figures import figure_html, figure_image

    row = st.container(horizontal=True, gap="small")
    row.download_button("HTML", lambda: figure_html(fig), file_name=f"{name}.html", mime="text/html",
                        key=f"{key}-html", type="tertiary", icon=":material/download:", on_click="ignore",
                        help="The interactive figure as one file that works offline. For a PNG, use the camera "
                             "icon in the figure's toolbar (or `pip install kaleido` for PNG/SVG buttons here).")
    if importlib.util.find_spec("kaleido") is None:
        return
    for fmt, mime in (("png", "image/png"), ("svg", "image/svg+xml")):
        row.download_button(fmt.upper(), lambda fmt=fmt: figure_image(fig, fmt), file_name=f"{name}.{fmt}",
                            mime=mime, key=f"{key}-{fmt}", type="tertiary", icon=":material/download:",
                            on_click="ignore")


def show_error(exc: BaseException, what: str = "That did not work") -> None:
    """One clear message instead of a traceback."""
    st.error(f"{what}: {exc}")
