"""One mini-batch of the coherence loss, step by step, for teaching (the Teaching view page).

A handful of toy points whose raw coordinates are the teacher's features (an identity teacher),
and a tiny seeded student that maps them to 2-D. Everything the page shows is computed here
with the library's own functions (:mod:`perco_viz.coherence`), never re-derived:

* :func:`toy_points` — 12 to 40 visible points in 2-D or 3-D, with labels for colour;
* :func:`make_state` / :func:`train_step` — the student and one optimizer step on
  :func:`~perco_viz.coherence.coherence_loss` (the state is copied, never mutated);
* :func:`anchor_view` — for one anchor: the teacher's hard ranks, the student's soft and hard
  ranks, each loss term ``(R̃^S_i(j) − R^T_i(j))²`` and the gradient of that anchor's loss with
  respect to the student's points;
* :func:`batch_gradient` — the loss of the whole batch and its gradient.

>>> x, y = toy_points("blobs", n=12, seed=0, dim=2)
>>> state = make_state(x, y, arch="points", seed=0)
>>> view = anchor_view(state.student_points(), state.teacher, anchor=0, tau=0.1)
>>> sorted(view)[:4]
['anchor', 'gradient', 'kernel', 'loss']
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from perco_viz.coherence import (
    KERNELS,
    coherence_loss,
    hard_ranks,
    pairwise_dissimilarity,
    soft_ranks,
)

TOY_SETS: tuple[str, ...] = ("circles", "blobs", "swiss_roll", "spheres")
STUDENT_ARCHS: tuple[str, ...] = ("mlp", "linear", "points")
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
MIN_POINTS, MAX_POINTS = 4, 200
_ROW_STD_EPS = 1e-12  # the same constant as coherence_loss's row normalization


# --------------------------------------------------------------------------- toy data
def _blobs(n: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    k = 3
    angles = 2 * math.pi * np.arange(k) / k + rng.uniform(0, 2 * math.pi)
    centres = np.zeros((k, dim))
    centres[:, 0], centres[:, 1] = np.cos(angles), np.sin(angles)
    if dim == 3:
        centres[:, 2] = rng.uniform(-0.6, 0.6, k)
    y = np.arange(n) % k
    return centres[y] + 0.28 * rng.standard_normal((n, dim)), y


def _circles(n: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = (np.arange(n) % 2).astype(np.int64)  # 0 = outer, 1 = inner
    x = np.zeros((n, dim))
    for ring, radius in ((0, 1.0), (1, 0.5)):
        idx = np.flatnonzero(y == ring)
        start = rng.uniform(0, 2 * math.pi)  # evenly spaced with a little jitter: the rings stay visible
        theta = start + 2 * math.pi * (np.arange(len(idx)) + rng.uniform(-0.2, 0.2, len(idx))) / len(idx)
        x[idx, 0], x[idx, 1] = radius * np.cos(theta), radius * np.sin(theta)
        if dim == 3:
            x[idx, 2] = 0.35 * (1 - 2 * ring) + 0.05 * rng.standard_normal(len(idx))
    return x, y


def _swiss_roll(n: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    t = np.sort(1.5 * math.pi * (1 + 2 * (np.arange(n) + rng.uniform(0.2, 0.8, n)) / n))
    x = np.zeros((n, dim))
    x[:, 0], x[:, 1] = t * np.cos(t), t * np.sin(t)  # a spiral in 2-D
    if dim == 3:
        x[:, 2] = x[:, 1]
        x[:, 1] = rng.uniform(0, 10, n)  # the roll's height
    y = np.minimum((3 * np.arange(n)) // n, 2)  # position along the roll, 3 bins
    return x, y


def _spheres(n: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = (np.arange(n) % 2).astype(np.int64)
    u = rng.standard_normal((n, dim))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return u * np.array([1.0, 0.45])[y, None], y


_TOYS = {"blobs": _blobs, "circles": _circles, "swiss_roll": _swiss_roll, "spheres": _spheres}
TOY_DESCRIPTIONS = {
    "blobs": "three clusters",
    "circles": "two concentric rings",
    "swiss_roll": "a spiral (a swiss roll in 3-D)",
    "spheres": "two concentric shells",
}


def toy_points(name: str = "blobs", n: int = 20, seed: int = 0, dim: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A few visible points for the teaching view.

    Args:
        name: one of :data:`TOY_SETS`.
        n: number of points (``MIN_POINTS`` to ``MAX_POINTS``; 12–40 reads well).
        seed: fixes the points.
        dim: 2 or 3.

    Returns:
        ``points`` (n, dim) float64, centred and scaled so the largest coordinate is 1, and
        ``labels`` (n,) int64 (cluster / ring / position along the roll), for colour only.

    >>> x, y = toy_points("circles", n=12, dim=3)
    >>> x.shape, y.shape, float(np.abs(x).max())
    ((12, 3), (12,), 1.0)
    """
    if name not in _TOYS:
        raise ValueError(f"unknown toy set {name!r}; choose one of {', '.join(TOY_SETS)}")
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3 (the points are drawn), got {dim!r}")
    if not (isinstance(n, int | np.integer) and MIN_POINTS <= n <= MAX_POINTS):
        raise ValueError(f"n must be an integer from {MIN_POINTS} to {MAX_POINTS}, got {n!r}")
    x, y = _TOYS[name](int(n), dim, np.random.default_rng(seed))
    x = x - x.mean(0)
    return x / np.abs(x).max(), y.astype(np.int64)


