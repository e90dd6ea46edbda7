"""The coherence loss (perco_viz.losses.coherence): fast == reference, invariances, gradients,
learning, options. Its value against an independent brute force of DESIGN.md §1:
tests/test_loss_reference.py."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import perco_viz as pv
from perco_viz import coherence
from perco_viz.losses.coherence import coherence_loss, loss_terms


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
    off = coherence.offdiag_rows(s, None, metric)
    assume(bool((off.std(dim=1, unbiased=False) > 1e-9 * (off.abs().amax(dim=1) + 1e-300)).all()))
    s.requires_grad_(True)
    kw = dict(tau=tau, kernel=kernel, metric=metric)
    ref = coherence_loss(s, t, impl="reference", **kw)
    (g_ref,) = torch.autograd.grad(ref, s)
    # exercise the sub-cubic sigmoid series at every size (it defers to the direct sum below 384)
    with mock.patch.object(coherence, "_SIGMOID_DIRECT_BELOW", 0):
        fast = coherence_loss(s, t, impl="fast", **kw)
    (g_fast,) = torch.autograd.grad(fast, s)
    assert torch.isfinite(fast) and torch.isfinite(g_fast).all()
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-10)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("kernel", ["ramp", "sigmoid"])
def test_loss_invariant_to_student_scale(gen, kernel):
    s, t = torch.randn(64, 8, generator=gen), torch.randn(64, 32, generator=gen)
    base = coherence_loss(s, t, kernel=kernel)
    for c in (1e-3, 0.5, 7.0, 1e3):
        assert coherence_loss(c * s, t, kernel=kernel).item() == pytest.approx(base.item(), rel=1e-4)


def test_loss_near_zero_when_student_is_teacher(gen):
    t = torch.randn(100, 16, generator=gen)
    at_teacher = coherence_loss(2.0 * t, t, tau=0.01).item()
    random = coherence_loss(torch.randn(100, 4, generator=gen), t, tau=0.01).item()
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
    loss = coherence_loss(s, t, metric=metric, kernel=kernel)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert np.isfinite(pv.perception_coherence(s.detach(), t, metric=metric))


def test_all_identical_points_give_finite_values():
    s = torch.ones(6, 2, requires_grad=True)
    loss = coherence_loss(s, torch.randn(6, 3))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert pv.perception_coherence(np.ones((6, 2)), np.random.default_rng(0).normal(size=(6, 3))) == 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtypes(gen, dtype):
    s = torch.randn(40, 4, generator=gen).to(dtype).requires_grad_(True)
    t = torch.randn(40, 12, generator=gen).to(dtype)
    loss = coherence_loss(s, t)
    assert loss.dtype in (torch.float32, torch.float64)
    loss.backward()
    assert s.grad is not None and s.grad.dtype == dtype and torch.isfinite(s.grad.float()).all()


def test_anchor_subset(gen):
    s, t = torch.randn(50, 4, generator=gen, requires_grad=True), torch.randn(50, 8, generator=gen)
    full = coherence_loss(s, t)
    sub = coherence_loss(s, t, anchors=torch.arange(50))
    torch.testing.assert_close(full, sub)
    some = coherence_loss(s, t, anchors=10, generator=torch.Generator().manual_seed(1))
    some.backward()
    assert torch.isfinite(some) and s.grad.abs().sum() > 0


def test_teacher_gets_no_gradient(gen):
    s = torch.randn(10, 2, generator=gen, requires_grad=True)
    t = torch.randn(10, 3, generator=gen, requires_grad=True)
    coherence_loss(s, t).backward()
    assert t.grad is None


@pytest.mark.slow
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
        coherence_loss(student, teacher, kernel=kernel, tau=0.1).backward()
        opt.step()
    after = pv.perception_coherence(student.detach(), teacher)
    assert before == pytest.approx(0.5, abs=0.05)
    assert after > 0.9


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
        coherence_loss(torch.zeros(5, 2), torch.zeros(5, 2), **kwargs)


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown loss"):
        pv.make_loss("triplet", student_dim=2, teacher_dim=2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(gen):
    s, t = torch.randn(256, 8, generator=gen), torch.randn(256, 64, generator=gen)
    cpu = coherence_loss(s, t)
    gpu = coherence_loss(s.cuda(), t.cuda())
    assert gpu.item() == pytest.approx(cpu.item(), rel=1e-4)


# ----------------------------------------------------------------------------- loss_terms
@pytest.mark.parametrize("kernel", ["ramp", "sigmoid"])
def test_loss_terms_are_what_the_loss_averages(gen, kernel):
    s, t = torch.randn(12, 3, generator=gen, dtype=torch.float64), torch.randn(12, 5, generator=gen, dtype=torch.float64)
    full = loss_terms(s, t, tau=0.2, kernel=kernel)
    assert full.terms.shape == (12, 11) and torch.equal(full.anchors, torch.arange(12))
    torch.testing.assert_close(full.terms.mean(), coherence_loss(s, t, tau=0.2, kernel=kernel), rtol=0, atol=0)
    torch.testing.assert_close(full.terms, (full.student_soft_ranks - full.teacher_ranks) ** 2)
    # the population std (n − 1 entries, divided by n − 1), as DESIGN.md §1 states
    row = full.student_distances[4]
    pop_std = ((row - row.mean()) ** 2).mean().sqrt()
    torch.testing.assert_close(full.student_normalized[4], row / (pop_std + 1e-12))
    one = loss_terms(s, t, tau=0.2, kernel=kernel, anchors=torch.tensor([4]))
    assert one.terms.shape == (1, 11)
    torch.testing.assert_close(one.terms[0], full.terms[4])
    torch.testing.assert_close(one.teacher_distances[0], full.teacher_distances[4])


def test_registry_declares_the_coherence_options():
    from perco_viz.losses import LOSSES, loss_defaults

    assert pv.LOSS_NAMES[0] == "coherence" and LOSSES["coherence"] is pv.make_loss(
        "coherence", student_dim=2, teacher_dim=2).__class__
    assert set(loss_defaults("coherence")) == {"tau", "kernel", "metric", "teacher_metric", "anchors", "impl"}
    with pytest.raises(ValueError, match="unknown coherence option"):
        pv.make_loss("coherence", student_dim=2, teacher_dim=2, gamma=0.4)
