"""The mathematics of perception coherence (DESIGN.md §1): ranks, PC, per-sample coherence,
rank agreement and the coherence loss.

Reference: Nguyen, Gamboa, Zhang, Chhaibi, Gratton, Giaccone, "Feature Representation
Transferring to Lightweight Models via Perception Coherence", arXiv:2505.06595 (TMLR 2026).

Notation: ``D[i, j]`` is the dissimilarity of points i and j. Anchor ``i`` perceives ``j``
closer than ``k`` when ``D[i, j] < D[i, k]``. Most arrays here are kept in the *off-diagonal
layout*: row ``r`` holds anchor ``a_r``'s dissimilarities to the ``n - 1`` other points, in
their original order, so every "k ∉ {i}" of the formulas is just "another column".

Measurement (:func:`perception_coherence`, :func:`per_sample_coherence`,
:func:`rank_agreement`, :func:`normalized_ranks`) is exact and runs in float64 on the CPU with
sort-based counting (O(n² log n)). The loss (:func:`coherence_loss`) is differentiable, runs on
the features' device, and has two implementations of one formula: ``reference`` (direct,
O(n³)) and ``fast`` (sub-cubic, equal to the reference to ~1e-5).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch
from torch import Tensor

from perco_viz.checks import as_tensor, check_finite, check_pair

MetricLike = str | Callable[[Tensor, Tensor], Tensor]
METRICS: tuple[str, ...] = ("euclidean", "sqeuclidean", "cosine")
KERNELS: tuple[str, ...] = ("ramp", "sigmoid")
DEFAULT_KERNEL = "ramp"
_ROW_STD_EPS = 1e-12  # DESIGN.md §1: the row std of the student's distances, plus 1e-12


# --------------------------------------------------------------------------- dissimilarities
def _compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64; everything else (bf16, fp16, ints) computes in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _safe_sqrt(d2: Tensor) -> Tensor:
    """sqrt with an exact 0 (and a 0 gradient) at 0, finite gradients elsewhere."""
    tiny = torch.finfo(d2.dtype).tiny ** 0.5
    return torch.sqrt(d2.clamp_min(tiny)) * (d2 > 0)


def pairwise_dissimilarity(x: Tensor, y: Tensor | None = None, metric: MetricLike = "euclidean") -> Tensor:
    """Dissimilarities δ(x_i, y_j).

    Args:
        x: (n, d) features.
        y: (m, d) features; ``None`` means ``x`` (then the diagonal is exactly 0).
        metric: ``euclidean``, ``sqeuclidean``, ``cosine`` (1 − cosine similarity; a zero
            vector is at distance 1 from everything) or a callable ``f(x, y) -> (n, m)``.

    Returns:
        (n, m) dissimilarities in the compute dtype (float64 for float64 input, else float32).
    """
    same = y is None
    dtype = _compute_dtype(x)
    x = x.to(dtype)
    y = x if same else y.to(dtype)
    if callable(metric):
        d = metric(x, y).to(dtype)
        if d.shape != (x.shape[0], y.shape[0]):
            raise ValueError(f"a metric callable must return an (n, m) matrix, got {tuple(d.shape)}")
        return d
    if metric in ("euclidean", "sqeuclidean"):
        center = x.mean(0, keepdim=True).detach()  # translation-invariant; less cancellation
        xc, yc = x - center, y - center
        d2 = (xc * xc).sum(1)[:, None] + (yc * yc).sum(1)[None, :] - 2.0 * xc @ yc.T
        d2 = d2.clamp_min(0.0)
        if same:
            d2 = d2.fill_diagonal_(0.0)
        return d2 if metric == "sqeuclidean" else _safe_sqrt(d2)
    if metric == "cosine":
        xn = torch.nn.functional.normalize(x, dim=1, eps=1e-12)
        yn = xn if same else torch.nn.functional.normalize(y, dim=1, eps=1e-12)
        d = (1.0 - xn @ yn.T).clamp(0.0, 2.0)
        if same:
            d = d.fill_diagonal_(0.0)
        return d
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)} or pass a callable")


def _check_metric(metric: MetricLike) -> None:
    if not callable(metric) and metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)} or pass a callable")


def _offdiag_index(anchors: Tensor, n: int) -> Tensor:
    """(m, n − 1) column indices of every point but the anchor itself, in original order."""
    cols = torch.arange(n - 1, device=anchors.device)[None, :]
    return cols + (cols >= anchors[:, None]).long()


def _offdiag_rows(x: Tensor, anchors: Tensor | None, metric: MetricLike) -> Tensor:
    """(m, n − 1) dissimilarities from each anchor (``None``: every point) to every other point."""
    n = x.shape[0]
    if anchors is None:  # drop the diagonal with a strided view: row i keeps every column but i
        d = pairwise_dissimilarity(x, metric=metric)  # (n, n)
        return d.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(n, n - 1)
    d = pairwise_dissimilarity(x[anchors], x, metric)  # (m, n)
    return d.gather(1, _offdiag_index(anchors, n))


# --------------------------------------------------------------------------- hard ranks
def hard_ranks(v: Tensor) -> Tensor:
    """Normalized ranks of each row, ties counted ½ (DESIGN.md §1), on ``v``'s device.

    Args:
        v: (m, k) dissimilarities in the off-diagonal layout (k = n − 1).

    Returns:
        (m, k) ranks ``R = (#{l ≠ j: v_l < v_j} + ½ #{l ≠ j: v_l = v_j}) / (k − 1)`` in [0, 1].
    """
    s, perm = v.sort(dim=1)
    k = v.shape[1]
    pos = torch.arange(k, device=v.device).expand_as(perm)
    step = s[:, 1:] != s[:, :-1]  # a new tie group starts at p + 1
    edge = torch.ones_like(step[:, :1])
    first = torch.where(torch.cat([edge, step], 1), pos, 0).cummax(1).values  # #{l: v_l < v_j}
    last = torch.where(torch.cat([step, edge], 1), pos, k).flip(1).cummin(1).values.flip(1)
    # less + ½ (equal others) = (first + last) / 2, an exact half-integer
    ranks = (first + last).to(v.dtype) / (2.0 * (k - 1))
    return torch.empty_like(ranks).scatter_(1, perm, ranks)


# Measurement runs on the CPU in float64: exact counts, rows split over threads (the
# numba kernels release the GIL; no numba threading layer is involved, so concurrent
# sessions of the app can call them safely).
@numba.njit(cache=True, nogil=True)
def _rank_rows(vals: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Per row: ``less + ½ equal-others`` (a half-integer) for every entry, from its argsort."""
    m, k = vals.shape
    out = np.empty((m, k), dtype=np.float64)
    for r in range(m):
        start = 0
        while start < k:
            stop = start + 1
            while stop < k and vals[r, order[r, stop]] == vals[r, order[r, start]]:
                stop += 1
            rank = 0.5 * (start + stop - 1)
            for p in range(start, stop):
                out[r, order[r, p]] = rank
            start = stop
    return out


@numba.njit(cache=True, nogil=True)
def _kendall_rows(t_vals: np.ndarray, t_order: np.ndarray, s_vals: np.ndarray, s_order: np.ndarray) -> np.ndarray:
    """Per row: Kendall's S = Σ over pairs {j, l} of sign(t_j − t_l)·sign(s_j − s_l).

    Walks the row in increasing teacher order, one tie group at a time; a Fenwick tree over
    the student's min-ranks counts earlier points (strictly smaller teacher value) that the
    student puts below (+1) or above (−1) the current one. Ties in either contribute 0.
    O(k log k) per row after the sorts.
    """
    m, k = t_vals.shape
    out = np.zeros(m, dtype=np.int64)
    s_rank = np.empty(k, dtype=np.int64)
    tree = np.zeros(k + 1, dtype=np.int64)
    for r in range(m):
        for p in range(k):  # min-rank: position of the first equal value in sorted order
            if p > 0 and s_vals[r, s_order[r, p]] == s_vals[r, s_order[r, p - 1]]:
                s_rank[s_order[r, p]] = s_rank[s_order[r, p - 1]]
            else:
                s_rank[s_order[r, p]] = p
        tree[:] = 0
        total, inserted, start = 0, 0, 0
        while start < k:
            stop = start + 1
            while stop < k and t_vals[r, t_order[r, stop]] == t_vals[r, t_order[r, start]]:
                stop += 1
            for p in range(start, stop):  # query the group against strictly smaller t
                q = s_rank[t_order[r, p]]
                below, i = 0, q
                while i > 0:
                    below += tree[i]
                    i -= i & (-i)
                at_or_below, i = 0, q + 1
                while i > 0:
                    at_or_below += tree[i]
                    i -= i & (-i)
                total += below - (inserted - at_or_below)
            for p in range(start, stop):  # then insert the group
                i = s_rank[t_order[r, p]] + 1
                while i <= k:
                    tree[i] += 1
                    i += i & (-i)
            inserted += stop - start
            start = stop
        out[r] = total
    return out


def _map_rows(fn: Callable[..., np.ndarray], *arrays: np.ndarray) -> np.ndarray:
    """Apply a row-wise ``fn`` to row blocks of ``arrays`` on all cores, concatenated."""
    workers = max(1, min(os.cpu_count() or 1, arrays[0].shape[0] // 64))
    if workers == 1:
        return fn(*arrays)
    bounds = np.linspace(0, arrays[0].shape[0], workers + 1).astype(int)
    blocks = [tuple(a[lo:hi] for a in arrays) for lo, hi in zip(bounds[:-1], bounds[1:])]
    with ThreadPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(lambda b: fn(*b), blocks)))


def _ranks_block(v: np.ndarray) -> np.ndarray:
    return _rank_rows(v, np.argsort(v, axis=1))


def _coherence_block(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    kendall = _kendall_rows(t, np.argsort(t, axis=1), s, np.argsort(s, axis=1))
    pairs = t.shape[1] * (t.shape[1] - 1) // 2
    # agree + ½ ties = (pairs + S) / 2, an exact half-integer; one division
    return (pairs + kendall).astype(np.float64) / (2.0 * pairs)


def _offdiag_np(features: np.ndarray | Tensor, metric: MetricLike, name: str) -> np.ndarray:
    """(n, n − 1) float64 dissimilarities from every point to every other point."""
    x = as_tensor(features, name)
    check_finite(x, name)
    if x.shape[0] < 3:
        raise ValueError(f"need at least 3 points to compare rankings, got {x.shape[0]}")
    v = _offdiag_rows(x.detach().to("cpu", torch.float64), None, metric)
    check_finite(v, f"{name} dissimilarities")
    return v.numpy()


def _pair_offdiag(student, teacher, metric, teacher_metric) -> tuple[np.ndarray, np.ndarray]:
    _check_metric(metric)
    _check_metric(teacher_metric or metric)
    s, t = check_pair(student, teacher, min_points=3)
    return _offdiag_np(s, metric, "student"), _offdiag_np(t, teacher_metric or metric, "teacher")


def _square(rows: np.ndarray, fill: float = math.nan) -> np.ndarray:
    """(n, n − 1) off-diagonal layout → (n, n) with ``fill`` on the diagonal."""
    n = rows.shape[0]
    out = np.full((n, n), fill)
    out.reshape(-1)[1:].reshape(n - 1, n + 1)[:, :-1] = rows.reshape(n - 1, n)
    return out


def normalized_ranks(features: np.ndarray | Tensor, *, metric: MetricLike = "euclidean") -> np.ndarray:
    """Hard normalized ranks ``R_i(j)`` of every point as seen from every anchor.

    Args:
        features: (n, d) features, n ≥ 3.
        metric: dissimilarity (see :func:`pairwise_dissimilarity`).

    Returns:
        (n, n) float64 array, ``R[i, j]`` in [0, 1] (ties ½), NaN on the diagonal.

    >>> normalized_ranks(np.array([[0.0], [1.0], [3.0]]))[0]
    array([nan,  0.,  1.])
    """
    _check_metric(metric)
    v = _offdiag_np(features, metric, "features")
    return _square(_map_rows(_ranks_block, v) / (v.shape[1] - 1))


def rank_agreement(
    student: np.ndarray | Tensor,
    teacher: np.ndarray | Tensor,
    *,
    metric: MetricLike = "euclidean",
    teacher_metric: MetricLike | None = None,
) -> np.ndarray:
    """Rank-agreement matrix ``A[i, j] = 1 − |R^T_i(j) − R^S_i(j)|`` (hard ranks).

    Args:
        student: (n, d_s) features.
        teacher: (n, d_t) features.
        metric: student dissimilarity (and the teacher's unless ``teacher_metric``).
        teacher_metric: teacher dissimilarity.

    Returns:
        (n, n) float64 array in [0, 1], NaN on the diagonal.
    """
    s, t = _pair_offdiag(student, teacher, metric, teacher_metric)
    k = s.shape[1]
    r_s = _map_rows(_ranks_block, s) / (k - 1)
    r_t = _map_rows(_ranks_block, t) / (k - 1)
    return _square(1.0 - np.abs(r_t - r_s))


def per_sample_coherence(
    student: np.ndarray | Tensor,
    teacher: np.ndarray | Tensor,
    *,
    metric: MetricLike = "euclidean",
    teacher_metric: MetricLike | None = None,
) -> np.ndarray:
    """Per-sample coherence ``c_i``: the share of ordered pairs (j, k) of other points that
    anchor i's student and teacher order the same way (ties ½).

    Args:
        student: (n, d_s) features.
        teacher: (n, d_t) features.
        metric: student dissimilarity (and the teacher's unless ``teacher_metric``).
        teacher_metric: teacher dissimilarity.

    Returns:
        (n,) float64 array in [0, 1]; 1 = same perception, 0.5 = chance, 0 = reversed.
    """
    s, t = _pair_offdiag(student, teacher, metric, teacher_metric)
    return _map_rows(_coherence_block, t, s)


def perception_coherence(
    student: np.ndarray | Tensor,
    teacher: np.ndarray | Tensor,
    *,
    metric: MetricLike = "euclidean",
    teacher_metric: MetricLike | None = None,
) -> float:
    """Perception coherence PC: the fraction of ordered triplets (i, j, k), all distinct, on
    which ``(D_T[i,j] − D_T[i,k]) · (D_S[i,j] − D_S[i,k]) > 0`` (ties ½) — the mean of
    :func:`per_sample_coherence`.

    Args:
        student: (n, d_s) features, n ≥ 3.
        teacher: (n, d_t) features.
        metric: student dissimilarity (and the teacher's unless ``teacher_metric``).
        teacher_metric: teacher dissimilarity.

    Returns:
        PC in [0, 1].

    >>> t = np.random.default_rng(0).normal(size=(20, 3))
    >>> perception_coherence(2.0 * t + 1.0, t)
    1.0
    """
    return float(per_sample_coherence(student, teacher, metric=metric, teacher_metric=teacher_metric).mean())


# --------------------------------------------------------------------------- soft ranks
def _ramp(x: Tensor, tau: float) -> Tensor:
    return (x / (2.0 * tau) + 0.5).clamp(0.0, 1.0)


def _sigmoid(x: Tensor, tau: float) -> Tensor:
    return torch.sigmoid(x / tau)


_STEPS = {"ramp": _ramp, "sigmoid": _sigmoid}


def soft_step(x: Tensor, tau: float, kernel: str = DEFAULT_KERNEL) -> Tensor:
    """The soft step ``g_τ`` that replaces ``1[a < b]`` by ``g_τ(b − a)`` (DESIGN.md §1)."""
    return _STEPS[kernel](x, tau)


def soft_ranks_reference(v: Tensor, tau: float, kernel: str) -> Tensor:
    """Soft ranks by the formula, O(m k²): ``R̃_j = Σ_{l ≠ j} g_τ(v_j − v_l) / (k − 1)``.

    Args:
        v: (m, k) normalized dissimilarities in the off-diagonal layout.
    """
    diff = v[:, :, None] - v[:, None, :]  # (m, k, k): v_j − v_l
    g = soft_step(diff, tau, kernel)
    g = g * (1.0 - torch.eye(v.shape[1], dtype=v.dtype, device=v.device))  # l ≠ j
    return g.sum(-1) / (v.shape[1] - 1)


def _soft_ranks_ramp_fast(v: Tensor, tau: float) -> Tensor:
    """Exact ramp soft ranks in O(m k log k): sort each row, count the points more than τ
    below (g = 1), and sum the linear part over the window |v_j − v_l| < τ with prefix sums.
    """
    s = v.sort(dim=1).values  # (m, k), differentiable values
    zero = torch.zeros_like(s[:, :1], dtype=torch.float64)
    prefix = torch.cat([zero, s.double().cumsum(1)], 1)  # (m, k + 1), float64 accumulators
    below = torch.searchsorted(s, v - tau, right=True)  # #{l: s_l ≤ v_j − τ}: g = 1
    above = torch.searchsorted(s, v + tau, right=False)  # #{l: s_l < v_j + τ}
    count = (above - below).double()
    window = count * (v.double() + tau) - (prefix.gather(1, above) - prefix.gather(1, below))
    total = below.double() + window / (2.0 * tau) - 0.5  # − g(0) = ½ for l = j itself
    return (total / (v.shape[1] - 1)).to(v.dtype)


_SIGMOID_NEAR = 2.0  # |v_j − v_l| < 2τ is summed directly
_SIGMOID_TERMS = 10  # far-field series error ≤ e^{−2·11} ≈ 3e-10 per pair
_CHUNK_ELEMENTS = 1 << 22  # near-field elements per chunk: bounds memory (~16 MiB per buffer)
_SIGMOID_DIRECT_BELOW = 384  # rows shorter than this: the direct sum is faster (measured)


def _sigmoid_far_field(s: Tensor, v: Tensor, lo: Tensor, hi: Tensor, tau: float) -> Tensor:
    """Σ over l with |v_j − v_l| ≥ wτ of σ((v_j − v_l)/τ), by the separable series
    ``σ(y) = Σ_{m≥1} (−1)^{m+1} e^{m y}`` for y ≤ −w (and 1 − σ(−y) above), with suffix and
    prefix log-sum-exps so nothing overflows.
    """
    u, vu = s / tau, v / tau
    edge = torch.full_like(u[:, :1], -math.inf)
    far = lo.to(v.dtype)  # each l below contributes 1 − (series)
    for m in range(1, _SIGMOID_TERMS + 1):
        sign = 1.0 if m % 2 else -1.0
        suffix = torch.cat([torch.logcumsumexp((-m * u).flip(1), 1).flip(1), edge], 1)  # LSE_{l ≥ t}
        prefix = torch.cat([edge, torch.logcumsumexp(m * u, 1)], 1)  # LSE_{l < t}
        far = far + sign * torch.exp(m * vu + suffix.gather(1, hi))
        far = far - sign * torch.exp(-m * vu + prefix.gather(1, lo))
    return far


def _sigmoid_near_field(s: Tensor, v: Tensor, lo: Tensor, hi: Tensor, tau: float) -> Tensor:
    """Σ over l with |v_j − v_l| < wτ (sorted positions lo ≤ l < hi) of σ((v_j − v_l)/τ),
    directly, over a padded window; includes l = j."""
    width = int((hi - lo).max().item()) if hi.numel() else 0
    if width == 0:
        return torch.zeros_like(v)
    m, k = v.shape
    idx = lo[:, :, None] + torch.arange(width, device=v.device)  # (m, k, W)
    valid = idx < hi[:, :, None]
    vals = s.gather(1, idx.clamp(max=k - 1).view(m, -1)).view(m, k, width)
    return (torch.sigmoid((v[:, :, None] - vals) / tau) * valid).sum(-1)


def _soft_ranks_sigmoid_fast(v: Tensor, tau: float) -> Tensor:
    """Sigmoid soft ranks in O(m k (log k + T + W)): a direct sum over the near window
    (W = points within 2τ) plus a T-term separable series for the rest (error ≤ 3e-10)."""
    k = v.shape[1]
    out = []
    s_all = v.sort(dim=1).values
    lo_all = torch.searchsorted(s_all, v - _SIGMOID_NEAR * tau, right=True)
    hi_all = torch.searchsorted(s_all, v + _SIGMOID_NEAR * tau, right=False)
    width = int((hi_all - lo_all).max().item())
    rows = max(1, _CHUNK_ELEMENTS // (k * max(width, 1)))
    for a in range(0, v.shape[0], rows):
        sl = slice(a, a + rows)
        s, vv, lo, hi = s_all[sl], v[sl], lo_all[sl], hi_all[sl]
        total = _sigmoid_far_field(s, vv, lo, hi, tau) + _sigmoid_near_field(s, vv, lo, hi, tau)
        out.append((total - 0.5) / (k - 1))  # − σ(0) for l = j itself
    return torch.cat(out, 0)


_FAST = {"ramp": _soft_ranks_ramp_fast, "sigmoid": _soft_ranks_sigmoid_fast}


def soft_ranks(v: Tensor, tau: float, kernel: str = DEFAULT_KERNEL, impl: str = "fast") -> Tensor:
    """Soft normalized ranks ``R̃`` of each row (DESIGN.md §1).

    Args:
        v: (m, k) normalized dissimilarities, off-diagonal layout.
        tau: temperature of the soft step.
        kernel: ``ramp`` or ``sigmoid``.
        impl: ``fast`` or ``reference``. ``fast`` with the sigmoid kernel sums directly
            for rows shorter than 384, where that is faster than the series (measured).

    Returns:
        (m, k) soft ranks, differentiable in ``v``.
    """
    if impl == "reference" or (kernel == "sigmoid" and v.shape[1] < _SIGMOID_DIRECT_BELOW):
        return soft_ranks_reference(v, tau, kernel)
    return _FAST[kernel](v, tau)


# --------------------------------------------------------------------------- the loss
def _validate_loss_options(tau: float, kernel: str, impl: str, metric, teacher_metric) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if impl not in ("fast", "reference"):
        raise ValueError(f"unknown impl {impl!r}; choose 'fast' or 'reference'")
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a positive number, got {tau!r}")
    _check_metric(metric)
    _check_metric(teacher_metric or metric)


def coherence_loss(
    student: Tensor,
    teacher: Tensor,
    *,
    tau: float = 0.1,
    kernel: str = DEFAULT_KERNEL,
    metric: MetricLike = "euclidean",
    teacher_metric: MetricLike | None = None,
    anchors: int | Tensor | None = None,
    impl: str = "fast",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Coherence loss: the student's soft ranks against the teacher's hard ranks.

    ``L = 1/(m (n − 1)) Σ_{i ∈ anchors} Σ_{j ≠ i} (R̃^S_i(j) − R^T_i(j))²`` where ``R^T`` is
    the teacher's hard normalized rank (ties ½, no gradient) and ``R̃^S`` the student's soft
    rank on dissimilarities divided by their row's population standard deviation (+1e-12),
    which makes the loss invariant to the scale of the student's features.

    Reference: Nguyen et al., "Feature Representation Transferring to Lightweight Models via
    Perception Coherence", arXiv:2505.06595 (TMLR 2026); formula as stated in DESIGN.md §1.

    Args:
        student: (n, d_s) features, n ≥ 3; the loss is differentiable in them.
        teacher: (n, d_t) features; d_t may differ from d_s. No gradient flows to them.
        tau: soft-step temperature (in units of the row's standard deviation).
        kernel: ``ramp`` (default: exact fast form) or ``sigmoid``.
        metric: student dissimilarity (and the teacher's unless ``teacher_metric``).
        teacher_metric: teacher dissimilarity.
        anchors: ``None`` (every point is an anchor), an int m (a random subset of m
            anchors), or an index tensor of anchors.
        impl: ``fast`` (sub-cubic) or ``reference`` (the formula, O(n³)).
        generator: random generator for the anchor subset.

    Returns:
        Scalar tensor in the compute dtype (float32, or float64 for float64 input).

    >>> s = torch.randn(16, 4, requires_grad=True)
    >>> coherence_loss(s, torch.randn(16, 32)).backward()
    >>> s.grad.shape
    torch.Size([16, 4])
    """
    _validate_loss_options(tau, kernel, impl, metric, teacher_metric)
    student, teacher = check_pair(student, teacher, min_points=3)
    n = student.shape[0]
    idx = _anchor_index(anchors, n, student.device, generator)
    with torch.no_grad():
        r_t = hard_ranks(_offdiag_rows(teacher.detach().to(student.device), idx, teacher_metric or metric))
    d_s = _offdiag_rows(student, idx, metric)  # (m, n − 1)
    d_hat = d_s / (d_s.std(dim=1, unbiased=False, keepdim=True) + _ROW_STD_EPS)
    r_s = soft_ranks(d_hat, tau, kernel, impl)
    return ((r_s - r_t.to(r_s.dtype)) ** 2).mean()


def _anchor_index(anchors: int | Tensor | None, n: int, device, generator) -> Tensor | None:
    if anchors is None:
        return None
    if isinstance(anchors, Tensor):
        idx = anchors.to(device=device, dtype=torch.long).flatten()
        if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= n:
            raise ValueError(f"anchor indices must lie in [0, {n}), got {idx.tolist()[:5]}…")
        return idx
    if not isinstance(anchors, int) or anchors < 1:
        raise ValueError(f"anchors must be None, a positive int or an index tensor, got {anchors!r}")
    if anchors >= n:
        return None
    return torch.randperm(n, generator=generator)[:anchors].to(device)


class CoherenceLoss(torch.nn.Module):
    """Module form of :func:`coherence_loss`; holds the options (no learnable parts).

    Args:
        student_dim: width of the student features (unused: no projector is needed).
        teacher_dim: width of the teacher features (unused).
        tau, kernel, metric, teacher_metric, anchors, impl: see :func:`coherence_loss`.
    """

    summary = "Perception coherence: match the teacher's ranking of dissimilarities, not its geometry."
    defaults = {"tau": 0.1, "kernel": DEFAULT_KERNEL, "metric": "euclidean", "teacher_metric": None,
                "anchors": None, "impl": "fast"}

    def __init__(self, student_dim: int = 0, teacher_dim: int = 0, **options) -> None:
        super().__init__()
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise ValueError(f"unknown coherence option(s) {sorted(unknown)}; expected {sorted(self.defaults)}")
        self.options = {**self.defaults, **options}
        _validate_loss_options(self.options["tau"], self.options["kernel"], self.options["impl"],
                               self.options["metric"], self.options["teacher_metric"])

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Loss for a batch: student (n, d_s), teacher (n, d_t) → scalar."""
        return coherence_loss(student, teacher, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())
