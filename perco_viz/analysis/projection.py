"""Projections of features to 2-D/3-D (PCA, UMAP, t-SNE), aligned across snapshots.

scikit-learn estimator style (as umap-learn): :class:`Projector` stores its options in
``__init__``, checks its input in ``fit_transform`` and keeps what it fitted in attributes ending
with ``_``; :func:`project` is the one-call form. Embedding plots of consecutive snapshots must not
jump, so :func:`project_sequence` aligns them (Procrustes for PCA, UMAP and t-SNE initialised
from the previous snapshot), and :func:`align` — the one Procrustes alignment — turns the student's
projection into the teacher's orientation for a teacher | student picture
(:func:`teacher_projection`, :func:`student_projection`).

Large sets (up to the 100,000 points the Embeddings page draws): PCA is the covariance
eigen-decomposition (a d × d matrix, milliseconds at 100,000 × 64); UMAP and t-SNE are fitted on a
seeded, class-stratified sample of :data:`UMAP_FIT_POINTS` / :data:`TSNE_FIT_POINTS` rows and the
other rows are placed — by UMAP's own ``transform``, and for t-SNE (which has none) at the mean
position of their :data:`TSNE_PLACE_NEIGHBOURS` nearest sample points in feature space. The
sample is the same for every snapshot of a sequence, so each snapshot's fit is initialised from
the previous one's sample layout. :func:`fit_size` and :func:`fit_note` say how many rows were fitted.

UMAP (umap-learn, numba) is imported only when used; its first call in a process spends ~15 s
compiling, which :func:`warm_up_numba` can do ahead of time in a background thread.

>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(50, 8))
>>> project(X, "pca").shape
(50, 2)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy.linalg import orthogonal_procrustes

from perco_viz.checks import check_features

METHODS: tuple[str, ...] = ("pca", "umap", "tsne")
MIN_POINTS = {"pca": 2, "umap": 10, "tsne": 6}  # fewest rows each method can lay out
UMAP_NEIGHBOURS = 15
TSNE_PERPLEXITY = 30.0
TSNE_SINGLE_THREAD_BELOW = 5000
PCA_ONE_THREAD_BELOW = 13_000_000  # n × d (100,000 × 128): smaller PCAs run on one BLAS thread
PCA_EIGH_MAX_FEATURES = 1000  # up to this many columns PCA eigen-decomposes the d × d covariance, else randomized SVD
UMAP_FIT_POINTS = 10_000
"""UMAP is fitted on at most this many rows (seeded, stratified by class); the rest are placed by
``UMAP.transform``. Measured on the 2-core dev machine (100,000 × 64, 10 clusters, numba compiled):
fit on 10,000 ≈ 10 s, transform of the other 90,000 ≈ 14 s (docs/benchmarks.md)."""
TSNE_FIT_POINTS = 5_000
"""t-SNE is fitted on at most this many rows (seeded, stratified by class); the rest are placed at
the mean layout position of their :data:`TSNE_PLACE_NEIGHBOURS` nearest fitted rows in feature
space. t-SNE grows as n log n per iteration with 1,000 iterations: 5,000 rows take about a minute
on the 2-core dev machine, placing 95,000 more about 4 s."""
TSNE_PLACE_NEIGHBOURS = 5
FIT_POINTS = {"pca": None, "umap": UMAP_FIT_POINTS, "tsne": TSNE_FIT_POINTS}  # None: fitted on every row
_WARM = {"done": False}
_WARM_LOCK = threading.Lock()


# ----------------------------------------------------------------------------- input checks
def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"projection method must be one of {', '.join(METHODS)}, got {method!r}")
    return method


def _as_features(X, name: str = "X") -> np.ndarray:
    """Any (n, d) array-like (or CPU tensor) → float64 ndarray, checked by the package's one input
    check (:func:`perco_viz.checks.check_features`: numeric, finite, not too large), or a
    ValueError saying what to fix. Projections take 2-D features only."""
    if np.ndim(X) != 2:
        raise ValueError(f"{name} must be a 2-D (n, d) array of features, got shape {np.shape(X)}")
    return check_features(X, name)


def _check_size(x: np.ndarray, method: str, dim: int) -> None:
    n, d = x.shape
    if dim < 1:
        raise ValueError(f"dim must be a positive number of output dimensions, got {dim}")
    need = max(MIN_POINTS[method], dim + 1)
    if n < need:
        raise ValueError(f"{method} needs at least {need} points for dim={dim}, got {n}; "
                         "project more points (a larger probe set) or use PCA")
    if method == "pca" and d < dim:
        raise ValueError(f"PCA to {dim} dimensions needs at least {dim} feature columns, got {d}; "
                         "lower dim or pad the features with zero columns")
    if method == "tsne" and dim > 3:
        raise ValueError(f"t-SNE lays points out in 2 or 3 dimensions, got dim={dim}")


def _threads_for(method: str, n: int, d: int = 1):
    """One OpenMP thread for small t-SNE: its per-iteration barriers cost seconds on a busy CPU
    (measured: 100 points, 2 loaded cores: 24 s with all threads, 0.5 s with one). One BLAS
    thread for PCA of up to :data:`PCA_ONE_THREAD_BELOW` values: a threaded BLAS spins against
    whatever else runs (measured, 2 busy cores: the SVD of 1,797 × 128 took 2.1–3.0 s on two
    threads, 0.07–0.10 s on one; quiet, one thread is as fast at this size; the covariance PCA of
    100,000 × 64 on 2 cores loaded by 5 other processes: 0.10–0.14 s on one thread, 0.24–1.2 s on two)."""
    from threadpoolctl import threadpool_limits

    if method == "tsne" and n <= TSNE_SINGLE_THREAD_BELOW:
        return threadpool_limits(1, user_api="openmp")
    if method == "pca" and n * d <= PCA_ONE_THREAD_BELOW:
        return threadpool_limits(1, user_api="blas")
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------- estimator
class Projector:
    """One projection method with its fitted state.

    Attributes (after ``fit_transform``):
        estimator_: the fitted scikit-learn / umap-learn object.
        embedding_: (n, dim) float64 projection of the rows it was fitted on.
        n_features_in_: d, the number of feature columns seen.

    Args:
        method: ``pca``, ``umap`` or ``tsne``.
        dim: output dimensions (t-SNE: 2 or 3).
        seed: fixes UMAP/t-SNE (and randomized PCA). ``None``: not reproducible, but UMAP
            then runs on all cores.
        init: (n, dim) starting layout for UMAP/t-SNE, or ``None`` (t-SNE: ``"pca"``; UMAP:
            spectral). With a fit sample, only the sample's rows of it are used.
        labels: (n,) class labels the fit sample keeps the proportions of, or ``None``.
        fit_points: fit UMAP/t-SNE on at most this many rows and place the others (default
            :data:`FIT_POINTS` of the method; PCA always fits every row).

    Attributes also set by ``fit_transform``: ``fit_rows_`` ((m,) int64 rows fitted on, sorted)
    and ``n_fit_`` (m; n when every row was fitted).
    """

    def __init__(self, method: str = "pca", dim: int = 2, seed: int | None = 0, *, init=None, labels=None,
                 fit_points: int | None = None):
        self.method = method
        self.dim = dim
        self.seed = seed
        self.init = init
        self.labels = labels
        self.fit_points = fit_points

    def _estimator(self, n: int, d: int = 1, init=None):
        if self.method == "pca":
            from sklearn.decomposition import PCA

            solver = "covariance_eigh" if d <= PCA_EIGH_MAX_FEATURES else "randomized"
            return PCA(n_components=self.dim, svd_solver=solver, random_state=self.seed)
        if self.method == "umap":
            import umap

            return umap.UMAP(n_components=self.dim, n_neighbors=min(UMAP_NEIGHBOURS, n - 1),
                             random_state=self.seed, init="spectral" if init is None else init)
        from sklearn.manifold import TSNE

        if init is not None:  # sklearn's own "pca" init: first column with std 1e-4
            init = (init - init.mean(axis=0)) / (init[:, 0].std() or 1.0) * 1e-4
        return TSNE(n_components=self.dim, perplexity=min(TSNE_PERPLEXITY, (n - 1) / 3), init="pca"
                    if init is None else init, learning_rate="auto", random_state=self.seed)

    def fit_transform(self, X) -> np.ndarray:
        """Fit on X and return its projection.

        Args:
            X: (n, d) features.

        Returns:
            (n, dim) float64 projection (also kept in ``embedding_``): the fitted rows' layout,
            the other rows placed (UMAP ``transform`` / t-SNE nearest-neighbour mean).
        """
        x = _as_features(X)
        n = len(x)
        _check_size(x, _check_method(self.method), self.dim)
        init = None if self.init is None or self.method == "pca" else _as_features(self.init, "init")
        if init is not None and init.shape != (n, self.dim):
            raise ValueError(f"init must have shape ({n}, {self.dim}), got {init.shape}")
        rows = fit_rows(n, self.method, labels=self.labels, fit_points=self.fit_points, seed=self.seed)
        self.fit_rows_, self.n_fit_ = rows, len(rows)
        sample = x if len(rows) == n else x[rows]
        self.estimator_ = self._estimator(len(sample), x.shape[1], None if init is None else init[rows])
        self.n_features_in_ = x.shape[1]
        with warnings.catch_warnings(), _threads_for(self.method, *sample.shape):
            warnings.simplefilter("ignore", UserWarning)  # "n_jobs overridden by random_state" and friends
            warnings.simplefilter("ignore", FutureWarning)
            y = self.estimator_.fit_transform(sample.astype(np.float32) if self.method == "umap" else sample)
            y = np.asarray(y, dtype=np.float64)
            if len(rows) < n:
                y = self._place(x, rows, y)
        self.embedding_ = y
        return self.embedding_

    def _place(self, x: np.ndarray, rows: np.ndarray, y_fit: np.ndarray) -> np.ndarray:
        """(n, dim) layout: ``y_fit`` (m, dim) at ``rows``, every other row of x (n, d) placed."""
        rest = np.setdiff1d(np.arange(len(x)), rows, assume_unique=True)
        out = np.empty((len(x), y_fit.shape[1]))
        out[rows] = y_fit
        if self.method == "umap":
            out[rest] = self.estimator_.transform(x[rest].astype(np.float32))
        else:
            out[rest] = place_by_neighbours(x[rows], y_fit, x[rest])
        return out


def place_by_neighbours(fitted, layout, others, k: int = TSNE_PLACE_NEIGHBOURS) -> np.ndarray:
    """Place new rows at the mean layout position of their k nearest fitted rows (euclidean, in
    feature space): how t-SNE, which has no ``transform``, lays out the rows it was not fitted on.

    Args:
        fitted: (m, d) features of the fitted rows.
        layout: (m, dim) their layout.
        others: (r, d) features of the rows to place.
        k: neighbours averaged (at most m).

    Returns:
        (r, dim) float64 positions.
    """
    from sklearn.neighbors import NearestNeighbors

    fitted, others = np.asarray(fitted), np.asarray(others)
    layout = np.asarray(layout, dtype=np.float64)
    k = max(1, min(int(k), len(fitted)))
    _, idx = NearestNeighbors(n_neighbors=k).fit(fitted).kneighbors(others)  # (r, k)
    return layout[idx].mean(axis=1)


def fit_size(n: int, method: str, fit_points: int | None = None) -> int:
    """How many of ``n`` rows ``method`` is fitted on (:data:`FIT_POINTS`, or ``fit_points``)."""
    cap = FIT_POINTS[_check_method(method)] if fit_points is None else int(fit_points)
    if method == "pca" or cap is None:
        return int(n)
    if cap < MIN_POINTS[method]:
        raise ValueError(f"fit_points must be at least {MIN_POINTS[method]} for {method}, got {cap}")
    return int(min(n, cap))


def fit_rows(n: int, method: str, *, labels=None, fit_points: int | None = None, seed: int | None = 0) -> np.ndarray:
    """The (m,) sorted int64 rows ``method`` is fitted on: all n, or a seeded sample of
    :func:`fit_size` rows that keeps the classes' shares (:func:`stratified_subsample`)."""
    m = fit_size(n, method, fit_points)
    if m >= n:
        return np.arange(n, dtype=np.int64)
    return stratified_subsample(labels, n, m, seed=0 if seed is None else seed)


