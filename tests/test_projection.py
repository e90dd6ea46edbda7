"""perco_viz.analysis.projection: PCA/UMAP/t-SNE, Procrustes alignment, sequences, subsampling, numba warm-up."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from perco_viz.analysis import projection as P

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def blobs(rng):
    """(150, 10) features in 3 classes of 50, and the labels."""
    centres = rng.normal(scale=4.0, size=(3, 10))
    labels = np.repeat(np.arange(3), 50)
    return centres[labels] + rng.normal(size=(150, 10)), labels


def _similarity(rng, d: int, reflect: bool = False) -> np.ndarray:
    q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    return q @ np.diag([-1.0] + [1.0] * (d - 1)) if reflect else q


# ----------------------------------------------------------------------------- PCA and the estimator
def test_pca_shape_and_determinism(blobs):
    x, _ = blobs
    a, b = P.project(x, "pca", dim=2), P.project(x, "pca", dim=2)
    assert a.shape == (150, 2) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert P.project(x, "pca", dim=3).shape == (150, 3)
    assert np.var(a[:, 0]) >= np.var(a[:, 1])  # first component carries the most variance


def test_projector_keeps_fitted_state(blobs):
    x, _ = blobs
    proj = P.Projector("pca", dim=2)
    y = proj.fit_transform(x)
    assert proj.n_features_in_ == 10 and proj.embedding_ is y
    np.testing.assert_allclose(proj.estimator_.transform(x[:7]), y[:7], atol=1e-10)  # the fitted PCA


def test_bad_input_says_what_to_change(blobs):
    x, _ = blobs
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        P.project(bad, "pca")
    with pytest.raises(ValueError, match="at least"):
        P.project(x[:4], "umap")
    with pytest.raises(ValueError, match="at least"):
        P.project(x[:1], "pca")
    with pytest.raises(ValueError, match="feature columns"):
        P.project(x[:, :1], "pca", dim=2)
    with pytest.raises(ValueError, match="method"):
        P.project(x, "mds")
    with pytest.raises(ValueError, match="2-D"):
        P.project(x[0], "pca")


# ----------------------------------------------------------------------------- alignment
@pytest.mark.parametrize("reflect", [False, True])
def test_align_recovers_a_similarity(rng, reflect):
    y_ref = rng.normal(size=(40, 2))
    y = 3.7 * y_ref @ _similarity(rng, 2, reflect) + np.array([5.0, -2.0])  # rotated, scaled, shifted copy
    aligned = P.align(y, y_ref)
    assert np.abs(aligned - y_ref).max() < 1e-8


def test_align_pads_and_skips_nan_rows(rng):
    ref = rng.normal(size=(30, 3))
    y = 0.5 * ref[:, :2] @ _similarity(rng, 2) + 1.0  # a 2-D student against a 3-D teacher
    y[4] = np.nan
    out = P.align(y, np.column_stack([ref[:, :2], np.zeros(30)]))
    assert out.shape == (30, 3) and np.isnan(out[4]).all()
    keep = np.arange(30) != 4
    np.testing.assert_allclose(out[keep, :2], ref[keep, :2], atol=1e-8)
    with pytest.raises(ValueError, match="same rows"):
        P.align(y[:10], ref)
    with pytest.raises(ValueError, match="at least 2 rows"):
        P.align(y, ref[:, :2], fit_rows=[0])


def test_align_fit_rows_and_without_scale(rng):
    """The map fitted on some rows moves every row; ``scale=False`` turns and shifts only."""
    x = rng.normal(size=(30, 2))
    q = np.array([[0.0, -1.0], [1.0, 0.0]])
    target = 3.0 * x @ q + 5.0
    y = np.vstack([x, 10.0 * x])  # 60 rows: the map is fitted on the first 30
    out = P.align(y, np.vstack([target, np.zeros_like(target)]), fit_rows=np.arange(30))
    np.testing.assert_allclose(out[:30], target, atol=1e-10)
    np.testing.assert_allclose(out[30:], 3.0 * (10.0 * x - x.mean(axis=0)) @ q + target.mean(axis=0), atol=1e-9)
    turned = P.align(x, target, scale=False)
    np.testing.assert_allclose(turned, (x - x.mean(axis=0)) @ q + target.mean(axis=0), atol=1e-10)
    np.testing.assert_allclose(P.align(np.ones((5, 2)), x[:5]), np.tile(x[:5].mean(axis=0), (5, 1)))


def test_teacher_and_student_projection(rng):
    teacher = rng.normal(size=(80, 6)) * np.linspace(3, 0.5, 6)
    t_xy = P.teacher_projection(teacher)
    np.testing.assert_array_equal(t_xy, P.project(teacher, "pca", dim=2))
    assert P.teacher_projection(teacher[:, :1]).shape == (80, 2)  # a 1-d teacher is padded
    student = 2.0 * teacher[:, :3] @ _similarity(rng, 3) - 1.0  # a similarity of the teacher's 3 widest columns
    s_xy = P.student_projection(student, P.teacher_projection(teacher[:, :3]))
    np.testing.assert_allclose(s_xy, P.teacher_projection(teacher[:, :3]), atol=1e-8)
    for width in (1, 2):  # narrow students: a line, or their plane turned
        assert P.student_projection(student[:, :width], t_xy).shape == (80, 2)


def test_project_sequence_pca_is_continuous(rng):
    """A near-isotropic plane: PCA axes spin freely between snapshots unless aligned."""
    plane = rng.normal(size=(200, 2)) @ np.linalg.qr(rng.normal(size=(10, 10)))[0][:2]  # (200, 10)
    snaps = [plane + 0.02 * rng.normal(size=plane.shape) for _ in range(5)]
    aligned = P.project_sequence(snaps, "pca")
    free = P.project_sequence(snaps, "pca", aligned=False)
    assert len(aligned) == 5 and all(a.shape == (200, 2) for a in aligned)

    def jumps(seq):
        return np.mean([np.linalg.norm(b - a) / np.linalg.norm(a) for a, b in zip(seq, seq[1:])])

    assert jumps(aligned) < 0.1
    assert jumps(aligned) < jumps(free)
    np.testing.assert_allclose(aligned[0], free[0])  # the first snapshot is the reference


def test_project_sequence_rejects_changing_rows(blobs):
    x, _ = blobs
    with pytest.raises(ValueError, match="same probe rows"):
        P.project_sequence([x, x[:100]], "pca")
    assert len(P.project_sequence([x, x[:100]], "pca", aligned=False)) == 2
    with pytest.raises(ValueError, match="at least one"):
        P.project_sequence([], "pca")


# ----------------------------------------------------------------------------- subsampling
def test_stratified_subsample_keeps_proportions(rng):
    labels = np.repeat(["cat", "dog", "eel"], [600, 300, 100])
    rng.shuffle(labels)
    idx = P.stratified_subsample(labels, 1000, 100, seed=3)
    assert len(idx) == 100 and idx.dtype == np.int64
    assert np.all(np.diff(idx) > 0)  # sorted, unique
    counts = {c: int((labels[idx] == c).sum()) for c in ("cat", "dog", "eel")}
    assert counts == {"cat": 60, "dog": 30, "eel": 10}
    np.testing.assert_array_equal(idx, P.stratified_subsample(labels, 1000, 100, seed=3))
    np.testing.assert_array_equal(idx, P.stratified_subsample(labels, 100, seed=3))  # (labels, max_points)


def test_stratified_subsample_edge_cases(rng):
    np.testing.assert_array_equal(P.stratified_subsample(np.zeros(20), 20, 50), np.arange(20))
    idx = P.stratified_subsample(None, 500, 37, seed=0)
    assert len(idx) == 37 and len(np.unique(idx)) == 37 and idx.max() < 500
    uneven = np.r_[np.zeros(7, int), np.ones(3, int), np.full(1, 2)]
    assert len(P.stratified_subsample(uneven, 11, 5)) == 5
    with pytest.raises(ValueError, match="entries"):
        P.stratified_subsample(np.zeros(5), 6, 3)


# ----------------------------------------------------------------------------- t-SNE, UMAP
def test_tsne_small_is_seeded_and_sequences(blobs):
    x = blobs[0][25:125]  # 100 points of two classes
    a, b = P.project(x, "tsne", seed=1), P.project(x, "tsne", seed=1)
    assert a.shape == (100, 2)
    np.testing.assert_allclose(a, b)
    seq = P.project_sequence([x, x * 1.01], "tsne", seed=1)  # the second starts from the first
    assert [s.shape for s in seq] == [(100, 2), (100, 2)] and np.isfinite(seq[1]).all()


@pytest.mark.slow
def test_umap_and_umap_sequence_small(blobs):
    x, _ = blobs  # 150 points; the first UMAP in a process compiles (numba)
    start = time.perf_counter()
    proj = P.Projector("umap", dim=2, seed=0)
    y = proj.fit_transform(x)
    assert y.shape == (150, 2) and np.isfinite(y).all()
    seq = P.project_sequence([x, x + 0.05], "umap", seed=0)
    assert [s.shape for s in seq] == [(150, 2), (150, 2)]
    jump = np.linalg.norm(seq[1] - seq[0]) / np.linalg.norm(seq[0] - seq[0].mean(axis=0))
    assert jump < 0.5  # initialised from the previous layout and aligned: the points stay in place
    print(f"UMAP + aligned UMAP sequence on 150 points: {time.perf_counter() - start:.1f} s")


def test_warm_up_sets_a_writable_cache_dir_and_is_idempotent(tmp_path, monkeypatch):
    monkeypatch.setitem(P._WARM, "done", True)  # pretend compiled: test the bookkeeping only
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    P.warm_up_numba(tmp_path / "numba")
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "numba") and (tmp_path / "numba").is_dir()
    P.warm_up_numba(tmp_path / "other")  # already set: left alone
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "numba")


def test_small_pca_runs_on_one_blas_thread(monkeypatch):
    """A probe-set PCA runs its SVD on one BLAS thread: a threaded BLAS spins against the trainings
    and other sessions on a busy server (seconds instead of milliseconds; the issue's waits)."""
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    original = PCA.fit_transform

    def spy(self, X, y=None):
        seen.append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return original(self, X, y)

    monkeypatch.setattr(PCA, "fit_transform", spy)
    x = np.random.default_rng(0).normal(size=(449, 128))
    with threadpool_limits(limits=2, user_api="blas"):  # as on a 2-core machine, whatever this one has
        P.project(x, "pca", dim=2)
        assert max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas") == 2  # restored after
    assert seen == [1]


# ----------------------------------------------------------------------------- large sets: fit on a sample, place the rest
@pytest.fixture
def clusters(rng):
    """(1200, 12) features in 4 well-separated classes of unequal size, and the labels."""
    labels = np.repeat(np.arange(4), [600, 300, 200, 100])
    centres = rng.normal(scale=6.0, size=(4, 12))
    return centres[labels] + rng.normal(size=(1200, 12)), labels


def test_pca_eigh_matches_an_svd_and_randomized_beyond_its_width(rng):
    """PCA of a tall set is the covariance eigen-decomposition (d × d: milliseconds at 100,000 rows),
    equal to the SVD's components up to sign; wide features take the randomized SVD."""
    from sklearn.decomposition import PCA

    x = rng.normal(size=(3000, 20)) * np.linspace(4, 0.5, 20)
    proj = P.Projector("pca", dim=2)
    y = proj.fit_transform(x)
    assert proj.estimator_.svd_solver == "covariance_eigh" and proj.n_fit_ == 3000
    ref = PCA(2, svd_solver="full").fit_transform(x)
    np.testing.assert_allclose(np.abs(y), np.abs(ref), atol=1e-6)
    wide = P.Projector("pca", dim=2)
    wide.fit_transform(rng.normal(size=(30, P.PCA_EIGH_MAX_FEATURES + 1)))
    assert wide.estimator_.svd_solver == "randomized"


def test_fit_size_rows_and_note():
    assert P.fit_size(100_000, "umap") == P.UMAP_FIT_POINTS == 10_000
    assert P.fit_size(100_000, "tsne") == P.TSNE_FIT_POINTS == 5_000
    assert P.fit_size(100_000, "pca") == 100_000 and P.fit_size(300, "umap") == 300
    assert P.fit_size(1000, "tsne", fit_points=50) == 50
    with pytest.raises(ValueError, match="fit_points"):
        P.fit_size(1000, "umap", fit_points=3)
    assert P.fit_note("umap", 10_000, 100_000) == ("UMAP fitted on 10,000 of 100,000 points; "
                                                   "the others placed by UMAP's transform")
    assert "nearest fitted points" in P.fit_note("tsne", 5_000, 100_000)
    assert P.fit_note("umap", 500, 500) is None
    labels = np.repeat([0, 1], [900, 100])
    rows = P.fit_rows(1000, "tsne", labels=labels, fit_points=100, seed=2)
    assert len(rows) == 100 and np.bincount(labels[rows]).tolist() == [90, 10]  # the classes' shares
    np.testing.assert_array_equal(rows, P.fit_rows(1000, "tsne", labels=labels, fit_points=100, seed=2))


def test_tsne_fits_a_sample_and_places_the_rest_by_neighbours(clusters):
    from sklearn.neighbors import NearestNeighbors

    x, labels = clusters
    proj = P.Projector("tsne", dim=2, seed=0, labels=labels, fit_points=200)
    y = proj.fit_transform(x)
    assert y.shape == (1200, 2) and np.isfinite(y).all() and proj.n_fit_ == 200
    rows = proj.fit_rows_
    assert np.bincount(labels[rows]).tolist() == [100, 50, 33, 17]  # stratified: the classes' shares
    rest = np.setdiff1d(np.arange(1200), rows)
    _, nn = NearestNeighbors(n_neighbors=P.TSNE_PLACE_NEIGHBOURS).fit(x[rows]).kneighbors(x[rest])
    np.testing.assert_allclose(y[rest], y[rows][nn].mean(axis=1), atol=1e-9)  # mean of the 5 nearest
    # placed points land among their own class: their nearest fitted point in the layout shares it
    _, near = NearestNeighbors(n_neighbors=1).fit(y[rows]).kneighbors(y[rest])
    assert (labels[rows][near[:, 0]] == labels[rest]).mean() > 0.95
    np.testing.assert_array_equal(y, P.project(x, "tsne", seed=0, labels=labels, fit_points=200))  # seeded


def test_sequence_on_a_sample_starts_each_fit_from_the_previous(clusters, monkeypatch):
    """The same rows are fitted in every snapshot, each fit initialised from the previous layout of them."""
    x, labels = clusters
    inits, fitted = [], []
    original = P.Projector.fit_transform

    def spy(self, X):
        inits.append(None if self.init is None else np.asarray(self.init).copy())
        out = original(self, X)
        fitted.append(self.fit_rows_)
        return out

    monkeypatch.setattr(P.Projector, "fit_transform", spy)
    seq = P.project_sequence([x, x * 1.01], "tsne", seed=0, labels=labels, fit_points=150)
    assert [s.shape for s in seq] == [(1200, 2), (1200, 2)]
    np.testing.assert_array_equal(fitted[0], fitted[1])
    assert inits[0] is None and np.array_equal(inits[1], seq[0])


@pytest.mark.slow
def test_umap_fits_a_sample_and_places_the_rest_by_its_transform(clusters, monkeypatch):
    import umap

    x, labels = clusters
    placed = []
    original = umap.UMAP.transform

    def spy(self, X, *args, **kw):
        placed.append(np.asarray(X).copy())
        return original(self, X, *args, **kw)

    monkeypatch.setattr(umap.UMAP, "transform", spy)
    proj = P.Projector("umap", dim=2, seed=0, labels=labels, fit_points=300)
    y = proj.fit_transform(x)
    assert y.shape == (1200, 2) and np.isfinite(y).all() and proj.n_fit_ == 300
    rest = np.setdiff1d(np.arange(1200), proj.fit_rows_)
    assert len(placed) == 1 and np.allclose(placed[0], x[rest])  # the 900 others, by UMAP's own transform
    from sklearn.neighbors import NearestNeighbors

    rows = proj.fit_rows_
    _, near = NearestNeighbors(n_neighbors=1).fit(y[rows]).kneighbors(y[rest])
    assert (labels[rows][near[:, 0]] == labels[rest]).mean() > 0.95  # placed among their own class
    seq = P.project_sequence([x, x + 0.05], "umap", seed=0, labels=labels, fit_points=300)
    jump = np.linalg.norm(seq[1] - seq[0]) / np.linalg.norm(seq[0] - seq[0].mean(axis=0))
    assert jump < 0.5
