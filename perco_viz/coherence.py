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
:func:`rank_agreement`, :func:`normalized_ranks`) is exact — ties included, under the one tie
rule of :func:`tie_tolerance` — and runs in float64 on the CPU with sort-based counting
(O(n² log n)), in blocks of anchor rows (memory O(n) rows, beyond what a function returns). The soft ranks (:func:`soft_ranks`, what the loss trains
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


# --------------------------------------------------------------------------- exact ties
# Distances that are equal in exact arithmetic must compare equal wherever a rank is taken
# (DESIGN.md §1: a tie counts ½). Floating point cannot promise that: a matrix product rounds
# two equal distances apart, and even direct differences sum the same squares in different
# orders. So every hard rank follows one documented rule, :func:`tie_tolerance`: two
# dissimilarities of the same anchor are a tie when they differ by no more than the rounding
# bound of their float64 computation by direct differences (:func:`exact_dissimilarity`,
# :func:`paired_dissimilarity`).
_UNIT_ROUNDOFF = 2.0**-53  # float64


def tie_tolerance(metric: MetricLike, dim: int) -> tuple[float, float]:
    """The tie rule of hard ranks: ``(rtol, floor)`` such that dissimilarities ``a`` and ``b``
    of one anchor count as equal when ``|a − b| ≤ rtol · max(|a|, |b|, floor)``.

    ``rtol = 4 (dim + 4) u`` (u = 2⁻⁵³, float64's unit roundoff) is twice the worst-case
    rounding error of a float64 sum of ``dim`` squared differences (or of a cosine's dot product
    of unit vectors), so values equal in exact arithmetic always compare equal, and values
    apart by more than ~1e-12 relative (for dim ≤ 2,000) never do.

    Args:
        metric: ``euclidean`` and ``sqeuclidean`` (relative: floor 0), ``cosine`` (values in
            [0, 2]: floor 1, i.e. absolute), or a callable (its values are taken as exact:
            ``(0.0, 0.0)``).
        dim: the features' width d.

    Returns:
        ``(rtol, floor)``.
    """
    if callable(metric):
        return 0.0, 0.0
    rtol = 4.0 * (dim + 4) * _UNIT_ROUNDOFF
    return (rtol, 1.0) if metric == "cosine" else (rtol, 0.0)


def snap_sorted(s: Tensor, rtol: float, floor: float = 0.0) -> Tensor:
    """Rows sorted ascending, with each run of values that :func:`tie_tolerance` calls equal
    (consecutive gaps ``≤ rtol · max(|a|, |b|, floor)``) set to the run's first value.

    Args:
        s: (m, k) rows, each sorted ascending, on any device.
        rtol, floor: the tie rule of :func:`tie_tolerance`.

    Returns:
        (m, k) rows, still sorted, in which ties are exactly equal.
    """
    if rtol == 0.0 or s.shape[1] < 2:
        return s
    scale = torch.maximum(torch.maximum(s[:, 1:].abs(), s[:, :-1].abs()), torch.tensor(floor, dtype=s.dtype, device=s.device))
    close = (s[:, 1:] - s[:, :-1]) <= rtol * scale
    start = torch.cat([torch.ones_like(close[:, :1]), ~close], 1)
    pos = torch.arange(s.shape[1], device=s.device).expand_as(s)
    first = torch.where(start, pos, 0).cummax(1).values  # the position where each run starts
    return s.gather(1, first)


def same_dissimilarity(a: Tensor, b: Tensor, rtol: float, floor: float = 0.0) -> Tensor:
    """Elementwise: do ``a`` and ``b`` tie under the rule of :func:`tie_tolerance`? (bool)"""
    scale = torch.maximum(torch.maximum(a.abs(), b.abs()), torch.tensor(floor, dtype=a.dtype, device=a.device))
    return (a - b).abs() <= rtol * scale


def exact_dissimilarity(x: Tensor, y: Tensor | None = None, metric: MetricLike = "euclidean") -> Tensor:
    """Dissimilarities δ(x_i, y_j) in float64, for hard ranks: euclidean by direct differences
    (``torch.cdist`` without the matrix-product shortcut), so that equal distances come out
    equal up to :func:`tie_tolerance` (a matrix product can round them 1e-8 apart).

    Args:
        x: (n, d) features (any float dtype; computed in float64 on their device).
        y: (m, d) features; ``None`` means ``x`` (the diagonal is then exactly 0).
        metric: as :func:`pairwise_dissimilarity`.

    Returns:
        (n, m) float64 dissimilarities.
    """
    x = x.to(torch.float64)
    y = x if y is None else y.to(torch.float64)
    if metric in ("euclidean", "sqeuclidean"):
        d = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
        return d * d if metric == "sqeuclidean" else d
    return pairwise_dissimilarity(x, y, metric)


def paired_dissimilarity(a: Tensor, b: Tensor, metric: MetricLike = "euclidean") -> Tensor:
    """Row-wise dissimilarities δ(a_r, b_r) in float64 by the direct formula (for sampled
    triplets: no n × n matrix); ties under :func:`tie_tolerance` as in :func:`exact_dissimilarity`.

    Args:
        a, b: (m, d) features, row r of one paired with row r of the other.
        metric: ``euclidean``, ``sqeuclidean``, ``cosine`` or a callable ``f(x, y) -> (n, m)``
            (then called on each pair: slow, for tests and small m).

    Returns:
        (m,) float64 dissimilarities.
    """
    a, b = a.to(torch.float64), b.to(torch.float64)
    if callable(metric):
        return torch.stack([metric(a[r : r + 1], b[r : r + 1]).reshape(()) for r in range(a.shape[0])]).to(torch.float64)
    if metric in ("euclidean", "sqeuclidean"):
        diff = a - b
        d2 = (diff * diff).sum(1)
        return d2 if metric == "sqeuclidean" else d2.sqrt()
    if metric == "cosine":
        an = torch.nn.functional.normalize(a, dim=1, eps=1e-12)
        bn = torch.nn.functional.normalize(b, dim=1, eps=1e-12)
        return (1.0 - (an * bn).sum(1)).clamp(0.0, 2.0)
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)} or pass a callable")


