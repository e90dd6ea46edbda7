"""The mathematics of perception coherence (DESIGN.md §1): dissimilarities, hard and soft
ranks, PC, per-sample coherence and rank agreement. The coherence loss built on them lives in
:mod:`perco_viz.losses.coherence`.

Reference: Nguyen, Gamboa, Zhang, Chhaibi, Gratton, Giaccone, "Feature Representation
Transferring to Lightweight Models via Perception Coherence", arXiv:2505.06595 (TMLR 2026).

Notation: ``D[i, j]`` is the dissimilarity of points i and j. Anchor ``i`` perceives ``j``
closer than ``k`` when ``D[i, j] < D[i, k]``. Most arrays here are kept in the *off-diagonal
layout*: row ``r`` holds anchor ``a_r``'s dissimilarities to the ``n - 1`` other points, in
their original order, so every "k ∉ {i}" of the formulas is just "another column".

Measurement (:func:`perception_coherence`, :func:`per_sample_coherence`,
:func:`rank_agreement`, :func:`normalized_ranks`) is exact and runs in float64 on the CPU with
sort-based counting (O(n² log n)). The soft ranks (:func:`soft_ranks`, what the loss trains
on) are differentiable, run on the features' device, and have two implementations of one
formula: ``reference`` (direct, O(n³)) and ``fast`` (sub-cubic, equal to the reference to ~1e-5).
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


# --------------------------------------------------------------------------- dissimilarities
def _compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64; everything else (bf16, fp16, ints) computes in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def safe_sqrt(d2: Tensor) -> Tensor:
    """sqrt with an exact 0 (and a 0 gradient) at 0, finite gradients elsewhere."""
    tiny = torch.finfo(d2.dtype).tiny  # sqrt keeps every normal d², so tiny distances keep their order
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
        return d2 if metric == "sqeuclidean" else safe_sqrt(d2)
    if metric == "cosine":
        xn = torch.nn.functional.normalize(x, dim=1, eps=1e-12)
        yn = xn if same else torch.nn.functional.normalize(y, dim=1, eps=1e-12)
        d = (1.0 - xn @ yn.T).clamp(0.0, 2.0)
        if same:
            d = d.fill_diagonal_(0.0)
        return d
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)} or pass a callable")


def check_metric(metric: MetricLike) -> None:
    """Raise ``ValueError`` unless ``metric`` is one of :data:`METRICS` or a callable."""
    if not callable(metric) and metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)} or pass a callable")


def _offdiag_index(anchors: Tensor, n: int) -> Tensor:
    """(m, n − 1) column indices of every point but the anchor itself, in original order."""
    cols = torch.arange(n - 1, device=anchors.device)[None, :]
    return cols + (cols >= anchors[:, None]).long()


def offdiag_rows(x: Tensor, anchors: Tensor | None, metric: MetricLike, *, exact_ties: bool = False) -> Tensor:
    """(m, n − 1) dissimilarities from each anchor (``None``: every point) to every other point.

    Args:
        x: (n, d) features.
        anchors: (m,) anchor indices, or ``None`` for every point (m = n).
        metric: see :func:`pairwise_dissimilarity`.
        exact_ties: for hard ranks: every duplicated row of ``x`` takes the dissimilarities
            of its first occurrence, so that each anchor sees duplicates at exactly equal
            dissimilarities (and they see each other at 0), and their tie counts ½ as
            DESIGN.md §1 says; a matrix product could otherwise round two equal
            dissimilarities apart. Gradients then reach only the first row of each duplicate
            group: use it where no gradient is needed (teacher, measurement).
    """
    n = x.shape[0]
    if exact_ties:
        distinct, inverse = torch.unique(x, dim=0, return_inverse=True)
        if len(distinct) < n:
            index = torch.arange(n, device=x.device)
            first = torch.full((len(distinct),), n, device=x.device).scatter_reduce_(0, inverse, index, "amin")
            rep = first[inverse]  # (n,) the first occurrence of each row
            d = pairwise_dissimilarity(x, metric=metric)[rep][:, rep]  # (n, n), 0 between duplicates
            rows = index if anchors is None else anchors
            return d[rows].gather(1, _offdiag_index(rows, n))
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
    v = offdiag_rows(x.detach().to("cpu", torch.float64), None, metric, exact_ties=True)
    check_finite(v, f"{name} dissimilarities")
    return v.numpy()


def _pair_offdiag(student, teacher, metric, teacher_metric) -> tuple[np.ndarray, np.ndarray]:
    check_metric(metric)
    check_metric(teacher_metric or metric)
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
    check_metric(metric)
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


class _RampSoftRanks(torch.autograd.Function):
    """Exact ramp soft ranks in O(m k log k), with a hand-written backward (no graph kept).

    In each row's sorted order (values ``s``), the ramp ``clamp((s_j − s_l)/(2τ) + ½, 0, 1)``
    is 1 for the ``lo_j`` points more than τ below, 0 above ``s_j + τ``, and linear inside the
    window ``W_j = {l: |s_j − s_l| < τ}`` (sorted positions ``lo_j ≤ l < hi_j``), so with
    prefix sums ``P`` of ``s``:

        (k − 1) R̃_j = lo_j + (|W_j| (s_j + τ) − (P[hi_j] − P[lo_j])) / (2τ) − ½   (− g(0) for l = j)

    and, as ``W`` is symmetric (l ∈ W_j ⇔ j ∈ W_l), the gradient of ``Σ_j γ_j R̃_j`` is

        ∂/∂s_l = (|W_l| γ_l − Σ_{j ∈ W_l} γ_j) / (2τ (k − 1)),

    again a window sum of prefix sums. Accumulation in float64.
    """

    @staticmethod
    def forward(ctx, v: Tensor, tau: float) -> Tensor:
        k = v.shape[1]
        # Ranks depend on differences only: start each row at 0, so that s ± τ stays
        # resolvable when a row's values are huge (a row of equal distances has std 0 and is
        # divided by 1e-12); ties then meet exactly, as in the reference.
        s, perm = (v - v.amin(dim=1, keepdim=True)).sort(dim=1)  # (m, k)
        lo, hi = window_bounds(s, tau)
        sd = s.double()
        window = (hi - lo) * (sd + tau) - _window_sum(sd, lo, hi)
        ranks = ((lo + window / (2.0 * tau) - 0.5) / (k - 1)).to(v.dtype)
        ctx.save_for_backward(perm, lo, hi)
        ctx.tau = tau
        return torch.empty_like(ranks).scatter_(1, perm, ranks)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        perm, lo, hi = ctx.saved_tensors
        g = grad.gather(1, perm).double()  # (m, k), sorted order
        d = ((hi - lo) * g - _window_sum(g, lo, hi)) / (2.0 * ctx.tau * (grad.shape[1] - 1))
        return torch.empty_like(grad).scatter_(1, perm, d.to(grad.dtype)), None


@numba.njit(cache=True, nogil=True)
def _window_bounds_rows(s: np.ndarray, half: float, lo: np.ndarray, hi: np.ndarray) -> None:
    """Two pointers per sorted row: lo_j = #{l: s_l ≤ s_j − half}, hi_j = #{l: s_l < s_j + half}."""
    m, k = s.shape
    for r in range(m):
        row, row_lo, row_hi = s[r], lo[r], hi[r]
        a = 0
        b = 0
        for j in range(k):
            x = row[j]
            below, above = x - half, x + half
            while a < k and row[a] <= below:
                a += 1
            while b < k and row[b] < above:
                b += 1
            row_lo[j] = a
            row_hi[j] = b