# --------------------------------------------------------------------------- the student
class FreePoints(nn.Module):
    """A "student" whose parameters are its output points: a step moves each point along −lr·grad.

    Shapes: forward ignores its (n, d) input and returns the (n, dim) points.
    """

    def __init__(self, points: torch.Tensor):
        super().__init__()
        self.points = nn.Parameter(points.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d) inputs (ignored) -> (n, dim) points."""
        return self.points


def _build_student(arch: str, d_in: int, dim: int, inputs: torch.Tensor, hidden: int) -> nn.Module:
    if arch == "linear":
        return nn.Linear(d_in, dim)
    if arch == "mlp":  # orthogonal weights: a visibly bent, but not flattened, 2-D picture to start from
        mlp = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        nn.init.orthogonal_(mlp[0].weight, gain=2.5)
        nn.init.uniform_(mlp[0].bias, -1.0, 1.0)
        nn.init.orthogonal_(mlp[2].weight)
        return mlp
    if arch == "points":  # a random projection of the teacher to start from
        w = torch.randn(d_in, dim, dtype=inputs.dtype)
        return FreePoints(inputs @ w / math.sqrt(d_in) + 0.3 * torch.randn(len(inputs), dim, dtype=inputs.dtype))
    raise ValueError(f"unknown student {arch!r}; choose one of {', '.join(STUDENT_ARCHS)}")


@dataclass
class TeachingState:
    """A toy student being trained on one mini-batch (all points, every step).

    Attributes:
        teacher: (n, d_t) teacher features = the raw points (identity teacher).
        labels: (n,) labels, for colour only.
        model: the student, mapping the (n, d_t) points to (n, dim) features.
        optimizer: its optimizer.
        tau: soft-rank temperature of the loss.
        kernel: ``ramp`` or ``sigmoid``.
        arch: ``mlp``, ``linear`` or ``points``.
        step: optimizer steps taken.
        history: batch loss before the first step, then after each step.
    """

    teacher: np.ndarray
    labels: np.ndarray
    model: nn.Module
    optimizer: torch.optim.Optimizer
    tau: float
    kernel: str
    arch: str
    step: int = 0
    history: list[float] = field(default_factory=list)

    def inputs(self) -> torch.Tensor:
        """(n, d_t) float64 tensor of the teacher points (the student's input)."""
        return torch.as_tensor(self.teacher, dtype=torch.float64)

    def student_tensor(self) -> torch.Tensor:
        """(n, dim) student features with gradients to the model's parameters."""
        return self.model(self.inputs())

    def student_points(self) -> np.ndarray:
        """(n, dim) float64 student features."""
        with torch.no_grad():
            return self.student_tensor().numpy().copy()

    def loss(self) -> float:
        """The batch loss :func:`~perco_viz.coherence.coherence_loss` at the current state."""
        with torch.no_grad():
            return float(coherence_loss(self.student_tensor(), self.inputs(), tau=self.tau, kernel=self.kernel))


def make_state(
    points: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    arch: str = "mlp",
    dim: int = 2,
    hidden: int = 16,
    seed: int = 0,
    lr: float = 0.01,
    optimizer: str = "adam",
    tau: float = 0.1,
    kernel: str = "ramp",
) -> TeachingState:
    """A fresh, seeded student for the points.

    Args:
        points: (n, d_t) teacher points, n ≥ 4.
        labels: (n,) labels or ``None``.
        arch: ``mlp`` (one tanh hidden layer), ``linear`` (a random linear map) or ``points``
            (the student's points are free parameters, started at a random projection).
        dim: output width (2 draws best).
        hidden: hidden width of ``mlp``.
        seed: fixes the initialisation.
        lr: learning rate (each :func:`train_step` may override it).
        optimizer: ``adam`` or ``sgd`` (plain gradient descent: with ``points`` a step moves each
            point exactly by −lr × its gradient arrow).
        tau: soft-rank temperature.
        kernel: ``ramp`` or ``sigmoid``.
    """
    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 2 or len(x) < MIN_POINTS:
        raise ValueError(f"points must be an (n, d) array with n ≥ {MIN_POINTS}, got shape {x.shape}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    _check_tau_kernel(tau, kernel)
    torch.manual_seed(seed)
    inputs = torch.as_tensor(x)
    model = _build_student(arch, x.shape[1], dim, inputs, hidden).double()
    opt_cls = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    y = np.zeros(len(x), dtype=np.int64) if labels is None else np.asarray(labels)
    state = TeachingState(x, y, model, opt_cls(model.parameters(), lr=lr), float(tau), kernel, arch)
    state.history.append(state.loss())
    return state


def train_step(state: TeachingState, lr: float | None = None, *, tau: float | None = None,
               kernel: str | None = None) -> TeachingState:
    """One optimizer step on the batch loss; returns a new state (``state`` is left as it was).

    Args:
        state: the current state.
        lr: learning rate of this step (``None``: keep the optimizer's).
        tau: temperature for this and later steps (``None``: keep).
        kernel: kernel for this and later steps (``None``: keep).

    Returns:
        The state after the step, with ``step + 1`` and the new loss appended to ``history``.
    """
    new = copy.deepcopy(state)  # model and optimizer copied together: they stay linked
    new.tau = state.tau if tau is None else float(tau)
    new.kernel = kernel or state.kernel
    _check_tau_kernel(new.tau, new.kernel)
    if lr is not None:
        for group in new.optimizer.param_groups:
            group["lr"] = float(lr)
    loss = coherence_loss(new.student_tensor(), new.inputs(), tau=new.tau, kernel=new.kernel)
    new.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    new.optimizer.step()
    new.step += 1
    new.history.append(new.loss())
    return new


def _check_tau_kernel(tau: float, kernel: str) -> None:
    if not (isinstance(tau, int | float) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a positive number, got {tau!r}")
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")


# --------------------------------------------------------------------------- one anchor
def _full(values: torch.Tensor, anchor: int, n: int) -> np.ndarray:
    """(n − 1,) values of the other points → (n,) with NaN at the anchor."""
    out = np.full(n, np.nan)
    out[np.arange(n) != anchor] = values.detach().numpy()
    return out


def anchor_view(
    student_points: np.ndarray | torch.Tensor,
    teacher_points: np.ndarray | torch.Tensor,
    anchor: int,
    tau: float,
    kernel: str = "ramp",
    *,
    metric: str = "euclidean",
) -> dict:
    """Everything the coherence loss sees from one anchor.

    Uses the library's own pieces in the order :func:`~perco_viz.coherence.coherence_loss`
    does: dissimilarities from the anchor to the others, the teacher's hard ranks, the
    student's distances divided by their standard deviation, their soft ranks, and the squared
    differences; the gradient is autograd of ``coherence_loss(..., anchors=[anchor])``.

    Args:
        student_points: (n, d_s) student features.
        teacher_points: (n, d_t) teacher features.
        anchor: index of the anchor point.
        tau: soft-rank temperature.
        kernel: ``ramp`` or ``sigmoid``.
        metric: dissimilarity of both.

    Returns:
        A dict of (n,) float arrays with NaN at the anchor — ``teacher_ranks`` (R^T, hard,
        in [0, 1]), ``teacher_position`` (1 = the teacher's nearest neighbour … n − 1),
        ``student_soft`` (R̃^S at ``tau``), ``student_hard`` (R^S), ``student_position``,
        ``student_distance`` (the anchor's student distances ÷ their std), ``teacher_distance``,
        ``terms`` ((R̃^S − R^T)²) — plus ``loss`` (the mean of the terms, equal to the loss
        restricted to this anchor), ``gradient`` ((n, d_s) d loss / d student points),
        ``anchor``, ``tau``, ``kernel``.
    """
    s = torch.as_tensor(np.asarray(student_points) if not isinstance(student_points, torch.Tensor)
                        else student_points.detach(), dtype=torch.float64)
    t = torch.as_tensor(np.asarray(teacher_points) if not isinstance(teacher_points, torch.Tensor)
                        else teacher_points.detach(), dtype=torch.float64)
    n = s.shape[0]
    if t.shape[0] != n or n < 3:
        raise ValueError(f"student and teacher need the same n ≥ 3 rows, got {n} and {t.shape[0]}")
    if not 0 <= int(anchor) < n:
        raise ValueError(f"anchor must be in [0, {n}), got {anchor}")
    _check_tau_kernel(tau, kernel)
    a = int(anchor)
    keep = torch.arange(n) != a
    v_t = pairwise_dissimilarity(t[[a]], t, metric)[:, keep]  # (1, n − 1)
    r_t = hard_ranks(v_t)[0]
    v_s = pairwise_dissimilarity(s[[a]], s, metric)[:, keep]
    d_hat = v_s / (v_s.std(dim=1, unbiased=False, keepdim=True) + _ROW_STD_EPS)
    soft = soft_ranks(d_hat, tau, kernel)[0]
    hard = hard_ranks(v_s)[0]
    terms = (soft - r_t) ** 2

    s_grad = s.clone().requires_grad_(True)
    loss = coherence_loss(s_grad, t, tau=tau, kernel=kernel, metric=metric, anchors=torch.tensor([a]))
    (grad,) = torch.autograd.grad(loss, s_grad)
    scale = n - 2  # normalized rank → position among the n − 1 others (1 = nearest)
    return {
        "anchor": a,
        "tau": float(tau),
        "kernel": kernel,
        "teacher_ranks": _full(r_t, a, n),
        "teacher_position": _full(1 + r_t * scale, a, n),
        "student_soft": _full(soft, a, n),
        "student_hard": _full(hard, a, n),
        "student_position": _full(1 + hard * scale, a, n),
        "student_distance": _full(d_hat[0], a, n),
        "teacher_distance": _full(v_t[0], a, n),
        "terms": _full(terms, a, n),
        "loss": float(terms.mean()),
        "gradient": grad.numpy(),
    }


def batch_gradient(
    student_points: np.ndarray, teacher_points: np.ndarray, tau: float, kernel: str = "ramp"
) -> tuple[float, np.ndarray]:
    """The batch loss (every point an anchor) and its gradient w.r.t. the student's points.

    Args:
        student_points: (n, d_s) student features.
        teacher_points: (n, d_t) teacher features.
        tau: soft-rank temperature.
        kernel: ``ramp`` or ``sigmoid``.

    Returns:
        ``(loss, gradient)`` with gradient (n, d_s).
    """
    _check_tau_kernel(tau, kernel)
    s = torch.tensor(np.asarray(student_points, dtype=np.float64), requires_grad=True)
    t = torch.as_tensor(np.asarray(teacher_points, dtype=np.float64))
    loss = coherence_loss(s, t, tau=tau, kernel=kernel)
    (grad,) = torch.autograd.grad(loss, s)
    return float(loss.detach()), grad.numpy()


def soft_rank_curves(
    student_points: np.ndarray, anchor: int, taus: np.ndarray, kernel: str = "ramp"
) -> np.ndarray:
    """The anchor's soft ranks at several temperatures (how soft ranks turn hard as τ → 0).

    Args:
        student_points: (n, d_s) student features.
        anchor: the anchor's index.
        taus: (m,) temperatures.
        kernel: ``ramp`` or ``sigmoid``.

    Returns:
        (m, n) soft ranks, NaN in the anchor's column.
    """
    s = torch.as_tensor(np.asarray(student_points, dtype=np.float64))
    n, a = s.shape[0], int(anchor)
    keep = torch.arange(n) != a
    v_s = pairwise_dissimilarity(s[[a]], s)[:, keep]
    d_hat = v_s / (v_s.std(dim=1, unbiased=False, keepdim=True) + _ROW_STD_EPS)
    return np.stack([_full(soft_ranks(d_hat, float(tau), kernel)[0], a, n) for tau in taus])


def clicked_point(point: dict, n: int, anchor: int) -> int | None:
    """The index of a point clicked in a ``figures.teaching_points_figure`` (for a selection event).

    That figure's first trace holds every point but the anchor, in order, with the point's index
    as ``customdata``; a click event gives ``customdata`` (a value, a list or a dict) and/or the
    trace's ``curve_number`` and ``point_index``.

    Args:
        point: one entry of a plotly selection's ``points``.
        n: number of points.
        anchor: the anchor when the figure was drawn.

    Returns:
        The point's index in [0, n), or ``None`` (the anchor itself, or an unknown click).

    >>> clicked_point({"curve_number": 0, "point_index": 2}, n=5, anchor=1)
    3
    """
    custom = point.get("customdata")
    if isinstance(custom, dict):
        custom = next(iter(custom.values()), None)
    if isinstance(custom, list | tuple):
        custom = custom[0] if custom else None
    if custom is None and point.get("curve_number") == 0 and point.get("point_index") is not None:
        others = [j for j in range(n) if j != anchor]
        p = int(point["point_index"])
        custom = others[p] if 0 <= p < len(others) else None
    try:
        index = int(custom)
    except (TypeError, ValueError):
        return None
    return index if 0 <= index < n else None


# --------------------------------------------------------------------------- figures of this page
def _layout(fig, title: str, subtitle: str | None = None, height: int | None = None):
    from perco_viz import figures

    head = {"text": title, **({"subtitle": {"text": subtitle}} if subtitle else {})}
    fig.update_layout(template=figures.TEMPLATE, title=head, height=height or figures.HEIGHT, margin=figures.MARGIN)
    return fig


def soft_vs_hard_figure(view: dict):
    """The anchor's soft ranks R̃ against its hard ranks R^S, one dot per neighbour.

    Args:
        view: an :func:`anchor_view` result.

    Returns:
        A plotly figure: x = hard rank, y = soft rank at ``view["tau"]``, the diagonal soft = hard
        dashed, each dot labelled with its point's index.
    """
    import plotly.graph_objects as go

    from perco_viz import figures

    hard, soft = view["student_hard"], view["student_soft"]
    others = np.flatnonzero(np.isfinite(hard))
    gap = float(np.max(np.abs(soft[others] - hard[others]))) if len(others) else 0.0
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="soft = hard",
                             line={"color": "#8a909c", "dash": "dash", "width": 1.5}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=hard[others], y=soft[others], mode="markers+text", name="neighbours of the anchor",
        text=[str(j) for j in others], textposition="top center", textfont={"size": 11, "color": "#5b6270"},
        marker={"size": 11, "color": figures.PRIMARY, "line": {"width": 1, "color": "white"}},
        customdata=others, hovertemplate="point %{customdata}<br>hard rank %{x:.3f}<br>soft rank %{y:.3f}"
                                         "<extra></extra>"))
    _layout(fig, f"Soft vs hard ranks of the student (τ = {view['tau']:g}, {view['kernel']})",
            f"largest gap |R̃ − R| = {gap:.3f}")
    fig.update_xaxes(title_text="hard rank R (0 = nearest, 1 = farthest)", range=[-0.05, 1.05], zeroline=False)
    fig.update_yaxes(title_text="soft rank R̃", range=[-0.05, 1.1], zeroline=False)
    fig.update_layout(showlegend=False)
    return fig


def loss_history_figure(history: list[float]):
    """The batch loss before training (step 0) and after each step.

    Args:
        history: losses, as in :attr:`TeachingState.history`.
    """
    import plotly.graph_objects as go

    from perco_viz import figures

    fig = go.Figure(go.Scatter(x=list(range(len(history))), y=list(history), mode="lines+markers",
                               line={"color": figures.PRIMARY, "width": 2.5}, marker={"size": 6},
                               hovertemplate="step %{x}<br>loss %{y:.5f}<extra></extra>", name="batch loss"))
    _layout(fig, "Batch loss, step by step", height=320)
    fig.update_xaxes(title_text="optimizer steps", rangemode="tozero")
    fig.update_yaxes(title_text="coherence loss", rangemode="tozero")
    return fig


# --------------------------------------------------------------------------- the idea, in one picture
def two_students(n: int = 30, seed: int = 0) -> dict:
    """One teacher and two students of it, for the home page: what coherence asks for.

    The teacher is ``n`` points on two arcs in 2-D. The *bent* student warps them
    (a radial stretch, then a turn): its geometry differs, but each anchor still orders the
    others almost as the teacher does. The *scrambled* student keeps the teacher's scale and spread but
    moves every point a random distance: its perception is largely lost. PC is computed with
    :func:`perco_viz.coherence.perception_coherence`.

    Returns:
        ``{"teacher": (n, 2), "bent": (n, 2), "scrambled": (n, 2), "order": (n,), "pc_bent",
        "pc_scrambled"}``; ``order`` is each point's position along the arcs (for colour).
    """
    from perco_viz.coherence import perception_coherence

    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0.0, 1.0, n))
    angle = np.pi * (0.15 + 1.4 * t)
    arc = np.where(t < 0.5, 1.0, 1.8)
    teacher = np.column_stack([arc * np.cos(angle), arc * np.sin(angle)])
    radius = np.linalg.norm(teacher, axis=1, keepdims=True)
    turn = np.deg2rad(40.0)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    bent = (teacher * radius**0.8) @ rotation  # radial stretch (far points move farther out), turned
    scrambled = teacher + rng.normal(scale=0.9, size=teacher.shape)
    return {"teacher": teacher, "bent": bent, "scrambled": scrambled, "order": t,
            "pc_bent": perception_coherence(bent, teacher), "pc_scrambled": perception_coherence(scrambled, teacher)}


