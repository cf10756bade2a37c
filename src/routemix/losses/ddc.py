"""Deep Divergence-based Clustering loss (Kampffmeyer et al., Neural Networks 2019, eq. 1-4).

For a batch of n samples with hidden representations ``h`` (n, D) (the output of the last fully
connected layer before the output layer) and soft cluster assignments ``A = softmax(scores)``
(n, k), eq. (4) is

    L = d_hid,alpha + triu(A A^T) + d_hid,m

* ``d_hid,alpha`` (eq. 3): ``sum_{i<j} a_i^T K a_j / sqrt(a_i^T K a_i  a_j^T K a_j)`` over the
  columns ``a_i`` of A, the argument of the log in the Cauchy-Schwarz divergence (eq. 1-2) with
  Parzen densities, averaged over the k(k-1)/2 pairs of clusters (see "Scaling"); minimising it
  maximises the divergence between clusters.
* ``triu(A A^T)``: the strictly upper triangular elements of ``A A^T``, the inner products
  between assignment vectors of different samples (sec. 3.1.2), averaged (see "Scaling").
* ``d_hid,m``: eq. (3) with ``m_qi = exp(-||alpha_q - e_i||^2)`` in place of ``alpha_qi``: it is
  small only when the samples sit in simplex corners (sec. 3.1.2).

Bandwidth. The kernel is ``K_ql = exp(-||h_q - h_l||^2 / (2 sigma^2))`` (sec. 3.1.1), its
bandwidth recomputed for every batch from the median pairwise distance (sec. 4.6) and held
constant in the gradient (an estimate, not a quantity to optimise). Sec. 4.6 says "sigma ... 15%
of the median pairwise Euclidean distance"; read literally (``rule="distance"``, sigma = 0.15 *
median) the kernel is e^-22 at the median distance, nearly the identity. The DDC authors' public
code sets ``sigma^2 = 0.15 * median`` of the *squared* distances (``rule="squared"``, our
default; sigma = 0.39 * median). On digits (Adam 1e-3, 100 epochs, seeds 0-2) the squared rule
with the pair-averaged eq. (3) reached ACC 0.70 / 0.68 / 0.72, the literal one with the printed
1/k 0.59 / 0.55 / 0.63 (both with the batch norm before the hidden ReLU, routemix's network
until 2026-12-06; see :mod:`routemix.models.ddc_nets`).

Scaling. Eq. (3)/(4) print a ``1/k`` before the sums; we average over the k(k-1)/2 pairs of
clusters instead, as the authors' code does, so that each of the three terms lies in [0, 1] and
the equal weights of eq. (4) mean something. For the same reason ``triu(A A^T)`` is, by default,
averaged over the ``n(n-1)/2`` pairs of samples instead of summed (``orthogonality="mean"``; the
printed sum is ``orthogonality="sum"``): the sum grows with the batch (at batch 100 and k = 10
its minimum is 450), so the divergence terms would hardly count, yet the paper's ablation
(Table 2) says they do: l1+l2 (71.9% on MNIST) is far from l2 alone (48.9%). Measured on digits
with everything else equal, the mean reached ACC 0.63 and the sum 0.46 (100 epochs, Adam 1e-3,
one seed, literal bandwidth, batch norm before the ReLU).

One process. The kernel matrix couples every pair of samples of the batch, and the bandwidth is a
median over all pairs: on a share of the batch per process it would be a different objective, and
the global one would need the features of all processes gathered (with their gradients) into an
n x n kernel on each. DDC trains in one process; ``routemix cluster --method ddc --devices 2`` is
an error (:mod:`routemix.cluster.job`), not a silently different algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# Lower bounds that keep a degenerate batch finite: a zero bandwidth (every hidden vector equal)
# and a zero kernel norm of an assignment column (a cluster with no mass at all).
MIN_BANDWIDTH = 1e-6
MIN_NORM = 1e-12
ORTHOGONALITY_REDUCTIONS = ("mean", "sum")
BANDWIDTH_RULES = ("squared", "distance")


def squared_distances(hidden: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (n, n) between the rows of ``hidden`` (n, D).

    Expanded as ``|h_q|^2 + |h_l|^2 - 2 h_q.h_l`` (clamped at 0): no square root, so the gradient
    stays finite where two rows coincide (the diagonal).
    """
    norms = hidden.pow(2).sum(dim=1)
    return (norms[:, None] + norms[None, :] - 2 * hidden @ hidden.T).clamp_min(0)


