"""Student quality metrics on held-out data (DESIGN.md §1): k-NN and linear-probe accuracy of
the student's features, trustworthiness and k-NN overlap of its neighbourhoods with the
teacher's, linear CKA, and :func:`student_report`, the whole panel with perception coherence.

Every function takes numpy arrays or tensors, checks shapes and finiteness at the door
(``ValueError`` with a message that says what to change) and returns plain floats. Neighbours
are euclidean and never include the point itself. Computation is float64 on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import trustworthiness as _sklearn_trustworthiness
from sklearn.metrics import pairwise_distances
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from perco_viz.checks import check_feature_pair, check_features, check_labels

ArrayLike = np.ndarray | torch.Tensor
PROBE_FOLDS = 5
PROBE_MAX_ITER = 1000
_CONSTANT_RTOL = 1e-10  # centred features this small relative to the raw ones are constant


# --------------------------------------------------------------------------- input checks
def _check_k(k: int, name: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"{name} must be a positive integer, got {k!r}")


def _test_split(test_features, test_labels, width: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The optional held-out split, checked against the training width; None when absent."""
    if (test_features is None) != (test_labels is None):
        raise ValueError("give both test_features and test_labels, or neither")
    if test_features is None:
        return None
    xt = check_features(test_features, "test", min_points=1)
    if xt.shape[1] != width:
        raise ValueError(f"test features have {xt.shape[1]} columns, training features {width}")
    return xt, check_labels(test_labels, len(xt), "test labels")


# --------------------------------------------------------------------------- neighbours
def _neighbours(x: np.ndarray, k: int, metric: str = "euclidean") -> np.ndarray:
    """(n, k) indices of each point's k nearest other points (``metric="precomputed"``: x is D)."""
    return NearestNeighbors(n_neighbors=k, metric=metric).fit(x).kneighbors(return_distance=False)


def _majority(votes: np.ndarray, n_classes: int) -> np.ndarray:
    """(n,) most frequent class code per row of (n, k) codes; ties go to the smaller code."""
    n = len(votes)
    offsets = (np.arange(n) * n_classes)[:, None]
    counts = np.bincount((votes + offsets).ravel(), minlength=n * n_classes).reshape(n, n_classes)
    return counts.argmax(axis=1)


def _knn_leave_one_out(x: np.ndarray, y: np.ndarray, k: int, neighbours: np.ndarray | None = None) -> float:
    """Leave-one-out k-NN accuracy; ``neighbours``: (n, ≥ k) each point's nearest others, when
    already searched."""
    classes, codes = np.unique(y, return_inverse=True)
    k = min(k, len(x) - 1)
    idx = _neighbours(x, k) if neighbours is None else neighbours[:, :k]  # (n, k), the point itself excluded
    return float((_majority(codes[idx], len(classes)) == codes).mean())


def knn_accuracy(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    k: int = 5,
    test_features: ArrayLike | None = None,
    test_labels: ArrayLike | None = None,
) -> float:
    """Accuracy of a k-nearest-neighbour majority vote (euclidean, uniform weights).

    With a test split, the classifier is fitted on (features, labels) and scored on the test
    split. Without one, every point is classified by its k nearest *other* points
    (leave-one-out). When there are too few points, k is lowered to n − 1 (leave-one-out) or
    to n (test split). Ties between classes go to the smallest label, as in scikit-learn.

    Args:
        features: (n, d) features to classify from, n ≥ 2.
        labels: (n,) labels.
        k: number of neighbours (≥ 1).
        test_features: (m, d) held-out features, or ``None``.
        test_labels: (m,) held-out labels, or ``None``.

    Returns:
        Accuracy in [0, 1].

    >>> x = np.r_[np.zeros((5, 2)), np.ones((5, 2))] + np.arange(10)[:, None] * 1e-3
    >>> knn_accuracy(x, [0] * 5 + [1] * 5, k=3)
    1.0
    """
    _check_k(k)
    x = check_features(features, "features", min_points=2)
    y = check_labels(labels, len(x))
    split = _test_split(test_features, test_labels, x.shape[1])
    if split is None:
        return _knn_leave_one_out(x, y, k)
    clf = KNeighborsClassifier(n_neighbors=min(k, len(x))).fit(x, y)
    return float(clf.score(*split))


# --------------------------------------------------------------------------- linear probe
def _probe_correct(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray) -> int:
    """Count of test points that a standardized logistic regression fitted on train gets right."""
    classes = np.unique(y_tr)
    if len(classes) == 1:  # nothing to discriminate: the probe can only predict that class
        return int((y_te == classes[0]).sum())
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER))
    return int((probe.fit(x_tr, y_tr).predict(x_te) == y_te).sum())


