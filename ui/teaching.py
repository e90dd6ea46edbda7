"""The *Teaching view* page's widgets and sections: the controls, the state of the toy student
across reruns, the anchor (picked or clicked), and the five pictures. The computations are
:mod:`perco_viz.analysis.teaching`, the figures :mod:`perco_viz.figures.teaching`;
:mod:`pages.8_Teaching_view` lays them out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from perco_viz import figures
from perco_viz.analysis import teaching
from perco_viz.coherence import KERNELS, perception_coherence
from ui import common

STATE = "teach-state"
_SPACER = "<div style='height:1.7em'></div>"  # aligns a button with the widgets beside it


@dataclass
class Controls:
    """What the widgets ask for."""

    toy: str
    n_points: int
    dim: int
    arch: str
    optimizer: str
    seed: int
    tau: float
    kernel: str
    lr: float
    steps: int  # optimizer steps asked for on this rerun (0, 1 or 10)
    reset: bool

    def data_key(self) -> tuple:
        """The choices that need a fresh student."""
        return (self.toy, self.n_points, self.dim, self.arch, self.optimizer, self.seed)


def controls() -> Controls:
    """The two rows of controls: the toy problem, then τ, kernel, learning rate and the steps."""
    with st.container(border=True):
        c = st.columns([1.3, 1, 0.8, 1.3, 0.8, 1])
        toy = c[0].selectbox("Toy data", teaching.TOY_SETS, key="teach-toy", format_func=lambda n: n.replace("_", " "),
                             help=" · ".join(f"{k.replace('_', ' ')}: {v}" for k, v in teaching.TOY_DESCRIPTIONS.items()))
        n_points = c[1].slider("Points", 12, 40, 20, key="teach-n", help="Few points, so every number can be read.")
        dim = c[2].radio("Teacher space", [2, 3], format_func=lambda d: f"{d}-D", key="teach-dim", horizontal=True,
                         help="The teacher is the identity: its features are the raw coordinates.")
        arch = c[3].selectbox("Student", teaching.STUDENT_ARCHS, key="teach-arch",
                              format_func=teaching.STUDENT_LABELS.__getitem__,
                              help="A tiny random network mapping each point to 2-D, or (free points) a student "
                                   "whose outputs are themselves the parameters.")
        optimizer = c[4].selectbox("Optimizer", teaching.OPTIMIZERS, key="teach-opt",
                                   help="Adam, or plain gradient descent (with free points each point then moves "
                                        "exactly along its arrow).")
        seed = c[5].number_input("Seed", 0, 999, 0, key="teach-seed", help="Fixes the points and the student.")

    c = st.columns([1.6, 1, 1.4, 0.9, 0.9, 0.9])
    tau = c[0].select_slider("τ (temperature of the soft ranks)", teaching.TAUS, value=0.1, key="teach-tau",
                             help="Log scale. Small τ: the soft ranks are the hard ranks (no gradient). "
                                  "Large τ: blurry ranks, smooth gradients.")
    kernel = c[1].radio("Kernel", KERNELS, key="teach-kernel", horizontal=True,
                        help="The soft step that replaces 'is k closer than j?' (1 or 0) by a number between 0 and 1.")
    lr = c[2].select_slider("Learning rate", teaching.LEARNING_RATES, value=teaching.DEFAULT_LR[optimizer],
                            key=f"teach-lr-{optimizer}")
    for col in c[3:]:
        col.markdown(_SPACER, unsafe_allow_html=True)
    step = c[3].button("Step ▶", type="primary", key="teach-step", width="stretch",
                       help="One optimizer step on the loss of the whole batch (every point an anchor).")
    step10 = c[4].button("Step ×10", key="teach-step10", width="stretch")
    reset = c[5].button("Reset ↺", key="teach-reset", width="stretch", help="A fresh, untrained student.")
    return Controls(toy, int(n_points), int(dim), arch, optimizer, int(seed), tau, kernel, lr,
                    10 if step10 else 1 if step else 0, reset)


# --------------------------------------------------------------------------- shared by every session
# The untrained student and the figures are the same for every session that asks for the same
# choices: made once per server (st.cache_resource, no copy). Safe because nothing here is modified
# after it is made: teaching.train_step returns a new state, and figures are only drawn.
@st.cache_resource(max_entries=64, show_spinner=False)
def fresh_state(toy: str, n_points: int, dim: int, arch: str, optimizer: str, seed: int, lr: float, tau: float,
                kernel: str) -> teaching.TeachingState:
    """The untrained, seeded student of a toy problem (the page's first state), shared by sessions."""
    points, labels = teaching.toy_points(toy, n_points, seed, dim)
    return teaching.make_state(points, labels, arch=arch, seed=seed, optimizer=optimizer, lr=lr, tau=tau, kernel=kernel)


@st.cache_resource(max_entries=256, show_spinner=False)
def _figure(builder: str, *args, **kwargs):
    """``figures.<builder>(*args, **kwargs)``, built once per server for the same data (arrays are
    hashed by content), then the page's own touches (:func:`_touch`)."""
    return _touch(builder, getattr(figures, builder)(*args, **kwargs))


def _touch(builder: str, fig):
    if builder == "teaching_points_figure":  # larger labels; the caption explains the star: no legend
        fig.update_traces(textfont={"size": 13, "color": "#1f2430"}, selector={"name": "points"})
        fig.update_layout(showlegend=False, height=560)
    elif builder == "loss_terms_figure":
        fig.update_layout(legend={"orientation": "h", "x": 0, "y": -0.3, "xanchor": "left", "yanchor": "top"},
                          height=460)
    return fig


def trained_state(ctl: Controls, points: np.ndarray, labels: np.ndarray) -> teaching.TeachingState:
    """The session's student: a fresh one when the toy problem changed or on reset, then the steps asked for."""
    state = st.session_state.get(STATE)
    if ctl.reset or state is None or st.session_state.get("teach-config") != ctl.data_key():
        state = fresh_state(ctl.toy, ctl.n_points, ctl.dim, ctl.arch, ctl.optimizer, ctl.seed, ctl.lr, ctl.tau,
                            ctl.kernel)
        st.session_state["teach-config"] = ctl.data_key()
    if ctl.steps:
        with st.spinner(f"Training the toy student {ctl.steps} step(s)…"):
            for _ in range(ctl.steps):
                state = teaching.train_step(state, lr=ctl.lr, tau=ctl.tau, kernel=ctl.kernel)
    st.session_state[STATE] = state
    return state


def follow_click(n: int) -> None:
    """Make a point clicked in the teacher's picture the anchor (once per click)."""
    selected = common.selected_points(st.session_state.get("teach-teacher-plot"))
    if selected and repr(selected) != st.session_state.get("teach-last-click"):
        st.session_state["teach-last-click"] = repr(selected)
        index = teaching.clicked_point(selected[0], n, st.session_state.get("teach-anchor", 0))
        if index is not None:
            st.session_state["teach-anchor"] = index
    if st.session_state.get("teach-anchor", 0) >= n:
        st.session_state["teach-anchor"] = 0


def anchor_row(ctl: Controls, state: teaching.TeachingState, points: np.ndarray) -> tuple[dict, np.ndarray | None, bool]:
    """The anchor picker, the gradient choice and the numbers; returns (anchor view, arrows, anchor's gradient?)."""
    follow_click(len(points))
    student = state.student_points()
    c = st.columns([1.2, 1.5, 1, 1, 1, 1])
    anchor = c[0].selectbox("Anchor", list(range(len(points))), key="teach-anchor", format_func=lambda i: f"point {i}",
                            help="The point whose perception we look at. You can also click a point in the "
                                 "teacher's picture.")
    arrows_for = c[1].radio("Arrows show the gradient of", ["this anchor's loss", "the whole batch's loss"],
                            key="teach-arrows", horizontal=False)
    view = teaching.anchor_view(student, points, anchor, ctl.tau, ctl.kernel)
    batch_loss, batch_grad = teaching.batch_gradient(student, points, ctl.tau, ctl.kernel)
    c[2].metric("Steps", state.step)
    c[3].metric("Batch loss", f"{batch_loss:.3f}",
                delta=f"{batch_loss - state.history[0]:+.3f}" if state.step else None, delta_color="inverse",
                help="The coherence loss of the whole batch: mean over anchors and neighbours of (R̃ − R)².")
    c[4].metric("Anchor loss", f"{view['loss']:.3f}", help="The same mean, over this anchor's neighbours only.")
    c[5].metric("PC", f"{perception_coherence(student, points):.3f}",
                help="Perception coherence of the student: share of (anchor, j, k) questions answered like the "
                     "teacher. 1 = same ranking, 0.5 = chance.")
    of_anchor = arrows_for.startswith("this")
    return view, teaching.arrows(view["gradient"] if of_anchor else batch_grad, student), of_anchor


def show_pictures(state: teaching.TeachingState, points: np.ndarray, view: dict, arrows, of_anchor: bool) -> None:
    """1 · the teacher's ranking and 2 · the student with the gradient arrows."""
    anchor, dim = view["anchor"], points.shape[1]
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("#### 1 · The teacher's ranking")
        fig_t = _figure(
            "teaching_points_figure", points, anchor, view["teacher_position"], view["student_position"],
            title=f"Teacher: the raw {dim}-D points, seen from point {anchor}",
            axis_titles=tuple(f"x{i + 1}" if dim == 3 else f"x{i + 1} (raw coordinate)" for i in range(dim)))
        common.show_figure(
            fig_t, key="teach-teacher-plot", name="teacher-ranking", on_select="rerun", selection_mode="points",
            caption="The star (a diamond in 3-D) is the anchor. On every other point: its place in the **teacher's** "
                    "ranking / its place in the **student's** ranking (1 = the anchor's nearest neighbour). Green = "
                    "same place, red = far off. Click a point (2-D) to make it the anchor.")
    with right:
        st.markdown("#### 2 · The student, and where the loss pushes it")
        fig_s = _figure(
            "teaching_points_figure", state.student_points(), anchor, view["teacher_position"],
            view["student_position"], arrows=arrows, title=f"Student after {state.step} step(s): its 2-D features",
            axis_titles=("student feature 1", "student feature 2"))
        common.show_figure(
            fig_s, key="teach-student-plot", name="student-ranking",
            caption="The same labels, drawn where the student puts the points. Arrows: minus the gradient of the "
                    f"{'anchor' if of_anchor else 'batch'}'s loss with respect to each point "
                    "(autograd) — the way each point should move so the student's ranks get closer to the teacher's. "
                    f"Arrows are scaled so the longest is {teaching.ARROW_SHARE:.0%} of the picture.")


def show_loss_terms(view: dict) -> None:
    """3 · the anchor's loss terms, as bars and as a table."""
    anchor = view["anchor"]
    st.markdown("#### 3 · The loss of this anchor, neighbour by neighbour")
    left, right = st.columns(2, gap="large")
    with left:
        fig_l = _figure("loss_terms_figure", view["teacher_ranks"], view["student_soft"],
                        title=f"Loss terms of anchor {anchor} (mean = {view['loss']:.4f})")
        common.show_figure(
            fig_l, key="teach-loss-terms", name="loss-terms",
            caption="For each other point j, nearest (to the teacher) first: the loss term (R̃ − R)², where R is the "
                    "teacher's rank (0 = nearest, 1 = farthest) and R̃ the student's soft rank at the current τ. "
                    "Orange: the student puts j too far; blue: too near. The anchor's loss is the mean of these bars.")
    with right:
        st.dataframe(
            teaching.neighbour_table(view), hide_index=True, width="stretch", height=400,
            column_config={"point": st.column_config.NumberColumn(width="small"),
                           "teacher": st.column_config.NumberColumn("teacher #", format="%g", width="small",
                                                                     help="1 = the anchor's nearest, for the teacher"),
                           "student": st.column_config.NumberColumn("student #", format="%g", width="small"),
                           "R": st.column_config.NumberColumn(format="%.3f", width="small",
                                                              help="teacher's rank = (place − 1)/(n − 2)"),
                           "R̃": st.column_config.NumberColumn(format="%.3f", width="small",
                                                               help="student's soft rank at τ"),
                           "(R̃ − R)²": st.column_config.NumberColumn(format="%.4f", width="small")})
        st.caption(f"The ranking of point {anchor}'s neighbours, nearest to the teacher first. "
                   "R = (place − 1) / (n − 2).")


def show_soft_ranks(view: dict) -> None:
    """4 · the soft step at τ and the anchor's soft against hard ranks."""
    st.markdown("#### 4 · Soft ranks: why τ matters")
    left, right = st.columns(2, gap="large")
    with left:
        fig_k = _figure("soft_step_figure", view["tau"], view["kernel"])
        common.show_figure(
            fig_k, key="teach-soft-step", name="soft-step",
            caption="A hard rank counts the points that are closer: a step from 0 to 1. It has no slope, so it cannot "
                    "be trained. The soft step replaces it by a ramp (or sigmoid) of width about τ: the smaller τ, "
                    "the closer to the true count, but the slope (the gradient) lives only near x = 0. Here x = D̂[i, j] − "
                    "D̂[i, k], the row-normalized student distances.")
    with right:
        fig_r = _figure("soft_vs_hard_figure", view)
        common.show_figure(
            fig_r, key="teach-soft-hard", name="soft-vs-hard",
            caption="The student's soft rank against its hard rank for each neighbour of the anchor. Move τ: as it "
                    "shrinks, the dots snap onto the diagonal (soft = hard); as it grows, they flatten towards ½.")


def show_history(state: teaching.TeachingState) -> None:
    """5 · the batch loss after each step (once there is a step)."""
    if len(state.history) > 1:
        fig_h = figures.loss_history_figure(state.history)
        common.show_figure(
            fig_h, key="teach-history", name="loss-history",
            caption="The loss of the whole batch after each step (at the τ and kernel used for that step).")
