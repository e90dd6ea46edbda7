"""PKT: probabilistic knowledge transfer (KL between cosine-kernel neighbour distributions).

Reference: Passalis, Tefas, "Learning Deep Representations with Probabilistic Knowledge
Transfer", ECCV 2018.
"""

from __future__ import annotations

import torch
from torch import Tensor

from perco_viz.losses.base import Features, TransferLoss, check_positive, prepare_pair, register


def pkt_conditionals(x: Tensor, eps: float) -> Tensor:
    """(n, d) → (n, n) conditional probabilities p_{j|i} from the cosine kernel, 0 on the diagonal."""
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
    i (the paper sums over the anchors). ``eps = 1e-7`` as in the authors' code.

    Scale against the authors' code: their ``cosine_similarity_loss`` keeps the self-pair
    (K(x_i, x_i) = 1 in each row's normalisation) and takes the mean over all n² entries of
    ``p log(p / q)``. Same minimizer, but their value is about this one divided by n (the
    batch size): a weight λ tuned with their code reads λ / n here.

    Args:
        student: (n, d_s) student features, n ≥ 3.
        teacher: (n, d_t) teacher features.
        eps: guard of the norms, the row sums and the logarithm (> 0).

    Returns:
        Scalar mean over anchors of ``Σ_j p log((p + eps) / (q + eps))``.

    Reference:
        Passalis, Tefas, "Learning Deep Representations with Probabilistic Knowledge
        Transfer", ECCV 2018.

    >>> t = torch.randn(6, 3)
    >>> float(pkt_loss(3.0 * t, t)) < 1e-6
    True
    """
    check_positive(eps=eps)
    s, t = prepare_pair(student, teacher, min_points=3)
    p, q = pkt_conditionals(t, eps), pkt_conditionals(s, eps)  # (n, n) each
    kl = (p * torch.log((p + eps) / (q + eps))).sum(dim=1).mean()
    return kl.clamp_min(0.0)  # KL >= 0; rounding can give -1e-16 at the optimum


@register("pkt")
class PKTLoss(TransferLoss):
    """PKT: KL between cosine-similarity conditional distributions (see :func:`pkt_loss`).

    Reference:
        Passalis, Tefas, "Learning Deep Representations with Probabilistic Knowledge
        Transfer", ECCV 2018.

    >>> PKTLoss(8, 32)(torch.randn(5, 8), torch.randn(5, 32)).shape
    torch.Size([])
    """

    order = 30
    summary = "PKT: match the teacher's neighbour probabilities from cosine similarities (KL)."
    defaults = {}
    loss_fn = staticmethod(pkt_loss)
