"""Perception coherence at any size: sampled triplets with a confidence interval.

The exact measures of :mod:`perco_viz.coherence` take every ordered triplet, O(n² log n) time
and n × n memory. PC is a probability (DESIGN.md §1): the share of ordered triplets
``(i, j, k)``, all distinct, on which student and teacher order ``j`` and ``k`` the same way as
seen from ``i`` (ties ½). Here it is estimated from triplets drawn uniformly at random, with a
binomial confidence interval, in O(n_triplets · d) time and O(n · d) memory (the features
themselves; never an n × n matrix):

* :func:`estimate_perception_coherence` -> :class:`Estimate` (PC ± interval);
* :func:`estimate_per_sample_coherence` -> :class:`PerSampleEstimate` (c_i ± interval for
  chosen anchors).

Distances are computed only for the sampled triplets, in float64 by the direct formula
(:func:`~perco_viz.coherence.paired_dissimilarity`), and compared with the project's one tie
rule (:func:`~perco_viz.coherence.tie_tolerance`, :func:`~perco_viz.coherence.same_dissimilarity`),
so a triplet counts exactly as it does in :func:`~perco_viz.coherence.perception_coherence`.
"""

from __future__ import annotations

import math
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import torch
from torch import Tensor

from perco_viz.checks import as_tensor, check_finite, check_same_points, magnitude_limit
from perco_viz.coherence import (
    MetricLike,
    check_metric,
    paired_dissimilarity,
    same_dissimilarity,
    tie_tolerance,
)

Features = np.ndarray | Tensor

_DRAW = 1 << 16  # triplets (or pairs) drawn at a time: the same on every device, so a seed
# gives the same triplets everywhere; they are then scored in chunks of _chunk_size
# Gathered features per buffer (torch path): on the CPU small enough to stay in cache (2 MiB
# of float64), on a GPU large enough to fill it.
_CHUNK_ELEMENTS = {"cpu": 1 << 18, "other": 1 << 25}
_SCAN_ELEMENTS = 1 << 22  # features per block of the finiteness scan
_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


# --------------------------------------------------------------------------- results
def _count_text(n: int) -> str:
    """``1000000`` -> ``10⁶``; other counts with thousands separators."""
    e = len(str(n)) - 1
    if n >= 1000 and n == 10**e:
        return "10" + str(e).translate(_SUPERSCRIPTS)
    return f"{n:,}"


def _percent(confidence: float) -> str:
    return f"{100 * confidence:.6g}%"


def _decimals(value: float, low: float, high: float, digits: int) -> int:
    """Enough decimals that the half-width's first significant digit shows (at least ``digits``)."""
    half = max(high - value, value - low)
    if half <= 0:
        return digits
    return max(digits, min(9, -math.floor(math.log10(half))))


@dataclass(frozen=True)
class Estimate:
    """Perception coherence with its confidence interval; ``float(e) == e.value``.

    Attributes:
        value: the estimate (the exact value when ``method == "exact"``).
        low, high: the confidence interval (both ``== value`` when exact).
        n_triplets: ordered triplets sampled (when exact: all of them, n(n − 1)(n − 2)).
        confidence: the interval's confidence level, e.g. 0.95 (1.0 when exact).
        method: ``"wilson"`` (sampled, Wilson score interval) or ``"exact"``.
    """

    value: float
    low: float
    high: float
    n_triplets: int
    confidence: float
    method: str

    @property
    def exact(self) -> bool:
        """Whether this is the exact value (no sampling)."""
        return self.method == "exact"

    def __float__(self) -> float:
        return float(self.value)

    def text(self, digits: int = 3) -> str:
        """For people: ``"0.912 ± 0.002 (95% CI, 10⁶ triplets)"`` or ``"0.912 (exact)"``.

        The ± is the larger distance from the value to an end of the (slightly asymmetric)
        interval; decimals grow past ``digits`` until it shows a non-zero digit.
        """
        if self.exact:
            return f"{self.value:.{digits}f} (exact)"
        dec = _decimals(self.value, self.low, self.high, digits)
        half = max(self.high - self.value, self.value - self.low)
        return (f"{self.value:.{dec}f} ± {half:.{dec}f} "
                f"({_percent(self.confidence)} CI, {_count_text(self.n_triplets)} triplets)")

    @classmethod
    def of_exact(cls, value: float, n: int) -> Estimate:
        """The exact PC of ``n`` points as an :class:`Estimate` (interval of width 0)."""
        value = float(value)
        return cls(value, value, value, int(n) * (int(n) - 1) * (int(n) - 2), 1.0, "exact")