def check_metric(metric: MetricLike) -> None:
    """Raise ``ValueError`` unless ``metric`` is one of :data:`METRICS` or a callable."""
    if not callable(metric) and metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)} or pass a callable")


def _offdiag_index(anchors: Tensor, n: int) -> Tensor:
    """(m, n − 1) column indices of every point but the anchor itself, in original order."""
    cols = torch.arange(n - 1, device=anchors.device)[None, :]
    return cols + (cols >= anchors[:, None]).long()


def offdiag_rows(x: Tensor, anchors: Tensor | None, metric: MetricLike) -> Tensor:
    """(m, n − 1) dissimilarities from each anchor (``None``: every point) to every other point,
    by :func:`pairwise_dissimilarity` (differentiable; for soft ranks — hard ranks take
    :func:`sorted_exact_rows`, which follows the tie rule).

    Args:
        x: (n, d) features.
        anchors: (m,) anchor indices, or ``None`` for every point (m = n).
        metric: see :func:`pairwise_dissimilarity`.
    """
    n = x.shape[0]
    if anchors is None:  # drop the diagonal with a strided view: row i keeps every column but i
        d = pairwise_dissimilarity(x, metric=metric)  # (n, n)
        return d.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(n, n - 1)
    d = pairwise_dissimilarity(x[anchors], x, metric)  # (m, n)
    return d.gather(1, _offdiag_index(anchors, n))


# --------------------------------------------------------------------------- hard ranks
def hard_ranks(v: Tensor) -> Tensor:
    """Normalized ranks of each row of given values, ties (exactly equal values) counted ½
    (DESIGN.md §1), on ``v``'s device. Ranks of *features* go through
    :func:`exact_hard_ranks`, which applies the tie rule of :func:`tie_tolerance` first.

    Args:
        v: (m, k) dissimilarities in the off-diagonal layout (k = n − 1).

    Returns:
        (m, k) ranks ``R = (#{l ≠ j: v_l < v_j} + ½ #{l ≠ j: v_l = v_j}) / (k − 1)`` in [0, 1].
    """
    s, perm = v.sort(dim=1)
    return _ranks_of_sorted(s, perm).to(v.dtype)


def _ranks_of_sorted(s: Tensor, perm: Tensor) -> Tensor:
    """(m, k) ascending rows and their (m, k) column positions → (m, k) float64 normalized ranks
    (ties = exactly equal values, ½), in the columns' layout."""
    k = s.shape[1]
    pos = torch.arange(k, device=s.device).expand_as(perm)
    step = s[:, 1:] != s[:, :-1]  # a new tie group starts at p + 1
    edge = torch.ones_like(step[:, :1])
    first = torch.where(torch.cat([edge, step], 1), pos, 0).cummax(1).values  # #{l: v_l < v_j}
    last = torch.where(torch.cat([step, edge], 1), pos, k).flip(1).cummin(1).values.flip(1)
    # less + ½ (equal others) = (first + last) / 2, an exact half-integer
    ranks = (first + last).to(torch.float64) / (2.0 * (k - 1))
    return torch.empty_like(ranks).scatter_(1, perm, ranks)