def two_students_figure(example: dict | None = None, *, height: int = 400):
    """Teacher | bent student | scrambled student, each point coloured by its place on the arcs.

    Args:
        example: a :func:`two_students` result (default: ``two_students()``).
        height: px.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ex = example or two_students()
    titles = ("<b>teacher</b>", f"<b>student A</b> · PC {ex['pc_bent']:.2f}<br>geometry bent, order kept",
              f"<b>student B</b> · PC {ex['pc_scrambled']:.2f}<br>scale kept, order shuffled")
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.05)
    for col, key in enumerate(("teacher", "bent", "scrambled"), start=1):
        xy = ex[key]
        fig.add_trace(go.Scatter(
            x=xy[:, 0], y=xy[:, 1], mode="markers", name=titles[col - 1], showlegend=False,
            marker={"size": 9, "color": ex["order"], "colorscale": "Viridis", "line": {"width": 0.6, "color": "white"}},
            customdata=np.arange(len(xy)), hovertemplate="point %{customdata}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(showticklabels=False, title_text=None, row=1, col=col)
        fig.update_yaxes(showticklabels=False, title_text=None, scaleanchor=f"x{col if col > 1 else ''}", row=1, col=col)
    _layout(fig, "One teacher, two students", "colour: each point's place along the teacher's arcs", height=height)
    fig.update_layout(margin={"t": 110, "b": 10, "l": 10, "r": 10})
    fig.update_annotations(font_size=13)
    return fig