@dataclass(frozen=True, eq=False)  # arrays: no element-wise ==
class PerSampleEstimate:
    """Per-sample coherence ``c_i`` of chosen anchors, each with its confidence interval.

    Attributes:
        anchors: (m,) int64 anchor indices, in the order given.
        value, low, high: (m,) float64 estimates and interval ends, one per anchor.
        n_pairs: ordered pairs (j, k) sampled per anchor (when exact: (n − 1)(n − 2)).
        confidence: the intervals' confidence level (1.0 when exact).
        method: ``"wilson"`` (sampled) or ``"exact"``.
    """

    anchors: np.ndarray
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_pairs: int
    confidence: float
    method: str

    @property
    def exact(self) -> bool:
        """Whether these are exact values (no sampling)."""
        return self.method == "exact"

    def __len__(self) -> int:
        return len(self.anchors)

    @classmethod
    def of_exact(cls, anchors, values, n: int) -> PerSampleEstimate:
        """Exact ``c_i`` (e.g. from :func:`~perco_viz.coherence.per_sample_coherence`) of
        ``anchors`` (m,) among ``n`` points, as a :class:`PerSampleEstimate`."""
        a = np.asarray(anchors, dtype=np.int64).reshape(-1)
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if a.shape != v.shape:
            raise ValueError(f"one value per anchor: got {len(v)} values for {len(a)} anchors")
        return cls(a, v, v.copy(), v.copy(), (int(n) - 1) * (int(n) - 2), 1.0, "exact")


# --------------------------------------------------------------------------- the interval
def wilson_interval(score: Any, n: int, confidence: float) -> tuple[Any, Any]:
    """Wilson score interval for a proportion: ``score`` successes out of ``n`` trials.

    Args:
        score: successes (a float or an array of them; half-integers allowed: ties count ½).
        n: trials (≥ 1).
        confidence: in (0, 1), e.g. 0.95.

    Returns:
        ``(low, high)`` within [0, 1], floats or arrays like ``score``.
    """
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = np.asarray(score, dtype=np.float64) / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * np.sqrt(np.maximum(p * (1 - p), 0.0) / n + z2n / (4 * n))
    low = np.where(p <= 0.0, 0.0, np.clip(centre - half, 0.0, 1.0))  # exact ends, not 1e-17 off
    high = np.where(p >= 1.0, 1.0, np.clip(centre + half, 0.0, 1.0))
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


# --------------------------------------------------------------------------- input checks
def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
    if not math.isfinite(float(value)) or float(value) != int(value) or int(value) < 1:
        raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
    return int(value)


def _check_confidence(confidence: Any) -> float:
    try:
        c = float(confidence)
    except (TypeError, ValueError):
        raise ValueError(f"confidence must be a number strictly between 0 and 1 (e.g. 0.95), got {confidence!r}") from None
    if not 0.0 < c < 1.0:  # also refuses NaN
        raise ValueError(f"confidence must be strictly between 0 and 1 (e.g. 0.95), got {confidence!r}")
    return c


def _generator(seed: int | None) -> torch.Generator:
    """A CPU generator: seeded (``int``) or fresh randomness (``None``)."""
    g = torch.Generator()
    if seed is None:
        g.seed()
        return g
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    g.manual_seed(int(seed) % (1 << 64))
    return g


