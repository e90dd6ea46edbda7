"""What every transfer loss shares: the registry, the module base class and the common steps.

A loss family is one module of :mod:`perco_viz.losses`: a pure function
``xxx_loss(student, teacher, **options) -> Tensor`` that does the mathematics, and a thin
module class, a :class:`TransferLoss` decorated with ``@register("xxx")``, built as
``XxxLoss(student_dim, teacher_dim, **options)`` and called as ``loss(student, teacher)``.

Shared conventions: student features are (n, d_s) and teacher features (n, d_t), d_s may
differ from d_t; inputs are validated at the door (:func:`perco_viz.checks.check_pair`);
computation runs in float32 (float64 stays float64, bf16/fp16 are cast up); the teacher is
detached and moved to the student's device, so gradients reach the student only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from perco_viz.checks import check_magnitude, check_pair

Features = np.ndarray | Tensor

#: name → module class of every registered transfer loss, ordered by ``order`` then name once
#: :mod:`perco_viz.losses` has imported every family (the order of the app's select box and of
#: the benchmark's rows). Filled by :func:`register`.
LOSSES: dict[str, type[TransferLoss]] = {}

_L = TypeVar("_L", bound="type[TransferLoss]")


def register(name: str) -> Callable[[_L], _L]:
    """Class decorator: add a :class:`TransferLoss` subclass to :data:`LOSSES` under ``name``.

    >>> @register("doc-example")
    ... class Zero(TransferLoss):
    ...     summary = "always 0"
    >>> LOSSES.pop("doc-example").name
    'doc-example'
    """

    def add(cls: _L) -> _L:
        if name in LOSSES:
            raise ValueError(f"a loss named {name!r} is already registered ({LOSSES[name].__name__})")
        if not (isinstance(cls.summary, str) and cls.summary and "\n" not in cls.summary):
            raise ValueError(f"{cls.__name__} needs a one-line summary")
        cls.name = name
        LOSSES[name] = cls
        return cls

    return add


# --------------------------------------------------------------------------- shared steps
def prepare_pair(student: Features, teacher: Features, min_points: int) -> tuple[Tensor, Tensor]:
    """Validate; cast to the compute dtype; detach the teacher onto the student's device.

    Args:
        student: (n, d_s) features (tensor or array).
        teacher: (n, d_t) features.
        min_points: the fewest rows the loss is defined for.

    Returns:
        ``(student, teacher)`` tensors in float64 (a float64 student) or float32.
    """
    s, t = check_pair(student, teacher, min_points=min_points)
    dtype = torch.float64 if s.dtype == torch.float64 else torch.float32
    check_magnitude(t, "teacher", dtype)  # a float64 teacher computes in the student's float32
    return s.to(dtype), t.detach().to(device=s.device, dtype=dtype)


def sq_dists(x: Tensor) -> Tensor:
    """(n, d) → (n, n) squared euclidean distances: never negative, exactly 0 on the diagonal."""
    x = x - x.mean(dim=0)  # translation-invariant; centring shrinks the cancellation error
    sq = (x * x).sum(dim=1)  # (n,)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0.0)  # (n, n)
    return d2 * (1.0 - torch.eye(len(x), dtype=x.dtype, device=x.device))


def is_real(value: Any) -> bool:
    """A finite int or float (a string, None or NaN/inf is not an option value)."""
    return isinstance(value, int | float | np.integer | np.floating) and bool(np.isfinite(value))


def check_nonnegative(**values: float) -> None:
    """Raise ``ValueError`` naming the first option that is not a finite number ≥ 0."""
    for name, value in values.items():
        if not (is_real(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_positive(**values: float) -> None:
    """Raise ``ValueError`` naming the first option that is not a finite number > 0."""
    for name, value in values.items():
        if not (is_real(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


# --------------------------------------------------------------------------- the module base
class TransferLoss(nn.Module):
    """Base of every registered loss: a thin module over a pure loss function.

    Subclasses set ``summary`` (one line for the app), ``order`` (its place in the lists,
    default 100: after the built-in losses), ``defaults`` (every option the loss
    takes, with its default: the declaration that configs are validated against),
    ``loss_fn`` (the pure function, called as ``loss_fn(student, teacher, **options)``) and
    optionally ``check_options`` (called once with every option, raises ``ValueError``).

    Args:
        student_dim: width d_s of the student features (used by losses with a projector).
        teacher_dim: width d_t of the teacher features.
        **options: some of ``defaults``; an unknown name raises ``ValueError``.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    order: ClassVar[int] = 100  # place in LOSS_NAMES (then by name): coherence 0, the baselines 10, 20, …
    defaults: ClassVar[dict[str, Any]] = {}
    loss_fn: ClassVar[Callable[..., Tensor]]
    check_options: ClassVar[Callable[..., None] | None] = None

    def __init__(self, student_dim: int = 0, teacher_dim: int = 0, **options: Any) -> None:
        super().__init__()
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"unknown {self.name or type(self).__name__} option(s) {sorted(unknown)}; "
                f"expected some of {sorted(self.defaults)}"
            )
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.options = {**self.defaults, **options}
        if type(self).check_options is not None:
            type(self).check_options(**self.options)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Loss for a batch: student (n, d_s), teacher (n, d_t) → scalar."""
        return type(self).loss_fn(student, teacher, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())
