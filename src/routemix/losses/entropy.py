"""The mixture-of-VAE-experts objective (MoE thesis, sec. 3.2, eqs. 3.2-3.5) and its parts.

A manager gives each sample ``i`` an importance ``p_k^i`` for every expert ``k`` (rows of ``p``
sum to one); each expert ``k`` reconstructs the sample with a distortion ``d(x_i, x̂_k^i)``.

* eq. 3.2  ``R = 1/η Σ_i Σ_k p_k^i d(x_i, x̂_k^i)``: reconstruction weighted by the manager;
* eq. 3.3  ``S = -1/η Σ_i Σ_k p_k^i log p_k^i``: sample entropy, 0 for one-hot rows, ``log K``
  for uniform rows; minimising it hardens the assignments;
* eq. 3.4  ``B = Σ_k p̂_k log p̂_k`` with ``p̂ = 1/η Σ_i p^i``: the *negative* batch entropy,
  0 when the whole batch goes to one expert, ``-log K`` when the batch is spread evenly;
  minimising it prevents cluster collapse;
* eq. 3.5  ``L = R + α S + β B``.

The distortion of a VAE expert (:func:`vae_distortion`) is "a loss such as MSE or binary
cross-entropy coupled with a normalized KL loss term" (sec. 3.2). Our reading: the summed
reconstruction loss plus ``W`` times the KL divergence, both divided by the number of input
values, i.e. the negative ELBO per input value. This puts ``R`` at the order of 10^0 that
sec. 4.5.2 reports and for which it balances the terms with ``α = 100``, ``β = 1``. ``W`` is the
KL warm-up weight of eq. 4.1 (0 -> 1 over the first epochs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

RECONSTRUCTIONS = ("bce", "mse")


def _check_assignment(p: torch.Tensor) -> None:
    if p.dim() != 2:
        raise ValueError(f"assignments must be (batch, n_experts), got shape {tuple(p.shape)}.")


def sample_entropy(p: torch.Tensor) -> torch.Tensor:
    """Eq. 3.3: mean over the batch of each row's entropy ``-Σ_k p_k log p_k`` (0 log 0 = 0)."""
    _check_assignment(p)
    return -torch.special.xlogy(p, p).sum(dim=1).mean()


def batch_entropy_term(p: torch.Tensor) -> torch.Tensor:
    """Eq. 3.4: ``Σ_k p̂_k log p̂_k`` of the batch-mean assignment ``p̂`` (the negative entropy,
    so it enters eq. 3.5 with a positive ``β``): 0 at collapse, ``-log K`` when balanced."""
    _check_assignment(p)
    mean = p.mean(dim=0)
    return torch.special.xlogy(mean, mean).sum()


def weighted_reconstruction(distortion: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Eq. 3.2: ``1/η Σ_i Σ_k p_k^i d_k^i`` for per-sample, per-expert distortions (B, K)."""
    _check_assignment(p)
    if distortion.shape != p.shape:
        raise ValueError(
            f"distortion {tuple(distortion.shape)} and assignments {tuple(p.shape)} "
            "must have the same shape (batch, n_experts)."
        )
    return (p * distortion).sum(dim=1).mean()


def kl_to_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) of each sample, summed over the latent units (B,)."""
    return 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).flatten(1).sum(dim=1)


def reconstruction_error(x: torch.Tensor, output: torch.Tensor, kind: str) -> torch.Tensor:
    """Summed reconstruction loss of each sample (B,): ``"bce"`` takes the decoder's logits
    (sigmoid output, for near-binary images, sec. 4.3), ``"mse"`` its linear output."""
    if kind == "bce":
        error = F.binary_cross_entropy_with_logits(output, x, reduction="none")
    elif kind == "mse":
        error = (output - x).pow(2)
    else:
        raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {kind!r}.")
    return error.flatten(1).sum(dim=1)


def vae_distortion(x, output, mean, log_var, *, kind: str, kl_weight: float = 1.0) -> torch.Tensor:
    """Per-sample negative ELBO per input value, ``(rec + W·KL) / n_values`` (B,); see the
    module docstring for why it is normalised this way (eqs. 3.2, 4.1)."""
    n_values = x[0].numel()
    return (reconstruction_error(x, output, kind) + kl_weight * kl_to_standard_normal(mean, log_var)) / n_values


def assignment_kl(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(target || softmax(logits)) averaged over the batch: the manager pre-training loss of
    sec. 4.4.4 (soft labels of the shallow clustering as targets; one-hot rows give cross-entropy)."""
    return F.kl_div(F.log_softmax(logits, dim=1), target, reduction="batchmean")


@dataclass
class MoEOutput:
    """One evaluation of eq. 3.5; every field but ``loss`` is detached."""

    loss: torch.Tensor
    reconstruction: torch.Tensor  # R, eq. 3.2
    sample_entropy: torch.Tensor  # S, eq. 3.3
    batch_entropy: torch.Tensor  # B, eq. 3.4 (negative entropy)


class MoELoss(nn.Module):
    """Eq. 3.5, ``L = R + α S + β B``, on distortions (B, K) and manager assignments (B, K).

    The thesis uses ``α = 100``, ``β = 1`` in the first (clustering) half of training and drops
    the entropies in the second half (sec. 4.5.2); pass ``alpha=beta=0`` for that half.
    """

    def __init__(self, alpha: float = 100.0, beta: float = 1.0) -> None:
        super().__init__()
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}.")
        self.alpha = float(alpha)
        self.beta = float(beta)

    def forward(self, distortion: torch.Tensor, p: torch.Tensor) -> MoEOutput:
        reconstruction = weighted_reconstruction(distortion, p)
        s = sample_entropy(p)
        b = batch_entropy_term(p)
        loss = reconstruction + self.alpha * s + self.beta * b
        return MoEOutput(loss, reconstruction.detach(), s.detach(), b.detach())