def _folds(y: np.ndarray, folds: int):
    """Stratified folds (fewer if a class is tiny); plain folds if a class has one point."""
    n_splits = min(folds, int(np.unique(y, return_counts=True)[1].min()))
    if n_splits >= 2:
        return StratifiedKFold(n_splits, shuffle=True, random_state=0).split(y, y)
    return KFold(min(folds, len(y)), shuffle=True, random_state=0).split(y)


def linear_probe_accuracy(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike | None = None,
    test_labels: ArrayLike | None = None,
) -> float:
    """Accuracy of a linear probe: standardization then multinomial logistic regression.

    With a test split, the probe is fitted on the train split and scored on the test split.
    Without one, the single set is scored by stratified 5-fold cross-validation (fewer folds
    when the smallest class has fewer than 5 points; plain folds when a class has one point),
    pooling the predictions of all folds. Deterministic (fixed fold seed).

    Args:
        train_features: (n, d) features, n ≥ 2.
        train_labels: (n,) labels.
        test_features: (m, d) held-out features, or ``None``.
        test_labels: (m,) held-out labels, or ``None``.

    Returns:
        Accuracy in [0, 1].

    >>> x = np.random.default_rng(0).normal(size=(40, 3))
    >>> linear_probe_accuracy(x, (x[:, 0] > 0).astype(int)) > 0.9
    True
    """
    x = check_features(train_features, "train", min_points=2)
    y = check_labels(train_labels, len(x), "train labels")
    split = _test_split(test_features, test_labels, x.shape[1])
    if split is not None:
        return _probe_correct(x, y, *split) / len(split[1])
    correct = sum(_probe_correct(x[tr], y[tr], x[te], y[te]) for tr, te in _folds(y, PROBE_FOLDS))
    return correct / len(x)


