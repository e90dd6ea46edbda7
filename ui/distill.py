"""The Distill page's widgets: start, stop and resume a training, and the live view of a run
(progress, metric cards, curves and the two embeddings), refreshed from the run directory while
the run is being written (by this app or by the CLI)."""

from __future__ import annotations

import streamlit as st

from perco_viz.figures import record_number
from ui import common

POLL_S = 1.0
_PHASES = {"data": "Loading the data…", "teacher": "Preparing the teacher (trained once, then cached)…",
           "features": "Computing the teacher's features…", "starting": "Starting…"}


def _is_live(run) -> bool:
    live = common.live_run()
    if live is not None and live.alive and live.run_dir is not None and live.run_dir.path == run.path:
        return True
    return run.status().get("state") == "running"


def _phase_line(run) -> None:
    live = common.live_run()
    if live is None or live.run_dir is None or live.run_dir.path != run.path:
        return
    info = live.info()
    prog = info.get("progress") or {}
    phase = info.get("phase")
    if info.get("state") == "failed" and info.get("error"):
        st.error(f"The run failed: {info['error']}")
    elif phase in _PHASES and live.alive:
        extra = ""
        if phase == "teacher" and prog.get("total"):
            extra = f" epoch {prog.get('epoch')}/{prog.get('total')}, test accuracy {prog.get('acc', 0):.1%}"
        st.info(_PHASES[phase] + extra)
    elif info.get("state") in ("finished", "cancelled") and not live.alive:
        steps, secs = prog.get("step", 0), prog.get("elapsed_s")
        took = f" in {secs:.1f} s" if secs is not None else ""
        st.success(f"{info['state'].capitalize()}: {steps} steps{took}. Explore it on **Embeddings**, "
                   "**Rank agreement** and **Per-sample coherence**.", icon=":material/check_circle:")
    elif phase == "train" and prog.get("total_steps"):
        frac = min(1.0, prog["step"] / max(1, prog["total_steps"]))
        eta = prog.get("eta_s")
        eta_text = f" · about {eta:.0f} s left" if eta is not None else ""
        st.progress(frac, text=f"step {prog['step']}/{prog['total_steps']} · epoch "
                               f"{min(prog['epoch'] + 1, run_config_epochs(run))}{eta_text}")


def run_config_epochs(run) -> int:
    try:
        return run.config().train.epochs
    except Exception:  # noqa: BLE001
        return 0


def _cards(records: list[dict]) -> None:
    last, first = records[-1], records[0]
    number = record_number
    pc, pc0, knn, loss = number(last, "pc"), number(first, "pc"), number(last, "knn_acc"), number(last, "train_loss")
    cols = st.columns(5)
    cols[0].metric("Epoch", f"{number(last, 'epoch') or 0:.3g}")
    cols[1].metric("PC (probe set)", f"{pc:.3f}" if pc is not None else "—",
                   delta=f"{pc - pc0:+.3f}" if pc is not None and pc0 is not None and len(records) > 1 else None,
                   help="Perception coherence on the held-out probe set: 1 = same ranking as the teacher, 0.5 = chance.")
    cols[2].metric("k-NN accuracy", f"{knn:.1%}" if knn is not None else "—",
                   help="5-nearest-neighbour accuracy of the student's features on the probe set (leave-one-out).")
    cols[3].metric("Train loss", f"{loss:.4g}" if loss is not None else "—")
    cols[4].metric("Wall time", f"{number(last, 'wall_s') or 0:.1f} s")