def _features(x: Features, name: str) -> Features:
    """(n, d) features as given (numpy, including np.memmap, or a detached tensor), validated
    without copying the whole array: shape and dtype here, values by :func:`_scan`."""
    if isinstance(x, Tensor):
        a = x.detach()
    else:
        try:
            a = np.asarray(x)  # an np.memmap stays a view of its file
        except Exception as exc:  # ragged lists and the like
            raise ValueError(f"{name} features could not be read as an array: {exc}") from None
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2:
        raise ValueError(f"{name} features must be a 2-D (n, d) array, got shape {tuple(a.shape)}")
    # dtype (real numbers) and zero columns, with the project's messages, on one row
    as_tensor(a[:1] if isinstance(a, Tensor) else np.array(a[:1]), name)
    return a


def _scan(x: Features, name: str) -> None:
    """Refuse NaN/inf and values too large for float64 distances, block by block.

    Reads the whole array once, in blocks of rows, in its own dtype (an np.memmap of
    10⁶ × 512 float32 is read from disk once; no float64 copy of it is made). Only rows that
    hold NaN/inf are gathered, to name how many there are.
    """
    is_tensor = isinstance(x, Tensor)
    if (x.dtype == torch.bool) if is_tensor else (x.dtype == np.bool_):
        return
    n, d = x.shape
    rows = max(1, _SCAN_ELEMENTS // max(d, 1))
    top, bad = 0.0, []
    for lo in range(0, n, rows):
        block = x[lo : lo + rows]
        if is_tensor:
            lo_v, hi_v = torch.aminmax(block if block.is_floating_point() else block.double())
            lo_v, hi_v = float(lo_v), float(hi_v)
        elif block.size:
            lo_v, hi_v = float(np.min(block)), float(np.max(block))
        else:
            continue
        if math.isfinite(lo_v) and math.isfinite(hi_v):
            top = max(top, -lo_v, hi_v)
            continue
        finite = torch.isfinite(block) if is_tensor else torch.from_numpy(np.isfinite(block))
        ok = finite.all(dim=1)
        bad.append(lo + torch.nonzero(~ok).reshape(-1).cpu())
        if bool(ok.any()):
            good = block[ok.to(block.device)] if is_tensor else block[ok.numpy()]
            top = max(top, float(abs(good).max()))
    if bad:
        idx = torch.cat(bad)
        check_finite(x[idx.to(x.device)] if is_tensor else torch.from_numpy(np.asarray(x[idx.numpy()])), name)
    limit = magnitude_limit(n, d, torch.float64)
    if top > limit:
        raise ValueError(
            f"{name} features reach {top:.3g} in absolute value; beyond {limit:.3g}, distances "
            f"between {n} points of width {d} overflow in float64: rescale them (e.g. divide by "
            "their standard deviation)")


def _device(device: str | torch.device | None, *features: Features) -> torch.device:
    """Where to compute: ``None`` the first tensor's device (else the CPU), ``"auto"`` CUDA when
    there is one (else the CPU), or a named device checked to exist here. Computation is in
    float64, which MPS lacks: MPS features are compared on the CPU."""
    if device is None:
        dev = next((x.device for x in features if isinstance(x, Tensor)), torch.device("cpu"))
        return torch.device("cpu") if dev.type == "mps" else dev
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"the estimator computes in float64 on the CPU or CUDA, not on {device!r}: "
                         "use 'cpu' or 'auto'")
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device {device!r} is not available on this machine; use 'cpu' or 'auto'")
    return dev


def _prepare(student, teacher, metric, teacher_metric, confidence, device):
    check_metric(metric)
    check_metric(teacher_metric or metric)
    conf = _check_confidence(confidence)
    s, t = _features(student, "student"), _features(teacher, "teacher")
    check_same_points(s.shape[0], t.shape[0], min_points=3)
    _scan(s, "student")
    _scan(t, "teacher")
    return s, t, conf, _device(device, student, teacher)


