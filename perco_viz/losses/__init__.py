"""The transfer losses and their registry: one mapping that the engine, the CLI's choices, the
app's select box and the parametrized tests all iterate.

Layout: :mod:`~perco_viz.losses.base` (the registry, :class:`TransferLoss`, shared steps),
:mod:`~perco_viz.losses.coherence` (the coherence loss and :func:`loss_terms`), one module per
baseline family (:mod:`fitnet`, :mod:`rkd`, :mod:`pkt`, :mod:`sp`, :mod:`cc`, :mod:`cka`) and
:mod:`~perco_viz.losses.kd` (Hinton KD on logits, which the engine adds to any of them).

A new loss: one module here holding its function and its ``@register("name")`` class (a
:class:`TransferLoss` with ``summary``, ``defaults`` and optionally ``order``), plus its test.
Every module of this package is imported below, so a new file registers itself; ``order``
(then the name) sets its place in :data:`LOSS_NAMES`: the app's select box, the CLI's choices
and the benchmark's rows.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from perco_viz.losses.base import LOSSES, TransferLoss, register


def _import_families() -> None:
    """Import every module of this package (each family registers itself), then order
    :data:`LOSSES` by ``order``, then name."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    ordered = sorted(LOSSES.items(), key=lambda item: (item[1].order, item[0]))
    LOSSES.clear()
    LOSSES.update(ordered)


_import_families()

LOSS_NAMES: tuple[str, ...] = tuple(LOSSES)

__all__ = ["LOSSES", "LOSS_NAMES", "TransferLoss", "loss_defaults", "make_loss", "register"]


def _loss_class(name: str) -> type[TransferLoss]:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    return LOSSES[name]


def loss_defaults(name: str) -> dict[str, Any]:
    """The options a loss takes and their defaults (a copy of its class's ``defaults``).

    >>> loss_defaults("cc")
    {'gamma': 0.4}
    """
    return dict(_loss_class(name).defaults)


def make_loss(name: str, *, student_dim: int, teacher_dim: int, **options: Any) -> TransferLoss:
    """Build a transfer loss called as ``loss(student_feats, teacher_feats)``.

    Args:
        name: one of :data:`LOSS_NAMES` (``coherence``, ``fitnet``, ``rkd``, ``pkt``, ``sp``,
            ``cc``, ``cka``).
        student_dim: width d_s of the student features.
        teacher_dim: width d_t of the teacher features.
        **options: the loss's own options (see :func:`loss_defaults`).

    Returns:
        An ``nn.Module``; its parameters (FitNet's projector) belong in the optimizer.

    >>> loss = make_loss("coherence", student_dim=8, teacher_dim=128, tau=0.05)
    >>> loss.options["tau"]
    0.05
    """
    return _loss_class(name)(student_dim, teacher_dim, **options)
