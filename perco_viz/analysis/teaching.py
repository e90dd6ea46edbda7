"""One mini-batch of the coherence loss, step by step, for teaching (the Teaching view page).

A handful of toy points whose raw coordinates are the teacher's features (an identity teacher),
and a tiny seeded student that maps them to 2-D. Everything the page shows is computed here
with the library's own functions, never re-derived; pure logic, no figures
(those are in :mod:`perco_viz.figures.teaching`):

* :func:`toy_points` — 12 to 40 visible points in 2-D or 3-D, with labels for colour;
* :func:`make_state` / :func:`train_step` — the student and one optimizer step on
  :func:`~perco_viz.losses.coherence.coherence_loss` (the state is copied, never mutated);
* :func:`anchor_view` — for one anchor, from :func:`~perco_viz.losses.coherence.loss_terms`:
  the teacher's hard ranks, the student's soft and hard ranks, each loss term
  ``(R̃^S_i(j) − R^T_i(j))²`` and the gradient of that anchor's loss w.r.t. the student's points;
* :func:`batch_gradient` — the loss of the whole batch and its gradient;
* :func:`arrows`, :func:`neighbour_table`, :func:`clicked_point` — what the page draws and reads;
* :func:`two_students` — the home page's example: one teacher, two students.

The page's choices are listed here once: :data:`TOY_SETS`, :data:`STUDENT_ARCHS`,
:data:`OPTIMIZERS`, :data:`TAUS`, :data:`LEARNING_RATES` (kernels: :data:`perco_viz.coherence.KERNELS`).

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

from perco_viz.coherence import hard_ranks, perception_coherence
from perco_viz.losses.coherence import check_loss_options, coherence_loss, loss_terms

TOY_SETS: tuple[str, ...] = ("circles", "blobs", "swiss_roll", "spheres")
STUDENT_ARCHS: tuple[str, ...] = ("mlp", "linear", "points")
STUDENT_LABELS = {"mlp": "small MLP (2 → 16 → 2)", "linear": "linear map", "points": "free points"}
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
DEFAULT_LR = {"adam": 0.01, "sgd": 1.0}  # plain gradient descent needs larger steps to move visibly
TAUS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
LEARNING_RATES: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.3, 1.0, 3.0, 10.0)
MIN_POINTS, MAX_POINTS = 4, 200
ARROW_SHARE = 0.18  # the longest arrow, as a share of the picture's extent


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
        """The batch loss :func:`~perco_viz.losses.coherence.coherence_loss` at the current state."""
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
    check_loss_options(tau=tau, kernel=kernel)
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
    check_loss_options(tau=new.tau, kernel=new.kernel)
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

    One call of :func:`~perco_viz.losses.coherence.loss_terms` restricted to the anchor (the
    function the loss itself averages): the teacher's distances and hard ranks, the student's
    distances divided by their std, their soft ranks and the squared differences; the gradient
    is autograd of their mean, i.e. of ``coherence_loss(..., anchors=[anchor])``.

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
    a = int(anchor)
    s_grad = s.clone().requires_grad_(True)
    lt = loss_terms(s_grad, t, tau=tau, kernel=kernel, metric=metric, anchors=torch.tensor([a]))
    loss = lt.terms.mean()
    (grad,) = torch.autograd.grad(loss, s_grad)
    r_t, soft, terms = lt.teacher_ranks[0], lt.student_soft_ranks[0].detach(), lt.terms[0].detach()
    hard = hard_ranks(lt.student_distances.detach())[0]
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
        "student_distance": _full(lt.student_normalized[0], a, n),
        "teacher_distance": _full(lt.teacher_distances[0], a, n),
        "terms": _full(terms, a, n),
        "loss": float(loss.detach()),
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
    check_loss_options(tau=tau, kernel=kernel)
    s = torch.tensor(np.asarray(student_points, dtype=np.float64), requires_grad=True)
    t = torch.as_tensor(np.asarray(teacher_points, dtype=np.float64))
    loss = coherence_loss(s, t, tau=tau, kernel=kernel)
    (grad,) = torch.autograd.grad(loss, s)
    return float(loss.detach()), grad.numpy()


def clicked_point(point: dict, n: int, anchor: int) -> int | None:
    """The index of a point clicked in a ``figures.teaching_points_figure``.

    That figure's first trace holds every point but the anchor, in order, with the point's index
    as ``customdata``; a selected point has ``customdata`` (a value or a list) and/or the
    trace's ``curve_number`` and ``point_index``.

    Args:
        point: one selected point, as ``ui.common.selected_points(event)`` returns them.
        n: number of points.
        anchor: the anchor when the figure was drawn.

    Returns:
        The point's index in [0, n), or ``None`` (the anchor itself, or an unknown click).

    >>> clicked_point({"curve_number": 0, "point_index": 2}, n=5, anchor=1)
    3
    """
    custom = point.get("customdata")
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


def arrows(gradient: np.ndarray, points: np.ndarray, share: float = ARROW_SHARE) -> np.ndarray | None:
    """The displacement drawn from each point: −gradient, scaled so the longest arrow is ``share``
    of the picture's largest extent.

    Args:
        gradient: (n, d) gradient of a loss w.r.t. the points.
        points: (n, d) the points drawn.
        share: length of the longest arrow relative to the points' extent.

    Returns:
        (n, d) displacements, or ``None`` when the gradient is 0 everywhere.

    >>> arrows(np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 0.0], [1.0, 1.0]]), share=0.5)
    array([[-0.5, -0. ],
           [-0. , -0.25]])
    """
    g, x = np.asarray(gradient, dtype=np.float64), np.asarray(points, dtype=np.float64)
    extent = float(np.ptp(x, axis=0).max()) or 1.0
    longest = float(np.linalg.norm(g, axis=1).max()) if len(g) else 0.0
    return -g * (share * extent / longest) if longest > 0 else None


def neighbour_table(view: dict) -> dict[str, list]:
    """The anchor's neighbours, nearest to the teacher first, as table columns.

    Args:
        view: an :func:`anchor_view` result.

    Returns:
        ``{"point", "teacher", "student", "R", "R̃", "(R̃ − R)²"}``: the point's index, its place
        in the teacher's and the student's ranking (1 = nearest), R^T, R̃^S (clipped to [0, 1])
        and the loss term, each a list of n − 1 values.
    """
    n, a = len(view["teacher_ranks"]), view["anchor"]
    order = sorted((j for j in range(n) if j != a), key=lambda j: view["teacher_ranks"][j])
    return {"point": order,
            "teacher": [float(view["teacher_position"][j]) for j in order],
            "student": [float(view["student_position"][j]) for j in order],
            "R": [float(view["teacher_ranks"][j]) for j in order],
            "R̃": [float(np.clip(view["student_soft"][j], 0.0, 1.0)) + 0.0 for j in order],
            "(R̃ − R)²": [float(view["terms"][j]) for j in order]}


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