def _body(run, key: str) -> None:
    from perco_viz import figures

    _phase_line(run)
    status = run.status()  # never raises: a damaged status reads {"state": "damaged", "error": ...}
    state, error = status.get("state"), status.get("error")
    if state == "failed" and error:
        st.error(f"This run failed: {error}")
    elif state in ("stale", "damaged"):
        st.warning(f"{error}")
    records = [r for r in run.metrics() if r.get("snapshot") is not None]
    indices = run.snapshot_indices()
    if indices and not records and state not in ("running", "unknown"):
        st.warning(f"Run **{run.name}** has {len(indices)} snapshot(s) but no readable line in its metrics.jsonl: "
                   "no numbers or curves to show. Its embeddings are on **Embeddings**.")
    common.note_metrics_damage(run)
    if not records or not indices:
        if state in ("running", "unknown"):
            st.caption("Waiting for the first snapshot…")
        elif not indices:
            st.caption(f"This run ({state}) has no snapshot.")
        return
    _cards(records)
    try:
        t_xy, labels = common.teacher_pca(str(run.path))
    except common.run_data_errors() as exc:
        if state not in ("running", "unknown"):  # a finished run without its probe is damaged, not waiting
            raise
        st.caption(f"Waiting for the teacher's probe features… ({exc})")
        return
    s_xy = common.student_pca(str(run.path), indices[-1])
    snap = common.load_snapshot(str(run.path), indices[-1])
    fig = figures.side_by_side_embeddings(
        t_xy, s_xy, color=labels if labels is not None else snap["coherence"],
        color_kind="label" if labels is not None else "continuous",
        titles=("teacher (PCA of its features)", f"student at epoch {snap['epoch']:.3g} (PCA, aligned)"))
    st.plotly_chart(fig, key=f"{key}-emb", width="stretch")
    st.caption("Each dot is one input of the held-out probe set, coloured by class. The student is drawn in the "
               "teacher's orientation (Procrustes): it need not match the shape, only who is near whom.")
    st.plotly_chart(figures.training_curves(records), key=f"{key}-curves", width="stretch")
    st.caption("Loss on the training batches; PC and k-NN accuracy on the probe set at each snapshot. "
               "PC 0.5 is chance, 1 is the teacher's own ranking.")


def controls():
    """Start, Stop and Resume, the run to watch and the configuration line; returns the run
    picked (``None`` when there is none)."""
    run_state = common.live_run()
    alive = run_state is not None and run_state.alive
    config = st.session_state.get("setup_config") or common.demo_config()

    c1, c2, c3, c4 = st.columns([1.2, 1, 1, 3])
    if c1.button("▶ Start", type="primary", disabled=alive, key="distill-start",
                 help="Start a run with the configuration from Setup (or the demo's)."):
        if common.start_run(config):
            st.rerun()
    if c2.button("■ Stop", disabled=not alive, key="distill-stop", help="Stops within one batch; the run is kept."):
        run_state.stop()
        st.toast("Stopping after this batch…")
    run = common.run_picker("distill-run", label="Run to watch")
    resumable = (run is not None and not alive and run.status().get("state") in ("cancelled", "failed", "stale")
                 and not run.is_locked())  # another process (a CLI resume) is writing it
    if c3.button("⟳ Resume", disabled=not resumable, key="distill-resume",
                 help="Continue the selected run from its last checkpoint (runs of yours only)."):
        if run is not None and common.session_root() in run.path.parents:
            with common.run_guard(run, "cannot be resumed"):
                config_to_resume = run.config()
            if common.start_run(config_to_resume, resume_dir=str(run.path)):
                st.rerun()
        else:
            st.warning("Shared runs are read-only here: resume them with `perco-viz resume <run dir>`.")
    c4.caption(f"Configuration: **{config.data.name}** · teacher **{config.teacher.kind}** · "
               f"student **{config.student.arch}-{config.student.dim}d** · loss **{config.loss.name}** · "
               f"{config.train.epochs} epochs. Change it on **Setup**.")
    return run


def show(run, *, key: str) -> None:
    """Render the live view of ``run``; polls every second while it is being written."""
    live = _is_live(run)

    @st.fragment(run_every=POLL_S if live else None)
    def _fragment() -> None:
        with common.run_guard(run, stop=False):  # a damaged file: one message instead of the figures
            _body(run, key)
        if live and not _is_live(run):
            st.rerun()  # the run ended: one full rerun, then no more polling

    _fragment()
