"""Input checks shared by every loss and metric: fail at the door with a message that says
what to change (never a silent NaN later)."""

from __future__ import annotations

import numpy as np
import torch


def as_tensor(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """Return ``x`` as a 2-D tensor, keeping a tensor's device and autograd graph.

    Args:
        x: (n, d) features as a numpy array or tensor; a 1-D array is read as (n, 1).
        name: what to call it in an error message (``"student"``, ``"teacher"``).
    """
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise ValueError(f"{name} features could not be read as an array: {exc}") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ValueError(f"{name} features must be numeric, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise ValueError(f"{name} features must be real numbers, got {t.dtype}")
    if t.dim() == 1:
        t = t[:, None]
    if t.dim() != 2:
        raise ValueError(f"{name} features must be a 2-D (n, d) array, got shape {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise ValueError(f"{name} features have zero columns; give at least one feature per point")
    return t


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` naming how many NaN/inf entries ``t`` holds."""
    finite = torch.isfinite(t.detach())
    if not bool(finite.all()):
        bad = int((~finite).sum())
        rows = int((~finite).any(dim=-1).sum()) if t.dim() > 1 else bad
        raise ValueError(
            f"{name} features contain {bad} NaN/inf value(s) in {rows} row(s); "
            "remove or impute those rows before measuring"
        )


def check_pair(
    student: np.ndarray | torch.Tensor,
    teacher: np.ndarray | torch.Tensor,
    *,
    min_points: int = 3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a (student, teacher) pair of feature matrices and return them as tensors.

    Args:
        student: (n, d_s) features.
        teacher: (n, d_t) features; d_t may differ from d_s.
        min_points: the smallest n that makes sense (rankings need 3 points).

    Raises:
        ValueError: wrong rank, different row counts, too few points, NaN/inf.
    """
    s = as_tensor(student, "student")
    t = as_tensor(teacher, "teacher")
    if s.shape[0] != t.shape[0]:
        raise ValueError(
            f"student and teacher must describe the same points: got {s.shape[0]} student rows "
            f"and {t.shape[0]} teacher rows"
        )
    if s.shape[0] < min_points:
        raise ValueError(f"need at least {min_points} points to compare rankings, got {s.shape[0]}")
    check_finite(s, "student")
    check_finite(t, "teacher")
    return s, t
