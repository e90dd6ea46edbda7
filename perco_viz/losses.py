"""The loss registry: one mapping that the engine, the CLI's choices, the app's select box and
the parametrized tests all iterate. A new loss touches this file and its own module only."""

from __future__ import annotations

from torch import nn

from perco_viz.baselines import BASELINES
from perco_viz.coherence import CoherenceLoss

LOSSES: dict[str, type[nn.Module]] = {"coherence": CoherenceLoss, **BASELINES}
LOSS_NAMES: tuple[str, ...] = tuple(LOSSES)


def make_loss(name: str, *, student_dim: int, teacher_dim: int, **options) -> nn.Module:
    """Build a transfer loss called as ``loss(student_feats, teacher_feats)``.

    Args:
        name: one of :data:`LOSS_NAMES` (``coherence``, ``fitnet``, ``rkd``, ``pkt``, ``sp``,
            ``cc``, ``cka``).
        student_dim: width d_s of the student features.
        teacher_dim: width d_t of the teacher features.
        **options: the loss's own options (see its ``defaults``).

    Returns:
        An ``nn.Module``; its parameters (FitNet's projector) belong in the optimizer.

    >>> loss = make_loss("coherence", student_dim=8, teacher_dim=128, tau=0.05)
    >>> loss.options["tau"]
    0.05
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    return LOSSES[name](student_dim, teacher_dim, **options)