# Hard ranks of features (measurement, the loss's teacher) follow the tie rule. On the CPU a
# hybrid that is exact under the rule and ~5× faster than direct differences: each block of
# anchor rows is computed by a float64 matrix product (squared euclidean on centred features),
# sorted, and every run of sorted neighbours closer than the product's rigorous error bound
# (plus the tie tolerance) is recomputed by direct differences — the only entries whose order
# or tie could differ from :func:`exact_dissimilarity`'s — and re-sorted; then the rows are
# snapped (:func:`snap_sorted`). Elsewhere (CUDA): direct differences, sort, snap.
_EXACT_BLOCK_ELEMENTS = 1 << 19  # entries of one block of anchor rows (4 MiB per float64 array)
_METRIC_CODE = {"euclidean": 0, "sqeuclidean": 1, "cosine": 2}


@numba.njit(cache=True, nogil=True)
def _refine_rows(a: np.ndarray, full_order: np.ndarray, s: np.ndarray, order: np.ndarray, x: np.ndarray,
                 anchors: np.ndarray, bound: np.ndarray, rtol: float, floor: float, code: int) -> None:
    """Per row r: ``a[r]`` (n,) approximate dissimilarities of anchor ``anchors[r]`` (squared for
    the euclidean codes 0 and 1; −inf at the anchor) and ``full_order[r]`` their argsort →
    ``s[r]`` (n − 1,) ascending and ``order[r]`` the points they belong to (the anchor dropped).

    Codes 0/1: every run of sorted neighbours whose gaps are ≤ 2 ``bound[r]`` + 4 rtol · value
    (the matrix product's error bound and the tie tolerance, with a margin) is recomputed by
    direct differences from ``x`` and re-sorted (runs stay in place: outside them the order is
    certain); code 0 then takes square roots. Every code: snapped to the tie rule
    (``rtol``, ``floor``) when ``rtol`` > 0.
    """
    m, k = s.shape
    d = x.shape[1]
    vals = np.empty(k)
    cols = np.empty(k, dtype=np.int64)
    for r in range(m):
        row, ordr = s[r], order[r]
        for p in range(k):
            j = full_order[r, p + 1]
            ordr[p] = j
            row[p] = a[r, j]
        if code <= 1:
            anchor = anchors[r]
            gap = 2.0 * bound[r]
            start = 0
            while start < k:
                stop = start + 1
                while stop < k and row[stop] - row[stop - 1] <= gap + 4.0 * rtol * row[stop]:
                    stop += 1
                if stop - start > 1:
                    size = stop - start
                    for q in range(size):
                        j = ordr[start + q]
                        acc = 0.0
                        for c in range(d):
                            diff = x[anchor, c] - x[j, c]
                            acc += diff * diff
                        vals[q] = acc
                        cols[q] = j
                    perm = np.argsort(vals[:size], kind="mergesort")
                    for q in range(size):
                        row[start + q] = vals[perm[q]]
                        ordr[start + q] = cols[perm[q]]
                start = stop
            if code == 0:
                for q in range(k):
                    row[q] = math.sqrt(row[q])
        if rtol > 0.0 and k > 1:
            prev = row[0]
            first = row[0]
            for q in range(1, k):
                cur = row[q]
                if cur - prev <= rtol * max(abs(cur), abs(prev), floor):
                    row[q] = first
                else:
                    first = cur
                prev = cur