def fit_note(method: str, n_fit: int, n: int) -> str | None:
    """``"UMAP fitted on 10,000 of 100,000 points; the others placed by UMAP's transform"``, or
    ``None`` when every point was fitted."""
    if n_fit >= n:
        return None
    name = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}[_check_method(method)]
    how = ("UMAP's transform" if method == "umap"
           else f"the mean position of their {TSNE_PLACE_NEIGHBOURS} nearest fitted points (in feature space)")
    return f"{name} fitted on {n_fit:,} of {n:,} points; the others placed by {how}"


def project(X, method: str = "pca", *, dim: int = 2, seed: int | None = 0, init=None, labels=None,
            fit_points: int | None = None) -> np.ndarray:
    """Project features to ``dim`` dimensions.

    Args:
        X: (n, d) features (numpy array or CPU tensor), finite.
        method: ``pca`` (milliseconds, also at 100,000 rows), ``umap`` (seconds; first call
            compiles) or ``tsne``.
        dim: output dimensions.
        seed: fixes the result of UMAP/t-SNE (and their fit sample).
        init: (n, dim) starting layout for UMAP/t-SNE (e.g. the previous snapshot's).
        labels: (n,) classes the UMAP/t-SNE fit sample is stratified by, or ``None``.
        fit_points: fit UMAP/t-SNE on at most this many rows, placing the rest (default
            :data:`UMAP_FIT_POINTS` / :data:`TSNE_FIT_POINTS`; :func:`fit_note` says so).

    Returns:
        (n, dim) float64 coordinates.

    Raises:
        ValueError: unknown method, NaN/inf input, or fewer points than the method needs.
    """
    return Projector(method, dim, seed, init=init, labels=labels, fit_points=fit_points).fit_transform(X)


