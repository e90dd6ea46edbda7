"""The Distill page's widgets: start, stop and resume a training, and the live view of a run
(progress, metric cards, curves and the two embeddings), refreshed from the run directory while
the run is being written (by this app or by the CLI)."""

from __future__ import annotations

import streamlit as st

from perco_viz.figures import record_number
from ui import common, external

POLL_S = 1.0
EPOCH_CARD = "Snapshot at epoch"  # the card tools/bench_app.py reads the live epoch from
_PHASES = {"data": "Loading the data…", "teacher": "Preparing the teacher (trained once, then cached)…",
           "features": "Computing the teacher's features…", "starting": "Starting…"}


def _is_live(run) -> bool:
    live = common.live_run()
    if live is not None and live.alive and live.run_dir is not None and live.run_dir.path == run.path:
        return True
    return run.status().get("state") == "running"


def _phase_line(run) -> None:
    """The live run's latest state: what it is preparing, its progress, or how it ended. A run
    that already has a snapshot is past its set-up, whatever the last message said."""
    live = common.live_run()
    if live is None or live.run_dir is None or live.run_dir.path != run.path:
        return
    info = live.info()
    prog = info.get("progress") or {}
    phase = info.get("phase")
    state = info.get("state")
    if state == "failed" and info.get("error"):
        st.error(f"The run failed: {info['error']}")
    elif state in ("finished", "cancelled") and not live.alive:
        end_message(state, prog.get("step", 0), prog.get("elapsed_s"))
    elif phase in _PHASES and live.alive and not info.get("snapshots"):
        extra = ""
        if phase == "teacher" and prog.get("total"):
            extra = f" epoch {prog.get('epoch')}/{prog.get('total')}, test accuracy {prog.get('acc', 0):.1%}"
        st.info(_PHASES[phase] + extra)
    elif prog.get("total_steps") and live.alive:
        st.progress(min(1.0, prog["step"] / max(1, prog["total_steps"])),
                    text=progress_text(prog, run_config_epochs(run)))


def progress_text(prog: dict, epochs: int) -> str:
    """``step 12/120 · training epoch 2 of 20 · about 9 s left``: the epoch being trained (the
    snapshots and cards below show the last one finished, "snapshot at epoch 1")."""
    eta = prog.get("eta_s")
    eta_text = f" · about {eta:.0f} s left" if eta is not None else ""
    training = min(int(prog.get("epoch", 0)) + 1, max(1, epochs))
    return f"step {prog.get('step', 0)}/{prog['total_steps']} · training epoch {training} of {epochs}{eta_text}"


def end_message(state: str, steps: int, seconds: float | None) -> None:
    """How a run of this session ended: finished in green, cancelled as a neutral note."""
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    where = "Explore it on **Embeddings**, **Rank agreement** and **Per-sample coherence**."
    if state == "finished":
        st.success(f"Finished: {steps} steps{took}. {where}", icon=":material/check_circle:")
    else:
        st.info(f"Cancelled after {steps} steps{took}: the run is kept up to its last snapshot, and **⟳ Resume** "
                f"continues it. {where}", icon=":material/stop_circle:")


def run_config_epochs(run) -> int:
    try:
        return run.config().train.epochs
    except Exception:  # noqa: BLE001
        return 0


def _cards(records: list[dict]) -> None:
    """Metric cards of the snapshot shown: ``records`` end with its metrics record."""
    last, first = records[-1], records[0]
    number = record_number
    pc, pc0, knn, loss = number(last, "pc"), number(first, "pc"), number(last, "knn_acc"), number(last, "train_loss")
    cols = st.columns(5)
    cols[0].metric(EPOCH_CARD, f"{number(last, 'epoch') or 0:.3g}",
                   help="The figures and numbers below are of this snapshot; the bar above says which epoch is "
                        "being trained now.")
    cols[1].metric("PC (probe set)", f"{pc:.3f}" if pc is not None else "—",
                   delta=f"{pc - pc0:+.3f}" if pc is not None and pc0 is not None and len(records) > 1 else None,
                   help="Perception coherence on the held-out probe set: 1 = same ranking as the teacher, 0.5 = chance.")
    cols[2].metric("k-NN accuracy", f"{knn:.1%}" if knn is not None else "—",
                   help="5-nearest-neighbour accuracy of the student's features on the probe set (leave-one-out).")
    cols[3].metric("Train loss", f"{loss:.4g}" if loss is not None else "—")
    cols[4].metric("Wall time", f"{number(last, 'wall_s') or 0:.1f} s")


