"""Exact ties (issue 13): distances equal in exact arithmetic compare equal wherever a rank is
taken — R, A, c_i, PC and the coherence loss's teacher ranks — checked against a brute force
written from DESIGN.md §1 in plain Python loops on EXACT distances (Python ints on integer
lattices, fractions.Fraction of the float values otherwise), never on a float matrix product."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import perco_viz as pv
from perco_viz import coherence
from perco_viz.losses.coherence import loss_terms
from tests import exact_distances as exact
from tests.exact_distances import exact_keys


# ----------------------------------------------------------------------------- brute force
def brute_ranks(x: np.ndarray, metric: str) -> np.ndarray:
    """R from exact distances (tests/exact_distances.py), NaN on the diagonal."""
    return exact.brute_ranks(exact_keys(x, metric))


def brute_per_sample(student: np.ndarray, teacher: np.ndarray, metric: str) -> np.ndarray:
    return brute_per_sample_mixed(student, teacher, metric, metric)


def brute_per_sample_mixed(student, teacher, metric, teacher_metric) -> np.ndarray:
    return exact.brute_per_sample(exact_keys(student, metric), exact_keys(teacher, teacher_metric))


def offdiag(square: np.ndarray) -> np.ndarray:
    """(n, n) → (n, n − 1): every row without its diagonal entry (the loss's layout)."""
    n = len(square)
    return square[~np.eye(n, dtype=bool)].reshape(n, n - 1)


# ----------------------------------------------------------------------------- data with ties
def lattice(rng: np.random.Generator, n: int, d: int, low: int = -2, high: int = 3) -> np.ndarray:
    """Integer points: many exactly equal distances, some duplicated rows."""
    return rng.integers(low, high, size=(n, d)).astype(np.float64)


def duplicated(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Gaussian points, a third of them duplicates of others (a matrix product rounds the
    distances to two copies apart)."""
    x = rng.normal(size=(n, d)) * 3.0 + 10.0
    x[n - n // 3:] = x[rng.integers(0, n - n // 3, size=n // 3)]
    return x


CASES = {
    "lattice": lambda rng: (lattice(rng, 12, 2), lattice(rng, 12, 5)),
    "duplicated": lambda rng: (duplicated(rng, 13, 4), duplicated(rng, 13, 33)),
}


def test_issue_example():
    x = np.array([[2, 0], [0, 0], [1, 2], [1, 0], [1, 1]], dtype=np.float64)
    np.testing.assert_array_equal(pv.normalized_ranks(x)[3], [1 / 3, 1 / 3, 1, np.nan, 1 / 3])
    np.testing.assert_array_equal(brute_ranks(x, "euclidean")[3], [1 / 3, 1 / 3, 1, np.nan, 1 / 3])


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
def test_measures_equal_exact_brute_force(rng, case, metric):
    student, teacher = CASES[case](rng)
    r_s, r_t = brute_ranks(student, metric), brute_ranks(teacher, metric)
    c = brute_per_sample(student, teacher, metric)
    np.testing.assert_array_equal(pv.normalized_ranks(student, metric=metric), r_s)
    np.testing.assert_array_equal(pv.normalized_ranks(teacher, metric=metric), r_t)
    np.testing.assert_array_equal(pv.rank_agreement(student, teacher, metric=metric), 1.0 - np.abs(r_t - r_s))
    np.testing.assert_array_equal(pv.per_sample_coherence(student, teacher, metric=metric), c)
    assert pv.perception_coherence(student, teacher, metric=metric) == pytest.approx(c.mean(), abs=1e-15)
    # the loss's teacher ranks: float64 features keep float64 terms, so equality is exact
    terms = loss_terms(torch.tensor(student), torch.tensor(teacher), metric=metric)
    np.testing.assert_array_equal(terms.teacher_ranks.numpy(), offdiag(r_t))
    anchors = torch.tensor([3, 0, 7])
    terms = loss_terms(torch.tensor(student), torch.tensor(teacher), metric=metric, anchors=anchors)
    np.testing.assert_array_equal(terms.teacher_ranks.numpy(), offdiag(r_t)[anchors.numpy()])


def test_loss_teacher_ranks_exact_from_float32_features(rng):
    """The loss's usual float32 teacher: duplicates still tie (the old float32 product did not)."""
    teacher = duplicated(rng, 14, 40).astype(np.float32)
    terms = loss_terms(torch.randn(14, 3), torch.tensor(teacher))
    np.testing.assert_allclose(terms.teacher_ranks.numpy(), offdiag(brute_ranks(teacher.astype(np.float64), "euclidean")),
                               rtol=0, atol=1e-7)


def test_cosine_exact_ties(rng):
    # integer directions: parallel copies (2·x) and duplicates make exact cosine ties
    base = lattice(rng, 8, 3, 1, 4)
    student = np.concatenate([base, 2.0 * base[:3]])
    teacher = np.concatenate([lattice(rng, 8, 4, -2, 3), lattice(rng, 3, 4, -2, 3)])
    teacher[teacher.sum(1) == 0] += 1.0  # no zero vector: its cosine is a convention
    teacher[-1] = teacher[0]
    for metric_args in ({"metric": "cosine"}, {"metric": "euclidean", "teacher_metric": "cosine"}):
        got = pv.per_sample_coherence(student, teacher, **metric_args)
        expected = brute_per_sample_mixed(student, teacher, metric_args.get("metric"),
                                          metric_args.get("teacher_metric") or metric_args["metric"])
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(pv.normalized_ranks(student, metric="cosine"), brute_ranks(student, "cosine"))


def test_near_ties_stay_distinct():
    """Only exact ties tie: distances 1e-9 apart (relative) keep their order."""
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0 + 1e-9], [-1.0 - 2e-9, 0.0], [5.0, 5.0]])
    np.testing.assert_array_equal(pv.normalized_ranks(x)[0, 1:], [0.0, 1 / 3, 2 / 3, 1.0])


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_hybrid_equals_direct_differences_and_snap(rng, metric, monkeypatch):
    """The CPU hybrid (matrix product, direct differences where its error bound could matter)
    ranks exactly like exact_dissimilarity + snap_sorted, on data where the product's error is
    large (a far offset, a lattice, duplicates), in small blocks over threads."""
    monkeypatch.setattr(coherence, "_EXACT_BLOCK_ELEMENTS", 64)  # many blocks of 8 rows
    x = np.concatenate([lattice(rng, 40, 6), duplicated(rng, 30, 6)]) + 1e6
    xt = torch.tensor(x)
    rtol, floor = coherence.tie_tolerance(metric, x.shape[1])
    d = coherence.exact_dissimilarity(xt, metric=metric)
    d.fill_diagonal_(-np.inf)
    s, order = d.sort(dim=1)
    direct = coherence.hard_ranks(coherence.snap_sorted(s[:, 1:], rtol, floor)).numpy()  # ranks by sorted position
    ranks_direct = np.full(d.shape, np.nan)
    np.put_along_axis(ranks_direct, order[:, 1:].numpy(), direct, 1)
    np.testing.assert_array_equal(pv.normalized_ranks(x, metric=metric), ranks_direct)
    _, r = coherence.exact_hard_ranks(xt, None, metric)
    np.testing.assert_array_equal(r.numpy(), offdiag(ranks_direct))


