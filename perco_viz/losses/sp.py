"""SP: similarity-preserving knowledge distillation (row-normalized batch Gram matrices).

Reference: Tung, Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from perco_viz.losses.base import Features, TransferLoss, prepare_pair, register


def sp_loss(student: Features, teacher: Features) -> Tensor:
    """Similarity-preserving KD: match row-normalized Gram matrices of the batch.

    ``G = F Fᵀ`` (n × n), each row divided by its L2 norm, loss ``||G_T − G_S||_F² / n²``
    (the paper's loss for one pair of layers, scale included).

    Args:
        student: (n, d_s) student features, n ≥ 2.
        teacher: (n, d_t) teacher features.

    Returns:
        Scalar loss.

    Reference:
        Tung, Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019.

    >>> import torch
    >>> t = torch.randn(6, 3)
    >>> float(sp_loss(t, t))
    0.0
    """
    s, t = prepare_pair(student, teacher, min_points=2)
    g_s = F.normalize(s @ s.T, dim=1)  # (n, n)
    g_t = F.normalize(t @ t.T, dim=1)  # (n, n)
    return ((g_t - g_s) ** 2).sum() / len(s) ** 2


@register("sp")
class SPLoss(TransferLoss):
    """SP: match row-normalized batch Gram matrices (see :func:`sp_loss`).

    Reference:
        Tung, Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019.

    >>> import torch
    >>> SPLoss(8, 32)(torch.randn(5, 8), torch.randn(5, 32)).shape
    torch.Size([])
    """

    order = 40
    summary = "SP: match the teacher's row-normalized Gram matrix of the batch."
    defaults = {}
    loss_fn = staticmethod(sp_loss)