def _external_progress(run, status: dict, logged: list[dict]) -> None:
    """A running external run's progress: the epoch it last logged of its ``train.epochs``."""
    import time

    epochs = run_config_epochs(run)
    epoch = record_number(logged[-1], "epoch") if logged else None
    epoch = epoch if epoch is not None else float(status.get("epoch") or 0)
    beat = status.get("heartbeat")
    ago = f" · last heard from {max(0.0, time.time() - beat):.0f} s ago" if isinstance(beat, int | float) else ""
    st.progress(min(1.0, epoch / max(1, epochs)),
                text=f"epoch {epoch:g} of {epochs} · your own training, logging to this run{ago}")


def _body(run, key: str) -> None:
    from perco_viz import figures

    _phase_line(run)
    status = run.status()  # never raises: a damaged status reads {"state": "damaged", "error": ...}
    state, error = status.get("state"), status.get("error")
    own = external.info(run) is not None  # written by the user's own training (open_run, callbacks)
    if state == "failed" and error:
        st.error(f"This run failed: {error}")
    elif state == "stale" and own:
        st.warning(external.status_message(run, status))
    elif state in ("stale", "damaged"):
        st.warning(f"{error}")
    logged = run.metrics()  # every record; an external run may log numbers without a snapshot
    records = [r for r in logged if r.get("snapshot") is not None]
    indices = run.snapshot_indices()
    if own and state == "running":
        _external_progress(run, status, logged)
    if own and status.get("dropped"):
        st.caption(f"ℹ️ {status['dropped']} snapshot(s) kept their numbers but not their features: the training "
                   "logged features faster than they were measured (log them less often, or raise `max_pending`).")
    if indices and not records and state not in ("running", "unknown") and not (own and logged):
        st.warning(f"Run **{run.name}** has {len(indices)} snapshot(s) but no readable line in its metrics.jsonl: "
                   "no numbers or curves to show. Its embeddings are on **Embeddings**.")
    common.note_metrics_damage(run)
    if not records or not indices:
        if own and logged:  # numbers only so far: their curves, and what is missing
            st.caption("No student features logged yet: PC, k-NN accuracy and the embeddings appear once the "
                       "training passes features to `run.log(features, ...)`. Its numbers so far:")
            _curves(run, logged, key, own=True)
        elif state in ("running", "unknown"):
            st.caption("Waiting for the first snapshot…")
        elif not indices:
            st.caption(f"This run ({state}) has no snapshot.")
        return
    shown = indices[-1]  # the cards and the figures are of one snapshot: the newest
    records = [r for r in records if r["snapshot"] <= shown] or records
    _cards(records)
    try:
        t_xy, labels = common.teacher_pca(str(run.path))
    except common.run_data_errors() as exc:
        if state not in ("running", "unknown"):  # a finished run without its probe is damaged, not waiting
            raise
        st.caption(f"Waiting for the teacher's probe features… ({exc})")
        return
    s_xy = common.student_pca(str(run.path), shown)
    snap = common.load_snapshot(str(run.path), shown)
    fig = figures.side_by_side_embeddings(
        t_xy, s_xy, color=labels if labels is not None else snap["coherence"],
        color_kind="label" if labels is not None else "continuous",
        labels_text=common.class_names_of(run, labels),
        titles=("teacher (PCA)", f"student, snapshot at epoch {snap['epoch']:.3g}"))
    coloured = "coloured by class" if labels is not None else "coloured by its per-sample coherence c_i"
    common.show_figure(fig, key=f"{key}-emb", caption=(
        f"Each dot is one input of the held-out probe set, {coloured}. The student is drawn in the teacher's "
        "orientation (Procrustes): it need not match the shape, only who is near whom."))
    # an external run's numbers-only records (a loss logged between snapshots) belong on the curves
    _curves(run, [r for r in logged if r.get("snapshot") is None or r["snapshot"] <= shown] if own else records,
            key, own=own)


def _curves(run, records: list[dict], key: str, *, own: bool) -> None:
    """The training curves (loss, PC, k-NN accuracy) and, for an external run, the user's own numbers."""
    from perco_viz import figures

    common.show_figure(figures.training_curves(records), key=f"{key}-curves", caption=(
        "Loss on the training batches; PC and k-NN accuracy on the probe set at each snapshot. PC 0.5 is chance, "
        "1 is the teacher's own ranking."))
    if own:
        external.show_own_curves(run.name, records, key=key)


