"""The coherence loss (DESIGN.md §1): the student's soft ranks against the teacher's hard ranks.

``L = 1/(m (n − 1)) Σ_{i ∈ anchors} Σ_{j ≠ i} (R̃^S_i(j) − R^T_i(j))²``.

:func:`loss_terms` computes the per-anchor, per-pair terms (the one place where the student's
distances are normalized by their row's population standard deviation); :func:`coherence_loss`
is their mean and the Teaching view shows them one anchor at a time. The ranks themselves
(hard, soft, fast and reference) are the mathematics of :mod:`perco_viz.coherence`.

Reference: Nguyen, Gamboa, Zhang, Chhaibi, Gratton, Giaccone, "Feature Representation
Transferring to Lightweight Models via Perception Coherence", arXiv:2505.06595 (TMLR 2026).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from perco_viz.checks import check_pair
from perco_viz.coherence import (
    DEFAULT_KERNEL,
    KERNELS,
    MetricLike,
    check_metric,
    exact_hard_ranks,
    offdiag_rows,
    soft_ranks,
)
from perco_viz.losses.base import TransferLoss, register

ROW_STD_EPS = 1e-12  # DESIGN.md §1: the row's population std of the student's distances, plus 1e-12
IMPLS: tuple[str, ...] = ("fast", "reference")


def check_loss_options(tau: float = 0.1, kernel: str = DEFAULT_KERNEL, impl: str = "fast",
                       metric: MetricLike = "euclidean", teacher_metric: MetricLike | None = None,
                       **_: Any) -> None:
    """Raise ``ValueError`` naming the first bad option of the coherence loss."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if impl not in IMPLS:
        raise ValueError(f"unknown impl {impl!r}; choose 'fast' or 'reference'")
    if not (isinstance(tau, int | float) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a positive number, got {tau!r}")
    check_metric(metric)
    check_metric(teacher_metric or metric)


def anchor_index(anchors: int | Tensor | None, n: int, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> Tensor | None:
    """The anchors' indices: ``None`` (every point), an (m,) index tensor, or m random ones.

    Args:
        anchors: ``None``, an int m (m ≥ n means every point) or an index tensor.
        n: number of points.
        device: where the indices go.
        generator: random generator for the subset.

    Returns:
        ``None`` (every point is an anchor) or an (m,) int64 tensor of indices in [0, n).
    """
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


class LossTerms(NamedTuple):
    """What the coherence loss sees, one row per anchor (the off-diagonal layout: row r holds
    anchor ``a_r``'s values for the n − 1 other points, in their original order).

    Attributes:
        anchors: (m,) int64 indices of the anchors (``arange(n)`` when every point is one).
        teacher_distances: (m, n − 1) teacher dissimilarities (no gradient; snapped to the tie
            rule of :func:`perco_viz.coherence.tie_tolerance`: ties are exactly equal).
        teacher_ranks: (m, n − 1) teacher's hard normalized ranks R^T (ties ½ under that rule,
            no gradient; see :func:`perco_viz.coherence.exact_hard_ranks`).
        student_distances: (m, n − 1) student dissimilarities.
        student_normalized: (m, n − 1) the same divided by their row's population std + 1e-12.
        student_soft_ranks: (m, n − 1) student's soft ranks R̃^S of the normalized distances.
        terms: (m, n − 1) ``(R̃^S − R^T)²``; the loss is their mean.
    """

    anchors: Tensor
    teacher_distances: Tensor
    teacher_ranks: Tensor
    student_distances: Tensor
    student_normalized: Tensor
    student_soft_ranks: Tensor
    terms: Tensor


def loss_terms(
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
) -> LossTerms:
    """The terms ``(R̃^S_i(j) − R^T_i(j))²`` of the coherence loss, per anchor i and point j ≠ i.

    ``R^T`` is the teacher's hard normalized rank (ties ½, no gradient); ``R̃^S`` is the
    student's soft rank on its dissimilarities divided by their row's population standard
    deviation (+1e-12), which makes the loss invariant to the scale of the student's features.

    Args:
        student: (n, d_s) features, n ≥ 3; the terms are differentiable in them.
        teacher: (n, d_t) features; d_t may differ from d_s. No gradient flows to them.
        tau, kernel, metric, teacher_metric, anchors, impl, generator: see :func:`coherence_loss`.

    Returns:
        A :class:`LossTerms` of (m, n − 1) tensors, m the number of anchors, in the compute
        dtype (float32, or float64 for float64 input).
    """
    check_loss_options(tau, kernel, impl, metric, teacher_metric)
    student, teacher = check_pair(student, teacher, min_points=3)
    n = student.shape[0]
    idx = anchor_index(anchors, n, student.device, generator)
    with torch.no_grad():
        d_t, r_t = exact_hard_ranks(teacher.detach().to(student.device), idx, teacher_metric or metric)
    d_s = offdiag_rows(student, idx, metric)  # (m, n − 1)
    d_t, r_t = d_t.to(d_s.dtype), r_t.to(d_s.dtype)
    d_hat = d_s / (d_s.std(dim=1, unbiased=False, keepdim=True) + ROW_STD_EPS)
    r_s = soft_ranks(d_hat, tau, kernel, impl)
    terms = (r_s - r_t.to(r_s.dtype)) ** 2
    rows = torch.arange(n, device=student.device) if idx is None else idx
    return LossTerms(rows, d_t, r_t, d_s, d_hat, r_s, terms)


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

    ``L = 1/(m (n − 1)) Σ_{i ∈ anchors} Σ_{j ≠ i} (R̃^S_i(j) − R^T_i(j))²``, the mean of
    :func:`loss_terms`: ``R^T`` is the teacher's hard normalized rank (ties ½, no gradient)
    and ``R̃^S`` the student's soft rank on dissimilarities divided by their row's population
    standard deviation (+1e-12), which makes the loss invariant to the scale of the student's
    features.

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
    return loss_terms(student, teacher, tau=tau, kernel=kernel, metric=metric, teacher_metric=teacher_metric,
                      anchors=anchors, impl=impl, generator=generator).terms.mean()


@register("coherence")
class CoherenceLoss(TransferLoss):
    """Module form of :func:`coherence_loss`; holds the options (no learnable parts).

    Args:
        student_dim: width of the student features (unused: no projector is needed).
        teacher_dim: width of the teacher features (unused).
        tau, kernel, metric, teacher_metric, anchors, impl: see :func:`coherence_loss`.

    >>> CoherenceLoss(4, 32, tau=0.05)(torch.randn(16, 4), torch.randn(16, 32)).shape
    torch.Size([])
    """

    order = 0
    summary = "Perception coherence: match the teacher's ranking of dissimilarities, not its geometry."
    defaults = {"tau": 0.1, "kernel": DEFAULT_KERNEL, "metric": "euclidean", "teacher_metric": None,
                "anchors": None, "impl": "fast"}
    loss_fn = staticmethod(coherence_loss)
    check_options = staticmethod(check_loss_options)
