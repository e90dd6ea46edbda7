"""Computations behind the *Rank agreement* page.

The questions it answers: **where** does the student perceive differently from its teacher
(the rank-agreement matrix ``A``, an anchor's neighbours ranked by both), and whether it merely
**distorts** distances (fine: monotone Shepard diagram) or **reorders** them (not fine:
scattered Shepard diagram). Which samples it gets wrong is :mod:`perco_viz.analysis.per_sample`.

Everything here is pure numpy/pandas (no Streamlit, no plotly), measured on the probe set that a
run directory stores. The mathematics is in :mod:`perco_viz.coherence` (DESIGN.md §1); the
figures are in :mod:`perco_viz.figures.rank_agreement`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from perco_viz.checks import check_feature_pair, check_features, check_labels
from perco_viz.coherence import METRICS, MetricLike, exact_hard_ranks, ranks_and_agreement

ORDERINGS: tuple[str, ...] = ("label", "cluster")
HIERARCHICAL_MAX_POINTS = 4000  # above this, order by KMeans clusters (linkage needs O(n²) memory)


# --------------------------------------------------------------------------- helpers
def _first_pc(x: np.ndarray) -> np.ndarray:
    """(m,) coordinates of the rows of ``x`` (m, d) on their first principal axis, sign fixed."""
    if x.shape[0] < 2:
        return np.zeros(x.shape[0])
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    axis = vt[0]
    axis = axis * (1.0 if axis[np.argmax(np.abs(axis))] >= 0 else -1.0)  # deterministic sign
    return xc @ axis


def _one_blas_thread():
    """Context: BLAS on one thread (small matrices; avoids spinning against torch's OpenMP pool)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _check_metric(metric: MetricLike, name: str = "metric") -> None:
    if not callable(metric) and metric not in METRICS:
        raise ValueError(f"unknown {name} {metric!r}; choose one of {', '.join(METRICS)} or pass a callable")


def _rows_to(x: np.ndarray, rows: np.ndarray, cols: np.ndarray | None, metric: MetricLike) -> np.ndarray:
    """Dissimilarities between ``x[rows]`` (m, d) and ``x[cols]`` (c, d) (all of ``x`` if None): (m, c)."""
    import torch

    from perco_viz.coherence import pairwise_dissimilarity

    a = torch.from_numpy(x[rows])
    b = torch.from_numpy(x if cols is None else x[cols])
    return pairwise_dissimilarity(a, b, metric).numpy()


def _pair_dissimilarity(x: np.ndarray, i: np.ndarray, j: np.ndarray, metric: MetricLike) -> np.ndarray:
    """δ(x_i, x_j) for each of the p pairs: (p,) float64."""
    if metric in ("euclidean", "sqeuclidean"):
        d2 = ((x[i] - x[j]) ** 2).sum(1)
        return d2 if metric == "sqeuclidean" else np.sqrt(d2)
    if metric == "cosine":
        norm = np.linalg.norm(x, axis=1)
        norm = np.where(norm > 1e-12, norm, 1e-12)
        xn = x / norm[:, None]
        return np.clip(1.0 - (xn[i] * xn[j]).sum(1), 0.0, 2.0)
    # a callable metric works on matrices: evaluate block by block on the rows involved
    out = np.empty(len(i))
    for lo in range(0, len(i), 1024):
        ii, jj = i[lo:lo + 1024], j[lo:lo + 1024]
        rows, inv_r = np.unique(ii, return_inverse=True)
        cols, inv_c = np.unique(jj, return_inverse=True)
        block = _rows_to(x, rows, cols, metric)  # (|rows|, |cols|)
        out[lo:lo + 1024] = block[inv_r, inv_c]
    return out


# --------------------------------------------------------------------------- ordering
def order_points(
    teacher_features,
    labels=None,
    by: str = "label",
    *,
    n_clusters: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """An order of the probe points that puts similar points next to each other.

    Used to order the rows and columns of the rank-agreement heatmap so that blocks appear.

    Args:
        teacher_features: (n, d_t) teacher features.
        labels: (n,) class labels (any sortable values), needed for ``by="label"``.
        by: ``"label"``: by class (ascending), then, within a class, by the position along
            that class's first principal axis in the teacher's space. ``"cluster"``: the
            leaves order of a Ward hierarchical clustering of the teacher's features (for
            n > ``HIERARCHICAL_MAX_POINTS``: KMeans clusters, themselves ordered by a
            clustering of their centres, and the first principal axis within each).
        n_clusters: number of KMeans clusters in the large-n case (default ≈ √n, at most 64).
        seed: KMeans seed.

    Returns:
        (n,) int64 permutation of ``range(n)``: ``order[p]`` is the point drawn at position p.

    >>> order_points(np.array([[0.0], [5.0], [1.0], [6.0]]), labels=[1, 0, 1, 0])
    array([1, 3, 0, 2])
    """
    t = check_features(teacher_features, "teacher")
    n = t.shape[0]
    if by not in ORDERINGS:
        raise ValueError(f"unknown ordering {by!r}; choose one of {', '.join(ORDERINGS)}")
    if by == "label":
        if labels is None:
            raise ValueError("this probe set has no labels: order it by a clustering of the teacher (by='cluster')")
        y = check_labels(labels, n)
        pos = np.zeros(n)
        with _one_blas_thread():  # many tiny SVDs: threaded BLAS only adds contention
            for cls in np.unique(y):
                members = np.flatnonzero(y == cls)
                pos[members] = _first_pc(t[members])
        return np.lexsort((np.arange(n), pos, y)).astype(np.int64)
    if n <= 2:
        return np.arange(n, dtype=np.int64)
    if n <= HIERARCHICAL_MAX_POINTS:
        from scipy.cluster.hierarchy import leaves_list, linkage

        return leaves_list(linkage(t, method="ward")).astype(np.int64)
    return _kmeans_order(t, n_clusters or min(64, int(math.sqrt(n))), seed)


def _kmeans_order(t: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Large-n cluster order: KMeans, clusters ordered by Ward on their centres, PC1 within."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(t)
    centres = km.cluster_centers_
    cluster_rank = np.empty(k, dtype=np.int64)
    cluster_rank[leaves_list(linkage(centres, method="ward")) if k > 1 else np.arange(k)] = np.arange(k)
    pos = np.zeros(t.shape[0])
    with _one_blas_thread():
        for c in range(k):
            members = np.flatnonzero(km.labels_ == c)
            pos[members] = _first_pc(t[members])
    return np.lexsort((np.arange(t.shape[0]), pos, cluster_rank[km.labels_])).astype(np.int64)


# --------------------------------------------------------------------------- ranks and agreement
def rank_matrices(
    student,
    teacher,
    *,
    metric: MetricLike = "euclidean",
    teacher_metric: MetricLike | None = None,
    dtype: type = np.float64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The teacher's and the student's normalized ranks and their agreement, each computed once,
    in one blocked pass (:func:`perco_viz.coherence.ranks_and_agreement`).

    ``A`` equals :func:`perco_viz.coherence.rank_agreement` exactly; this saves computing the
    ranks twice when R_T and R_S are drawn too. Memory: the three results and a few blocks of
    rows (``dtype=np.float32``: 12 n² bytes, e.g. 75 MB at n = 2,500).

    Args:
        student: (n, d_s) student features, n ≥ 3.
        teacher: (n, d_t) teacher features.
        metric: student dissimilarity (and the teacher's unless ``teacher_metric``).
        teacher_metric: teacher dissimilarity.
        dtype: the results' dtype (``np.float32`` for the page: half the memory).

    Returns:
        ``(R_T, R_S, A)``, each (n, n) with NaN on the diagonal; ``R[i, j]`` in [0, 1] is where
        anchor i puts j among the others (0 = nearest; ties ½ under the tie rule of
        :func:`perco_viz.coherence.tie_tolerance`), ``A = 1 − |R_T − R_S|``.
    """
    s, t = check_feature_pair(student, teacher)
    return ranks_and_agreement(s, t, metric=metric, teacher_metric=teacher_metric, dtype=dtype)


def anchor_neighbours(
    student,
    teacher,
    anchor: int,
    k: int = 10,
    metric: MetricLike = "euclidean",
    *,
    teacher_metric: MetricLike | None = None,
    labels=None,
) -> pd.DataFrame:
    """An anchor's nearest neighbours as the teacher and as the student rank them, side by side.

    Ranks are ordinal positions 1..n−1 in the anchor's dissimilarity row without the anchor
    itself (1 = nearest; ties broken by point index, i.e. a stable argsort of the row).

    Args:
        student: (n, d_s) student features.
        teacher: (n, d_t) teacher features.
        anchor: the anchor's row, 0 ≤ anchor < n.
        k: how many nearest neighbours of each side to list.
        metric: student dissimilarity (and the teacher's unless ``teacher_metric``).
        teacher_metric: teacher dissimilarity.
        labels: (n,) optional labels, copied into the ``label`` column.

    Returns:
        One row per point among the teacher's k nearest **or** the student's k nearest
        (between k and 2k rows), sorted by teacher rank, with columns ``point`` (row in the
        probe set), ``teacher_rank``, ``student_rank``, ``rank_shift`` (student − teacher:
        > 0 = the student pushes it further away), ``teacher_dissimilarity``,
        ``student_dissimilarity``, ``agreement`` (``A[anchor, point]``), ``in_teacher_top_k``,
        ``in_student_top_k`` and ``label`` (None without labels).
    """
    s, t = check_feature_pair(student, teacher)
    n = s.shape[0]
    _check_metric(metric)
    _check_metric(teacher_metric or metric, "teacher_metric")
    if not 0 <= int(anchor) < n:
        raise ValueError(f"anchor must be a point index in [0, {n - 1}], got {anchor}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    anchor, k = int(anchor), min(int(k), n - 1)
    others = np.delete(np.arange(n), anchor)  # (n − 1,)
    d_t, r_t = _anchor_row(t, anchor, teacher_metric or metric)  # (n − 1,) each
    d_s, r_s = _anchor_row(s, anchor, metric)
    rank_t, rank_s = _ordinal_ranks(d_t), _ordinal_ranks(d_s)  # 1 = nearest
    agreement = 1.0 - np.abs(r_t - r_s)  # A[anchor, others]
    keep = np.flatnonzero((rank_t <= k) | (rank_s <= k))
    keep = keep[np.argsort(rank_t[keep], kind="stable")]
    y = None if labels is None else check_labels(labels, n)
    return pd.DataFrame({
        "point": others[keep],
        "teacher_rank": rank_t[keep],
        "student_rank": rank_s[keep],
        "rank_shift": rank_s[keep] - rank_t[keep],
        "teacher_dissimilarity": d_t[keep],
        "student_dissimilarity": d_s[keep],
        "agreement": agreement[keep],
        "in_teacher_top_k": rank_t[keep] <= k,
        "in_student_top_k": rank_s[keep] <= k,
        "label": [None] * len(keep) if y is None else y[others[keep]],
    })


def _ordinal_ranks(row: np.ndarray) -> np.ndarray:
    """(m,) → (m,) int64 positions 1..m, ties broken by position (a table's ranks, not R)."""
    from scipy.stats import rankdata

    return rankdata(row, method="ordinal").astype(np.int64)


def _anchor_row(x: np.ndarray, anchor: int, metric: MetricLike) -> tuple[np.ndarray, np.ndarray]:
    """One anchor's (n − 1,) dissimilarities to the others (snapped: ties exactly equal) and
    its normalized ranks R, by the one implementation of the tie rule
    (:func:`perco_viz.coherence.exact_hard_ranks`)."""
    import torch

    d, r = exact_hard_ranks(torch.from_numpy(x), torch.tensor([anchor]), metric)
    return d.numpy()[0], r.numpy()[0]


# --------------------------------------------------------------------------- Shepard diagram
def sample_pairs(n: int, max_pairs: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distinct unordered pairs ``i < j`` of ``n`` points: all of them, or ``max_pairs`` at random.

    Args:
        n: number of points.
        max_pairs: the most pairs returned.
        seed: fixes the sample (same seed → same pairs).

    Returns:
        ``(i, j)``, two (p,) int64 arrays with ``i < j``, p = min(max_pairs, n(n−1)/2), no pair twice.
    """
    if n < 2:
        raise ValueError(f"need at least 2 points to form a pair, got {n}")
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be at least 1, got {max_pairs}")
    total = n * (n - 1) // 2
    if total <= max_pairs:
        lin = np.arange(total, dtype=np.int64)
    else:
        lin = np.sort(np.random.default_rng(seed).choice(total, size=max_pairs, replace=False)).astype(np.int64)
    # linear index over the upper triangle, row by row: row i starts at i·n − i(i+1)/2
    i = np.floor((2 * n - 1 - np.sqrt((2 * n - 1) ** 2 - 8.0 * lin)) / 2).astype(np.int64)
    start = i * n - i * (i + 1) // 2
    i = np.where(lin < start, i - 1, i)  # floating-point guard at row boundaries
    start = i * n - i * (i + 1) // 2
    i = np.where(lin >= start + (n - 1 - i), i + 1, i)
    start = i * n - i * (i + 1) // 2
    j = lin - start + i + 1
    return i, j


def shepard_pairs(
    student,
    teacher,
    max_pairs: int = 20000,
    seed: int = 0,
    metric: MetricLike = "euclidean",
    *,
    teacher_metric: MetricLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Teacher and student dissimilarities of the same sampled pairs (a Shepard diagram's points).

    Args:
        student: (n, d_s) student features.
        teacher: (n, d_t) teacher features.
        max_pairs: the most pairs (all n(n−1)/2 when fewer).
        seed: fixes the sample of pairs (see :func:`sample_pairs`).
        metric: student dissimilarity (and the teacher's unless ``teacher_metric``).
        teacher_metric: teacher dissimilarity.

    Returns:
        ``(d_teacher, d_student)``, two (p,) float64 arrays, pair by pair.
    """
    s, t = check_feature_pair(student, teacher, min_points=2)
    _check_metric(metric)
    _check_metric(teacher_metric or metric, "teacher_metric")
    i, j = sample_pairs(s.shape[0], max_pairs, seed)
    return _pair_dissimilarity(t, i, j, teacher_metric or metric), _pair_dissimilarity(s, i, j, metric)


def spearman(d_teacher, d_student) -> float:
    """Spearman's rank correlation of two dissimilarity samples (scipy.stats.spearmanr).

    Global, over pairs: 1 when the student's dissimilarities are an increasing function of the
    teacher's. (PC compares rankings per anchor instead, which is weaker: 1 is possible with a
    different increasing function for every anchor.)

    Args:
        d_teacher: (p,) teacher dissimilarities.
        d_student: (p,) student dissimilarities of the same pairs.

    Returns:
        ρ in [−1, 1]; NaN when either sample is constant or p < 2.
    """
    from scipy.stats import spearmanr

    a, b = np.asarray(d_teacher, dtype=np.float64).ravel(), np.asarray(d_student, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"need the same pairs on both sides, got {a.shape[0]} and {b.shape[0]} values")
    if a.shape[0] < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)