def window_bounds(s: Tensor, half: float) -> tuple[Tensor, Tensor]:
    """Sorted positions [lo_j, hi_j) of the window ``|s_l − s_j| < half`` of each j.

    Args:
        s: (m, k) rows sorted ascending.
        half: the window's half-width.

    Returns:
        ``(lo, hi)``, two (m, k) int64 tensors on ``s``'s device: ``lo_j = #{l: s_l ≤ s_j −
        half}``, ``hi_j = #{l: s_l < s_j + half}``. On the CPU a linear two-pointer sweep
        (numba); elsewhere ``torch.searchsorted`` (O(k log k) per row, same result).
    """
    if s.device.type != "cpu":
        return (torch.searchsorted(s, s - half, right=True), torch.searchsorted(s, s + half, right=False))
    a = s.detach().contiguous().numpy()
    lo, hi = np.empty(a.shape, dtype=np.int64), np.empty(a.shape, dtype=np.int64)
    _window_bounds_rows(a, a.dtype.type(half), lo, hi)
    return torch.from_numpy(lo), torch.from_numpy(hi)


def _window_sum(x: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Per row, Σ_{lo_j ≤ l < hi_j} x_l by prefix sums: (m, k) → (m, k)."""
    prefix = torch.cat([torch.zeros_like(x[:, :1]), x.cumsum(1)], 1)  # (m, k + 1)
    return prefix.gather(1, hi) - prefix.gather(1, lo)


def _soft_ranks_ramp_fast(v: Tensor, tau: float) -> Tensor:
    """Exact ramp soft ranks in O(m k log k) (see :class:`_RampSoftRanks`)."""
    return _RampSoftRanks.apply(v, tau)


_SIGMOID_ERROR = 21.0  # far-field series: error ≤ e^{−21} ≈ 8e-10 per pair
_EXP_RANGE = 1300.0  # float64 holds e^{±650}: the most that m·(u_max − u_min) may span
_CHUNK_ELEMENTS = 1 << 22  # elements per chunk: bounds memory (~32 MiB per float64 buffer)
_SIGMOID_DIRECT_BELOW = 384  # rows shorter than this: the direct sum is faster (measured)


def _sigmoid_split(k: int, tau: float, span: float) -> tuple[float, int]:
    """Near-window half-width w (in units of τ) and number T of series terms.

    The series needs T + 1 ≥ 21 / w terms; the near window holds about 0.8 wτk points (row
    values have unit spread). Balancing the two, w ∝ 1/√(τk), makes the cost per row
    O(k √(k τ)) — O(n^2.5) in all, sub-cubic. Every term must also stay within float64's
    exponent range (T · span / τ ≤ 1300, ``span`` = the widest row's range): rows with far
    outliers get fewer terms and a wider window instead (slower, still exact).
    """
    t_max = int(min(_EXP_RANGE * tau / max(span, 1e-300), 1e6))
    if t_max < 1:  # not even one term fits: sum every pair directly (cubic, but exact)
        return math.inf, 0
    w = max(0.2, math.sqrt(40.0 / (tau * k)), _SIGMOID_ERROR / (t_max + 1))
    return w, max(0, math.ceil(_SIGMOID_ERROR / w) - 1)


def _series_sums(u: Tensor, lo: Tensor, hi: Tensor, terms: int, weights: Tensor | None = None,
                 slope: bool = False) -> Tensor:
    """The far field of ``Σ_l x_l K(u_j − u_l)`` over the l with |u_j − u_l| ≥ w, by the
    separable series of σ: ``σ(y) = Σ_{m≥1} (−1)^{m+1} e^{m y}`` for y ≤ −w (and 1 − σ(−y)
    above); ``slope``: of σ' instead, ``σ'(y) = Σ_{m≥1} (−1)^{m+1} m e^{−m|y|}``.

    Args:
        u: (r, k) sorted values / τ, float64, centred on each row's middle so that every
            factor e^{±m u} stays within float64 (see :func:`_sigmoid_split`).
        lo, hi: (r, k) sorted positions of the near window of each j: [lo_j, hi_j).
        terms: T.
        weights: (r, k) x_l in sorted order (``None``: 1).

    Returns:
        (r, k) float64 sums (without the ``lo_j`` ones of σ's saturated lower side).
    """
    zero = torch.zeros_like(u[:, :1])
    out = torch.zeros_like(u)
    for m in range(1, terms + 1):
        coef = (1.0 if m % 2 else -1.0) * (m if slope else 1.0)
        e_up, e_down = (-m * u).exp(), (m * u).exp()  # (r, k)
        above = torch.cat([(e_up if weights is None else weights * e_up).flip(1).cumsum(1).flip(1), zero], 1)
        below = torch.cat([zero, (e_down if weights is None else weights * e_down).cumsum(1)], 1)
        # l above j: e^{m (u_j − u_l)}; l below: e^{−m (u_j − u_l)} (σ: with a minus, from 1 − σ(−y))
        out += coef * (e_down * above.gather(1, hi) + (1.0 if slope else -1.0) * e_up * below.gather(1, lo))
    return out


def _near_window(u: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(r, k, W) differences u_j − u_l over each near window, the valid mask, the positions l."""
    width = max(1, int((hi - lo).max().item()) if hi.numel() else 1)
    r, k = u.shape
    idx = lo[:, :, None] + torch.arange(width, device=u.device)  # (r, k, W)
    valid = idx < hi[:, :, None]
    idx = idx.clamp_(max=k - 1)
    diff = u[:, :, None] - u.gather(1, idx.view(r, -1)).view(r, k, width)
    return diff, valid, idx


class _SigmoidSoftRanks(torch.autograd.Function):
    """Sigmoid soft ranks ``(k − 1) R̃_j = Σ_{l ≠ j} σ((v_j − v_l)/τ)`` in O(k (log k + T + W))
    per row, with a hand-written backward.

    In each row's sorted order, the l within wτ of j (the near window, W points) are summed
    directly; the others by a T-term separable series (error ≤ 1e-9 per pair), i.e. prefix
    sums; w is balanced so that W ≈ T ∝ √(kτ) (see :func:`_sigmoid_split`). As σ' is even,

        ∂/∂v_p Σ_j γ_j R̃_j = Σ_l σ'((v_p − v_l)/τ) (γ_p − γ_l) / (τ (k − 1)),

    computed the same way. Rows are processed in chunks, so memory stays O(m k); nothing of
    the computation is kept for the backward pass but the sort and the windows.
    """

    @staticmethod
    def forward(ctx, v: Tensor, tau: float) -> Tensor:
        m, k = v.shape
        s, perm = (v - v.amin(dim=1, keepdim=True)).sort(dim=1)  # (m, k); rows start at 0
        w, terms = _sigmoid_split(k, tau, float((s[:, -1] - s[:, 0]).max()) if m else 0.0)
        lo, hi = window_bounds(s, w * tau)
        u = s.double() / tau
        u = u - 0.5 * (u[:, :1] + u[:, -1:])  # centred: e^{±m u} stays in range
        out = torch.empty_like(u)
        for a, b in _chunks(m, k, lo, hi, terms):
            diff, valid, _ = _near_window(u[a:b], lo[a:b], hi[a:b])
            near = (torch.sigmoid(diff) * valid).sum(-1)  # includes l = j: σ(0) = ½
            out[a:b] = lo[a:b] + _series_sums(u[a:b], lo[a:b], hi[a:b], terms) + near
        ranks = ((out - 0.5) / (k - 1)).to(v.dtype)
        ctx.save_for_backward(perm, u, lo, hi)
        ctx.tau, ctx.terms = tau, terms
        return torch.empty_like(ranks).scatter_(1, perm, ranks)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        perm, u, lo, hi = ctx.saved_tensors
        m, k = grad.shape
        g = grad.gather(1, perm).double()  # (m, k), sorted order
        d = torch.empty_like(g)
        for a, b in _chunks(m, k, lo, hi, ctx.terms):
            diff, valid, idx = _near_window(u[a:b], lo[a:b], hi[a:b])
            sig = torch.sigmoid(diff)
            slope = sig * (1.0 - sig) * valid  # σ'(y), (r, k, W)
            g_l = g[a:b].gather(1, idx.view(b - a, -1)).view_as(slope)
            total = _series_sums(u[a:b], lo[a:b], hi[a:b], ctx.terms, slope=True) + slope.sum(-1)
            weighted = _series_sums(u[a:b], lo[a:b], hi[a:b], ctx.terms, g[a:b], slope=True) + (slope * g_l).sum(-1)
            d[a:b] = (g[a:b] * total - weighted) / (ctx.tau * (k - 1))
        return torch.empty_like(grad).scatter_(1, perm, d.to(grad.dtype)), None


def _chunks(m: int, k: int, lo: Tensor, hi: Tensor, terms: int) -> list[tuple[int, int]]:
    """Row ranges whose near windows and series buffers fit in ``_CHUNK_ELEMENTS``."""
    width = int((hi - lo).max().item()) if hi.numel() else 1
    rows = max(1, _CHUNK_ELEMENTS // (k * max(width, 8)))
    return [(a, min(a + rows, m)) for a in range(0, m, rows)]


def _soft_ranks_sigmoid_fast(v: Tensor, tau: float) -> Tensor:
    """Sigmoid soft ranks, sub-cubic (see :class:`_SigmoidSoftRanks`)."""
    return _SigmoidSoftRanks.apply(v, tau)


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
