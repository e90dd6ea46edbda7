"""FitNet: regress the teacher's features through a learned linear projector.

Reference: Romero, Ballas, Kahou, Chassang, Gatta, Bengio, "FitNets: Hints for Thin Deep Nets",
ICLR 2015.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from perco_viz.losses.base import Features, TransferLoss, prepare_pair, register


def fitnet_loss(
    student: Features, teacher: Features, weight: Tensor | None = None, bias: Tensor | None = None
) -> Tensor:
    """FitNet hint loss: mean squared error between projected student and teacher features.

    Args:
        student: (n, d_s) student features, n ≥ 2.
        teacher: (n, d_t) teacher features.
        weight: (d_t, d_s) weight of the linear projector (regressor); ``None`` means the
            identity, which needs d_s == d_t.
        bias: (d_t,) bias of the projector, or ``None``.

    Returns:
        Scalar ``mean((student @ weight.T + bias - teacher) ** 2)`` over the n × d_t entries.
        The paper's hint loss (Eq. 3) is ``½ ‖·‖²`` per example: this mean is that times
        2 / d_t, averaged over the batch, so a paper's weight λ reads λ · d_t / 2 here.

    Reference:
        Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015.

    >>> import torch
    >>> t = torch.randn(8, 4)
    >>> float(fitnet_loss(t, t))
    0.0
    """
    s, t = prepare_pair(student, teacher, min_points=2)
    if weight is not None:
        if weight.shape != (t.shape[1], s.shape[1]):
            raise ValueError(
                f"projector weight must have shape (teacher_dim, student_dim) = "
                f"({t.shape[1]}, {s.shape[1]}), got {tuple(weight.shape)}"
            )
        s = F.linear(s, weight.to(s.dtype), None if bias is None else bias.to(s.dtype))  # (n, d_t)
    if s.shape != t.shape:
        raise ValueError(
            f"FitNet compares features of one width: student {s.shape[1]} vs teacher "
            f"{t.shape[1]}; give a projector weight of shape ({t.shape[1]}, {s.shape[1]})"
        )
    return F.mse_loss(s, t)


@register("fitnet")
class FitNetLoss(TransferLoss):
    """FitNet: MSE after a learned linear projector (student_dim → teacher_dim).

    The projector is a registered ``nn.Linear``: put ``module.parameters()`` in the optimizer.

    Args:
        student_dim: width d_s of the student features.
        teacher_dim: width d_t of the teacher features.

    Reference:
        Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015.

    >>> import torch
    >>> loss = FitNetLoss(8, 32)
    >>> loss(torch.randn(5, 8), torch.randn(5, 32)).shape
    torch.Size([])
    """

    order = 10
    summary = "FitNet: regress the teacher's features through a learned linear projector (MSE)."
    defaults = {}

    def __init__(self, student_dim: int, teacher_dim: int, **options: Any) -> None:
        super().__init__(student_dim, teacher_dim, **options)
        if student_dim < 1 or teacher_dim < 1:
            raise ValueError(
                f"FitNet needs positive feature widths to build its projector, got "
                f"student_dim={student_dim}, teacher_dim={teacher_dim}"
            )
        self.projector = nn.Linear(student_dim, teacher_dim)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Loss for a batch: student (n, d_s), teacher (n, d_t) → scalar."""
        return fitnet_loss(student, teacher, self.projector.weight, self.projector.bias)