# --------------------------------------------------------------------------- neighbourhoods
def _trust(teacher: np.ndarray, student: np.ndarray, k: int, metric: str) -> float:
    """sklearn trustworthiness with k clipped below n / 2 (sklearn's requirement)."""
    k = min(k, (len(student) - 1) // 2)
    return float(_sklearn_trustworthiness(teacher, student, n_neighbors=k, metric=metric))


def trustworthiness(teacher: ArrayLike, student: ArrayLike, *, k: int = 10) -> float:
    """Trustworthiness@k of the student as an embedding of the teacher (euclidean).

    Penalizes points that are among a point's k nearest neighbours in the student but not in
    the teacher, by how far down the teacher's ranking they are. k is clipped to the largest
    integer below n / 2, as scikit-learn requires.

    Args:
        teacher: (n, d_t) teacher features (the original space), n ≥ 3.
        student: (n, d_s) student features (the embedding).
        k: neighbourhood size (≥ 1).

    Returns:
        Trustworthiness in [0, 1]; 1 = no false neighbours.

    Reference:
        Venna, Kaski, "Neighborhood Preservation in Nonlinear Projection Methods: An
        Experimental Study", ICANN 2001 (``sklearn.manifold.trustworthiness``).

    >>> t = np.random.default_rng(0).normal(size=(30, 4))
    >>> trustworthiness(t, 2.0 * t)
    1.0
    """
    _check_k(k)
    t, s = check_feature_pair(teacher, student, min_points=3, names=("teacher", "student"))
    return _trust(t, s, k, "euclidean")


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of |a_i ∩ b_i| / k for (n, k) neighbour index arrays (no repeats in rows)."""
    shared = (a[:, :, None] == b[:, None, :]).sum(axis=(1, 2))  # (n,)
    return float(shared.mean() / a.shape[1])


def knn_overlap(teacher: ArrayLike, student: ArrayLike, *, k: int = 10) -> float:
    """Mean share of each point's k nearest neighbours that teacher and student agree on.

    ``mean_i |N_k^T(i) ∩ N_k^S(i)| / k`` with euclidean neighbours excluding the point itself;
    k is clipped to n − 1.

    Args:
        teacher: (n, d_t) teacher features, n ≥ 2.
        student: (n, d_s) student features.
        k: neighbourhood size (≥ 1).

    Returns:
        Overlap in [0, 1]; 1 = the same neighbourhoods.

    >>> t = np.random.default_rng(0).normal(size=(30, 4))
    >>> knn_overlap(t, t + 5.0)
    1.0
    """
    _check_k(k)
    t, s = check_feature_pair(teacher, student, min_points=2, names=("teacher", "student"))
    k = min(k, len(t) - 1)
    return _overlap(_neighbours(t, k), _neighbours(s, k))


# --------------------------------------------------------------------------- CKA
def _centred(x: np.ndarray) -> np.ndarray | None:
    """Column-centred x scaled to a largest entry of 1 (CKA is scale-invariant; the fourth
    powers in the HSIC terms then cannot overflow), or None when x is constant (up to rounding).
    """
    x = x / max(np.abs(x).max(), np.finfo(x.dtype).tiny)
    xc = x - x.mean(axis=0)
    if np.linalg.norm(xc) <= _CONSTANT_RTOL * np.linalg.norm(x):
        return None
    return xc / np.abs(xc).max()


def _hsic_terms(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """``(||AᵀB||_F², ||AᵀA||_F, ||BᵀB||_F)`` from d × d or n × n products, the cheaper."""
    n, d_a, d_b = a.shape[0], a.shape[1], b.shape[1]
    if n * (d_a + d_b) < d_a * d_a + d_b * d_b + d_a * d_b:
        k_a, k_b = a @ a.T, b @ b.T  # (n, n) each
        return float((k_a * k_b).sum()), float(np.linalg.norm(k_a)), float(np.linalg.norm(k_b))
    return (
        float(np.linalg.norm(a.T @ b) ** 2),
        float(np.linalg.norm(a.T @ a)),
        float(np.linalg.norm(b.T @ b)),
    )


CKA_CHUNK_ROWS = 16_384  # rows per block of the chunked CKA (float64 blocks of a few tens of MB)
CKA_CHUNKED_ABOVE = 20_000_000  # n × d above which linear_cka reads numpy inputs in blocks


def _is_large(x) -> bool:
    return isinstance(x, np.ndarray) and x.ndim == 2 and x.size > CKA_CHUNKED_ABOVE


def _blocks(n: int, size: int = CKA_CHUNK_ROWS):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _linear_cka_chunked(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`linear_cka` of (n, d_a) and (n, d_b) numpy arrays (memory-mapped ones too) read in
    blocks of rows: two passes (column means and largest entries, then the d × d products of the
    centred, scaled blocks in float64), O(n·(d_a + d_b)²) time, O((d_a + d_b)²) memory besides
    one block. The same quantity as the in-memory path, up to rounding."""
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise ValueError(f"a and b must be 2-D with the same rows, got shapes {a.shape} and {b.shape}")
    n = len(a)
    if n < 2:
        raise ValueError(f"a features need at least 2 points, got {n}")
    sums = [np.zeros(a.shape[1]), np.zeros(b.shape[1])]
    tops = [0.0, 0.0]
    for rows in _blocks(n):
        for i, (x, name) in enumerate(((a, "a"), (b, "b"))):
            block = check_features(x[rows], name)
            sums[i] += block.sum(axis=0)
            tops[i] = max(tops[i], float(np.abs(block).max()))
    means = [sums[0] / n, sums[1] / n]
    scales = [max(tops[0], np.finfo(np.float64).tiny), max(tops[1], np.finfo(np.float64).tiny)]
    aa = np.zeros((a.shape[1], a.shape[1]))
    bb = np.zeros((b.shape[1], b.shape[1]))
    ab = np.zeros((a.shape[1], b.shape[1]))
    for rows in _blocks(n):
        xa = (np.asarray(a[rows], dtype=np.float64) - means[0]) / scales[0]
        xb = (np.asarray(b[rows], dtype=np.float64) - means[1]) / scales[1]
        aa += xa.T @ xa
        bb += xb.T @ xb
        ab += xa.T @ xb
    norm_a, norm_b = float(np.linalg.norm(aa)), float(np.linalg.norm(bb))
    # a constant representation (up to rounding): no similarity structure, CKA 0 as in memory
    if norm_a <= (_CONSTANT_RTOL**2) * n or norm_b <= (_CONSTANT_RTOL**2) * n:
        return 0.0
    return min(1.0, float(np.linalg.norm(ab) ** 2) / (norm_a * norm_b))


def linear_cka(a: ArrayLike, b: ArrayLike) -> float:
    """Linear centered kernel alignment of two representations of the same points (float64).

    ``CKA = ||AᵀB||_F² / (||AᵀA||_F ||BᵀB||_F)`` with column-centred A and B; invariant to
    orthogonal transforms, isotropic scaling and shifts of either. A constant representation
    has no similarity structure: CKA is then reported as 0.

    Args:
        a: (n, d_a) features, n ≥ 2.
        b: (n, d_b) features; d_b may differ from d_a.

    Returns:
        CKA in [0, 1]; 1 = the same up to rotation and scale.

    Numpy inputs with more than :data:`CKA_CHUNKED_ABOVE` entries (a million rows, a
    memory-mapped ``.npy``) are read in blocks of :data:`CKA_CHUNK_ROWS` rows: exact on every
    row in O(n·d²) time, never an n × n matrix nor a float64 copy of the whole input.

    Reference:
        Kornblith, Norouzi, Lee, Hinton, "Similarity of Neural Network Representations
        Revisited", ICML 2019.

    >>> a = np.random.default_rng(0).normal(size=(20, 3))
    >>> round(linear_cka(a, 3.0 * a + 1.0), 12)
    1.0
    """
    if _is_large(a) or _is_large(b):
        return _linear_cka_chunked(a, b)
    x, y = check_feature_pair(a, b, min_points=2, names=("a", "b"))
    xc, yc = _centred(x), _centred(y)
    if xc is None or yc is None:
        return 0.0
    cross, norm_x, norm_y = _hsic_terms(xc, yc)
    return min(1.0, cross / (norm_x * norm_y))  # Cauchy-Schwarz: <= 1; rounding can give 1 + 2e-16


# --------------------------------------------------------------------------- the panel
def _label_scores(
    student: np.ndarray, labels, k: int, train_student, train_labels, neighbours: np.ndarray | None = None
) -> dict[str, float]:
    """knn_acc and linear_acc on held-out data: fitted on the train split when given.

    ``neighbours``: (n, ≥ k) the student's nearest other points, nearest first (shared with the
    neighbourhood scores, so the student's distances are searched once)."""
    y = check_labels(labels, len(student))
    if train_student is None:
        return {"knn_acc": _knn_leave_one_out(student, y, k, neighbours),
                "linear_acc": linear_probe_accuracy(student, y)}
    return {
        "knn_acc": knn_accuracy(
            train_student, train_labels, k=k, test_features=student, test_labels=y
        ),
        "linear_acc": linear_probe_accuracy(train_student, train_labels, student, y),
    }


def student_report(
    student: ArrayLike,
    teacher: ArrayLike,
    labels: ArrayLike | None = None,
    *,
    k: int = 5,
    trust_k: int = 10,
    train_student: ArrayLike | None = None,
    train_labels: ArrayLike | None = None,
    metric: str = "euclidean",
    coherence: np.ndarray | None = None,
) -> dict[str, float]:
    """The whole quality panel of a student on held-out data.

    Keys, in order: ``pc`` (perception coherence), ``coherence_mean`` (mean per-sample
    coherence; equals ``pc`` by definition), ``coherence_p10`` (10th percentile of the
    per-sample coherence: the lower tail), ``knn_acc`` and ``linear_acc`` (only with
    ``labels``; fitted on the train split when one is given, else leave-one-out k-NN and
    cross-validated probe on the held-out set), ``trustworthiness`` and ``knn_overlap``
    (euclidean neighbourhoods of size ``trust_k``), ``cka`` (linear CKA).

    Each distance is computed once: c_i once (or passed in as ``coherence``), the teacher's
    distance matrix once (trustworthiness and the k-NN overlap), the student's nearest
    neighbours once (k-NN accuracy and the overlap).

    Args:
        student: (n, d_s) held-out student features, n ≥ 3.
        teacher: (n, d_t) held-out teacher features.
        labels: (n,) held-out labels, or ``None``.
        k: neighbours of the k-NN classifier.
        trust_k: neighbourhood size of trustworthiness and k-NN overlap.
        train_student: (m, d_s) student features of a train split, or ``None``.
        train_labels: (m,) labels of the train split, or ``None``.
        metric: dissimilarity of the coherence scores (see :mod:`perco_viz.coherence`).
        coherence: (n,) the per-sample coherence c_i of these rows when already computed
            (:func:`perco_viz.coherence.per_sample_coherence` with ``metric``), else ``None``.

    Returns:
        ``{name: float}``, every value in [0, 1].

    >>> t = np.random.default_rng(0).normal(size=(40, 5))
    >>> r = student_report(2.0 * t, t, labels=(t[:, 0] > 0).astype(int))
    >>> r["pc"], r["knn_overlap"]
    (1.0, 1.0)
    """
    from perco_viz.coherence import per_sample_coherence

    _check_k(k)
    _check_k(trust_k, "trust_k")
    if (train_student is None) != (train_labels is None):
        raise ValueError("give both train_student and train_labels, or neither")
    if train_student is not None and labels is None:
        raise ValueError("a train split is scored on held-out labels: give labels too")
    s, t = check_feature_pair(student, teacher, min_points=3)
    n = len(s)
    if coherence is None:
        c = per_sample_coherence(s, t, metric=metric)  # (n,)
    else:
        c = np.asarray(coherence, dtype=np.float64)
        if c.shape != (n,):
            raise ValueError(f"coherence must hold one c_i per row ({n}), got shape {c.shape}")
    report = {
        "pc": float(c.mean()),
        "coherence_mean": float(c.mean()),
        "coherence_p10": float(np.percentile(c, 10)),
    }
    report.update(neighbourhood_scores(s, t, labels, k=k, trust_k=trust_k, train_student=train_student,
                                       train_labels=train_labels))
    report["cka"] = linear_cka(s, t)
    return report


def neighbourhood_scores(
    student: ArrayLike,
    teacher: ArrayLike,
    labels: ArrayLike | None = None,
    *,
    k: int = 5,
    trust_k: int = 10,
    train_student: ArrayLike | None = None,
    train_labels: ArrayLike | None = None,
) -> dict[str, float]:
    """The neighbourhood part of :func:`student_report`: ``knn_acc`` and ``linear_acc`` (with
    ``labels``), ``trustworthiness`` and ``knn_overlap`` (neighbourhoods of size ``trust_k``).

    The teacher's distance matrix is computed once (trustworthiness, scikit-learn's, and the
    overlap use it) and the student's nearest neighbours are searched once for k-NN accuracy and
    the overlap. O(n²) memory: call it on a sample of a large set.

    Args:
        student: (n, d_s) features, n ≥ 3.
        teacher: (n, d_t) features of the same rows.
        labels: (n,) labels, or ``None``.
        k: neighbours of the k-NN classifier.
        trust_k: neighbourhood size of trustworthiness and k-NN overlap.
        train_student: (m, d_s) student features of a train split, or ``None``.
        train_labels: (m,) its labels.

    Returns:
        ``{name: float}`` in [0, 1], equal to the same keys of :func:`student_report`.
    """
    _check_k(k)
    _check_k(trust_k, "trust_k")
    s, t = check_feature_pair(student, teacher, min_points=3)
    n = len(s)
    k_overlap = min(trust_k, n - 1)
    nbrs_s = _neighbours(s, max(min(k, n - 1), k_overlap))  # (n, K), nearest first
    out: dict[str, float] = {}
    if labels is not None:
        out.update(_label_scores(s, labels, k, train_student, train_labels, nbrs_s))
    d_t = pairwise_distances(t)  # (n, n), the teacher's distances, once: both scores below
    out["trustworthiness"] = _trust(d_t, s, trust_k, "precomputed")
    out["knn_overlap"] = _overlap(_neighbours(d_t, k_overlap, "precomputed"), nbrs_s[:, :k_overlap])
    return out


# --------------------------------------------------------------------------- one snapshot's numbers
def probe_record(
    student: ArrayLike,
    teacher: ArrayLike,
    labels: ArrayLike | None = None,
    *,
    metric: str = "euclidean",
    teacher_metric: str | None = None,
) -> tuple[np.ndarray, dict[str, float | None]]:
    """What every snapshot records of a student on the probe set: the engine's and
    :func:`perco_viz.open_run`'s, computed in one place.

    Args:
        student: (n, d_s) finite student features of the probe set.
        teacher: (n, d_t) finite teacher features of the same rows.
        labels: (n,) integer labels, or ``None`` (then ``knn_acc`` is ``None``).
        metric, teacher_metric: the dissimilarities (:func:`perco_viz.coherence.per_sample_coherence`).

    Returns:
        ``(c, numbers)``: c (n,) float64, the per-sample coherence c_i; ``numbers`` the
        ``pc`` (mean of c, DESIGN §1), ``coherence_p10`` (its 10th percentile) and ``knn_acc``
        (leave-one-out 5-NN accuracy on the labels, or ``None``).
    """
    from perco_viz.coherence import per_sample_coherence

    c = per_sample_coherence(student, teacher, metric=metric, teacher_metric=teacher_metric)
    return c, {
        "pc": float(c.mean()),
        "coherence_p10": float(np.quantile(c, 0.1)),
        "knn_acc": None if labels is None else knn_accuracy(student, labels, k=5),
    }
