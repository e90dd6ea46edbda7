"""Input checks shared by every loss and metric: fail at the door with a message that says
what to change (never a silent NaN later)."""

from __future__ import annotations

import numpy as np
import torch

# Room left above the largest feature: distances square the features and the row statistics
# of squared distances square them again, summed over n points and d columns.
_OVERFLOW_MARGIN = 4096
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


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
        if arr.dtype.kind == "c":
            raise ValueError(f"{name} features must be real numbers, got dtype {arr.dtype}")
        if arr.dtype.kind not in "biuf":  # not timedelta, datetime, text, bytes, objects, records
            raise ValueError(f"{name} features must be numeric, got dtype {arr.dtype}")
        if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:  # long double: torch has none
            arr = arr.astype(np.float64)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise ValueError(f"{name} features must be real numbers, got {t.dtype}")
    if t.is_floating_point() and t.dtype not in _FLOATS:  # float8: few ops exist; compute in float32
        t = t.float()
    if t.dim() == 1:
        t = t[:, None]
    if t.dim() != 2:
        raise ValueError(f"{name} features must be a 2-D (n, d) array, got shape {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise ValueError(f"{name} features have zero columns; give at least one feature per point")
    check_magnitude(t, name)
    return t


def magnitude_limit(n: int, d: int, dtype: torch.dtype) -> float:
    """The largest ``|x|`` that (n, d) features may reach without overflow in the computations.

    Losses compute in float32 (float64 stays float64); distances square the features and the
    row statistics of squared distances square them again, so the limit is a fourth root:
    ``(finfo.max / (4096 · n · d²)) ** ¼`` (float32: about 4e6 for n = 256, d = 128;
    float64: about 3e74).
    """
    big = torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).max
    return (big / (_OVERFLOW_MARGIN * max(n, 1) * max(d, 1) ** 2)) ** 0.25


def check_magnitude(t: torch.Tensor, name: str, dtype: torch.dtype | None = None) -> None:
    """Raise ``ValueError`` when the finite entries of (n, d) ``t`` are too large to compare.

    NaN/inf entries are left to :func:`check_finite`, which names them.

    Args:
        t: (n, d) features.
        name: what to call them in the message.
        dtype: the dtype they will be computed in (``None``: their own; float64 stays
            float64, anything else computes in float32).
    """
    if t.numel() == 0 or t.dtype == torch.bool:
        return
    a = t.detach()
    a = (a if a.dtype in _FLOATS else a.float()).abs()  # ints (float32 also exists on MPS)
    top = float(torch.nan_to_num(a, nan=0.0, posinf=0.0).amax())
    wide = (t.dtype if dtype is None else dtype) == torch.float64
    limit = magnitude_limit(t.shape[0], t.shape[-1], torch.float64 if wide else torch.float32)
    if top > limit:
        raise ValueError(
            f"{name} features reach {top:.3g} in absolute value; beyond {limit:.3g}, distances "
            f"between {t.shape[0]} points of width {t.shape[-1]} overflow in "
            f"{'float64' if wide else 'float32'}: rescale them (e.g. divide by their standard "
            f"deviation){'' if wide else ' or pass float64 student and teacher features'}"
        )


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
