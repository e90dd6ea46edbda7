"""The mathematics of DESIGN.md §1 (ranks, PC, c_i, A, soft ranks), checked against brute force
written here. The coherence loss: tests/test_losses_coherence.py and tests/test_loss_reference.py."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
import torch

import perco_viz as pv
from perco_viz.coherence import pairwise_dissimilarity, soft_ranks

# ----------------------------------------------------------------------------- brute force


def _dissim(x: np.ndarray, metric: str) -> np.ndarray:
    """(n, n) object array of exact keys ordered as the dissimilarities (fractions.Fraction of
    the float values): squared distances for both euclidean metrics (same order as the distance),
    −sign(cos)·cos² for cosine. Exact, so ties are ties (a matrix product would round them apart)."""
    rows = [[Fraction(float(v)) for v in row] for row in np.asarray(x, dtype=np.float64)]
    n = len(rows)
    out = np.empty((n, n), dtype=object)
    for i, j in itertools.product(range(n), repeat=2):
        a, b = rows[i], rows[j]
        if metric == "cosine":
            dot, q = sum(p * r for p, r in zip(a, b)), sum(p * p for p in a) * sum(r * r for r in b)
            out[i, j] = Fraction(0) if q == 0 else -(1 if dot > 0 else -1) * dot * dot / q
        else:
            out[i, j] = sum((p - r) ** 2 for p, r in zip(a, b))
    return out


def brute_per_sample(student, teacher, metric):
    """c_i by enumerating every ordered triplet (i, j, k), all distinct."""
    ds, dt = _dissim(student, metric), _dissim(teacher, metric)
    n = len(ds)
    c = np.zeros(n)
    for i in range(n):
        total = 0.0
        for j, k in itertools.permutations([p for p in range(n) if p != i], 2):
            prod = (dt[i, j] - dt[i, k]) * (ds[i, j] - ds[i, k])
            total += 1.0 if prod > 0 else 0.5 if prod == 0 else 0.0
        c[i] = total / ((n - 1) * (n - 2))
    return c


def brute_ranks(x, metric):
    d = _dissim(x, metric)
    n = len(d)
    r = np.full((n, n), np.nan)
    for i, j in itertools.permutations(range(n), 2):
        total = 0.0
        for k in range(n):
            if k in (i, j):
                continue
            total += 1.0 if d[i, k] < d[i, j] else 0.5 if d[i, k] == d[i, j] else 0.0
        r[i, j] = total / (n - 2)
    return r


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
def test_measures_equal_brute_force_with_ties(rng, metric):
    # small integer grids: many exact ties in both spaces
    student = rng.integers(-2, 3, size=(11, 2)).astype(float)
    teacher = rng.integers(-2, 3, size=(11, 3)).astype(float)
    expected = brute_per_sample(student, teacher, metric)
    got = pv.per_sample_coherence(student, teacher, metric=metric)
    assert np.array_equal(got, expected)
    assert pv.perception_coherence(student, teacher, metric=metric) == pytest.approx(expected.mean(), abs=1e-15)
    r_s, r_t = brute_ranks(student, metric), brute_ranks(teacher, metric)
    np.testing.assert_array_equal(pv.normalized_ranks(student, metric=metric), r_s)
    np.testing.assert_array_equal(pv.rank_agreement(student, teacher, metric=metric), 1.0 - np.abs(r_t - r_s))


def test_measures_equal_brute_force_continuous(rng):
    student, teacher = rng.normal(size=(14, 3)), rng.normal(size=(14, 7))
    np.testing.assert_array_equal(
        pv.per_sample_coherence(student, teacher), brute_per_sample(student, teacher, "euclidean")
    )


def test_pc_is_one_for_similarity_transform(rng):
    teacher = rng.normal(size=(200, 16))
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    student = 3.7 * teacher @ q + 5.0
    assert pv.perception_coherence(student, teacher) == pytest.approx(1.0, abs=1e-12)
    c = pv.per_sample_coherence(student, teacher)
    assert c.min() == pytest.approx(1.0, abs=1e-12)


def test_pc_is_one_for_monotone_distortion(rng):
    # the relaxation: student distances an increasing function of the teacher's → PC = 1
    teacher = rng.normal(size=(60, 5))
    warped = lambda a, b: torch.log1p(pairwise_dissimilarity(a, b) ** 3)  # noqa: E731
    assert pv.perception_coherence(teacher, teacher, metric=warped, teacher_metric="euclidean") == 1.0
    a = pv.rank_agreement(teacher, teacher, metric=warped, teacher_metric="euclidean")
    assert np.nanmin(a) == 1.0


def test_pc_near_half_for_unrelated(rng):
    pc = pv.perception_coherence(rng.normal(size=(400, 8)), rng.normal(size=(400, 32)))
    assert pc == pytest.approx(0.5, abs=0.02)


def test_pc_zero_when_reversed():
    # a student whose distances reverse every ranking of the teacher
    teacher = np.array([[0.0], [1.0], [3.0], [7.0]])  # no anchor sees two points equally far
    reversed_metric = lambda a, b: -pairwise_dissimilarity(a, b)  # noqa: E731
    pc = pv.perception_coherence(teacher, teacher, metric=reversed_metric, teacher_metric="euclidean")
    assert pc == 0.0


def test_mean_of_per_sample_is_pc(rng):
    s, t = rng.normal(size=(120, 4)), rng.normal(size=(120, 9))
    assert pv.per_sample_coherence(s, t).mean() == pytest.approx(pv.perception_coherence(s, t), abs=1e-15)


def test_agreement_and_ranks_shapes_and_ranges(rng):
    x, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 6))
    a = pv.rank_agreement(x, y)
    assert a.shape == (50, 50) and np.isnan(np.diag(a)).all()
    off = a[~np.eye(50, dtype=bool)]
    assert off.min() >= 0 and off.max() <= 1
    r = pv.normalized_ranks(x)
    # each row's ranks are a permutation of 0, 1/(n−2), ..., 1 without ties
    row = np.sort(r[0][1:])
    np.testing.assert_allclose(row, np.arange(49) / 48)


def test_measures_accept_tensors_and_agree(rng):
    s, t = rng.normal(size=(30, 3)), rng.normal(size=(30, 5))
    assert pv.perception_coherence(torch.tensor(s, dtype=torch.float32), torch.tensor(t)) == pytest.approx(
        pv.perception_coherence(s.astype(np.float32), t), abs=1e-12
    )


# ----------------------------------------------------------------------------- soft ranks
@pytest.mark.parametrize("kernel", ["ramp", "sigmoid"])
def test_soft_ranks_fast_equal_reference_on_wide_rows(kernel):
    v = torch.randn(6, 500, dtype=torch.float64).abs()
    torch.testing.assert_close(
        soft_ranks(v, 0.1, kernel, "fast"), soft_ranks(v, 0.1, kernel, "reference"), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize("outlier", [30.0, 1e3])
def test_fast_sigmoid_with_an_outlier_stays_exact(outlier):
    """A far outlier widens the row's range beyond float64's e^{±650} for many series terms:
    the split then trades terms for a wider near window, value and gradient still exact."""
    v = torch.randn(4, 450, dtype=torch.float64).abs()
    v[:, 7] = outlier
    v.requires_grad_(True)
    weights = torch.randn(4, 450, dtype=torch.float64)
    fast, ref = soft_ranks(v, 0.1, "sigmoid", "fast"), soft_ranks(v, 0.1, "sigmoid", "reference")
    torch.testing.assert_close(fast, ref, rtol=1e-6, atol=1e-9)
    (g_fast,), (g_ref,) = (torch.autograd.grad((r * weights).sum(), v) for r in (fast, ref))
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kernel", ["ramp", "sigmoid"])
def test_soft_ranks_turn_hard_as_tau_shrinks(kernel):
    from perco_viz.coherence import hard_ranks

    # Seeded, and every pair of values in a row at least 0.01 apart (10⁴ τ): at τ = 1e-6 each
    # soft step is then exactly 0 or 1 (the ramp) or within e^{-10⁴} of it (the sigmoid).
    g = torch.Generator().manual_seed(0)
    grid = torch.stack([torch.randperm(50, generator=g) for _ in range(3)]).to(torch.float64)
    v = 0.01 * grid + 0.004 * torch.rand(3, 50, generator=g, dtype=torch.float64)  # gaps ≥ 0.006
    torch.testing.assert_close(soft_ranks(v, 1e-6, kernel), hard_ranks(v), atol=1e-9, rtol=0)  # one rank step: 1/48


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("student", "teacher", "message"),
    [
        (np.zeros((2, 3)), np.zeros((2, 3)), "at least 3"),
        (np.zeros((5, 3)), np.zeros((4, 3)), "same points"),
        (np.array([[np.nan, 1.0]] * 5), np.zeros((5, 3)), "NaN"),
        (np.zeros((5, 3)), np.array([[np.inf]] * 5), "NaN/inf"),
        (np.zeros((5, 3, 2)), np.zeros((5, 3)), "2-D"),
    ],
)
def test_bad_input_raises_clear_value_error(student, teacher, message):
    with pytest.raises(ValueError, match=message):
        pv.perception_coherence(student, teacher)
    with pytest.raises(ValueError, match=message):
        pv.coherence_loss(torch.as_tensor(student), torch.as_tensor(teacher))


def test_unknown_metric_in_measures():
    with pytest.raises(ValueError, match="unknown metric"):
        pv.per_sample_coherence(np.zeros((4, 2)), np.zeros((4, 2)), metric="l1")


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_duplicated_rows_are_exact_ties(metric):
    """DESIGN.md §1 counts a tie ½: a duplicated point must be a tie for every anchor, although a
    matrix product can round its two dissimilarities apart (it did here, by 2e-16)."""
    x = np.random.default_rng(5).normal(size=(11, 6))
    x[-1] = x[0]
    r = pv.normalized_ranks(x, metric=metric)
    np.testing.assert_array_equal(r[1:10, 0], r[1:10, 10])
    assert r[0, 10] == r[10, 0] == 0.0  # each is the other's nearest, alone
