"""CKA: one minus linear centered kernel alignment.

Reference: Kornblith, Norouzi, Lee, Hinton, "Similarity of Neural Network Representations
Revisited", ICML 2019.
"""

from __future__ import annotations

import torch
from torch import Tensor

from perco_viz.losses.base import Features, TransferLoss, check_positive, prepare_pair, register


def hsic_terms(s: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(||SᵀT||_F², ||SᵀS||_F, ||TᵀT||_F)`` of centred (n, d_s) and (n, d_t) features, in the
    cheaper of the feature form (d × d products) and the Gram form (n × n products)."""
    n, d_s, d_t = s.shape[0], s.shape[1], t.shape[1]
    if n * (d_s + d_t) < d_s * d_s + d_t * d_t + d_s * d_t:
        k_s, k_t = s @ s.T, t @ t.T  # (n, n) each; tr(K_S K_T) = ||SᵀT||_F²
        return (k_s * k_t).sum(), torch.linalg.vector_norm(k_s), torch.linalg.vector_norm(k_t)
    cross = s.T @ t  # (d_s, d_t)
    return (
        (cross * cross).sum(),
        torch.linalg.vector_norm(s.T @ s),
        torch.linalg.vector_norm(t.T @ t),
    )


def unit_centred(x: Tensor) -> Tensor:
    """Column-centred (n, d) x divided by a constant (no gradient) that makes its largest entry 1:
    CKA is scale-invariant, and its fourth powers then cannot overflow in float32."""
    xc = x - x.mean(dim=0)
    return xc / xc.detach().abs().amax().clamp_min(torch.finfo(x.dtype).tiny)


def cka_loss(student: Features, teacher: Features, *, eps: float = 1e-12) -> Tensor:
    """One minus linear CKA between student and teacher features.

    With column-centred S and T: ``CKA = ||SᵀT||_F² / (||SᵀS||_F ||TᵀT||_F)``; the loss is
    ``1 − CKA``, in [0, 1], 0 when the student is an orthogonal transform and isotropic
    scaling of the teacher (up to a shift).

    Args:
        student: (n, d_s) student features, n ≥ 2.
        teacher: (n, d_t) teacher features.
        eps: floor of the denominator (a constant student gives CKA 0, loss 1).

    Returns:
        Scalar ``1 − CKA``.

    Reference:
        Kornblith, Norouzi, Lee, Hinton, "Similarity of Neural Network Representations
        Revisited", ICML 2019.

    >>> t = torch.randn(10, 3)
    >>> float(cka_loss(2.0 * t + 1.0, t)) < 1e-6
    True
    """
    check_positive(eps=eps)
    s, t = prepare_pair(student, teacher, min_points=2)
    cross, norm_s, norm_t = hsic_terms(unit_centred(s), unit_centred(t))
    return (1.0 - cross / (norm_s * norm_t).clamp_min(eps)).clamp_min(0.0)  # CKA <= 1 (rounding)


@register("cka")
class CKALoss(TransferLoss):
    """CKA: one minus linear CKA (see :func:`cka_loss`).

    Reference:
        Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019.

    >>> CKALoss(8, 32)(torch.randn(5, 8), torch.randn(5, 32)).shape
    torch.Size([])
    """

    order = 60
    summary = "CKA: maximize linear centered kernel alignment with the teacher's features."
    defaults = {}
    loss_fn = staticmethod(cka_loss)
