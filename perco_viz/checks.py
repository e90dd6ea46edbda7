"""The one input-check API: every loss, measure and analysis function checks its inputs here and
fails at the door with a message that says what to change (never a silent NaN later).

Two sides, the same rules (shape, numeric dtype, finiteness, magnitude) and the same messages:

* tensors (losses, :mod:`perco_viz.coherence`): :func:`as_tensor`, :func:`check_pair`,
  :func:`check_finite`, :func:`check_magnitude`;
* numpy (metrics, ``analysis/``): :func:`check_features`, :func:`check_feature_pair`,
  :func:`check_labels`, which return float64 arrays.

Features are (n, d): a 1-D array is read as (n, 1). The magnitude limit depends on the dtype the
features arrive in (float64: float64's, anything else: float32's), see :func:`magnitude_limit`.
"""

from __future__ import annotations

import numpy as np
import torch

# Room left above the largest feature: distances square the features and the row statistics
# of squared distances square them again, summed over n points and d columns.
_OVERFLOW_MARGIN = 4096
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _numeric_array(x, name: str) -> np.ndarray:
    """``x`` as a numpy array of real numbers (bool, int or float; long double becomes float64)."""
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
    return arr


def as_tensor(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """Return ``x`` as a 2-D tensor, keeping a tensor's device and autograd graph.

    Args:
        x: (n, d) features as a numpy array or tensor; a 1-D array is read as (n, 1).
        name: what to call it in an error message (``"student"``, ``"teacher"``).
    """
    if isinstance(x, torch.Tensor):
        t = x
    else:
        t = torch.from_numpy(np.ascontiguousarray(_numeric_array(x, name)))
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
    _refuse_magnitude(top, t.shape[0], t.shape[-1], (t.dtype if dtype is None else dtype) == torch.float64, name)


def _refuse_magnitude(top: float, n: int, d: int, wide: bool, name: str) -> None:
    """Raise ``ValueError`` when ``top`` (the largest finite ``|x|``) exceeds the limit."""
    limit = magnitude_limit(n, d, torch.float64 if wide else torch.float32)
    if top > limit:
        raise ValueError(
            f"{name} features reach {top:.3g} in absolute value; beyond {limit:.3g}, distances "
            f"between {n} points of width {d} overflow in "
            f"{'float64' if wide else 'float32'}: rescale them (e.g. divide by their standard "
            f"deviation){'' if wide else ' or pass float64 student and teacher features'}"
        )


def _refuse_nonfinite(bad: int, rows: int, name: str) -> None:
    raise ValueError(
        f"{name} features contain {bad} NaN/inf value(s) in {rows} row(s); "
        "remove or impute those rows before measuring"
    )


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` naming how many NaN/inf entries ``t`` holds."""
    finite = torch.isfinite(t.detach())
    if not bool(finite.all()):
        bad = int((~finite).sum())
        rows = int((~finite).any(dim=-1).sum()) if t.dim() > 1 else bad
        _refuse_nonfinite(bad, rows, name)


def check_same_points(
    n_student: int, n_teacher: int, *, min_points: int, names: tuple[str, str] = ("student", "teacher")
) -> None:
    """Two feature matrices of the same ``n ≥ min_points`` points (their row counts), else ``ValueError``."""
    if n_student != n_teacher:
        raise ValueError(
            f"{names[0]} and {names[1]} must describe the same points: got {n_student} "
            f"{names[0]} rows and {n_teacher} {names[1]} rows"
        )
    if n_student < min_points:
        raise ValueError(f"need at least {min_points} points to compare rankings, got {n_student}")


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
    check_same_points(s.shape[0], t.shape[0], min_points=min_points)
    check_finite(s, "student")
    check_finite(t, "teacher")
    return s, t


# --------------------------------------------------------------------------- numpy side
def check_features(x, name: str, *, min_points: int = 1) -> np.ndarray:
    """Validate (n, d) features and return them as a float64 numpy array.

    The same rules as :func:`as_tensor` + :func:`check_finite`: a numpy array, a tensor (detached,
    moved to the CPU) or anything ``np.asarray`` reads; real numbers (bool, int, float); a 1-D
    array is read as (n, 1); at least one column; finite; within :func:`magnitude_limit` of the
    dtype the features arrive in; at least ``min_points`` rows.

    Args:
        x: (n, d) features (or (n,)).
        name: what to call them in a message (``"student"``, ``"teacher"``, ``"train"``).
        min_points: the smallest n accepted.

    Returns:
        (n, d) float64 array; a view of ``x`` when ``x`` already is a float64 numpy array (do
        not write to it).

    Raises:
        ValueError: not numeric, complex, not 2-D, zero columns, too large, NaN/inf, too few rows.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.is_complex():
            raise ValueError(f"{name} features must be real numbers, got {t.dtype}")
        wide = t.dtype == torch.float64
        if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
            t = t.to(torch.float64)  # float16, bfloat16, float8: numpy lacks some of them
        arr = t.numpy()
    else:
        arr = _numeric_array(x, name)
        wide = arr.dtype == np.float64
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} features must be a 2-D (n, d) array, got shape {tuple(arr.shape)}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} features have zero columns; give at least one feature per point")
    out = np.asarray(arr, dtype=np.float64)
    finite = np.isfinite(out)
    if out.size and arr.dtype != np.bool_:
        top = float(np.abs(out, where=finite, out=np.zeros_like(out)).max())
        _refuse_magnitude(top, out.shape[0], out.shape[1], wide, name)
    if not finite.all():
        _refuse_nonfinite(int((~finite).sum()), int((~finite).any(axis=1).sum()), name)
    if out.shape[0] < min_points:
        raise ValueError(f"{name} features need at least {min_points} points, got {out.shape[0]}")
    return out


def check_feature_pair(
    student,
    teacher,
    *,
    min_points: int = 3,
    names: tuple[str, str] = ("student", "teacher"),
) -> tuple[np.ndarray, np.ndarray]:
    """Validate two feature matrices of the same points and return them as float64 arrays.

    Args:
        student: (n, d_s) features (see :func:`check_features`).
        teacher: (n, d_t) features; d_t may differ from d_s.
        min_points: the smallest n that makes sense (rankings need 3 points).
        names: what to call the two in messages.

    Returns:
        ``(student, teacher)``: (n, d_s) and (n, d_t) float64 arrays.

    Raises:
        ValueError: as :func:`check_features`, or different row counts.
    """
    s = check_features(student, names[0])
    t = check_features(teacher, names[1])
    check_same_points(s.shape[0], t.shape[0], min_points=min_points, names=names)
    return s, t


def check_labels(y, n: int, name: str = "labels") -> np.ndarray:
    """Validate one label per point and return them as a 1-D numpy array (dtype kept).

    Args:
        y: (n,) labels: ints, strings, floats (finite) ...; a tensor is moved to the CPU.
        n: the number of points (rows of the features) they label.
        name: what to call them in a message.

    Raises:
        ValueError: not 1-D, not n entries, NaN/inf.
    """
    arr = np.asarray(y.detach().cpu()) if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D (n,) array, got shape {arr.shape}")
    if len(arr) != n:
        raise ValueError(
            f"{name} must have one entry per point: got {len(arr)} entries for {n} points"
        )
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contain NaN/inf; drop or fix those points")
    return arr
