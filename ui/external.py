"""What the pages say of a run written by someone's own training (``perco_viz.open_run``, the
Lightning and Hugging Face callbacks): ``RunDir.is_external()``.

Such a run's ``config.json`` holds only what perco_viz knows — probe rows (``data.probe_size``),
the feature width (``student.dim``), the epochs (``train.epochs``) and the dissimilarity
(``loss.metric``); its dataset, teacher, student and loss fields are defaults that mean nothing.
So a page never loads a dataset or model from it, never resumes it, and describes it with
:func:`summary`; the user's own settings are in ``external.json`` (:func:`show_source`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import streamlit as st

from perco_viz import export
from perco_viz.writer import RESERVED

WRITERS = {"open_run": "open_run", "lightning": "Lightning callback", "hf": "Hugging Face callback"}
# record keys perco_viz itself writes: every other number in metrics.jsonl is the user's own
OWN_KEYS = RESERVED | {"train_loss"}
NO_RESUME = ("This run was written by your own training, outside this app: it cannot be resumed here. "
             "Start your training again (it may log to a new run).")


def info(run) -> dict[str, Any] | None:
    """``RunDir.external()`` (``writer``, ``config``, ``class_names``, ``host``...), or None for a
    run of the engine (or no run). Never raises."""
    if run is None:
        return None
    try:
        return run.external()
    except Exception:  # noqa: BLE001 — an unreadable file reads as the engine's run
        return None


def writer_name(doc: Mapping[str, Any]) -> str:
    """``open_run``, ``Lightning callback``...: who wrote the run, in words."""
    writer = str(doc.get("writer", "unknown"))
    return WRITERS.get(writer, writer)


def summary(run, config) -> str:
    """One line of an external run: ``your own training (open_run) · probe 500 rows · student
    features 8-d · 20 epochs · euclidean``; ``config`` is the run's ``RunConfig``."""
    doc = info(run) or {}
    metric = config.loss.metric + (f" (teacher: {config.loss.teacher_metric})"
                                   if config.loss.teacher_metric and config.loss.teacher_metric != config.loss.metric
                                   else "")
    try:
        logged_features = bool(run.snapshot_indices())
    except Exception:  # noqa: BLE001 — a damaged snapshots folder: the width is unknown
        logged_features = False
    width = f"student features **{config.student.dim}-d**" if logged_features else "no student features logged yet"
    return (f"your own training (**{writer_name(doc)}**) · probe **{config.data.probe_size:,} rows** · {width} · "
            f"{config.train.epochs} epochs · {metric}")


def class_names(run, labels=None) -> list[str] | None:
    """The class names the writer was given (``external.json``'s ``class_names``), or None; None
    too when they do not cover every label of ``labels``."""
    if info(run) is None:
        return None
    names = export.class_names_for(run)
    if names is None:
        return None
    if labels is not None and len(labels):
        values = np.asarray(labels)
        if values.dtype.kind not in "iu" or int(values.max()) >= len(names) or int(values.min()) < 0:
            return None
    return list(names)


def own_scalars(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The user's own numbers in ``records`` (``val_acc``, ``lr``...: every numeric key but
    perco_viz's own), in the order first seen."""
    out: dict[str, None] = {}
    for record in records:
        for key, value in record.items():
            if key not in OWN_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = None
    return list(out)


def show_own_curves(name: str, records: Sequence[Mapping[str, Any]], *, key: str) -> None:
    """A figure of the user's own numbers (``val_acc``, ``lr``...) against epoch: one tab each."""
    from perco_viz import figures
    from ui import common

    keys = own_scalars(records)
    if not keys:
        return
    tabs = st.tabs([figures.metric_label(k) for k in keys])
    for tab, scalar in zip(tabs, keys, strict=True):
        with tab:
            fig = figures.compare_curves({name: list(records)}, scalar, title=figures.metric_label(scalar),
                                         height=320)
            common.show_figure(fig, key=f"{key}-own-{scalar}")
    st.caption("Your own numbers, as your training logged them (`run.log(..., val_acc=...)`).")


def show_source(run, *, expanded: bool = False) -> None:
    """An expander: who wrote the run (writer, host, Python, PyTorch, perco_viz) and the user's own
    config as JSON. Nothing for a run of the engine."""
    doc = info(run)
    if doc is None:
        return
    with st.expander("How this run was made (your own training)", expanded=expanded, icon=":material/code:"):
        facts = [f"Written by **{writer_name(doc)}**"]
        for label, field in (("host", "host"), ("Python", "python"), ("PyTorch", "torch"),
                             ("perco_viz", "perco_viz")):
            if doc.get(field) is not None:
                facts.append(f"{label} {doc[field]}")
        st.markdown(" · ".join(facts))
        if doc.get("problem"):
            st.warning(f"Its external.json cannot be read: {doc['problem']}", icon=":material/warning:")
        config = doc.get("config") or {}
        if config:
            st.caption("Your config (as given to `open_run(config=...)`):")
            st.json(json.loads(json.dumps(config)), expanded=2)
        else:
            st.caption("No config was given (`open_run(config={...})` keeps one).")
        st.caption("The app knows of this run only what it logged: the teacher's and the student's features of the "
                   "probe rows, and numbers. It has no dataset or model of it to load, score on a held-out split "
                   "or resume.")


def why(run, status: Mapping[str, Any]) -> str | None:
    """The short reason a run list gives for a failed, stale or damaged run (an external run's
    stale one never says "resume it"), or None."""
    state, error = status.get("state"), status.get("error")
    if state not in ("failed", "stale", "damaged"):
        return None
    if state == "stale" and info(run) is not None:
        return "its training stopped answering (killed or crashed) before it closed the run"
    return error


def status_message(run, status: Mapping[str, Any]) -> str | None:
    """What to say of a stale or failed external run (its error in its own words), or None."""
    state, error = status.get("state"), status.get("error")
    if state == "stale":
        return ("Its training stopped answering (the process was killed or crashed) before it closed the run: "
                "what it logged up to then is kept. " + NO_RESUME)
    if state == "failed":
        return f"Its training failed: {error}" if error else "Its training failed."
    return None


def show_status(run) -> None:
    """On the Runs page, under the run picked: why its training failed or went stale (any run),
    then, for an external run, :func:`show_source`."""
    status = run.status()  # never raises
    own = info(run) is not None
    message = status_message(run, status) if own else None
    if status.get("state") == "failed":
        st.error(message or f"Its training failed: {status.get('error') or 'no reason recorded'}",
                 icon=":material/error:")
    elif status.get("state") in ("stale", "damaged"):
        st.warning(message or str(status.get("error")), icon=":material/warning:")
    show_source(run)
