"""Tests that would catch a wrong loss.

1. An independent brute force of the coherence loss, written here from DESIGN.md §1 alone in
   plain Python loops (its own distances, hard ranks, row normalisation with the population
   std, soft steps and soft ranks; nothing imported from perco_viz), compared with
   ``coherence_loss`` (both implementations, both kernels, several n, d, τ and metrics), and
   its finite-difference gradient with autograd's.
2. Golden values: every registered loss (and Hinton KD) on fixed inputs, stored in
   tests/golden/losses.json. After an *intended* change of a loss, regenerate them with

       .venv/bin/python tests/test_loss_reference.py --regen

   and say why in the commit; any other difference is a bug.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).parent / "golden" / "losses.json"


# ----------------------------------------------------------------------------- DESIGN.md §1, by hand
def brute_dissimilarity(x: np.ndarray, metric: str) -> list[list[float]]:
    """D[i][j] = δ(x_i, x_j) for euclidean, sqeuclidean, cosine (1 − cosine similarity)."""
    n = len(x)
    d = [[0.0] * n for _ in range(n)]
    for i, j in itertools.permutations(range(n), 2):
        a, b = [float(v) for v in x[i]], [float(v) for v in x[j]]
        if metric == "cosine":
            dot = sum(p * q for p, q in zip(a, b))
            norms = math.sqrt(sum(p * p for p in a)) * math.sqrt(sum(q * q for q in b))
            d[i][j] = 1.0 - dot / norms
        else:
            sq = sum((p - q) ** 2 for p, q in zip(a, b))
            d[i][j] = sq if metric == "sqeuclidean" else math.sqrt(sq)
    return d


def brute_hard_rank(d: list[list[float]], i: int, j: int) -> float:
    """R_i(j) = 1/(n − 2) Σ_{k ∉ {i, j}} 1[D[i, k] < D[i, j]], a tie counting ½."""
    n = len(d)
    total = 0.0
    for k in range(n):
        if k in (i, j):
            continue
        total += 1.0 if d[i][k] < d[i][j] else 0.5 if d[i][k] == d[i][j] else 0.0
    return total / (n - 2)


def brute_soft_step(x: float, tau: float, kernel: str) -> float:
    """g_τ: sigmoid σ(x / τ), ramp clamp(x / (2τ) + ½, 0, 1)."""
    if kernel == "sigmoid":
        return 1.0 / (1.0 + math.exp(-x / tau)) if x >= 0 else math.exp(x / tau) / (1.0 + math.exp(x / tau))
    return min(1.0, max(0.0, x / (2.0 * tau) + 0.5))


def brute_coherence_loss(student: np.ndarray, teacher: np.ndarray, *, tau: float, kernel: str,
                         metric: str) -> float:
    """L = 1/(n (n − 1)) Σ_i Σ_{j ≠ i} (R̃^S_i(j) − R^T_i(j))², exactly as DESIGN.md §1 states it."""
    n = len(student)
    d_s, d_t = brute_dissimilarity(student, metric), brute_dissimilarity(teacher, metric)
    total = 0.0
    for i in range(n):
        row = [d_s[i][j] for j in range(n) if j != i]  # the n − 1 off-diagonal entries
        mean = sum(row) / len(row)
        std = math.sqrt(sum((v - mean) ** 2 for v in row) / len(row))  # population std
        d_hat = [v / (std + 1e-12) for v in d_s[i]]
        for j in range(n):
            if j == i:
                continue
            soft = sum(brute_soft_step(d_hat[j] - d_hat[k], tau, kernel) for k in range(n) if k not in (i, j))
            total += (soft / (n - 2) - brute_hard_rank(d_t, i, j)) ** 2
    return total / (n * (n - 1))


# ----------------------------------------------------------------------------- against the library
REFERENCE_CASES = [  # (n, d_s, d_t, tau, metric, seed, duplicate a teacher row)
    (3, 1, 2, 0.1, "euclidean", 0, False),
    (5, 2, 3, 0.05, "euclidean", 1, False),
    (7, 3, 5, 0.3, "sqeuclidean", 2, False),
    (8, 2, 4, 1.0, "cosine", 3, False),
    (9, 4, 2, 0.02, "euclidean", 4, True),
    (11, 3, 6, 0.2, "cosine", 5, True),
]


def _case_inputs(n: int, d_s: int, d_t: int, seed: int, dup: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s, t = rng.normal(size=(n, d_s)), rng.normal(size=(n, d_t))
    if dup:  # ties in the teacher's ranks
        t[-1] = t[0]
    return s, t


@pytest.mark.parametrize("kernel", ["ramp", "sigmoid"])
@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("n, d_s, d_t, tau, metric, seed, dup", REFERENCE_CASES)
def test_coherence_loss_equals_the_brute_force_of_design(n, d_s, d_t, tau, metric, seed, dup, kernel, impl):
    from perco_viz.losses.coherence import coherence_loss

    s, t = _case_inputs(n, d_s, d_t, seed, dup)
    expected = brute_coherence_loss(s, t, tau=tau, kernel=kernel, metric=metric)
    got = coherence_loss(torch.tensor(s), torch.tensor(t), tau=tau, kernel=kernel, metric=metric, impl=impl)
    assert float(got) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_coherence_gradient_equals_finite_differences_of_the_brute_force(impl):
    from perco_viz.losses.coherence import coherence_loss

    s, t = _case_inputs(7, 2, 4, seed=6, dup=False)
    student = torch.tensor(s, requires_grad=True)
    coherence_loss(student, torch.tensor(t), tau=0.3, kernel="sigmoid", impl=impl).backward()
    h = 1e-6
    for i, c in [(0, 0), (3, 1), (6, 0)]:
        up, down = s.copy(), s.copy()
        up[i, c] += h
        down[i, c] -= h
        fd = (brute_coherence_loss(up, t, tau=0.3, kernel="sigmoid", metric="euclidean")
              - brute_coherence_loss(down, t, tau=0.3, kernel="sigmoid", metric="euclidean")) / (2 * h)
        assert float(student.grad[i, c]) == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_the_brute_force_itself_on_a_hand_computed_case():
    """Three points on a line: every ranking is forced, the loss is a short hand sum."""
    teacher = np.array([[0.0], [1.0], [3.0]])
    student = np.array([[0.0], [3.0], [1.0]])  # from 0: 2 closer than 1 (the teacher: 1 closer)
    # n = 3: one k per (i, j). Anchor 0: R^T(1) = 0, R^T(2) = 1; the student, normalized by the
    # population std of (3, 1) = 1: D̂ = (3, 1); ramp τ = 0.5: R̃(1) = g(3 − 1) = 1, R̃(2) = 0.
    # Anchor 1 (teacher: 0 at 1, 2 at 2; student: 0 at 3, 2 at 2, std 0.5 → 6, 4): R^T = (0, 1),
    # R̃(0) = g(2) = 1, R̃(2) = g(−2) = 0. Anchor 2 (teacher: 0 at 3, 1 at 2; student: 0 at 1,
    # 1 at 2, std 0.5 → 2, 4): R^T = (1, 0), R̃(0) = g(−2) = 0, R̃(1) = g(2) = 1.
    # Terms: anchors 0 and 1 all wrong (4 × 1), anchor 2 all wrong (2 × 1) → 6 / 6 = 1.
    assert brute_coherence_loss(student, teacher, tau=0.5, kernel="ramp", metric="euclidean") == 1.0
    assert brute_coherence_loss(teacher, teacher, tau=0.5, kernel="ramp", metric="euclidean") == 0.0


# ----------------------------------------------------------------------------- golden values
GOLDEN_N, GOLDEN_D_S, GOLDEN_D_T = 10, 3, 5


def golden_cases() -> dict[str, tuple[str, dict]]:
    """case id → (loss name, options): every registered loss at its defaults, plus variants."""
    from perco_viz.losses import LOSS_NAMES

    cases = {name: (name, {}) for name in LOSS_NAMES}
    cases.update({
        "coherence-sigmoid": ("coherence", {"kernel": "sigmoid"}),
        "coherence-tau0.02": ("coherence", {"tau": 0.02}),
        "coherence-cosine-sigmoid-tau0.5": ("coherence", {"metric": "cosine", "kernel": "sigmoid", "tau": 0.5}),
        "coherence-teacher-cosine": ("coherence", {"teacher_metric": "cosine"}),
        "rkd-distance": ("rkd", {"angle_weight": 0.0}),
        "rkd-angle": ("rkd", {"distance_weight": 0.0}),
        "cc-gamma1": ("cc", {"gamma": 1.0}),
        "hinton_kd": ("hinton_kd", {}),
        "hinton_kd-T1": ("hinton_kd", {"temperature": 1.0}),
    })
    return cases


def golden_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed float64 inputs: (10, 3) student and (10, 5) teacher, one duplicated teacher row."""
    rng = np.random.default_rng(2026)
    s, t = rng.normal(size=(GOLDEN_N, GOLDEN_D_S)), rng.normal(size=(GOLDEN_N, GOLDEN_D_T))
    t[-1] = t[2]
    return torch.tensor(s), torch.tensor(t)


