"""Consistency objective of the two-fold optimisation (thesis eq. 4.24, Algorithm 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def consistency_kl(posterior: torch.Tensor, augmented_log_posterior: torch.Tensor) -> torch.Tensor:
    """Eq. 4.24: ``KL(p || q)`` averaged over the batch.

    ``posterior`` (B, K) is p for the original samples, held constant as soft labels;
    ``augmented_log_posterior`` (B, K) is log q for their augmented copies.
    """
    return F.kl_div(augmented_log_posterior, posterior.detach(), reduction="batchmean")
