"""Student quality metrics: quality floors on easy cases, chance on shuffled labels,
invariances, agreement with scikit-learn, input checks, and the combined report."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group
from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier

from perco_viz.metrics import (
    knn_accuracy,
    knn_overlap,
    linear_cka,
    linear_probe_accuracy,
    student_report,
    trustworthiness,
)

REPORT_KEYS = [
    "pc",
    "coherence_mean",
    "coherence_p10",
    "knn_acc",
    "linear_acc",
    "trustworthiness",
    "knn_overlap",
    "cka",
]


def _blobs(rng: np.random.Generator, n_per: int = 30, n_classes: int = 3, dim: int = 5):
    centres = 20.0 * np.eye(n_classes, dim)
    x = np.concatenate([c + rng.normal(size=(n_per, dim)) for c in centres])
    return x, np.repeat(np.arange(n_classes), n_per)


@pytest.fixture
def blobs(rng):
    return _blobs(rng)


@pytest.fixture
def teacher(rng):
    return rng.normal(size=(80, 6))


def _rotated(x: np.ndarray, seed: int = 1) -> np.ndarray:
    return 2.5 * x @ ortho_group.rvs(x.shape[1], random_state=seed) + 1.0


# --------------------------------------------------------------------------- k-NN accuracy
def test_knn_accuracy_separated_blobs(blobs, rng):
    x, y = blobs
    assert knn_accuracy(x, y, k=5) == 1.0
    x_test, y_test = _blobs(rng, n_per=10)
    assert knn_accuracy(x, y, k=5, test_features=x_test, test_labels=y_test) == 1.0


def test_knn_accuracy_shuffled_labels_is_chance(rng):
    x, y = _blobs(rng, n_per=200)
    acc = knn_accuracy(x, rng.permutation(y), k=5)
    assert abs(acc - 1 / 3) < 0.08


def test_knn_leave_one_out_matches_sklearn(rng):
    x, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    expected = np.mean(
        [
            KNeighborsClassifier(n_neighbors=4)
            .fit(np.delete(x, i, 0), np.delete(y, i))
            .predict(x[i : i + 1])[0]
            == y[i]
            for i in range(len(x))
        ]
    )
    assert knn_accuracy(x, y, k=4) == pytest.approx(expected)


def test_knn_accuracy_clips_k_for_tiny_sets():
    x = np.array([[0.0], [0.1], [5.0]])
    assert knn_accuracy(x, [0, 0, 1], k=5) == pytest.approx(2 / 3)  # k = n − 1 = 2
    assert knn_accuracy(x[:2], [0, 0], k=5, test_features=x, test_labels=[0, 0, 0]) == 1.0
    with pytest.raises(ValueError, match="at least 2"):
        knn_accuracy(x[:1], [0])


def test_knn_accuracy_accepts_tensors_and_string_labels(blobs):
    x, y = blobs
    labels = np.array(["a", "b", "c"])[y]
    assert knn_accuracy(torch.tensor(x, requires_grad=True), labels) == 1.0
    assert knn_accuracy(torch.tensor(x).to(torch.bfloat16), torch.tensor(y)) == 1.0


# --------------------------------------------------------------------------- linear probe
def test_linear_probe_separated_blobs(blobs, rng):
    x, y = blobs
    assert linear_probe_accuracy(x, y) == 1.0
    x_test, y_test = _blobs(rng, n_per=10)
    assert linear_probe_accuracy(x, y, x_test, y_test) == 1.0


@pytest.mark.slow
def test_linear_probe_digits_floor():
    x, y = load_digits(return_X_y=True)
    assert linear_probe_accuracy(x, y) > 0.93


def test_linear_probe_shuffled_labels_is_near_chance(rng):
    x, y = _blobs(rng, n_per=100)
    assert linear_probe_accuracy(x, rng.permutation(y)) < 0.5


def test_linear_probe_tiny_classes_and_single_class(rng):
    x = rng.normal(size=(12, 2))
    y = np.array([0] * 6 + [1] * 5 + [2])  # a class with one point: plain folds
    assert 0.0 <= linear_probe_accuracy(x, y) <= 1.0
    y = np.array([0] * 10 + [1] * 2)  # smallest class of 2: 2 stratified folds
    assert 0.0 <= linear_probe_accuracy(x, y) <= 1.0
    assert linear_probe_accuracy(x, np.zeros(12)) == 1.0  # one class: trivially right
    assert linear_probe_accuracy(x[:6], np.zeros(6), x[6:], np.r_[np.zeros(3), np.ones(3)]) == 0.5


# --------------------------------------------------------------------------- neighbourhoods
def test_neighbourhoods_of_a_rotated_copy(teacher):
    student = _rotated(teacher)
    assert knn_overlap(teacher, student, k=10) == 1.0
    assert trustworthiness(teacher, student, k=10) == pytest.approx(1.0)


def test_neighbourhoods_of_an_unrelated_student(teacher, rng):
    student = rng.normal(size=(80, 3))
    assert knn_overlap(teacher, student, k=10) < 0.4
    assert trustworthiness(teacher, student, k=10) < 0.75


def test_knn_overlap_hand_computed():
    teacher = np.array([[0.0], [1.0], [3.0], [7.0]])  # nearest other: 1, 0, 1, 2
    student = np.array([[0.0], [1.0], [10.0], [3.0]])  # nearest other: 1, 0, 3, 1
    assert knn_overlap(teacher, student, k=1) == pytest.approx(2 / 4)


def test_k_is_clipped_on_small_sets(teacher, rng):
    small_t, small_s = teacher[:6], rng.normal(size=(6, 2))
    assert 0.0 <= trustworthiness(small_t, small_s, k=10) <= 1.0  # k → 2 < n / 2
    assert knn_overlap(small_t, _rotated(small_t), k=10) == 1.0  # k → n − 1
    with pytest.raises(ValueError, match="at least 3"):
        trustworthiness(small_t[:2], small_s[:2])


# --------------------------------------------------------------------------- CKA
def test_linear_cka_identity_and_invariances(teacher, rng):
    assert linear_cka(teacher, teacher) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(teacher, _rotated(teacher)) == pytest.approx(1.0, abs=1e-12)
    other = rng.normal(size=(80, 3))
    base = linear_cka(teacher, other)
    assert 0.0 <= base < 0.5
    assert linear_cka(_rotated(teacher), 0.1 * other - 3.0) == pytest.approx(base, rel=1e-10)
    assert linear_cka(other, teacher) == pytest.approx(base, rel=1e-12)


@pytest.mark.parametrize("n, d_a, d_b", [(5, 9, 7), (60, 2, 4)])  # Gram form, feature form
def test_linear_cka_matches_hsic_with_centering_matrix(n, d_a, d_b, rng):
    a, b = rng.normal(size=(n, d_a)), rng.normal(size=(n, d_b))
    h = np.eye(n) - 1.0 / n
    k_a, k_b = h @ a @ a.T @ h, h @ b @ b.T @ h
    expected = np.trace(k_a @ k_b) / np.sqrt(np.trace(k_a @ k_a) * np.trace(k_b @ k_b))
    assert linear_cka(a, b) == pytest.approx(expected, rel=1e-10)


def test_linear_cka_of_a_constant_representation_is_zero(teacher):
    assert linear_cka(teacher, np.full((80, 3), 0.1)) == 0.0


# --------------------------------------------------------------------------- input checks
@pytest.mark.parametrize(
    "call",
    [
        lambda t, s: knn_overlap(t, s),
        lambda t, s: trustworthiness(t, s),
        lambda t, s: linear_cka(t, s),
        lambda t, s: student_report(s, t),
    ],
)
def test_pair_metrics_reject_nan_and_mismatched_rows(call, teacher, rng):
    student = rng.normal(size=(80, 3))
    with pytest.raises(ValueError, match="same points"):
        call(teacher, student[:-1])
    bad = student.copy()
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        call(teacher, bad)
    with pytest.raises(ValueError, match="NaN"):
        call(np.where(teacher > 2.5, np.inf, teacher), student)


def test_label_metrics_reject_bad_inputs(blobs):
    x, y = blobs
    for fn in (knn_accuracy, linear_probe_accuracy):
        with pytest.raises(ValueError, match="entries"):
            fn(x, y[:-1])
        with pytest.raises(ValueError, match="NaN"):
            fn(x, np.where(y == 0, np.nan, y))
        with pytest.raises(ValueError, match="1-D"):
            fn(x, y[:, None])
        bad = x.copy()
        bad[0, 0] = np.inf
        with pytest.raises(ValueError, match="NaN"):
            fn(bad, y)
    with pytest.raises(ValueError, match="neither"):
        knn_accuracy(x, y, test_features=x)
    with pytest.raises(ValueError, match="columns"):
        linear_probe_accuracy(x, y, x[:, :2], y)
    with pytest.raises(ValueError, match="positive integer"):
        knn_accuracy(x, y, k=0)


# --------------------------------------------------------------------------- the report
def test_report_keys_and_ranges(blobs, rng):
    x, y = blobs
    student = x[:, :2] + rng.normal(size=(len(x), 2))
    report = student_report(student, x, y)
    assert list(report) == REPORT_KEYS
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in report.values())
    assert report["pc"] == report["coherence_mean"]
    assert report["coherence_p10"] <= report["coherence_mean"]
    no_labels = student_report(student, x)
    assert list(no_labels) == [k for k in REPORT_KEYS if k not in ("knn_acc", "linear_acc")]


def test_report_of_a_perfect_student(teacher):
    report = student_report(torch.tensor(_rotated(teacher)), torch.tensor(teacher))
    for key in ("pc", "coherence_mean", "coherence_p10", "knn_overlap", "trustworthiness", "cka"):
        assert report[key] == pytest.approx(1.0), key


def test_report_with_a_train_split(rng):
    x_train, y_train = _blobs(rng, n_per=30)
    x_test, y_test = _blobs(rng, n_per=10)
    report = student_report(
        x_test,
        x_test @ rng.normal(size=(5, 8)),
        y_test,
        train_student=x_train,
        train_labels=y_train,
    )
    assert report["knn_acc"] == 1.0 and report["linear_acc"] == 1.0
    with pytest.raises(ValueError, match="neither"):
        student_report(x_test, x_test, y_test, train_student=x_train)
    with pytest.raises(ValueError, match="labels too"):
        student_report(x_test, x_test, train_student=x_train, train_labels=y_train)


# --------------------------------------------------------------------------- computed once, at scale
def test_report_computes_each_distance_once_and_equals_the_single_metrics(rng, monkeypatch):
    import perco_viz.coherence as coherence
    import perco_viz.metrics as metrics

    x = np.repeat(rng.normal(size=(60, 5)), 2, axis=0)  # duplicated rows: ties among neighbours
    y = np.arange(120) % 3
    s = x[:, :2] + 0.3 * rng.normal(size=(120, 2))
    c = coherence.per_sample_coherence(s, x)
    searches = []
    real = metrics._neighbours
    monkeypatch.setattr(metrics, "_neighbours", lambda *a, **k: searches.append(a[1]) or real(*a, **k))
    monkeypatch.setattr(coherence, "per_sample_coherence", lambda *a, **k: pytest.fail("c_i computed again"))
    report = student_report(s, x, y, coherence=c)
    assert searches == [10, 10]  # the student's neighbours once (k-NN and overlap), the teacher's from its matrix
    monkeypatch.undo()
    assert report == student_report(s, x, y)
    assert report["knn_acc"] == knn_accuracy(s, y)
    assert report["trustworthiness"] == pytest.approx(trustworthiness(x, s), abs=1e-12)
    assert report["knn_overlap"] == pytest.approx(knn_overlap(x, s), abs=0.02)  # tie order may differ
    with pytest.raises(ValueError, match="one c_i per row"):
        student_report(s, x, coherence=c[:5])


def test_linear_cka_in_blocks_equals_the_in_memory_one(rng, tmp_path, monkeypatch):
    import perco_viz.metrics as metrics

    a = rng.normal(size=(3000, 12)).astype(np.float32)
    b = np.tanh(a[:, :4]) + 0.2 * rng.normal(size=(3000, 4))
    np.save(tmp_path / "a.npy", a)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    expected = linear_cka(a.astype(np.float64), b)
    monkeypatch.setattr(metrics, "CKA_CHUNKED_ABOVE", 1000)
    monkeypatch.setattr(metrics, "CKA_CHUNK_ROWS", 700)  # several blocks, the last one short
    assert linear_cka(mapped, b) == pytest.approx(expected, abs=1e-12)
    assert linear_cka(np.ones((3000, 12)), b) == 0.0  # a constant representation, as in memory
    bad = b.copy()
    bad[2500, 1] = np.inf
    with pytest.raises(ValueError, match="NaN/inf"):
        linear_cka(a, bad)
