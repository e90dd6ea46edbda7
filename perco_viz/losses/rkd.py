"""RKD: relational knowledge distillation (distance-wise and angle-wise terms).

Reference: Park, Kim, Lu, Cho, "Relational Knowledge Distillation", CVPR 2019.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from perco_viz.coherence import safe_sqrt
from perco_viz.losses.base import (
    Features,
    TransferLoss,
    check_nonnegative,
    prepare_pair,
    register,
    sq_dists,
)


def rkd_distances(x: Tensor, eps: float = 1e-12) -> Tensor:
    """ψ_D: (n, d) → (n, n) euclidean distances divided by their mean over all pairs i ≠ j.

    The paper's normalisation μ = (1 / |χ²|) Σ_{(i, j) ∈ χ²} ‖x_i − x_j‖ with χ² the pairs i ≠ j. The
    authors' code averages the *positive* distances only, which is the same unless two rows
    of the batch coincide (their distance 0 then lowers μ here, not there).
    """
    d = safe_sqrt(sq_dists(x))  # (n, n), 0 on the diagonal
    n = x.shape[0]
    mean = d.sum() / max(n * (n - 1), 1)
    return d / mean.clamp_min(eps)


def rkd_angles(x: Tensor) -> Tensor:
    """ψ_A: (n, d) → (n, n, n) cosines; ``[a, b, c]`` is the cosine of the angle b-a-c at vertex a.

    Degenerate triplets (b == a or c == a) hold 0, identical in student and teacher.
    """
    e = F.normalize(x[None, :, :] - x[:, None, :], dim=2)  # (n, n, d): e[a, b] = unit(x_b - x_a)
    return e @ e.transpose(1, 2)  # (n, n, n)


def rkd_loss(
    student: Features,
    teacher: Features,
    *,
    distance_weight: float = 25.0,
    angle_weight: float = 50.0,
    eps: float = 1e-12,
) -> Tensor:
    """Relational KD: match normalized pairwise distances and triplet angles (Huber loss).

    Distance term: pairwise euclidean distances, each matrix divided by its mean over all
    pairs i ≠ j (the paper's μ; see :func:`rkd_distances`), compared by smooth-L1 averaged
    over the n² entries. Angle term: cosines of the angles of all n³ ordered triplets,
    compared by smooth-L1 averaged over the n³ entries. The paper sums the Huber terms over
    pairs and triplets; both averages (diagonal and degenerate triplets included, they are 0)
    are the authors' code's, for which the paper's weights 25 and 50 were chosen.

    Memory: the angle term builds (n, n, d) tensors of differences and unit differences and
    an (n, n, n) tensor of cosines for each network, the student's kept for the backward
    pass: O(n²·d + n³); measured peak about 0.8 GB at n = 256, d_s = d_t = 512 (float32, CPU)
    and 0.25 GB at d = 64. Set ``angle_weight=0`` to skip it.

    Args:
        student: (n, d_s) student features, n ≥ 3.
        teacher: (n, d_t) teacher features.
        distance_weight: weight of the distance-wise term (≥ 0).
        angle_weight: weight of the angle-wise term (≥ 0).
        eps: floor of the mean distance (all points identical).

    Returns:
        Scalar ``distance_weight * L_D + angle_weight * L_A``.

    Reference:
        Park, Kim, Lu, Cho, "Relational Knowledge Distillation", CVPR 2019.

    >>> import torch
    >>> t = torch.randn(6, 3)
    >>> float(rkd_loss(2.0 * t + 1.0, t)) < 1e-6
    True
    """
    check_rkd_options(distance_weight=distance_weight, angle_weight=angle_weight)
    s, t = prepare_pair(student, teacher, min_points=3)
    loss = s.new_zeros(())
    if distance_weight > 0:
        loss = loss + distance_weight * F.smooth_l1_loss(rkd_distances(s, eps), rkd_distances(t, eps))
    if angle_weight > 0:
        loss = loss + angle_weight * F.smooth_l1_loss(rkd_angles(s), rkd_angles(t))
    return loss


def check_rkd_options(*, distance_weight: float, angle_weight: float, **_: Any) -> None:
    """Both weights finite and ≥ 0, not both 0."""
    check_nonnegative(distance_weight=distance_weight, angle_weight=angle_weight)
    if distance_weight == 0 and angle_weight == 0:
        raise ValueError("RKD needs distance_weight > 0 or angle_weight > 0; both are 0")


@register("rkd")
class RKDLoss(TransferLoss):
    """RKD: match normalized pairwise distances and triplet angles (see :func:`rkd_loss`).

    Reference:
        Park et al., "Relational Knowledge Distillation", CVPR 2019.

    >>> import torch
    >>> RKDLoss(8, 32, angle_weight=0.0)(torch.randn(5, 8), torch.randn(5, 32)).shape
    torch.Size([])
    """

    order = 20
    summary = "RKD: match the teacher's normalized pairwise distances and triplet angles."
    defaults = {"distance_weight": 25.0, "angle_weight": 50.0}
    loss_fn = staticmethod(rkd_loss)
    check_options = staticmethod(check_rkd_options)