# ----------------------------------------------------------------------------- alignment
def align(Y, Y_ref, *, fit_rows=None, scale: bool = True) -> np.ndarray:
    """Move Y onto Y_ref by rotation (reflection allowed), uniform scaling and translation.

    Orthogonal Procrustes (``scipy.linalg.orthogonal_procrustes``) on the centred point sets,
    rows matched by index: the map ``(y − μ) @ R · s + μ_ref`` with the least squared error over
    the fitted rows, applied to every row of Y. The one alignment of the package: consecutive
    snapshots of a projection sequence, a student drawn in its teacher's orientation, a whole
    sequence turned by the map fitted on its last frame (``fit_rows``).

    Tolerant of what the pictures need: the columns are zero-padded to the wider of the two, the
    map is fitted on ``fit_rows`` (default: every row) that are finite in both, and NaN rows of
    Y stay NaN.

    Args:
        Y: (n, d) points to move (e.g. the student's projection).
        Y_ref: (n, d_ref) reference points (e.g. the teacher's), same rows.
        fit_rows: indices or (n,) boolean mask of the rows the map is fitted on.
        scale: fit the uniform scale ``s`` too; ``False``: rotation and translation only (s = 1).

    Returns:
        (n, max(d, d_ref)) float64 aligned coordinates.

    Raises:
        ValueError: not 2-D, different row counts, or fewer than 2 rows to fit on.
    """
    y, ref = np.asarray(Y, dtype=np.float64), np.asarray(Y_ref, dtype=np.float64)
    if y.ndim != 2 or ref.ndim != 2 or len(y) != len(ref):
        raise ValueError(f"Y and Y_ref must be 2-D with the same rows, got {y.shape} and {ref.shape}")
    y, ref = pad_columns(y, ref.shape[1]), pad_columns(ref, y.shape[1])
    rows = np.isfinite(y).all(axis=1) & np.isfinite(ref).all(axis=1)
    if fit_rows is not None:
        chosen = np.zeros(len(y), dtype=bool)
        chosen[np.asarray(fit_rows)] = True
        rows &= chosen
    if rows.sum() < 2:
        raise ValueError("align needs at least 2 rows finite in both projections to fit the map")
    mu, mu_ref = y[rows].mean(axis=0), ref[rows].mean(axis=0)
    a, b = y[rows] - mu, ref[rows] - mu_ref
    norm = float((a**2).sum())
    if norm == 0.0:  # every fitted point at one place: only the translation is defined
        return y - mu + mu_ref
    rot, sv_sum = orthogonal_procrustes(a, b)
    s = float(sv_sum) / norm if scale else 1.0
    return (y - mu) @ rot * s + mu_ref