def _rows(x: Features, idx: Tensor, device: torch.device) -> Tensor:
    """Rows ``idx`` (a CPU int64 tensor) of ``x`` as a float64 tensor on ``device`` (gathered
    where ``x`` lives, in its own dtype; only the gathered rows move and widen)."""
    if isinstance(x, Tensor):
        r = x.index_select(0, idx.to(x.device))  # several times faster than x[idx] on the CPU
    else:
        r = np.asarray(x[idx.numpy()])
        r = torch.from_numpy(r.astype(np.float64) if r.dtype.kind != "f" or r.dtype.itemsize > 8 else r)
    return r.to(device).to(torch.float64)


_METRIC_CODES = {"euclidean": 0, "sqeuclidean": 1, "cosine": 2}


@numba.njit(cache=True, nogil=True)
def _triplet_signs(x, i, j, k, metric, rtol, floor, out):
    """CPU kernel: ``out[r] = sign(δ(x_i, x_j) − δ(x_i, x_k))`` for triplet r (0 for a tie
    under the tie rule, NaN for a NaN distance), δ by the direct formula in float64 from the
    rows of ``x`` (any float dtype, an np.memmap included: nothing is gathered or copied).
    ``metric``: 0 euclidean, 1 sqeuclidean, 2 cosine (``x / max(‖x‖, 1e-12)``, as
    :func:`~perco_viz.coherence.paired_dissimilarity`)."""
    d = x.shape[1]
    for r in range(i.shape[0]):
        a, b, c = i[r], j[r], k[r]
        if metric == 2:
            na, nb, nc, ab, ac = 0.0, 0.0, 0.0, 0.0, 0.0
            for q in range(d):
                xa, xb, xc = float(x[a, q]), float(x[b, q]), float(x[c, q])
                na += xa * xa
                nb += xb * xb
                nc += xc * xc
                ab += xa * xb
                ac += xa * xc
            na, nb, nc = max(math.sqrt(na), 1e-12), max(math.sqrt(nb), 1e-12), max(math.sqrt(nc), 1e-12)
            d1 = min(max(1.0 - ab / (na * nb), 0.0), 2.0)
            d2 = min(max(1.0 - ac / (na * nc), 0.0), 2.0)
        else:
            d1, d2 = 0.0, 0.0
            for q in range(d):
                xa = float(x[a, q])
                e1 = xa - float(x[b, q])
                e2 = xa - float(x[c, q])
                d1 += e1 * e1
                d2 += e2 * e2
            if metric == 0:
                d1, d2 = math.sqrt(d1), math.sqrt(d2)
        diff = d1 - d2
        if diff != diff:
            out[r] = math.nan
        elif abs(diff) <= rtol * max(abs(d1), abs(d2), floor):
            out[r] = 0.0
        else:
            out[r] = 1.0 if diff > 0 else -1.0


def _cpu_array(x: Features) -> np.ndarray | None:
    """A float numpy view of CPU features for :func:`_triplet_signs` (no copy), or None."""
    a = x.numpy() if isinstance(x, Tensor) and x.device.type == "cpu" else x
    if isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64):
        return a
    return None


