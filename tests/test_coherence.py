"""The mathematics of DESIGN.md §1, checked against brute force written here, plus
properties of the loss (fast == reference, invariances, gradients, learning)."""

from __future__ import annotations

import itertools
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import perco_viz as pv
from perco_viz import coherence
from perco_viz.coherence import pairwise_dissimilarity, soft_ranks

# ----------------------------------------------------------------------------- brute force


def _dissim(x: np.ndarray, metric: str) -> np.ndarray:
    return pairwise_dissimilarity(torch.as_tensor(x, dtype=torch.float64), metric=metric).numpy()


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


# ----------------------------------------------------------------------------- the loss
@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(3, 40),
    d_s=st.integers(1, 6),
    d_t=st.integers(1, 10),
    kernel=st.sampled_from(["ramp", "sigmoid"]),
    metric=st.sampled_from(["euclidean", "sqeuclidean", "cosine"]),
    tau=st.sampled_from([0.01, 0.1, 0.5, 2.0]),
    seed=st.integers(0, 10_000),
    dup=st.booleans(),
)
def test_fast_equals_reference_value_and_gradient(n, d_s, d_t, kernel, metric, tau, seed, dup):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, d_s, generator=g, dtype=torch.float64)
    t = torch.randn(n, d_t, generator=g, dtype=torch.float64)
    if dup:  # duplicated rows: exact ties in both spaces
        s[-1], t[-1] = s[0], t[0]
    # An anchor that sees every other point at one distance (1-D cosine: all 0 or 2) has row
    # std 0: its normalized distances are divided by 1e-12, which turns rounding into gradient
    # noise in any implementation (values still agree: test_fast_ramp_on_an_equidistant_row).
    off = coherence._offdiag_rows(s, None, metric)
    assume(bool((off.std(dim=1, unbiased=False) > 1e-9 * (off.abs().amax(dim=1) + 1e-300)).all()))
    s.requires_grad_(True)
    kw = dict(tau=tau, kernel=kernel, metric=metric)
    ref = pv.coherence_loss(s, t, impl="reference", **kw)
    (g_ref,) = torch.autograd.grad(ref, s)
    # exercise the sub-cubic sigmoid series at every size (it defers to the direct sum below 384)
    with mock.patch.object(coherence, "_SIGMOID_DIRECT_BELOW", 0):
        fast = pv.coherence_loss(s, t, impl="fast", **kw)
    (g_fast,) = torch.autograd.grad(fast, s)
    assert torch.isfinite(fast) and torch.isfinite(g_fast).all()
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-10)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-5, atol=1e-8)


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

    v = torch.rand(3, 50, dtype=torch.float64)

    torch.testing.assert_close(soft_ranks(v, 1e-6, kernel), hard_ranks(v), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kernel", ["ramp", "sigmoid"])
def test_loss_invariant_to_student_scale(gen, kernel):
    s, t = torch.randn(64, 8, generator=gen), torch.randn(64, 32, generator=gen)
    base = pv.coherence_loss(s, t, kernel=kernel)
    for c in (1e-3, 0.5, 7.0, 1e3):
        assert pv.coherence_loss(c * s, t, kernel=kernel).item() == pytest.approx(base.item(), rel=1e-4)


def test_loss_near_zero_when_student_is_teacher(gen):
    t = torch.randn(100, 16, generator=gen)
    at_teacher = pv.coherence_loss(2.0 * t, t, tau=0.01).item()
    random = pv.coherence_loss(torch.randn(100, 4, generator=gen), t, tau=0.01).item()
    assert at_teacher < 1e-3 < random


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("kernel", ["ramp", "sigmoid"])
def test_finite_gradients_with_duplicates_and_zero_vectors(gen, metric, kernel):
    s = torch.randn(20, 3, generator=gen)
    s[5] = s[4] = s[3]
    s[0] = 0.0
    s[1] = 0.0
    s.requires_grad_(True)
    t = torch.randn(20, 5, generator=gen)
    t[7] = 0.0
    loss = pv.coherence_loss(s, t, metric=metric, kernel=kernel)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert np.isfinite(pv.perception_coherence(s.detach(), t, metric=metric))


def test_all_identical_points_give_finite_values():
    s = torch.ones(6, 2, requires_grad=True)
    loss = pv.coherence_loss(s, torch.randn(6, 3))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert pv.perception_coherence(np.ones((6, 2)), np.random.default_rng(0).normal(size=(6, 3))) == 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtypes(gen, dtype):
    s = torch.randn(40, 4, generator=gen).to(dtype).requires_grad_(True)
    t = torch.randn(40, 12, generator=gen).to(dtype)
    loss = pv.coherence_loss(s, t)
    assert loss.dtype in (torch.float32, torch.float64)
    loss.backward()
    assert s.grad is not None and s.grad.dtype == dtype and torch.isfinite(s.grad.float()).all()


def test_anchor_subset(gen):
    s, t = torch.randn(50, 4, generator=gen, requires_grad=True), torch.randn(50, 8, generator=gen)
    full = pv.coherence_loss(s, t)
    sub = pv.coherence_loss(s, t, anchors=torch.arange(50))
    torch.testing.assert_close(full, sub)
    some = pv.coherence_loss(s, t, anchors=10, generator=torch.Generator().manual_seed(1))
    some.backward()
    assert torch.isfinite(some) and s.grad.abs().sum() > 0


def test_teacher_gets_no_gradient(gen):
    s = torch.randn(10, 2, generator=gen, requires_grad=True)
    t = torch.randn(10, 3, generator=gen, requires_grad=True)
    pv.coherence_loss(s, t).backward()
    assert t.grad is None


@pytest.mark.parametrize("kernel", ["ramp", "sigmoid"])
def test_adam_on_free_embeddings_raises_pc(kernel):
    g = torch.Generator().manual_seed(0)
    # teacher features near a 6-D subspace of R^32, as real features lie near a low-D manifold
    teacher = torch.randn(150, 6, generator=g) @ torch.randn(6, 32, generator=g)
    teacher += 0.01 * torch.randn(150, 32, generator=g)
    student = torch.randn(150, 8, generator=g).requires_grad_(True)
    before = pv.perception_coherence(student.detach(), teacher)
    opt = torch.optim.Adam([student], lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        pv.coherence_loss(student, teacher, kernel=kernel, tau=0.1).backward()
        opt.step()
    after = pv.perception_coherence(student.detach(), teacher)
    assert before == pytest.approx(0.5, abs=0.05)
    assert after > 0.9


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


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": "manhattan"}, "unknown metric"),
        ({"kernel": "gauss"}, "unknown kernel"),
        ({"tau": 0.0}, "tau"),
        ({"tau": float("nan")}, "tau"),
        ({"impl": "magic"}, "impl"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pv.coherence_loss(torch.zeros(5, 2), torch.zeros(5, 2), **kwargs)


def test_unknown_metric_in_measures():
    with pytest.raises(ValueError, match="unknown metric"):
        pv.per_sample_coherence(np.zeros((4, 2)), np.zeros((4, 2)), metric="l1")


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown loss"):
        pv.make_loss("triplet", student_dim=2, teacher_dim=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(gen):
    s, t = torch.randn(256, 8, generator=gen), torch.randn(256, 64, generator=gen)
    cpu = pv.coherence_loss(s, t)
    gpu = pv.coherence_loss(s.cuda(), t.cuda())
    assert gpu.item() == pytest.approx(cpu.item(), rel=1e-4)
