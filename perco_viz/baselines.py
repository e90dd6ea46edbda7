"""Baseline representation-transfer losses to compare perception coherence against.

Six class-unaware losses, each as defined in its original paper: FitNet, RKD, PKT, SP, CC and
linear CKA; plus class-aware Hinton KD on logits (:func:`hinton_kd_loss`, called directly by
the engine, so it is not in the registry).

Each baseline is a pure function ``xxx_loss(student, teacher, ...) -> Tensor`` that does the
mathematics and a thin ``XxxLoss(nn.Module)`` built as ``XxxLoss(student_dim, teacher_dim,
**options)`` and called as ``loss(student, teacher)``. :data:`BASELINES` maps names to
modules; every module class carries ``defaults`` (its options) and a one-line ``summary``.

Shared conventions: student features are (n, d_s) and teacher features (n, d_t), d_s may
differ from d_t; inputs are validated at the door (:func:`perco_viz.checks.check_pair`);
computation runs in float32 (float64 stays float64, bf16/fp16 are cast up); the teacher is
detached and moved to the student's device, so gradients reach the student only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perco_viz.checks import check_magnitude, check_pair
from perco_viz.coherence import safe_sqrt

Features = np.ndarray | Tensor


# --------------------------------------------------------------------------- shared steps
def _prepare(student: Features, teacher: Features, min_points: int) -> tuple[Tensor, Tensor]:
    """Validate; cast to the compute dtype; detach the teacher onto the student's device."""
    s, t = check_pair(student, teacher, min_points=min_points)
    dtype = torch.float64 if s.dtype == torch.float64 else torch.float32
    check_magnitude(t, "teacher", dtype)  # a float64 teacher computes in the student's float32
    return s.to(dtype), t.detach().to(device=s.device, dtype=dtype)


def _sq_dists(x: Tensor) -> Tensor:
    """(n, n) squared euclidean distances: never negative, exactly 0 on the diagonal."""
    x = x - x.mean(dim=0)  # translation-invariant; centring shrinks the cancellation error
    sq = (x * x).sum(dim=1)  # (n,)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0.0)  # (n, n)
    return d2 * (1.0 - torch.eye(len(x), dtype=x.dtype, device=x.device))



def _is_real(value: Any) -> bool:
    """A finite int or float (a string, None or NaN/inf is not an option value)."""
    return isinstance(value, int | float | np.integer | np.floating) and bool(np.isfinite(value))