def test_blocks_and_threads_change_nothing(rng, monkeypatch):
    student, teacher = duplicated(rng, 50, 3), lattice(rng, 50, 4)
    whole = (pv.per_sample_coherence(student, teacher), pv.rank_agreement(student, teacher),
             pv.normalized_ranks(teacher))
    monkeypatch.setattr(coherence, "_EXACT_BLOCK_ELEMENTS", 100)
    blocked = (pv.per_sample_coherence(student, teacher), pv.rank_agreement(student, teacher),
               pv.normalized_ranks(teacher))
    for a, b in zip(whole, blocked):
        np.testing.assert_array_equal(a, b)


def test_float32_result_rounds_the_same_ranks(rng):
    x = lattice(rng, 20, 3)
    np.testing.assert_array_equal(pv.normalized_ranks(x, dtype=np.float32), pv.normalized_ranks(x).astype(np.float32))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_teacher_ranks_on_cuda_equal_the_cpu_ones(rng, metric):
    """On a GPU the teacher's ranks come from direct differences (no numba): the same ranks."""
    x = torch.tensor(np.concatenate([lattice(rng, 30, 5), duplicated(rng, 20, 5)]))
    anchors = torch.tensor([0, 7, 31, 49])
    _, r_cpu = coherence.exact_hard_ranks(x, anchors, metric)
    _, r_gpu = coherence.exact_hard_ranks(x.cuda(), anchors.cuda(), metric)
    np.testing.assert_array_equal(r_gpu.cpu().numpy(), r_cpu.numpy())
