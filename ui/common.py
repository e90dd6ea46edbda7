"""What every page shares: the session's identity, the run registry, run pickers, cached
loaders and download buttons. Pages lay out widgets; the work happens in ``perco_viz``."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

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
    ("pages/8_Teaching_view.py", "Teaching view", ":material/school:", "one mini-batch, step by step"),
]


# --------------------------------------------------------------------------- page & session
def page(title: str, caption: str | None = None) -> None:
    """Page config, the sidebar's navigation, the title and the one-line purpose of the page."""
    st.set_page_config(page_title=f"{title} · {APP_TITLE}", page_icon=FAVICON, layout="wide")
    with st.sidebar:
        st.markdown(f"### {ICON} {APP_TITLE}")
        page_links([(script, label, icon) for script, label, icon, _ in PAGES])
        st.caption("See knowledge transfer happen: a student learns to rank like its teacher.")
    st.title(title)
    if caption:
        st.caption(caption)
    session_id()


def page_links(links: list[tuple[str, str, str]]) -> None:
    """``st.page_link`` for each ``(script, label, icon)``; none when the pages are unknown (a
    page run as its own entry point, as in tests, has no app around it)."""
    try:
        for script, label, icon in links:
            st.page_link(script, label=label, icon=icon)
    except StreamlitPageNotFoundError:
        pass


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


@st.cache_resource
def registry():
    """The server's one registry of background trainings (shared by all sessions)."""
    from perco_viz.live import RunRegistry

    return RunRegistry(max_concurrent=int(os.environ.get("PERCO_VIZ_MAX_TRAININGS", "4")))


def runs_root() -> Path:
    """Shared, operator-configured run directories (CLI runs land here): read by everyone."""
    return Path(os.environ.get("PERCO_VIZ_RUNS", "runs"))


def session_root() -> Path:
    """This session's own runs; other sessions never list them."""
    return runs_root() / "app-sessions" / session_id()


def demo_config():
    """The built-in demo: digits, the built-in CNN teacher, an 8-d MLP student, coherence."""
    from perco_viz.config import RunConfig

    return RunConfig(name="demo")


# --------------------------------------------------------------------------- runs
def start_run(config, *, resume_dir: str | None = None) -> bool:
    """Start (or resume) a background training for this session; False (with a message) if refused."""
    from perco_viz.live import RegistryFull
    from perco_viz.runs import RunStoreError

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
    run = registry().latest(session_id())
    if run is not None:
        registry().touch(session_id())
    return run


def all_runs() -> dict[str, Path]:
    """Label → run directory: this session's runs first, then the shared ones."""
    from perco_viz.runs import list_runs

    options: dict[str, Path] = {}
    for run in list_runs(session_root()):
        options[f"{run.name}  ·  yours"] = run.path
    for run in list_runs(runs_root()):
        options[f"{run.name}  ·  shared"] = run.path
    return options


def run_picker(key: str, *, label: str = "Run", help: str | None = None):
    """A select box of runs; defaults to the session's live run. Returns a RunDir or None."""
    from perco_viz.runs import RunDir

    options = all_runs()
    if not options:
        st.info("No runs yet. Start the demo on the home page, set one up on **Setup**, or point "
                "`PERCO_VIZ_RUNS` at a folder of runs made with `perco-viz distill`.")
        return None
    labels = list(options)
    live = live_run()
    default = 0
    if live is not None and live.run_dir is not None:
        for i, lab in enumerate(labels):
            if options[lab] == live.run_dir.path:
                default = i
    choice = st.selectbox(label, labels, index=default, key=key, help=help or
                          "Runs made in this session (yours) and in the shared run folder.")
    return RunDir(options[choice])


def run_signature(run) -> tuple[str, int, float]:
    """Cache key that changes whenever the run gets a new snapshot."""
    metrics = run.path / "metrics.jsonl"
    mtime = metrics.stat().st_mtime if metrics.exists() else 0.0
    return str(run.path), len(run.snapshot_indices()), mtime


# --------------------------------------------------------------------------- cached loaders
@st.cache_data(max_entries=64, show_spinner=False)
def load_snapshot(path: str, index: int) -> dict[str, Any]:
    from perco_viz.runs import RunDir

    snap = RunDir(path).load_snapshot(index)
    return {"student": snap.student, "coherence": snap.coherence, "epoch": snap.epoch, "step": snap.step,
            "metrics": snap.metrics}


@st.cache_data(max_entries=32, show_spinner=False)
def load_teacher_probe(path: str) -> dict[str, Any]:
    from perco_viz.runs import RunDir

    return RunDir(path).teacher_probe()


@st.cache_data(max_entries=8, show_spinner="Loading the dataset…")
def load_dataset_cached(data_config_json: str):
    """The run's dataset (for thumbnails and class names)."""
    import json

    from perco_viz.config import DataConfig
    from perco_viz.data import load_dataset

    return load_dataset(DataConfig(**json.loads(data_config_json)))


def dataset_of(run):
    """The dataset a run was made on, or None when it cannot be loaded here."""
    import dataclasses
    import json

    try:
        return load_dataset_cached(json.dumps(dataclasses.asdict(run.config().data), sort_keys=True))
    except Exception:  # noqa: BLE001 — thumbnails and names are optional extras
        return None


# --------------------------------------------------------------------------- output
def download_figure(fig, name: str, *, key: str) -> None:
    """Download buttons for a figure in one flowing row: interactive HTML always, PNG/SVG when
    kaleido is installed. The files are made only when clicked (no work on every rerun)."""
    import importlib.util

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