def median_bandwidth(hidden: torch.Tensor, fraction: float = 0.15, rule: str = "squared") -> torch.Tensor:
    """Sec. 4.6: the kernel bandwidth sigma from the pairwise distances between distinct rows.

    ``rule="squared"``: ``sigma^2 = fraction * median`` of the squared distances (default);
    ``rule="distance"``: ``sigma = fraction * median`` of the distances (see the module
    docstring). The diagonal zeros are left out; with an even number of pairs the median is the
    mean of the two middle values. Detached (a constant in the gradient) and at least
    ``MIN_BANDWIDTH``, so a batch of identical vectors gives a kernel of ones, not NaN.
    """
    if rule not in BANDWIDTH_RULES:
        raise ValueError(f"rule must be one of {BANDWIDTH_RULES}, got {rule!r}.")
    n = hidden.shape[0]
    if n < 2:
        raise ValueError(f"the kernel bandwidth needs at least 2 samples in a batch, got {n}; use a larger batch_size.")
    rows, cols = torch.triu_indices(n, n, offset=1, device=hidden.device)
    distances = torch.cdist(hidden.detach(), hidden.detach(), compute_mode="donot_use_mm_for_euclid_dist")[rows, cols]
    if rule == "squared":
        sigma = (fraction * torch.quantile(distances.square(), 0.5)).sqrt()
    else:
        sigma = fraction * torch.quantile(distances, 0.5)
    return sigma.clamp_min(MIN_BANDWIDTH)