def pad_columns(x: np.ndarray, dim: int) -> np.ndarray:
    """(n, d) → (n, max(d, dim)) float64 with zero columns added (a 2-d student drawn in 3-D)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1] >= dim:
        return x
    return np.column_stack([x, np.zeros((len(x), dim - x.shape[1]))])


def teacher_projection(features, *, method: str = "pca", dim: int = 2, seed: int | None = 0, labels=None,
                       fit_points: int | None = None) -> np.ndarray:
    """The teacher's projection: the reference frame of every teacher | student picture.

    Features narrower than ``dim`` are zero-padded first, so any teacher can be drawn.

    Args:
        features: (n, d_t) teacher features of the probe set.
        method: ``pca``, ``umap`` or ``tsne``.
        dim: output dimensions.
        seed: fixes UMAP/t-SNE.
        labels, fit_points: the UMAP/t-SNE fit sample (:func:`project`).

    Returns:
        (n, dim) float64 coordinates.
    """
    return project(pad_columns(_as_features(features, "teacher"), dim), method, dim=dim, seed=seed, labels=labels,
                   fit_points=fit_points)


def student_projection(features, teacher_xy, *, method: str = "pca", seed: int | None = 0, labels=None,
                       fit_points: int | None = None) -> np.ndarray:
    """The student's projection turned into the teacher's orientation (:func:`align`).

    Args:
        features: (n, d_s) student features of the same rows.
        teacher_xy: (n, dim) the teacher's projection (:func:`teacher_projection`).
        method: ``pca``, ``umap`` or ``tsne``.
        seed: fixes UMAP/t-SNE.
        labels, fit_points: the UMAP/t-SNE fit sample (:func:`project`).

    Returns:
        (n, dim) float64 coordinates, aligned to ``teacher_xy``.
    """
    dim = np.asarray(teacher_xy).shape[1]
    coords = teacher_projection(features, method=method, dim=dim, seed=seed, labels=labels, fit_points=fit_points)
    return align(coords, teacher_xy)


# ----------------------------------------------------------------------------- sequences
def project_sequence(
    Xs: Sequence,
    method: str = "pca",
    *,
    dim: int = 2,
    seed: int | None = 0,
    aligned: bool = True,
    progress: Callable[[int, int], None] | None = None,
    labels=None,
    fit_points: int | None = None,
) -> list[np.ndarray]:
    """Project snapshots of the same probe rows so that points do not jump between them.

    Each snapshot is projected on its own, then, with ``aligned`` (what the Embeddings page and
    ``perco-viz bench`` use): ``pca`` Procrustes-aligned (:func:`align`) to the previous aligned
    result; ``umap`` initialised from the previous snapshot's layout, then aligned to it;
    ``tsne`` initialised from the previous snapshot's layout. With ``aligned=False`` every
    snapshot is projected independently.

    Large sets: UMAP/t-SNE are fitted on the same seeded sample of rows in every snapshot
    (:func:`fit_rows`; ``labels`` stratify it), each fit initialised from the previous snapshot's
    layout of those rows, and the other rows placed (:func:`project`).

    The UMAP chain is faster than ``umap.AlignedUMAP`` with the same continuity in practice
    (measured on the 2-core dev machine, 449 points: about 0.5 s per snapshot once numba is
    compiled, against about 5 s; docs/benchmarks.md).

    Args:
        Xs: k arrays (n, d_t), the features at each snapshot (d may change, n may not).
        method: ``pca``, ``umap`` or ``tsne``.
        dim: output dimensions.
        seed: fixes UMAP/t-SNE.
        aligned: align consecutive snapshots.
        progress: called as ``progress(done, k)`` after each snapshot.
        labels: (n,) classes the fit sample is stratified by (``None``: a plain random sample).
        fit_points: the most rows UMAP/t-SNE are fitted on (default :data:`FIT_POINTS`).

    Returns:
        k arrays (n, dim) float64.
    """
    _check_method(method)
    xs = [_as_features(x, f"snapshot {t}") for t, x in enumerate(Xs)]
    if not xs:
        raise ValueError("project_sequence needs at least one snapshot")
    if aligned and len({len(x) for x in xs}) > 1:
        raise ValueError(f"aligned projection needs the same probe rows in every snapshot, got row counts "
                         f"{sorted({len(x) for x in xs})}; pass aligned=False to project them independently")
    for x in xs:
        _check_size(x, method, dim)
    out: list[np.ndarray] = []
    for t, x in enumerate(xs):
        init = out[-1] if aligned and method in ("umap", "tsne") and out else None
        y = project(x, method, dim=dim, seed=seed, init=init, labels=labels, fit_points=fit_points)
        if aligned and method in ("pca", "umap") and out:
            y = align(y, out[-1])
        out.append(y)
        if progress is not None:
            progress(t + 1, len(xs))
    return out


# ----------------------------------------------------------------------------- subsampling
def stratified_subsample(labels, n: int, max_points: int | None = None, seed: int = 0) -> np.ndarray:
    """At most ``max_points`` of ``n`` rows, keeping each class's share (seeded).

    Quotas are ``max_points · count / n`` rounded by largest remainder, so the shares match to
    within one point per class. Also callable as ``stratified_subsample(labels, max_points)``
    (``max_points`` omitted: the second argument is the cap and ``n = len(labels)``).

    Args:
        labels: (n,) class labels of any hashable kind, or ``None`` (a plain random subsample).
        n: number of rows.
        max_points: the most rows returned.
        seed: fixes the choice.

    Returns:
        (m,) sorted unique int64 row indices, m = min(n, max_points); all rows when n ≤ max_points.
    """
    if max_points is None:
        if labels is None:
            raise ValueError("without labels, pass both n and max_points")
        n, max_points = len(labels), n
    n, max_points = int(n), int(max_points)
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels has {len(labels)} entries for n = {n} rows")
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(n, max_points, replace=False)).astype(np.int64)
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    counts = np.bincount(codes.ravel())
    share = max_points * counts / n
    quota = np.floor(share).astype(np.int64)
    extra = np.argsort(-(share - quota), kind="stable")[: max_points - quota.sum()]
    quota[extra] += 1
    picked = [rng.choice(np.flatnonzero(codes == c), q, replace=False) for c, q in enumerate(quota) if q]
    return np.sort(np.concatenate(picked)).astype(np.int64)


# ----------------------------------------------------------------------------- numba warm-up
def _cache_dir(cache_dir: str | os.PathLike | None) -> str:
    """A writable numba cache folder: the given one, ~/.cache/perco_viz/numba, or a temp folder."""
    for candidate in (cache_dir, Path.home() / ".cache" / "perco_viz" / "numba"):
        if candidate is None:
            continue
        try:
            Path(candidate).mkdir(parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return str(candidate)
        except OSError:
            continue
    return tempfile.mkdtemp(prefix="perco_viz-numba-")


def warm_up_numba(cache_dir: str | os.PathLike | None = None) -> None:
    """Compile UMAP's numba code now (a tiny UMAP), so the user's first UMAP is not ~15 s slower.

    Sets ``NUMBA_CACHE_DIR`` (when not already set) to ``cache_dir`` or
    ``~/.cache/perco_viz/numba`` so compiled code is cached on disk even when site-packages is
    read-only. Idempotent and thread-safe: call it from a background thread at start-up.

    Args:
        cache_dir: where numba caches compiled code (ignored when ``NUMBA_CACHE_DIR`` is set).
    """
    if not os.environ.get("NUMBA_CACHE_DIR"):
        os.environ["NUMBA_CACHE_DIR"] = _cache_dir(cache_dir)
    with _WARM_LOCK:
        if _WARM["done"]:
            return
        import numba.core.config

        numba.core.config.reload_config()
        import umap

        x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the approximate-neighbour path (pynndescent) is what real probe sets (> 4096 rows) take
            umap.UMAP(n_neighbors=5, n_epochs=20, random_state=0, force_approximation_algorithm=True).fit(x)
        _WARM["done"] = True