class _ExactRows:
    """One feature set prepared for :func:`sorted_exact_rows` block by block (CPU, float64).

    Args:
        x: (n, d) features (checked finite by the caller).
        metric: as :func:`pairwise_dissimilarity`.
    """

    def __init__(self, x: Tensor, metric: MetricLike):
        self.metric = metric
        self.x = x.detach().to("cpu", torch.float64).contiguous()
        self.n, d = self.x.shape
        self.rtol, self.floor = tie_tolerance(metric, d)
        self.code = 3 if callable(metric) else _METRIC_CODE[metric]
        self.xn = self.x.numpy()
        if self.code <= 1:
            self.y = self.x - self.x.mean(0, keepdim=True)  # centred: smaller error bound
            self.sq_t = (self.y * self.y).sum(1)
            self.sq = self.sq_t.numpy()
            norm = np.sqrt(self.sq)
            # |product − direct| ≤ (2 γ_{d+2} + 3u)(‖y_i‖ + ‖y_j‖)²; twice that, with the widest j
            self.bound = 4.0 * (d + 8) * _UNIT_ROUNDOFF * (norm + norm.max()) ** 2
        elif self.code == 2:
            self.y = torch.nn.functional.normalize(self.x, dim=1, eps=1e-12)

    def block_size(self) -> int:
        return max(8, min(self.n, _EXACT_BLOCK_ELEMENTS // self.n))

    def sorted_block(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Anchors ``rows`` (b,) → ``(s, order)``: (b, n − 1) sorted snapped dissimilarities to
        every other point and the (b, n − 1) int64 indices of those points."""
        r = torch.from_numpy(rows)
        if self.code <= 1:  # ‖y_i‖² + ‖y_j‖² − 2 y_i·y_j, (b, n)
            a = torch.addmm(self.sq_t[None, :], self.y[r], self.y.T, alpha=-2.0).numpy()
            a += self.sq[rows, None]
            np.maximum(a, 0.0, out=a)
        elif self.code == 2:
            a = np.clip(1.0 - (self.y[r] @ self.y.T).numpy(), 0.0, 2.0)
        else:
            a = pairwise_dissimilarity(self.x[r], self.x, self.metric).detach().numpy().astype(np.float64)
            if not np.isfinite(a).all():
                raise ValueError("the metric callable returned NaN or infinite dissimilarities")
        a[np.arange(len(rows)), rows] = -np.inf  # the anchor itself sorts first; dropped below
        s, order = np.empty((len(rows), self.n - 1)), np.empty((len(rows), self.n - 1), dtype=np.int64)
        bound = self.bound[rows] if self.code <= 1 else np.zeros(len(rows))
        _refine_rows(a, np.argsort(a, axis=1), s, order, self.xn, rows, bound, self.rtol, self.floor, self.code)
        return s, order


def _sorted_rows_torch(x: Tensor, anchors: Tensor, metric: MetricLike) -> tuple[Tensor, Tensor]:
    """The same as :meth:`_ExactRows.sorted_block` on any device, by direct differences."""
    rtol, floor = tie_tolerance(metric, x.shape[1])
    d = exact_dissimilarity(x[anchors], x, metric)  # (m, n) float64
    d[torch.arange(len(anchors), device=d.device), anchors] = -math.inf
    s, order = d.sort(dim=1)
    return snap_sorted(s[:, 1:], rtol, floor), order[:, 1:]


def sorted_exact_rows(x: Tensor, anchors: Tensor | None, metric: MetricLike = "euclidean") -> tuple[Tensor, Tensor]:
    """Each anchor's dissimilarities to every other point, sorted ascending and snapped to the
    tie rule (:func:`tie_tolerance`): values equal in exact arithmetic are exactly equal.

    The ranks they give are those of :func:`exact_dissimilarity` followed by
    :func:`snap_sorted`; on the CPU they are computed by the hybrid described above this
    function (a float64 matrix product, direct differences where its error bound could matter).

    Args:
        x: (n, d) features (any float dtype; float64 inside), finite.
        anchors: (m,) anchor indices, or ``None`` for every point.
        metric: see :func:`pairwise_dissimilarity`.

    Returns:
        ``(s, order)``: (m, n − 1) float64 sorted snapped dissimilarities and (m, n − 1) int64
        indices (in ``x``) of the points they belong to, on ``x``'s device.
    """
    n = x.shape[0]
    rows = torch.arange(n, device=x.device) if anchors is None else anchors.to(x.device)
    if x.device.type != "cpu":
        return _sorted_rows_torch(x.detach(), rows, metric)
    prep = _ExactRows(x, metric)
    idx = rows.numpy().astype(np.int64)
    b = prep.block_size()
    parts = [prep.sorted_block(idx[lo:lo + b]) for lo in range(0, len(idx), b)]
    return (torch.from_numpy(np.concatenate([p[0] for p in parts])),
            torch.from_numpy(np.concatenate([p[1] for p in parts])))


@numba.njit(cache=True, nogil=True)
def _scatter_ranks(s: np.ndarray, order: np.ndarray, anchors: np.ndarray, offdiag: bool,
                   ranks: np.ndarray, values: np.ndarray, with_values: bool) -> None:
    """Per row of sorted snapped ``s`` (m, k) and point indices ``order``: the normalized rank
    ``(less + ½ equal others) / (k − 1)`` of each point, written at its column of ``ranks``
    (off-diagonal layout when ``offdiag``, else point index), and ``s`` itself into ``values``."""
    m, k = s.shape
    for r in range(m):
        a = anchors[r]
        start = 0
        while start < k:
            stop = start + 1
            while stop < k and s[r, stop] == s[r, start]:
                stop += 1
            rank = 0.5 * (start + stop - 1) / (k - 1)
            for p in range(start, stop):
                j = order[r, p]
                col = j - 1 if offdiag and j > a else j
                ranks[r, col] = rank
                if with_values:
                    values[r, col] = s[r, p]
            start = stop


def exact_hard_ranks(x: Tensor, anchors: Tensor | None, metric: MetricLike = "euclidean") -> tuple[Tensor, Tensor]:
    """Hard normalized ranks of each anchor's row (ties ½ under the tie rule), with the
    dissimilarities they rank: what the coherence loss takes from its teacher.

    Args:
        x: (n, d) features, finite (no gradient is taken).
        anchors: (m,) anchor indices, or ``None`` for every point (m = n).
        metric: see :func:`pairwise_dissimilarity`.

    Returns:
        ``(d, R)``: (m, n − 1) float64 dissimilarities (snapped: ties are exactly equal) and
        (m, n − 1) float64 ranks, in the off-diagonal layout, on ``x``'s device.
    """
    n = x.shape[0]
    rows = torch.arange(n, device=x.device) if anchors is None else anchors.to(x.device)
    if x.device.type != "cpu":
        s, order = _sorted_rows_torch(x.detach(), rows, metric)
        cols = order - (order > rows[:, None]).long()
        return torch.empty_like(s).scatter_(1, cols, s), _ranks_of_sorted(s, cols)
    prep = _ExactRows(x, metric)
    idx = rows.numpy().astype(np.int64)
    ranks, values = np.empty((len(idx), n - 1)), np.empty((len(idx), n - 1))

    def block(lo: int, hi: int) -> None:
        s, order = prep.sorted_block(idx[lo:hi])
        _scatter_ranks(s, order, idx[lo:hi], True, ranks[lo:hi], values[lo:hi], True)

    _for_blocks(len(idx), prep.block_size(), block)
    return torch.from_numpy(values), torch.from_numpy(ranks)


# Measurement runs on the CPU in float64, blocks of anchor rows at a time (memory: a few
# blocks, never an n × n matrix but the one a function returns): exact counts, blocks split
# over threads (the numba kernels, numpy's sort and BLAS release the GIL; no numba threading
# layer is involved, so concurrent sessions of the app can call them safely).
@numba.njit(cache=True, nogil=True)
def _kendall_rows(t_s: np.ndarray, t_order: np.ndarray, s_s: np.ndarray, s_order: np.ndarray, n: int) -> np.ndarray:
    """Per row: Kendall's S = Σ over pairs {j, l} of sign(t_j − t_l)·sign(s_j − s_l), from both
    sides' sorted snapped values and point indices (each row: the same n − 1 points).

    Walks the row in increasing teacher order, one tie group at a time; a Fenwick tree over
    the student's min-ranks counts earlier points (strictly smaller teacher value) that the
    student puts below (+1) or above (−1) the current one. Ties in either contribute 0.
    O(k log k) per row after the sorts.
    """
    m, k = t_s.shape
    out = np.zeros(m, dtype=np.int64)
    s_rank = np.empty(n, dtype=np.int32)
    tree = np.zeros(k + 1, dtype=np.int32)  # int32: half the cache lines of int64 (k < 2³¹)
    count = np.zeros(k, dtype=np.int32)  # inserted points per student min-rank
    for r in range(m):
        for p in range(k):  # min-rank: position of the first equal value in sorted order
            if p > 0 and s_s[r, p] == s_s[r, p - 1]:
                s_rank[s_order[r, p]] = s_rank[s_order[r, p - 1]]
            else:
                s_rank[s_order[r, p]] = p
        tree[:] = 0
        count[:] = 0
        total, inserted, start = 0, 0, 0
        while start < k:
            stop = start + 1
            while stop < k and t_s[r, stop] == t_s[r, start]:
                stop += 1
            for p in range(start, stop):  # query the group against strictly smaller t
                q = s_rank[t_order[r, p]]
                below, i = 0, q
                while i > 0:
                    below += tree[i]
                    i -= i & (-i)
                total += below - (inserted - below - count[q])  # above = inserted − at or below
            for p in range(start, stop):  # then insert the group
                q = s_rank[t_order[r, p]]
                count[q] += 1
                i = q + 1
                while i <= k:
                    tree[i] += 1
                    i += i & (-i)
            inserted += stop - start
            start = stop
        out[r] = total
    return out


def _prepare(features: np.ndarray | Tensor, metric: MetricLike, name: str) -> _ExactRows:
    x = as_tensor(features, name)
    check_finite(x, name)
    if x.shape[0] < 3:
        raise ValueError(f"need at least 3 points to compare rankings, got {x.shape[0]}")
    return _ExactRows(x, metric)


def _prepare_pair(student, teacher, metric, teacher_metric) -> tuple[_ExactRows, _ExactRows]:
    check_metric(metric)
    check_metric(teacher_metric or metric)
    s, t = check_pair(student, teacher, min_points=3)
    return _prepare(s, metric, "student"), _prepare(t, teacher_metric or metric, "teacher")


def _cores() -> int:
    """The cores this process may run on (its affinity; ``os.cpu_count()`` where unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def _for_blocks(n: int, block: int, fn: Callable[[int, int], None]) -> None:
    """Run ``fn(lo, hi)`` on every block of anchor rows, over all cores (each block writes its
    own rows of the output, so no result is gathered)."""
    bounds = [(lo, min(lo + block, n)) for lo in range(0, n, block)]
    workers = max(1, min(_cores(), len(bounds)))
    if workers == 1:
        for lo, hi in bounds:
            fn(lo, hi)
        return
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda b: fn(*b), bounds):
            pass


def normalized_ranks(features: np.ndarray | Tensor, *, metric: MetricLike = "euclidean",
                     dtype: type = np.float64) -> np.ndarray:
    """Hard normalized ranks ``R_i(j)`` of every point as seen from every anchor (ties ½ under
    the tie rule of :func:`tie_tolerance`: distances equal in exact arithmetic tie).

    Computed in blocks of anchor rows written into the result: memory beyond the (n, n) result
    is a few blocks (rows of at most 2¹⁹ entries each).

    Args:
        features: (n, d) features, n ≥ 3.
        metric: dissimilarity (see :func:`pairwise_dissimilarity`).
        dtype: the result's dtype (``np.float32`` halves the memory; each value is then rounded).

    Returns:
        (n, n) array, ``R[i, j]`` in [0, 1] (ties ½), NaN on the diagonal.

    >>> normalized_ranks(np.array([[0.0], [1.0], [3.0]]))[0]
    array([nan,  0.,  1.])
    """
    check_metric(metric)
    prep = _prepare(features, metric, "features")
    n = prep.n
    out = np.empty((n, n), dtype=dtype)
    idx = np.arange(n, dtype=np.int64)

    def block(lo: int, hi: int) -> None:
        s, order = prep.sorted_block(idx[lo:hi])
        rows = out[lo:hi] if dtype == np.float64 else np.empty((hi - lo, n))
        _scatter_ranks(s, order, idx[lo:hi], False, rows, rows, False)
        rows[np.arange(hi - lo), idx[lo:hi]] = math.nan
        if rows.base is not out:
            out[lo:hi] = rows

    _for_blocks(n, prep.block_size(), block)
    return out


def rank_agreement(
    student: np.ndarray | Tensor,
    teacher: np.ndarray | Tensor,
    *,
    metric: MetricLike = "euclidean",
    teacher_metric: MetricLike | None = None,
    dtype: type = np.float64,
) -> np.ndarray:
    """Rank-agreement matrix ``A[i, j] = 1 − |R^T_i(j) − R^S_i(j)|`` (hard ranks, tie rule of
    :func:`tie_tolerance`), built block by block in the result.

    Args:
        student: (n, d_s) features.
        teacher: (n, d_t) features.
        metric: student dissimilarity (and the teacher's unless ``teacher_metric``).
        teacher_metric: teacher dissimilarity.
        dtype: the result's dtype.

    Returns:
        (n, n) array in [0, 1], NaN on the diagonal.
    """
    return ranks_and_agreement(student, teacher, metric=metric, teacher_metric=teacher_metric, dtype=dtype,
                               ranks=False)[2]


def ranks_and_agreement(
    student: np.ndarray | Tensor,
    teacher: np.ndarray | Tensor,
    *,
    metric: MetricLike = "euclidean",
    teacher_metric: MetricLike | None = None,
    dtype: type = np.float64,
    ranks: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """``(R_T, R_S, A)`` in one blocked pass: each is what :func:`normalized_ranks` (teacher,
    student) and :func:`rank_agreement` return, written block by block into the results (no
    float64 n × n intermediate when ``dtype`` is ``np.float32``).

    Args:
        student: (n, d_s) features, n ≥ 3.
        teacher: (n, d_t) features.
        metric: student dissimilarity (and the teacher's unless ``teacher_metric``).
        teacher_metric: teacher dissimilarity.
        dtype: the results' dtype.
        ranks: ``False``: only A (``R_T`` and ``R_S`` are then ``None``).

    Returns:
        ``(R_T, R_S, A)``, each (n, n) with NaN on the diagonal.
    """
    s_prep, t_prep = _prepare_pair(student, teacher, metric, teacher_metric)
    n = s_prep.n
    out_t, out_s = (np.empty((n, n), dtype=dtype), np.empty((n, n), dtype=dtype)) if ranks else (None, None)
    out = np.empty((n, n), dtype=dtype)
    idx = np.arange(n, dtype=np.int64)

    def block(lo: int, hi: int) -> None:
        r_t, r_s = np.empty((hi - lo, n)), np.empty((hi - lo, n))
        diag = (np.arange(hi - lo), idx[lo:hi])
        for prep, r in ((t_prep, r_t), (s_prep, r_s)):
            s, order = prep.sorted_block(idx[lo:hi])
            _scatter_ranks(s, order, idx[lo:hi], False, r, r, False)
            r[diag] = math.nan
        if ranks:
            out_t[lo:hi], out_s[lo:hi] = r_t, r_s
        np.subtract(r_t, r_s, out=r_t)
        np.abs(r_t, out=r_t)
        np.subtract(1.0, r_t, out=r_t)
        out[lo:hi] = r_t

    _for_blocks(n, s_prep.block_size(), block)
    return out_t, out_s, out


def per_sample_coherence(
    student: np.ndarray | Tensor,
    teacher: np.ndarray | Tensor,
    *,
    metric: MetricLike = "euclidean",
    teacher_metric: MetricLike | None = None,
) -> np.ndarray:
    """Per-sample coherence ``c_i``: the share of ordered pairs (j, k) of other points that
    anchor i's student and teacher order the same way (ties ½, under the tie rule of
    :func:`tie_tolerance`). Blocks of anchor rows at a time: memory O(n) rows of a block.

    Args:
        student: (n, d_s) features.
        teacher: (n, d_t) features.
        metric: student dissimilarity (and the teacher's unless ``teacher_metric``).
        teacher_metric: teacher dissimilarity.

    Returns:
        (n,) float64 array in [0, 1]; 1 = same perception, 0.5 = chance, 0 = reversed.
    """
    s_prep, t_prep = _prepare_pair(student, teacher, metric, teacher_metric)
    n = s_prep.n
    out = np.empty(n)
    idx = np.arange(n, dtype=np.int64)
    pairs = (n - 1) * (n - 2) // 2

    def block(lo: int, hi: int) -> None:
        t_s, t_order = t_prep.sorted_block(idx[lo:hi])
        s_s, s_order = s_prep.sorted_block(idx[lo:hi])
        kendall = _kendall_rows(t_s, t_order, s_s, s_order, n)
        # agree + ½ ties = (pairs + S) / 2, an exact half-integer; one division
        out[lo:hi] = (pairs + kendall).astype(np.float64) / (2.0 * pairs)

    _for_blocks(n, s_prep.block_size(), block)
    return out


def perception_coherence(
    student: np.ndarray | Tensor,
    teacher: np.ndarray | Tensor,
    *,
    metric: MetricLike = "euclidean",
    teacher_metric: MetricLike | None = None,
) -> float:
    """Perception coherence PC: the fraction of ordered triplets (i, j, k), all distinct, on
    which ``(D_T[i,j] − D_T[i,k]) · (D_S[i,j] − D_S[i,k]) > 0`` (ties ½, under the tie rule of
    :func:`tie_tolerance`) — the mean of :func:`per_sample_coherence`.

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
        w = v - v.amin(dim=1, keepdim=True)
        if v.device.type == "cpu":  # fused per row (numba): one pass over memory, not ten
            w = w.detach().contiguous()
            order, ranks = _ramp_rows_cpu(w.numpy(), tau)
            ctx.save_for_backward(w, torch.from_numpy(order))
            ctx.tau = tau
            return torch.from_numpy(ranks)
        s, perm = w.sort(dim=1)  # (m, k)
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
        if grad.device.type == "cpu":
            w, order = ctx.saved_tensors
            wn, on = w.numpy(), order.numpy()
            g = grad.detach().to(w.dtype).contiguous().numpy()
            out = np.empty_like(wn)
            _for_blocks(len(g), _per_core(len(g)), lambda a, b: _ramp_backward_rows(
                wn[a:b], on[a:b], wn.dtype.type(ctx.tau), ctx.tau, g[a:b], out[a:b]))
            return torch.from_numpy(out), None
        perm, lo, hi = ctx.saved_tensors
        g = grad.gather(1, perm).double()  # (m, k), sorted order
        d = ((hi - lo) * g - _window_sum(g, lo, hi)) / (2.0 * ctx.tau * (grad.shape[1] - 1))
        return torch.empty_like(grad).scatter_(1, perm, d.to(grad.dtype)), None


_PAD = 8  # sentinel slots after a sorted row: the window edges advance 8 comparisons at a time


@numba.njit(cache=True, nogil=True, inline="always")
def _edge(s, e, q, strict):
    """Advance ``e`` to the first position of the sorted, +inf-padded ``s`` with ``s[e] > q``
    (``≥ q`` when ``strict``), from ``e``, counting 8 comparisons at a time: the count has no
    branch to mispredict (a plain two-pointer ``while`` spent ~4× longer mispredicting)."""
    while True:
        c = 0
        for t in range(_PAD):
            c += (s[e + t] < q) if strict else (s[e + t] <= q)
        e += c
        if c < _PAD:
            return e


@numba.njit(cache=True, nogil=True)
def _ramp_forward_rows(w, order, half, tau, out) -> None:
    """CPU form of :class:`_RampSoftRanks`'s forward, per row: gather the sorted values
    (``order``: each row's argsort), the window bounds (compared in ``w``'s dtype, as
    :func:`window_bounds`), float64 prefix sums, the ranks written back at their columns."""
    m, k = w.shape
    s = np.full(k + _PAD, np.inf, dtype=w.dtype)
    prefix = np.zeros(k + 1)
    for r in range(m):
        for p in range(k):
            s[p] = w[r, order[r, p]]
            prefix[p + 1] = prefix[p] + np.float64(s[p])
        a = 0
        b = 0
        for j in range(k):
            x = s[j]
            a = _edge(s, a, x - half, False)  # lo_j = #{l: s_l ≤ s_j − τ}
            b = _edge(s, b, x + half, True)  # hi_j = #{l: s_l < s_j + τ}
            window = (b - a) * (np.float64(x) + tau) - (prefix[b] - prefix[a])
            out[r, order[r, j]] = (a + window / (2.0 * tau) - 0.5) / (k - 1)


@numba.njit(cache=True, nogil=True)
def _ramp_backward_rows(w, order, half, tau, grad, out) -> None:
    """CPU form of :class:`_RampSoftRanks`'s backward, per row (window bounds recomputed from
    the saved values): ``∂/∂s_l = (|W_l| γ_l − Σ_{j ∈ W_l} γ_j) / (2τ (k − 1))``."""
    m, k = w.shape
    s = np.full(k + _PAD, np.inf, dtype=w.dtype)
    g = np.empty(k)
    prefix = np.zeros(k + 1)
    for r in range(m):
        for p in range(k):
            c = order[r, p]
            s[p] = w[r, c]
            g[p] = grad[r, c]
            prefix[p + 1] = prefix[p] + g[p]
        a = 0
        b = 0
        for j in range(k):
            x = s[j]
            a = _edge(s, a, x - half, False)
            b = _edge(s, b, x + half, True)
            out[r, order[r, j]] = ((b - a) * g[j] - (prefix[b] - prefix[a])) / (2.0 * tau * (k - 1))


def _per_core(m: int) -> int:
    """Rows per block that give every core one block (at least 64 rows)."""
    return max(64, -(-m // _cores()))


def _ramp_rows_cpu(w: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """(m, k) rows starting at 0 → their argsort (int32 when k allows) and the ramp soft ranks."""
    m, k = w.shape
    order = np.empty((m, k), dtype=np.int32 if k < 2**31 else np.int64)
    ranks = np.empty_like(w)

    def block(a: int, b: int) -> None:
        order[a:b] = np.argsort(w[a:b], axis=1)
        _ramp_forward_rows(w[a:b], order[a:b], w.dtype.type(tau), tau, ranks[a:b])

    _for_blocks(m, _per_core(m), block)
    return order, ranks


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
