"""The loss registry and the baseline transfer losses: hand-computed values from each paper's
definition, properties shared by the registry (parametrized over BASELINES), gradients, and
input checks. The coherence loss: tests/test_losses_coherence.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perco_viz.losses import LOSS_NAMES, LOSSES, loss_defaults, make_loss
from perco_viz.losses.cc import cc_loss
from perco_viz.losses.cka import cka_loss
from perco_viz.losses.fitnet import FitNetLoss, fitnet_loss
from perco_viz.losses.kd import hinton_kd_loss
from perco_viz.losses.pkt import pkt_loss
from perco_viz.losses.rkd import rkd_loss
from perco_viz.losses.sp import sp_loss

BASELINES = {name: cls for name, cls in LOSSES.items() if name != "coherence"}

D_S, D_T = 5, 7
# Losses unchanged by a positive scaling and an inner-product-preserving map of the teacher.
SIMILARITY_INVARIANT = ("rkd", "pkt", "sp", "cc", "cka")
SHIFT_INVARIANT = ("rkd", "cka")


def _f64(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def _huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1.0 else abs(x) - 0.5


def _isometry(d_in: int, d_out: int, gen: torch.Generator) -> torch.Tensor:
    """(d_in, d_out) with orthonormal rows (d_in <= d_out): x @ Q keeps inner products."""
    q, _ = torch.linalg.qr(torch.randn(d_out, d_out, generator=gen, dtype=torch.float64))
    return q[:d_in]


@pytest.fixture
def pair(gen):
    student = torch.randn(12, D_S, generator=gen, dtype=torch.float64)
    teacher = torch.randn(12, D_T, generator=gen, dtype=torch.float64)
    return student, teacher


# --------------------------------------------------------------------------- hand-computed
def test_fitnet_hand_computed():
    student = _f64([[1.0, 2.0], [0.0, 1.0], [3.0, 0.0]])
    teacher = _f64([[2.0], [1.0], [5.0]])
    weight, bias = _f64([[1.0, 1.0]]), _f64([1.0])
    # projected: 1+2+1 = 4, 0+1+1 = 2, 3+0+1 = 4; errors 2, 1, -1 → (4 + 1 + 1) / 3
    assert fitnet_loss(student, teacher, weight, bias).item() == pytest.approx(2.0)
    module = FitNetLoss(2, 1).double()
    with torch.no_grad():
        module.projector.weight.copy_(weight)
        module.projector.bias.copy_(bias)
    assert module(student, teacher).item() == pytest.approx(2.0)


def test_rkd_distance_term_hand_computed():
    teacher = _f64([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])  # distances 3, 4, 5; mean 4
    student = _f64([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # distances 1, √2, 1
    mean_s = (2.0 + math.sqrt(2.0)) / 3.0
    pairs = [(1.0 / mean_s, 3 / 4), (1.0 / mean_s, 4 / 4), (math.sqrt(2.0) / mean_s, 5 / 4)]
    expected = 2.0 * sum(_huber(s - t) for s, t in pairs) / 9.0  # each pair twice, n² entries
    got = rkd_loss(student, teacher, distance_weight=1.0, angle_weight=0.0).item()
    assert got == pytest.approx(expected, rel=1e-9)


def test_rkd_distance_mean_is_over_all_pairs_with_duplicated_rows():
    """Park et al. normalise by the mean over all pairs i ≠ j: a duplicated row's distance 0
    counts (the authors' code, averaging positive distances only, gives another value)."""
    teacher = _f64([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [0.0, 0.0]])  # row 3 = row 0
    student = _f64([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # teacher distances over the 6 unordered pairs: 3, 4, 0 (dup), 5, 3, 4 → mean 19/6
    d_t = {(0, 1): 3.0, (0, 2): 4.0, (0, 3): 0.0, (1, 2): 5.0, (1, 3): 3.0, (2, 3): 4.0}
    # student: a unit square, 4 sides and 2 diagonals → mean (4 + 2√2)/6
    r2 = math.sqrt(2.0)
    d_s = {(0, 1): 1.0, (0, 2): 1.0, (0, 3): r2, (1, 2): r2, (1, 3): 1.0, (2, 3): 1.0}
    mean_t, mean_s = sum(d_t.values()) / 6, sum(d_s.values()) / 6
    expected = 2.0 * sum(_huber(d_s[p] / mean_s - d_t[p] / mean_t) for p in d_t) / 16.0  # n² entries
    got = rkd_loss(student, teacher, distance_weight=1.0, angle_weight=0.0).item()
    assert got == pytest.approx(expected, rel=1e-9)
    positive_only = 2.0 * sum(_huber(d_s[p] / mean_s - d_t[p] / (19.0 / 5.0)) for p in d_t) / 16.0
    assert abs(got - positive_only) > 1e-3  # what the old normalisation gave


def test_rkd_angle_term_hand_computed():
    teacher = _f64([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    student = _f64([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # cosines at each vertex of the triangle: teacher (right angle, 9/15, 16/20), student
    # (right angle, 1/√2, 1/√2); each non-degenerate triplet appears twice among n³ = 27
    cos_t, cos_s = [0.0, 0.6, 0.8], [0.0, 1 / math.sqrt(2), 1 / math.sqrt(2)]
    expected = 2.0 * sum(_huber(s - t) for s, t in zip(cos_s, cos_t)) / 27.0
    got = rkd_loss(student, teacher, distance_weight=0.0, angle_weight=1.0).item()
    assert got == pytest.approx(expected, rel=1e-9)


def test_rkd_default_weights_are_the_papers(gen):
    s, t = torch.randn(6, 3, generator=gen), torch.randn(6, 4, generator=gen)
    both = rkd_loss(s, t)
    parts = 25.0 * rkd_loss(s, t, distance_weight=1.0, angle_weight=0.0) + 50.0 * rkd_loss(
        s, t, distance_weight=0.0, angle_weight=1.0
    )
    assert both.item() == pytest.approx(parts.item(), rel=1e-5)


def test_pkt_hand_computed():
    teacher = _f64([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    student = _f64([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])
    a, b = (1 + 1 / math.sqrt(2)) / 2, (1 - 1 / math.sqrt(2)) / 2  # kernels at cos = ±1/√2
    p = [[0.5 / (0.5 + a), a / (0.5 + a)], [0.5 / (0.5 + a), a / (0.5 + a)], [0.5, 0.5]]
    q = [
        [0.5 / (0.5 + b), b / (0.5 + b)],
        [0.5 / (0.5 + a), a / (0.5 + a)],
        [b / (a + b), a / (a + b)],
    ]
    kl = [sum(pi * math.log(pi / qi) for pi, qi in zip(pr, qr)) for pr, qr in zip(p, q)]
    got = pkt_loss(student, teacher, eps=1e-12).item()
    assert got == pytest.approx(sum(kl) / 3.0, rel=1e-9)


def test_sp_hand_computed():
    student = _f64([[1.0, 0.0], [0.0, 1.0]])  # G_S = I
    teacher = _f64([[1.0, 0.0], [1.0, 1.0]])  # G_T = [[1, 1], [1, 2]], row norms √2, √5
    r2, r5 = math.sqrt(2.0), math.sqrt(5.0)
    expected = ((1 / r2 - 1) ** 2 + (1 / r2) ** 2 + (1 / r5) ** 2 + (2 / r5 - 1) ** 2) / 4.0
    assert sp_loss(student, teacher).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("gamma", [0.4, 1.0])
def test_cc_hand_computed(gamma):
    teacher = _f64([[1.0, 0.0], [0.0, 1.0]])  # unit vectors at squared distance 2
    student = _f64([[1.0, 0.0], [2.0, 0.0]])  # same direction: distance 0 after L2 normalization
    expected = 2.0 * (1.0 - math.exp(-2.0 * gamma)) ** 2 / 4.0
    assert cc_loss(student, teacher, gamma=gamma).item() == pytest.approx(expected, rel=1e-12)


def test_cka_hand_computed():
    # centred: s = (-1, 0, 1), t = (-2, -1, 3); sᵀt = 5, sᵀs = 2, tᵀt = 14 → CKA = 25 / 28
    student, teacher = _f64([[0.0], [1.0], [2.0]]), _f64([[0.0], [1.0], [5.0]])
    assert cka_loss(student, teacher).item() == pytest.approx(3.0 / 28.0, rel=1e-12)


@pytest.mark.parametrize("n, d_s, d_t", [(4, 8, 6), (40, 2, 3)])  # Gram form, feature form
def test_cka_matches_hsic_with_centering_matrix(n, d_s, d_t, gen):
    s = torch.randn(n, d_s, generator=gen, dtype=torch.float64)
    t = torch.randn(n, d_t, generator=gen, dtype=torch.float64)
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k_s, k_t = h @ s @ s.T @ h, h @ t @ t.T @ h
    cka = torch.trace(k_s @ k_t) / torch.sqrt(torch.trace(k_s @ k_s) * torch.trace(k_t @ k_t))
    assert cka_loss(s, t).item() == pytest.approx(1.0 - cka.item(), rel=1e-10)


# --------------------------------------------------------------------------- Hinton KD
def test_hinton_kd_hand_computed():
    student, teacher = _f64([[0.0, 0.0]]), _f64([[math.log(3.0), 0.0]])  # q = ½, ½; p = ¾, ¼
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert hinton_kd_loss(student, teacher, temperature=1.0).item() == pytest.approx(
        expected, rel=1e-12
    )
    p = 1.0 / (1.0 + 1.0 / math.sqrt(3.0))  # softmax(ln3 / 2, 0)[0] = √3 / (√3 + 1)
    expected = 4.0 * (p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p)))
    assert hinton_kd_loss(student, teacher, temperature=2.0).item() == pytest.approx(
        expected, rel=1e-12
    )


def test_hinton_kd_zero_when_equal_positive_otherwise(gen):
    z = torch.randn(6, 10, generator=gen)
    assert hinton_kd_loss(z, z).item() == pytest.approx(0.0, abs=1e-6)
    assert hinton_kd_loss(z + 3.0, z).item() == pytest.approx(0.0, abs=1e-6)  # a shift per row
    student = torch.randn(6, 10, generator=gen, requires_grad=True)
    loss = hinton_kd_loss(student, z)
    loss.backward()
    assert loss.item() > 0
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_hinton_kd_rejects_bad_inputs():
    with pytest.raises(ValueError, match="same classes"):
        hinton_kd_loss(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="temperature"):
        hinton_kd_loss(torch.zeros(3, 4), torch.zeros(3, 4), temperature=0.0)
    with pytest.raises(ValueError, match="NaN"):
        hinton_kd_loss(torch.full((3, 4), float("nan")), torch.zeros(3, 4))


# --------------------------------------------------------------------------- the registry
def test_registry_order_names_and_defaults():
    assert LOSS_NAMES == ("coherence", "fitnet", "rkd", "pkt", "sp", "cc", "cka")
    for name in LOSS_NAMES:
        assert LOSSES[name].name == name
        assert loss_defaults(name) == LOSSES[name].defaults
        assert loss_defaults(name) is not LOSSES[name].defaults  # a copy: callers may change it
    assert loss_defaults("rkd") == {"distance_weight": 25.0, "angle_weight": 50.0}
    with pytest.raises(ValueError, match="unknown loss 'triplet'; choose one of coherence, fitnet"):
        loss_defaults("triplet")
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("triplet", student_dim=2, teacher_dim=2)


def test_register_refuses_a_second_loss_of_one_name():
    from perco_viz.losses.base import TransferLoss, register

    with pytest.raises(ValueError, match="already registered"):
        @register("rkd")
        class Again(TransferLoss):
            summary = "again"


@pytest.mark.slow
def test_a_new_loss_file_registers_itself(tmp_path):
    """docs/architecture.md: a baseline is one file in perco_viz/losses/ (plus its test). A
    package laid out like perco_viz.losses picks a new file up with no other edit, in `order`."""
    import subprocess
    import sys
    from pathlib import Path

    import perco_viz.losses as pkg

    pkg_dir = tmp_path / "perco_viz" / "losses"
    pkg_dir.mkdir(parents=True)
    for src in Path(pkg.__file__).parent.glob("*.py"):
        (pkg_dir / src.name).write_text(src.read_text())
    (pkg_dir / "zz_mean_gap.py").write_text(
        "from perco_viz.losses.base import TransferLoss, register\n\n"
        "def mean_gap_loss(student, teacher):\n"
        "    return (student.mean() - teacher.mean()) ** 2\n\n"
        "@register('mean_gap')\n"
        "class MeanGapLoss(TransferLoss):\n"
        "    order = 15\n"
        "    summary = 'match the mean activation'\n"
        "    loss_fn = staticmethod(mean_gap_loss)\n"
    )
    # a fresh interpreter whose perco_viz.losses is the copy with the new file in it
    code = (f"import sys; import perco_viz; perco_viz.__path__.insert(0, {str(tmp_path / 'perco_viz')!r}); "
            "import perco_viz.losses as L; print(','.join(L.LOSS_NAMES))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split()[-1] == "coherence,fitnet,mean_gap,rkd,pkt,sp,cc,cka"


@pytest.mark.parametrize("name", BASELINES)
def test_module_metadata_and_defaults(name):
    cls = BASELINES[name]
    assert isinstance(cls.summary, str) and cls.summary and "\n" not in cls.summary
    assert isinstance(cls.defaults, dict)
    module = cls(D_S, D_T, **cls.defaults)
    assert isinstance(module, torch.nn.Module)
    with pytest.raises(ValueError, match="unknown"):
        cls(D_S, D_T, not_an_option=1)


@pytest.mark.parametrize("name", BASELINES)
def test_scalar_nonnegative_and_widths_may_differ(name, pair):
    loss = BASELINES[name](D_S, D_T)(*pair)
    assert loss.shape == () and torch.isfinite(loss)
    assert loss.item() >= -1e-9


@pytest.mark.parametrize("name", BASELINES)
def test_gradients_reach_student_not_teacher(name, pair):
    student, teacher = (x.float().requires_grad_(True) for x in pair)
    module = BASELINES[name](D_S, D_T)
    module(student, teacher).backward()
    assert torch.isfinite(student.grad).all()
    assert student.grad.abs().sum() > 0
    assert teacher.grad is None
    for p in module.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("name", BASELINES)
def test_gradcheck(name, gen):
    module = BASELINES[name](3, 4).double()
    student = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: module(s, teacher), (student,))


@pytest.mark.parametrize("name", BASELINES)
def test_collapsed_student_is_finite(name, pair):
    student = torch.ones(12, D_S, requires_grad=True)
    loss = BASELINES[name](D_S, D_T)(student, pair[1])
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_fitnet_projector_is_a_learnable_parameter(pair):
    module = FitNetLoss(D_S, D_T)
    params = dict(module.named_parameters())
    assert params["projector.weight"].shape == (D_T, D_S)
    assert params["projector.bias"].shape == (D_T,)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    student, teacher = (x.float() for x in pair)
    before = module(student, teacher).item()
    for _ in range(20):
        optimizer.zero_grad()
        module(student, teacher).backward()
        optimizer.step()
    assert module(student, teacher).item() < before


@pytest.mark.parametrize("name", SIMILARITY_INVARIANT)
def test_zero_when_student_is_teacher(name, pair):
    teacher = pair[1]
    assert BASELINES[name](D_T, D_T)(teacher, teacher).item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("name", SIMILARITY_INVARIANT)
def test_zero_for_scaled_isometric_student(name, pair, gen):
    teacher = pair[1]
    student = 3.0 * teacher @ _isometry(D_T, 9, gen)  # (n, 9): same geometry up to scale
    assert BASELINES[name](9, D_T)(student, teacher).item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("name", SHIFT_INVARIANT)
def test_zero_for_shifted_student(name, pair):
    teacher = pair[1]
    assert BASELINES[name](D_T, D_T)(teacher + 4.0, teacher).item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_computed_in_float32(name, dtype, pair):
    student, teacher = (x.to(dtype) for x in pair)
    loss = BASELINES[name](D_S, D_T)(student, teacher)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.parametrize("name", BASELINES)
def test_float64_stays_float64_and_numpy_is_accepted(name, pair):
    module = BASELINES[name](D_S, D_T).double()
    assert module(*pair).dtype == torch.float64
    assert module(pair[0].numpy(), pair[1].numpy()).dtype == torch.float64


@pytest.mark.parametrize("name", BASELINES)
def test_rejects_mismatched_rows_and_nan(name, pair):
    student, teacher = pair
    module = BASELINES[name](D_S, D_T)
    with pytest.raises(ValueError, match="same points"):
        module(student[:-1], teacher)
    bad = student.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        module(bad, teacher)
    bad = teacher.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN"):
        module(student, bad)
    with pytest.raises(ValueError, match="at least"):
        module(student[:1], teacher[:1])
    with pytest.raises(ValueError, match="2-D"):
        module(student[None], teacher)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", BASELINES)
def test_teacher_follows_student_device(name, pair):
    module = BASELINES[name](D_S, D_T).cuda()
    student = pair[0].float().cuda().requires_grad_(True)
    loss = module(student, pair[1])  # teacher left on the CPU
    loss.backward()
    assert loss.device.type == "cuda" and torch.isfinite(student.grad).all()


# --------------------------------------------------------------------------- option checks
def test_option_values_are_checked_at_construction():
    with pytest.raises(ValueError, match="both are 0"):
        BASELINES["rkd"](D_S, D_T, distance_weight=0.0, angle_weight=0.0)
    with pytest.raises(ValueError, match="angle_weight"):
        BASELINES["rkd"](D_S, D_T, angle_weight=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        BASELINES["cc"](D_S, D_T, gamma=0.0)
    with pytest.raises(ValueError, match="positive feature widths"):
        FitNetLoss(0, D_T)


def test_fitnet_function_checks_widths(pair):
    student, teacher = pair
    with pytest.raises(ValueError, match="projector weight"):
        fitnet_loss(student, teacher, torch.zeros(D_S, D_T))
    with pytest.raises(ValueError, match="one width"):
        fitnet_loss(student, teacher)


def test_rkd_angle_term_can_be_skipped_and_needs_three_points(gen):
    s, t = torch.randn(2, 3, generator=gen), torch.randn(2, 3, generator=gen)
    with pytest.raises(ValueError, match="at least 3"):
        rkd_loss(s, t)
    big = torch.randn(300, 4, generator=gen)  # the angle term would need 300³ cosines
    assert torch.isfinite(rkd_loss(big, big.flip(0), angle_weight=0.0))


def test_losses_accept_numpy_inputs():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(6, 3)), rng.normal(size=(6, 4))
    for fn in (rkd_loss, pkt_loss, sp_loss, cc_loss, cka_loss):
        assert torch.isfinite(fn(s, t))