class _Side:
    """One side (student or teacher): its features, metric and tie rule."""

    def __init__(self, x: Features, metric: MetricLike, device: torch.device):
        self.x, self.metric, self.device = x, metric, device
        self.rtol, self.floor = tie_tolerance(metric, x.shape[1])
        # the CPU kernel: a named metric on float features (else torch ops on gathered rows)
        self.array = _cpu_array(x) if device.type == "cpu" and isinstance(metric, str) else None

    def compare(self, i: Tensor, j: Tensor, k: Tensor) -> Tensor:
        """For each triplet: ``sign(δ(i, j) − δ(i, k))`` (−1, 0 for a tie, +1) as float64;
        NaN where a distance is NaN or infinite (then the sum is NaN, and refused)."""
        if self.array is not None:
            out = np.empty(len(i), dtype=np.float64)
            _run_split(_triplet_signs, self.array, i.numpy(), j.numpy(), k.numpy(),
                       _METRIC_CODES[self.metric], self.rtol, self.floor, out)
            return torch.from_numpy(out)
        xi = _rows(self.x, i, self.device)
        d_ij = paired_dissimilarity(xi, _rows(self.x, j, self.device), self.metric)
        d_ik = paired_dissimilarity(xi, _rows(self.x, k, self.device), self.metric)
        tie = same_dissimilarity(d_ij, d_ik, self.rtol, self.floor)
        diff = d_ij - d_ik
        return torch.where(tie, 0.0, torch.sign(diff)) + 0.0 * diff  # torch.sign(NaN) is 0: keep the NaN