def _check_nonnegative(**values: float) -> None:
    for name, value in values.items():
        if not (_is_real(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not (_is_real(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


# --------------------------------------------------------------------------- FitNet
def fitnet_loss(
    student: Features, teacher: Features, weight: Tensor | None = None, bias: Tensor | None = None
) -> Tensor:
    """FitNet hint loss: mean squared error between projected student and teacher features.

    Args:
        student: (n, d_s) student features.
        teacher: (n, d_t) teacher features.
        weight: (d_t, d_s) weight of the linear projector (regressor); ``None`` means the
            identity, which needs d_s == d_t.
        bias: (d_t,) bias of the projector, or ``None``.

    Returns:
        Scalar ``mean((student @ weight.T + bias - teacher) ** 2)``.

    Reference:
        Romero, Ballas, Kahou, Chassang, Gatta, Bengio, "FitNets: Hints for Thin Deep Nets",
        ICLR 2015.

    >>> t = torch.randn(8, 4)
    >>> float(fitnet_loss(t, t))
    0.0
    """
    s, t = _prepare(student, teacher, min_points=2)
    if weight is not None:
        if weight.shape != (t.shape[1], s.shape[1]):
            raise ValueError(
                f"projector weight must have shape (teacher_dim, student_dim) = "
                f"({t.shape[1]}, {s.shape[1]}), got {tuple(weight.shape)}"
            )
        s = F.linear(s, weight.to(s.dtype), None if bias is None else bias.to(s.dtype))  # (n, d_t)
    if s.shape != t.shape:
        raise ValueError(
            f"FitNet compares features of one width: student {s.shape[1]} vs teacher "
            f"{t.shape[1]}; give a projector weight of shape ({t.shape[1]}, {s.shape[1]})"
        )
    return F.mse_loss(s, t)


# --------------------------------------------------------------------------- RKD
def _rkd_distances(x: Tensor, eps: float) -> Tensor:
    """(n, n) euclidean distances divided by their mean over positive entries (psi_D)."""
    d = safe_sqrt(_sq_dists(x))
    mean = d.sum() / (d > 0).sum().clamp_min(1)
    return d / mean.clamp_min(eps)


def _rkd_angles(x: Tensor) -> Tensor:
    """(n, n, n) cosines: ``[a, b, c]`` is the cosine of the angle b-a-c at vertex a (psi_A).

    Degenerate triplets (b == a or c == a) hold 0, identical in student and teacher.
    """
    e = F.normalize(x[None, :, :] - x[:, None, :], dim=2)  # (n, n, d): e[a, b] = unit(x_b - x_a)
    return e @ e.transpose(1, 2)  # (n, n, n)


def rkd_loss(
    student: Features,
    teacher: Features,
    *,
    distance_weight: float = 25.0,
    angle_weight: float = 50.0,
    eps: float = 1e-12,
) -> Tensor:
    """Relational KD: match normalized pairwise distances and triplet angles (Huber loss).

    Distance term: pairwise euclidean distances, each matrix divided by its mean positive
    distance, compared by smooth-L1 averaged over the n² entries. Angle term: cosines of the
    angles of all n³ ordered triplets, compared by smooth-L1 averaged over the n³ entries
    (both averages as in the authors' code). Weights 25 and 50 are the paper's.

    Memory: the angle term builds (n, n, d) tensors of differences and unit differences and
    an (n, n, n) tensor of cosines for each network, the student's kept for the backward
    pass: O(n²·d + n³); measured peak about 0.8 GB at n = 256, d_s = d_t = 512 (float32, CPU)
    and 0.25 GB at d = 64. Set ``angle_weight=0`` to skip it.

    Args:
        student: (n, d_s) student features, n ≥ 3.
        teacher: (n, d_t) teacher features.
        distance_weight: weight of the distance-wise term (≥ 0).
        angle_weight: weight of the angle-wise term (≥ 0).
        eps: floor of the mean distance (all points identical).

    Returns:
        Scalar ``distance_weight * L_D + angle_weight * L_A``.

    Reference:
        Park, Kim, Lu, Cho, "Relational Knowledge Distillation", CVPR 2019.

    >>> t = torch.randn(6, 3)
    >>> float(rkd_loss(2.0 * t + 1.0, t)) < 1e-6
    True
    """
    _check_rkd_options(distance_weight=distance_weight, angle_weight=angle_weight)
    s, t = _prepare(student, teacher, min_points=3)
    loss = s.new_zeros(())
    if distance_weight > 0:
        loss = loss + distance_weight * F.smooth_l1_loss(
            _rkd_distances(s, eps), _rkd_distances(t, eps)
        )
    if angle_weight > 0:
        loss = loss + angle_weight * F.smooth_l1_loss(_rkd_angles(s), _rkd_angles(t))
    return loss


def _check_rkd_options(*, distance_weight: float, angle_weight: float, **_: Any) -> None:
    _check_nonnegative(distance_weight=distance_weight, angle_weight=angle_weight)
    if distance_weight == 0 and angle_weight == 0:
        raise ValueError("RKD needs distance_weight > 0 or angle_weight > 0; both are 0")


# --------------------------------------------------------------------------- PKT
def _pkt_conditionals(x: Tensor, eps: float) -> Tensor:
    """(n, n) conditional probabilities p_{j|i} from the cosine kernel, 0 on the diagonal."""
    x = x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + eps)  # (n, d) unit rows
    k = (x @ x.T + 1.0) / 2.0  # (n, n) cosine similarity mapped to [0, 1]
    k = k * (1.0 - torch.eye(len(x), dtype=x.dtype, device=x.device))  # j ≠ i
    return k / k.sum(dim=1, keepdim=True).clamp_min(eps)


def pkt_loss(student: Features, teacher: Features, *, eps: float = 1e-7) -> Tensor:
    """Probabilistic Knowledge Transfer: KL between the teacher's and the student's
    conditional probability distributions built from cosine similarities.

    ``p_{j|i} = K(t_i, t_j) / Σ_{k≠i} K(t_i, t_k)`` with ``K = (cos + 1) / 2`` (the paper's
    cosine kernel, self-pairs excluded as in its Eq. 7), ``q_{j|i}`` likewise for the student;
    the loss is ``KL(p_{·|i} || q_{·|i})`` summed over each row and averaged over the anchors
    i (the paper sums over anchors; the authors' code also keeps the self-pair and averages
    over all n² entries: same minimizer, a different scale). ``eps = 1e-7`` as in the code.

    Args:
        student: (n, d_s) student features, n ≥ 3.
        teacher: (n, d_t) teacher features.
        eps: guard of the norms, the row sums and the logarithm.

    Returns:
        Scalar mean over anchors of ``Σ_j p log((p + eps) / (q + eps))``.

    Reference:
        Passalis, Tefas, "Learning Deep Representations with Probabilistic Knowledge
        Transfer", ECCV 2018.

    >>> t = torch.randn(6, 3)
    >>> float(pkt_loss(3.0 * t, t)) < 1e-6
    True
    """
    _check_positive(eps=eps)
    s, t = _prepare(student, teacher, min_points=3)
    p, q = _pkt_conditionals(t, eps), _pkt_conditionals(s, eps)  # (n, n) each
    kl = (p * torch.log((p + eps) / (q + eps))).sum(dim=1).mean()
    return kl.clamp_min(0.0)  # KL >= 0; rounding can give -1e-16 at the optimum


# --------------------------------------------------------------------------- SP
def sp_loss(student: Features, teacher: Features) -> Tensor:
    """Similarity-preserving KD: match row-normalized Gram matrices of the batch.

    ``G = F Fᵀ`` (n × n), each row divided by its L2 norm, loss ``||G_T − G_S||_F² / n²``.

    Args:
        student: (n, d_s) student features, n ≥ 2.
        teacher: (n, d_t) teacher features.

    Returns:
        Scalar loss.

    Reference:
        Tung, Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019.

    >>> t = torch.randn(6, 3)
    >>> float(sp_loss(t, t))
    0.0
    """
    s, t = _prepare(student, teacher, min_points=2)
    g_s = F.normalize(s @ s.T, dim=1)  # (n, n)
    g_t = F.normalize(t @ t.T, dim=1)  # (n, n)
    return ((g_t - g_s) ** 2).sum() / len(s) ** 2


# --------------------------------------------------------------------------- CC
def _cc_kernel(x: Tensor, gamma: float) -> Tensor:
    """(n, n) Gaussian RBF correlation ``exp(-gamma ||x_i - x_j||²)`` of L2-normalized rows."""
    return torch.exp(-gamma * _sq_dists(F.normalize(x, dim=1)))


def cc_loss(student: Features, teacher: Features, *, gamma: float = 0.4) -> Tensor:
    """Correlation congruence: match the batch's correlation matrices.

    Correlation ``K[i, j] = exp(-gamma ||f_i − f_j||²)`` of L2-normalized features, loss
    ``||K_T − K_S||_F² / n²``. This is the exact Gaussian RBF kernel; the paper's P-order Taylor
    expansion of it is only an efficiency device. ``gamma = 0.4`` as in the paper.

    Args:
        student: (n, d_s) student features, n ≥ 2.
        teacher: (n, d_t) teacher features.
        gamma: kernel bandwidth (> 0).

    Returns:
        Scalar loss.

    Reference:
        Peng, Jin, Liu, Li, Wu, Liu, Zhou, Zhang, "Correlation Congruence for Knowledge
        Distillation", ICCV 2019.

    >>> t = torch.randn(6, 3)
    >>> float(cc_loss(2.0 * t, t)) < 1e-10
    True
    """
    _check_positive(gamma=gamma)
    s, t = _prepare(student, teacher, min_points=2)
    return ((_cc_kernel(t, gamma) - _cc_kernel(s, gamma)) ** 2).sum() / len(s) ** 2


def _check_cc_options(*, gamma: float, **_: Any) -> None:
    _check_positive(gamma=gamma)


# --------------------------------------------------------------------------- CKA
def _hsic_terms(s: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(||SᵀT||_F², ||SᵀS||_F, ||TᵀT||_F)`` of centred features, in the cheaper of the
    feature form (d × d products) and the Gram form (n × n products)."""
    n, d_s, d_t = s.shape[0], s.shape[1], t.shape[1]
    if n * (d_s + d_t) < d_s * d_s + d_t * d_t + d_s * d_t:
        k_s, k_t = s @ s.T, t @ t.T  # (n, n) each; tr(K_S K_T) = ||SᵀT||_F²
        return (k_s * k_t).sum(), torch.linalg.vector_norm(k_s), torch.linalg.vector_norm(k_t)
    cross = s.T @ t  # (d_s, d_t)
    return (
        (cross * cross).sum(),
        torch.linalg.vector_norm(s.T @ s),
        torch.linalg.vector_norm(t.T @ t),
    )


def cka_loss(student: Features, teacher: Features, *, eps: float = 1e-12) -> Tensor:
    """One minus linear CKA between student and teacher features.

    With column-centred S and T: ``CKA = ||SᵀT||_F² / (||SᵀS||_F ||TᵀT||_F)``; the loss is
    ``1 − CKA``, in [0, 1], 0 when the student is an orthogonal transform and isotropic
    scaling of the teacher (up to a shift).

    Args:
        student: (n, d_s) student features, n ≥ 2.
        teacher: (n, d_t) teacher features.
        eps: floor of the denominator (a constant student gives CKA 0, loss 1).

    Returns:
        Scalar ``1 − CKA``.

    Reference:
        Kornblith, Norouzi, Lee, Hinton, "Similarity of Neural Network Representations
        Revisited", ICML 2019.

    >>> t = torch.randn(10, 3)
    >>> float(cka_loss(2.0 * t + 1.0, t)) < 1e-6
    True
    """
    _check_positive(eps=eps)
    s, t = _prepare(student, teacher, min_points=2)
    cross, norm_s, norm_t = _hsic_terms(_unit_centred(s), _unit_centred(t))
    return (1.0 - cross / (norm_s * norm_t).clamp_min(eps)).clamp_min(0.0)  # CKA <= 1 (rounding)


def _unit_centred(x: Tensor) -> Tensor:
    """Column-centred x divided by a constant (no gradient) that makes its largest entry 1:
    CKA is scale-invariant, and its fourth powers then cannot overflow in float32."""
    xc = x - x.mean(dim=0)
    return xc / xc.detach().abs().amax().clamp_min(torch.finfo(x.dtype).tiny)


# --------------------------------------------------------------------------- Hinton KD
def hinton_kd_loss(
    student_logits: Features, teacher_logits: Features, temperature: float = 4.0
) -> Tensor:
    """Hinton knowledge distillation on logits (class-aware).

    ``T² · KL(softmax(t / T) || softmax(s / T))``, averaged over the batch.

    Args:
        student_logits: (n, C) student logits.
        teacher_logits: (n, C) teacher logits over the same C classes.
        temperature: softmax temperature T (> 0).

    Returns:
        Scalar loss, 0 when the logits agree up to a per-row shift.

    Reference:
        Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", NIPS 2014
        Deep Learning Workshop, arXiv:1503.02531 (2015).

    >>> z = torch.randn(4, 10)
    >>> float(hinton_kd_loss(z, z))
    0.0
    """
    _check_positive(temperature=temperature)
    s, t = _prepare(student_logits, teacher_logits, min_points=1)
    if s.shape[1] != t.shape[1]:
        raise ValueError(
            f"student and teacher logits must cover the same classes: got {s.shape[1]} and "
            f"{t.shape[1]} columns"
        )
    log_q = F.log_softmax(s / temperature, dim=1)  # (n, C) student
    log_p = F.log_softmax(t / temperature, dim=1)  # (n, C) teacher
    kl = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * temperature**2
    return kl.clamp_min(0.0)  # KL >= 0; rounding can give a tiny negative value


# --------------------------------------------------------------------------- modules
class _BaselineLoss(nn.Module):
    """Thin module over a pure loss function: holds the options, checks them once."""

    summary: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    _loss: ClassVar[Callable[..., Tensor]]
    _check: ClassVar[Callable[..., None] | None] = None

    def __init__(self, student_dim: int = 0, teacher_dim: int = 0, **options: Any) -> None:
        super().__init__()
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"unknown {type(self).__name__} option(s) {sorted(unknown)}; "
                f"expected some of {sorted(self.defaults)}"
            )
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.options = {**self.defaults, **options}
        if type(self)._check is not None:
            type(self)._check(**self.options)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Loss for a batch: student (n, d_s), teacher (n, d_t) → scalar."""
        return type(self)._loss(student, teacher, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


class FitNetLoss(_BaselineLoss):
    """FitNet: MSE after a learned linear projector (student_dim → teacher_dim).

    The projector is a registered ``nn.Linear``: put ``module.parameters()`` in the optimizer.

    Args:
        student_dim: width d_s of the student features.
        teacher_dim: width d_t of the teacher features.

    Reference:
        Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015.

    >>> loss = FitNetLoss(8, 32)
    >>> loss(torch.randn(5, 8), torch.randn(5, 32)).shape
    torch.Size([])
    """

    summary = "FitNet: regress the teacher's features through a learned linear projector (MSE)."
    defaults = {}

    def __init__(self, student_dim: int, teacher_dim: int, **options: Any) -> None:
        super().__init__(student_dim, teacher_dim, **options)
        if student_dim < 1 or teacher_dim < 1:
            raise ValueError(
                f"FitNet needs positive feature widths to build its projector, got "
                f"student_dim={student_dim}, teacher_dim={teacher_dim}"
            )
        self.projector = nn.Linear(student_dim, teacher_dim)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Loss for a batch: student (n, d_s), teacher (n, d_t) → scalar."""
        return fitnet_loss(student, teacher, self.projector.weight, self.projector.bias)


class RKDLoss(_BaselineLoss):
    """RKD: match normalized pairwise distances and triplet angles (see :func:`rkd_loss`).

    Reference:
        Park et al., "Relational Knowledge Distillation", CVPR 2019.

    >>> RKDLoss(8, 32, angle_weight=0.0)(torch.randn(5, 8), torch.randn(5, 32)).shape
    torch.Size([])
    """

    summary = "RKD: match the teacher's normalized pairwise distances and triplet angles."
    defaults = {"distance_weight": 25.0, "angle_weight": 50.0}
    _loss = staticmethod(rkd_loss)
    _check = staticmethod(_check_rkd_options)


class PKTLoss(_BaselineLoss):
    """PKT: KL between cosine-similarity conditional distributions (see :func:`pkt_loss`).

    Reference:
        Passalis, Tefas, "Learning Deep Representations with Probabilistic Knowledge
        Transfer", ECCV 2018.

    >>> PKTLoss(8, 32)(torch.randn(5, 8), torch.randn(5, 32)).shape
    torch.Size([])
    """

    summary = "PKT: match the teacher's neighbour probabilities from cosine similarities (KL)."
    defaults = {}
    _loss = staticmethod(pkt_loss)


class SPLoss(_BaselineLoss):
    """SP: match row-normalized batch Gram matrices (see :func:`sp_loss`).

    Reference:
        Tung, Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019.

    >>> SPLoss(8, 32)(torch.randn(5, 8), torch.randn(5, 32)).shape
    torch.Size([])
    """

    summary = "SP: match the teacher's row-normalized Gram matrix of the batch."
    defaults = {}
    _loss = staticmethod(sp_loss)


class CCLoss(_BaselineLoss):
    """CC: match Gaussian-RBF correlation matrices (see :func:`cc_loss`).

    Reference:
        Peng et al., "Correlation Congruence for Knowledge Distillation", ICCV 2019.

    >>> CCLoss(8, 32, gamma=0.4)(torch.randn(5, 8), torch.randn(5, 32)).shape
    torch.Size([])
    """

    summary = "CC: match the teacher's Gaussian-kernel correlation matrix of the batch."
    defaults = {"gamma": 0.4}
    _loss = staticmethod(cc_loss)
    _check = staticmethod(_check_cc_options)


class CKALoss(_BaselineLoss):
    """CKA: one minus linear CKA (see :func:`cka_loss`).

    Reference:
        Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019.

    >>> CKALoss(8, 32)(torch.randn(5, 8), torch.randn(5, 32)).shape
    torch.Size([])
    """

    summary = "CKA: maximize linear centered kernel alignment with the teacher's features."
    defaults = {}
    _loss = staticmethod(cka_loss)


BASELINES: dict[str, type[nn.Module]] = {
    "fitnet": FitNetLoss,
    "rkd": RKDLoss,
    "pkt": PKTLoss,
    "sp": SPLoss,
    "cc": CCLoss,
    "cka": CKALoss,
}
