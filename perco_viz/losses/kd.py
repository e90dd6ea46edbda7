"""Hinton knowledge distillation on logits: class-aware, so not in the registry of
representation-transfer losses; the engine adds it to any of them when both models have a
classification head (``loss.kd_weight``).

Reference: Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", NIPS 2014
Deep Learning Workshop, arXiv:1503.02531 (2015).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from perco_viz.losses.base import Features, check_positive, prepare_pair


def hinton_kd_loss(
    student_logits: Features, teacher_logits: Features, temperature: float = 4.0
) -> Tensor:
    """Hinton knowledge distillation on logits (class-aware).

    ``T² · KL(softmax(t / T) || softmax(s / T))``, averaged over the batch; the factor T²
    (as the paper advises) keeps the gradients' scale independent of T.

    Args:
        student_logits: (n, C) student logits.
        teacher_logits: (n, C) teacher logits over the same C classes.
        temperature: softmax temperature T (> 0).

    Returns:
        Scalar loss, 0 when the logits agree up to a per-row shift.

    Reference:
        Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", NIPS 2014
        Deep Learning Workshop, arXiv:1503.02531 (2015).

    >>> import torch
    >>> z = torch.randn(4, 10)
    >>> float(hinton_kd_loss(z, z))
    0.0
    """
    check_positive(temperature=temperature)
    s, t = prepare_pair(student_logits, teacher_logits, min_points=1)
    if s.shape[1] != t.shape[1]:
        raise ValueError(
            f"student and teacher logits must cover the same classes: got {s.shape[1]} and "
            f"{t.shape[1]} columns"
        )
    log_q = F.log_softmax(s / temperature, dim=1)  # (n, C) student
    log_p = F.log_softmax(t / temperature, dim=1)  # (n, C) teacher
    kl = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * temperature**2
    return kl.clamp_min(0.0)  # KL >= 0; rounding can give a tiny negative value