def _run_split(kernel, x, i, j, k, metric, rtol, floor, out) -> None:
    """Run :func:`_triplet_signs` over the triplets on all cores (it releases the GIL)."""
    workers = max(1, min(os.cpu_count() or 1, len(i) // 4096))
    if workers == 1:
        kernel(x, i, j, k, metric, rtol, floor, out)
        return
    bounds = np.linspace(0, len(i), workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda b: kernel(x, i[b[0]:b[1]], j[b[0]:b[1]], k[b[0]:b[1]], metric, rtol, floor,
                                       out[b[0]:b[1]]), zip(bounds[:-1], bounds[1:])))


def _refuse_nan(score: np.ndarray | float) -> None:
    """NaN scores come from NaN/inf distances: values too large for float64 are refused before
    sampling, so only a metric callable can return them."""
    if np.isnan(score).any():
        raise ValueError("dissimilarities came out NaN or infinite: a metric callable must return "
                         "finite numbers for finite features")


def _chunk_size(device: torch.device, *widths: int, kernel: bool = False) -> int:
    if kernel:  # the CPU kernel reads rows in place: no buffer to bound
        return _DRAW
    cap = _CHUNK_ELEMENTS["cpu" if device.type == "cpu" else "other"]
    return int(max(256, min(_DRAW, cap // max(widths))))


def _agreement(s_side: _Side, t_side: _Side, i: Tensor, j: Tensor, k: Tensor) -> Tensor:
    """Per triplet: 1 agree, 0 disagree, ½ a tie in either (float64 on the compute device)."""
    return (1.0 + s_side.compare(i, j, k) * t_side.compare(i, j, k)) / 2.0


def _other_two(i: Tensor, n: int, size: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """For each anchor in ``i``: j uniform over the n − 1 others, k uniform over the n − 2
    points that are neither (a uniformly random ordered pair of distinct non-anchors)."""
    j = torch.randint(0, n - 1, (size,), generator=g)
    j += j >= i
    k = torch.randint(0, n - 2, (size,), generator=g)
    lo, hi = torch.minimum(i, j), torch.maximum(i, j)
    k += k >= lo
    k += k >= hi
    return j, k


# --------------------------------------------------------------------------- the estimators
def estimate_perception_coherence(
    student: Features,
    teacher: Features,
    *,
    n_triplets: int = 1_000_000,
    confidence: float = 0.95,
    metric: MetricLike = "euclidean",
    teacher_metric: MetricLike | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
) -> Estimate:
    """Perception coherence estimated from random triplets, with a Wilson confidence interval.

    Draws ``n_triplets`` ordered triplets ``(i, j, k)`` of distinct points uniformly and
    independently (with replacement across triplets) and scores each 1 when student and teacher
    order ``j`` and ``k`` the same way as seen from ``i``, 0 when they order them oppositely and
    ½ when either calls them a tie (the tie rule of
    :func:`~perco_viz.coherence.tie_tolerance`). The mean score is an unbiased estimate of
    exactly the finite-set PC of DESIGN.md §1 that
    :func:`~perco_viz.coherence.perception_coherence` computes.

    The interval is the Wilson score interval of ``agreements + ½ ties`` out of ``n_triplets``.
    Each triplet's outcome lies in {0, ½, 1}, so its variance is at most that of a Bernoulli
    variable with the same mean (E[Y²] ≤ E[Y] for Y in [0, 1]): the Wilson interval, built for
    the Bernoulli case, is conservative here (ties only narrow the true spread). With 10⁶
    triplets it is about ±0.001 wide at 95%.

    Cost: O(n_triplets · d) time, O(n · d) memory (the features; distances only for the
    sampled triplets, float64 by the direct formula). On the CPU, float features are scored
    by a numba kernel that reads each triplet's three rows in place (an np.memmap included)
    on all cores; on a GPU, for a metric callable or for integer features, torch gathers the
    rows in chunks of up to 2¹⁶ triplets. Before sampling, the whole of both arrays is read
    once, block by block, to refuse NaN/inf.

    Args:
        student: (n, d_s) features: a numpy array (an ``np.memmap`` is read row by row as the
            triplets need it, never copied whole) or a tensor (any device).
        teacher: (n, d_t) features of the same n points; d_t may differ from d_s.
        n_triplets: triplets to draw (≥ 1); the interval shrinks as 1/√n_triplets.
        confidence: the interval's confidence level, strictly between 0 and 1.
        metric: student dissimilarity (and the teacher's unless ``teacher_metric``):
            ``euclidean``, ``sqeuclidean``, ``cosine`` or a callable (called per pair: slow).
        teacher_metric: teacher dissimilarity.
        seed: an int gives reproducible triplets; ``None`` fresh randomness. Triplets are
            drawn by a CPU ``torch.Generator``, so a seed gives the same triplets on every
            device.
        device: where distances are computed: ``None`` (the first tensor's device, else the
            CPU), ``"auto"`` (CUDA when there is one), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
            ``torch.device``. Rows are gathered where the features live and only the gathered
            rows move.

    Returns:
        :class:`Estimate` (``float()`` of it is the value).

    Raises:
        ValueError: NaN/inf, different row counts, n < 3, n_triplets < 1, confidence outside
            (0, 1), unknown metric, features too large for float64 distances.

    >>> t = np.random.default_rng(0).normal(size=(500, 8))
    >>> e = estimate_perception_coherence(2.0 * t, t, n_triplets=10_000, seed=0)
    >>> e.value, e.text()
    (1.0, '1.0000 ± 0.0004 (95% CI, 10⁴ triplets)')
    """
    n_triplets = _positive_int(n_triplets, "n_triplets")
    s, t, conf, dev = _prepare(student, teacher, metric, teacher_metric, confidence, device)
    g = _generator(seed)
    s_side, t_side = _Side(s, metric, dev), _Side(t, teacher_metric or metric, dev)
    n = s.shape[0]
    chunk = _chunk_size(dev, s.shape[1], t.shape[1], kernel=s_side.array is not None and t_side.array is not None)
    total = torch.zeros((), dtype=torch.float64, device=dev)  # agreements + ½ ties: exact in float64
    for start in range(0, n_triplets, _DRAW):
        size = min(_DRAW, n_triplets - start)
        i = torch.randint(0, n, (size,), generator=g)
        j, k = _other_two(i, n, size, g)
        for lo in range(0, size, chunk):
            part = slice(lo, lo + chunk)
            total += _agreement(s_side, t_side, i[part], j[part], k[part]).sum()
    score = float(total)
    _refuse_nan(score)
    low, high = wilson_interval(score, n_triplets, conf)
    return Estimate(score / n_triplets, low, high, n_triplets, conf, "wilson")


def _anchor_indices(anchors: Any, n: int) -> np.ndarray:
    a = anchors.detach().cpu().numpy() if isinstance(anchors, Tensor) else np.asarray(anchors)
    if a.size == 0:
        raise ValueError("give at least one anchor (a point index)")
    if a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and a.size and np.all(np.mod(a, 1) == 0)):
        raise ValueError(f"anchors must be whole-number point indices, got dtype {a.dtype}")
    a = a.astype(np.int64).reshape(-1)
    out = (a < 0) | (a >= n)
    if out.any():
        raise ValueError(f"anchors must be point indices in [0, {n - 1}]: got {a[out][:5].tolist()}"
                         f"{' …' if out.sum() > 5 else ''} for {n} points")
    return a


def estimate_per_sample_coherence(
    student: Features,
    teacher: Features,
    anchors: Any,
    *,
    n_pairs: int = 20_000,
    confidence: float = 0.95,
    metric: MetricLike = "euclidean",
    teacher_metric: MetricLike | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
) -> PerSampleEstimate:
    """Per-sample coherence ``c_i`` of chosen anchors, estimated from random pairs, each with a
    Wilson confidence interval.

    For each anchor ``i``, draws ``n_pairs`` ordered pairs ``(j, k)`` of distinct points other
    than ``i`` uniformly and independently and scores them as
    :func:`estimate_perception_coherence` scores triplets (1 agree, 0 disagree, ½ a tie in
    either): an unbiased estimate of the exact ``c_i`` of
    :func:`~perco_viz.coherence.per_sample_coherence`. Each anchor's interval is the Wilson
    score interval of its ``agreements + ½ ties`` out of ``n_pairs``; outcomes in {0, ½, 1}
    have at most a Bernoulli's variance, so it is conservative. The intervals hold one anchor
    at a time (no correction for looking at many).

    Cost: O(m · n_pairs · d) time, O(n · d + m) memory, in chunks.

    Args:
        student: (n, d_s) features (numpy, np.memmap or tensor; see
            :func:`estimate_perception_coherence`).
        teacher: (n, d_t) features of the same points.
        anchors: (m,) point indices in [0, n) (repeats allowed: sampled independently).
        n_pairs: pairs per anchor (≥ 1).
        confidence, metric, teacher_metric, seed, device: as
            :func:`estimate_perception_coherence`.

    Returns:
        :class:`PerSampleEstimate` with (m,) arrays in the anchors' order.

    Raises:
        ValueError: as :func:`estimate_perception_coherence`, n_pairs < 1, anchors out of
            range or not whole numbers.
    """
    n_pairs = _positive_int(n_pairs, "n_pairs")
    s, t, conf, dev = _prepare(student, teacher, metric, teacher_metric, confidence, device)
    n = s.shape[0]
    a = _anchor_indices(anchors, n)
    g = _generator(seed)
    s_side, t_side = _Side(s, metric, dev), _Side(t, teacher_metric or metric, dev)
    chunk = _chunk_size(dev, s.shape[1], t.shape[1], kernel=s_side.array is not None and t_side.array is not None)
    anchors_t = torch.from_numpy(a)
    total = torch.zeros(len(a), dtype=torch.float64, device=dev)
    count = len(a) * n_pairs
    for start in range(0, count, _DRAW):
        size = min(_DRAW, count - start)
        which = torch.arange(start, start + size) // n_pairs  # position of the anchor in `a`
        i = anchors_t[which]
        j, k = _other_two(i, n, size, g)
        for lo in range(0, size, chunk):
            part = slice(lo, lo + chunk)
            total.index_add_(0, which[part].to(dev), _agreement(s_side, t_side, i[part], j[part], k[part]))
    score = total.cpu().numpy()
    _refuse_nan(score)
    low, high = wilson_interval(score, n_pairs, conf)
    return PerSampleEstimate(a, score / n_pairs, np.asarray(low), np.asarray(high), n_pairs, conf, "wilson")