def describe(config) -> str:
    """One line of a configuration: ``**digits** · teacher **builtin** · ... · 20 epochs``."""
    return (f"**{config.data.name}** · teacher **{config.teacher.kind}** · student **{config.student.arch}-"
            f"{config.student.dim}d** · loss **{config.loss.name}** · {config.train.epochs} epochs")


def start_config():
    """``(config, problems)``: what ▶ Start would train (the configuration stored on Setup, else the
    demo's) and why it cannot start (each invalid field of the Setup form, named; empty: it can)."""
    from ui import setup

    config = st.session_state.get("setup_config") or common.demo_config()
    problems = setup.form_errors(st.session_state) if setup.FLAG in st.session_state else []
    return config, problems


def watch_run(key: str = "distill-run") -> None:
    """Make the run picker ``key`` follow the session's live run on the next rerun: the picker keeps
    its selection, and the URL's ``run=`` its previous run, otherwise (▶ Start went on showing the
    previous run). The picker is drawn already, so its key is cleared and the URL points at the run."""
    from ui import view_state

    live = common.live_run()
    if live is not None and live.run_dir is not None:
        view_state.publish("run", common.run_param(live.run_dir.path))
    st.session_state.pop(key, None)


def controls():
    """Start, Stop and Resume, the run to watch and what it is; returns the run picked (``None``
    when there is none). Stop acts on the run being watched only."""
    run_state = common.live_run()
    alive = run_state is not None and run_state.alive
    config, problems = start_config()

    c1, c2, c3, c4 = st.columns([1.2, 1, 1, 3])
    run = common.run_picker("distill-run", label="Run to watch")
    watching_live = (alive and run is not None and run_state.run_dir is not None
                     and run_state.run_dir.path == run.path)
    if c1.button("▶ Start", type="primary", disabled=alive or bool(problems), key="distill-start",
                 help="Start a run with the configuration from Setup (or the demo's), and watch it here."):
        if common.start_run(config):
            watch_run()
            st.rerun()
    live_name = run_state.run_dir.name if alive and run_state.run_dir is not None else None
    stop_help = (f"Stops **{live_name}** within one batch; the run is kept." if watching_live else
                 f"Your run **{live_name}** is training: pick it under Run to watch to stop it." if live_name else
                 "Stops the run you started, within one batch.")
    if c2.button("■ Stop", disabled=not watching_live, key="distill-stop", help=stop_help):
        run_state.stop()
        st.toast(f"Stopping {live_name} after this batch…")
    own = external.info(run) is not None  # a run of someone's own training: nothing here can continue it
    resumable = (run is not None and not alive and not own
                 and run.status().get("state") in ("cancelled", "failed", "stale")
                 and not run.is_locked())  # another process (a CLI resume) is writing it
    # no Resume at all for an external run: its training is the user's, elsewhere
    if not own and c3.button("⟳ Resume", disabled=not resumable, key="distill-resume",
                             help="Continue the selected run from its last checkpoint (runs of yours only)."):
        if run is not None and common.session_root() in run.path.parents:
            with common.run_guard(run, "cannot be resumed"):
                config_to_resume = run.config()
            if common.start_run(config_to_resume, resume_dir=str(run.path)):
                st.rerun()
        else:
            st.warning("Shared runs are read-only here: resume them with `perco-viz resume <run dir>`.")
    with c4:
        configuration_lines(run, config, problems, live_name if alive and not watching_live else None)
    return run


def configuration_lines(run, config, problems: list[str], other_live: str | None) -> None:
    """What the watched run is (its own config.json), what ▶ Start would train when that differs,
    and why Start is off."""
    shown = None
    if run is not None:
        try:
            shown = run.config()
        except common.run_data_errors():
            shown = None
    if shown is not None:
        own = external.info(run) is not None
        st.caption(f"This run: {external.summary(run, shown) if own else describe(shown)}.")
        if own:
            external.show_source(run)
    if problems:
        st.error("▶ Start is off: on **Setup**, " + " ".join(problems) + " Change it there to start.",
                 icon=":material/error:")
    elif shown is None or external.info(run) is not None or _same_run(shown) != _same_run(config):
        source = "the configuration stored on Setup" if st.session_state.get("setup_config") else "the demo"
        st.caption(f"Start will use: {describe(config)} ({source}; change it on **Setup**).")
    if other_live:
        st.caption(f"Your run **{other_live}** is training: pick it under Run to watch to follow or stop it.")


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


def _same_run(config) -> dict:
    """A config without its name: two configs that train the same run compare equal."""
    return {k: v for k, v in config.to_dict().items() if k != "name"}