def golden_value(name: str, options: dict) -> float:
    from perco_viz.losses import make_loss
    from perco_viz.losses.kd import hinton_kd_loss

    s, t = golden_inputs()
    if name == "hinton_kd":  # logits over 5 classes
        return float(hinton_kd_loss(s @ torch.ones(GOLDEN_D_S, GOLDEN_D_T, dtype=s.dtype) / 2 + s.sum(1, keepdim=True),
                                    t, **options))
    module = make_loss(name, student_dim=GOLDEN_D_S, teacher_dim=GOLDEN_D_T, **options).double()
    rng = np.random.default_rng(7)
    with torch.no_grad():  # parameters (FitNet's projector) fixed too
        for p in module.parameters():
            p.copy_(torch.tensor(rng.normal(scale=0.5, size=tuple(p.shape))))
    return float(module(s, t).detach())


def regenerate() -> None:
    values = {case: golden_value(name, opts) for case, (name, opts) in golden_cases().items()}
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({"inputs": "tests/test_loss_reference.py golden_inputs()", "values": values},
                                 indent=2, sort_keys=True) + "\n")


def test_golden_file_covers_every_registered_loss():
    stored = json.loads(GOLDEN.read_text())["values"]
    assert set(stored) == set(golden_cases()), "regenerate: .venv/bin/python tests/test_loss_reference.py --regen"


@pytest.mark.parametrize("case", sorted(golden_cases()))
def test_golden_values(case):
    name, options = golden_cases()[case]
    stored = json.loads(GOLDEN.read_text())["values"][case]
    assert golden_value(name, options) == pytest.approx(stored, rel=1e-7, abs=1e-12), case


if __name__ == "__main__":
    if sys.argv[1:] != ["--regen"]:
        sys.exit("usage: python tests/test_loss_reference.py --regen")
    regenerate()
    print(f"wrote {GOLDEN}")