def gaussian_kernel(hidden: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Sec. 3.1.1: ``K_ql = exp(-||h_q - h_l||^2 / (2 sigma^2))``, shape (n, n)."""
    squared = squared_distances(hidden)
    return torch.exp(-squared / (2 * torch.as_tensor(sigma, dtype=hidden.dtype) ** 2))


def cauchy_schwarz_term(assignments: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Eq. (3): ``a_i^T K a_j / sqrt(a_i^T K a_i * a_j^T K a_j)`` averaged over the pairs i < j.

    ``assignments`` (n, k) holds the columns ``a_i`` (soft memberships, or ``m`` of sec. 3.1.2);
    ``kernel`` (n, n) is K. Zero for k = 1 (no pairs of clusters).
    """
    k = assignments.shape[1]
    gram = assignments.T @ kernel @ assignments  # (k, k): a_i^T K a_j
    norms = gram.diagonal().clamp_min(MIN_NORM).sqrt()
    cosine = gram / (norms[:, None] * norms[None, :])
    if k < 2:
        return cosine.new_zeros(())
    return torch.triu(cosine, diagonal=1).sum() / (k * (k - 1) / 2)


def orthogonality_term(assignments: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Sec. 3.1.2: ``triu(A A^T)``, the strictly upper triangular elements of ``A A^T`` (the inner
    products of the assignment vectors of distinct samples), summed (``"sum"``, as printed) or
    averaged over the ``n(n-1)/2`` pairs (``"mean"``, our default; see the module docstring).

    Computed as ``(||sum_q alpha_q||^2 - sum_q ||alpha_q||^2) / 2`` (the same sum without the
    n x n matrix).
    """
    if reduction not in ORTHOGONALITY_REDUCTIONS:
        raise ValueError(f"reduction must be one of {ORTHOGONALITY_REDUCTIONS}, got {reduction!r}.")
    n = assignments.shape[0]
    column_sums = assignments.sum(dim=0)
    total = (column_sums.pow(2).sum() - assignments.pow(2).sum()) / 2
    if reduction == "sum" or n < 2:
        return total
    return total / (n * (n - 1) / 2)


def simplex_corner_similarity(assignments: torch.Tensor) -> torch.Tensor:
    """Sec. 3.1.2: ``m_qi = exp(-||alpha_q - e_i||^2)`` for every sample q and corner e_i, (n, k)."""
    # ||alpha_q - e_i||^2 = ||alpha_q||^2 - 2 alpha_qi + 1
    squared = assignments.pow(2).sum(dim=1, keepdim=True) - 2 * assignments + 1
    return torch.exp(-squared)


@dataclass
class DDCOutput:
    """One evaluation of eq. (4); everything but ``loss`` is detached."""

    loss: torch.Tensor  # scalar, eq. (4)
    divergence: torch.Tensor  # d_hid,alpha (l1 of Table 2)
    orthogonality: torch.Tensor  # triu(A A^T) (l2)
    corner_divergence: torch.Tensor  # d_hid,m (l3)
    sigma: torch.Tensor  # the kernel bandwidth of this batch
    assignments: torch.Tensor  # (n, k) softmax memberships


class DDCLoss(nn.Module):
    """Eq. (4) on the hidden representation (n, D) and the raw output scores (n, k).

    Args:
        num_clusters: k, the number of output units.
        bandwidth_fraction: the 0.15 of sec. 4.6.
        bandwidth_rule: ``"squared"`` (default) or ``"distance"``: how the fraction applies to
            the median (:func:`median_bandwidth`).
        orthogonality: ``"mean"`` (default) averages ``triu(A A^T)`` over the pairs of samples,
            ``"sum"`` sums it as printed (see the module docstring for why the mean).
    """

    def __init__(
        self,
        num_clusters: int,
        *,
        bandwidth_fraction: float = 0.15,
        bandwidth_rule: str = "squared",
        orthogonality: str = "mean",
    ) -> None:
        super().__init__()
        if num_clusters < 1:
            raise ValueError(f"num_clusters must be at least 1, got {num_clusters}.")
        if not bandwidth_fraction > 0:
            raise ValueError(f"bandwidth_fraction must be positive, got {bandwidth_fraction}.")
        if orthogonality not in ORTHOGONALITY_REDUCTIONS:
            raise ValueError(f"orthogonality must be one of {ORTHOGONALITY_REDUCTIONS}, got {orthogonality!r}.")
        if bandwidth_rule not in BANDWIDTH_RULES:
            raise ValueError(f"bandwidth_rule must be one of {BANDWIDTH_RULES}, got {bandwidth_rule!r}.")
        self.num_clusters = num_clusters
        self.bandwidth_fraction = float(bandwidth_fraction)
        self.bandwidth_rule = bandwidth_rule
        self.orthogonality = orthogonality

    def extra_repr(self) -> str:
        return (
            f"num_clusters={self.num_clusters}, bandwidth_fraction={self.bandwidth_fraction}, "
            f"bandwidth_rule={self.bandwidth_rule!r}, orthogonality={self.orthogonality!r}"
        )

    def forward(self, hidden: torch.Tensor, scores: torch.Tensor) -> DDCOutput:
        if scores.dim() != 2 or scores.shape[1] != self.num_clusters:
            raise ValueError(f"expected scores of shape (batch, {self.num_clusters}), got {tuple(scores.shape)}.")
        if hidden.dim() != 2 or hidden.shape[0] != scores.shape[0]:
            raise ValueError(
                f"expected hidden of shape (batch, features) with batch {scores.shape[0]}, got {tuple(hidden.shape)}."
            )
        assignments = torch.softmax(scores, dim=1)
        sigma = median_bandwidth(hidden, self.bandwidth_fraction, self.bandwidth_rule)
        kernel = gaussian_kernel(hidden, sigma)
        divergence = cauchy_schwarz_term(assignments, kernel)
        orthogonality = orthogonality_term(assignments, self.orthogonality)
        corner_divergence = cauchy_schwarz_term(simplex_corner_similarity(assignments), kernel)
        loss = divergence + orthogonality + corner_divergence
        return DDCOutput(
            loss=loss,
            divergence=divergence.detach(),
            orthogonality=orthogonality.detach(),
            corner_divergence=corner_divergence.detach(),
            sigma=sigma,
            assignments=assignments.detach(),
        )
