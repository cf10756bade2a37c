"""Neural mixture model trained with batch-wise EM (thesis ch. 4; journal version sec. 3).

A network's K raw relevance scores ``a`` (B, K) become K cluster densities and posteriors:

* eq. 4.11  ``a* = (a - mu_j) / sigma_j``: each cluster's scores are normalised over the batch,
  with no affine parameters (an affine map could undo the normalisation, journal sec. 4.1).
  Running mean and variance are kept, as in batch norm, for inference at any batch size.
* eq. 4.12  ``h_j(x) = sigmoid(a*_j / gamma)``: the cluster density, computed as a log-sigmoid.
* eq. 4.20  ``p_j = softmax(a*)_j``: the posterior (E-step), held constant in the loss.
  With cluster priors (eq. 4.18), ``p ∝ pi_j exp(a*_j)``, i.e. ``softmax(a* + log pi)``.
* eq. 4.22  ``L = -1/n sum_i sum_j p_ij log sigmoid(a*_ij / gamma)`` (M-step: one gradient step).
* eq. 4.23  adds ``log sigmoid(a_tr*_ij / gamma)`` of an augmented copy, weighted by the same
  posteriors of the original.

Choosing gamma. Normalised over n samples, a score is bounded (Shiffler 1988; thesis sec. 4.4.1):
the thesis quotes ``(n-1)/sqrt(n)`` (11.23 for n = 128), the bound for the sample standard
deviation; with the 1/n variance of eq. 4.11 the bound is ``sqrt(n-1)`` (11.27 for n = 128).
Dividing by gamma keeps the sigmoid in its near-linear region, where the batch mean of every
density is 0.5 (eq. 4.14) and the densities share one integral. The thesis uses gamma = 5 at
n = 128; keep ``gamma`` roughly proportional to the bound, ``gamma ≈ 5 * ((n-1)/sqrt(n)) / 11.23``
(about 3.5 at n = 64, 7 at n = 256), or use :func:`gamma_for_batch_size`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from routemix.nn.collectives import data_parallel_world_size, global_batch_mean, global_batch_moments

NORMALIZATIONS = ("batch", "running", "none")


def zscore_bound(batch_size: int, ddof: int = 0) -> float:
    """Largest |z| attainable when normalising ``batch_size`` values by their own mean and
    standard deviation: ``sqrt(n-1)`` with the 1/n variance of eq. 4.11 (``ddof=0``),
    ``(n-1)/sqrt(n)`` with the 1/(n-1) sample variance the thesis quotes (``ddof=1``)."""
    n = batch_size
    return math.sqrt(n - 1) if ddof == 0 else (n - 1) / math.sqrt(n)


def gamma_for_batch_size(batch_size: int, reference_gamma: float = 5.0, reference_batch: int = 128) -> float:
    """Gamma scaled with the z-score bound so that ``bound / gamma`` stays as in the thesis."""
    return reference_gamma * zscore_bound(batch_size) / zscore_bound(reference_batch)


def check_drop_threshold(drop_threshold: float | None, num_clusters: int, priors: bool) -> None:
    """``drop_threshold`` must be ``None``, or in (0, 1/K) with priors on: at or above 1/K the
    uniform start would drop every cluster at once."""
    if drop_threshold is None:
        return
    if not priors:
        raise ValueError("drop_threshold drops clusters by their running priors and needs priors=True.")
    if not 0.0 < drop_threshold < 1.0 / num_clusters:
        raise ValueError(
            f"drop_threshold must be between 0 and 1/n_clusters = {1.0 / num_clusters:.4g} (exclusive), "
            f"got {drop_threshold}."
        )


def _check_batch_size(count: int) -> None:
    if count < 2:
        raise ValueError(
            "NMM-EM normalises scores over the batch and needs at least 2 samples per "
            "training batch; use a larger batch_size."
        )


@dataclass
class NMMOutput:
    """What one NMM-EM loss evaluation produces; everything but ``loss`` is detached."""

    loss: torch.Tensor  # scalar, eq. 4.22 or 4.23
    posterior: torch.Tensor  # (B, K) p_ij, eq. 4.20
    normalized: torch.Tensor  # (B, K) a*_ij, eq. 4.11
    density_mean: torch.Tensor  # (K,) batch mean of sigmoid(a*/gamma), ~0.5 (eq. 4.14)


class NMMLoss(nn.Module):
    """The NMM-EM objective on raw relevance scores ``a`` of shape (B, K).

    Args:
        num_clusters: K, the number of output neurons / clusters.
        gamma: temperature of eq. 4.12 (> 1). 5 for batches of 128; see the module docstring.
        normalization: how eq. 4.11 is applied while training. ``"batch"`` (default) normalises
            with the statistics of the batch itself, so every batch meets eq. 4.13 exactly and
            gradients flow through the mean and variance; ``"running"`` normalises with the
            running statistics (updated from the batch first), the smoother variant the journal
            mentions; ``"none"`` skips normalisation (the failure case of Fig. 4.5a, for study).
            At inference (``eval()``) the running statistics are used in every case but ``none``.
            We train with ``"batch"``: it reproduces Table 4.1 exactly and, measured on digits and
            on the 2-D study, ``"running"`` loses clusters and accuracy (ACC 0.44 against 0.83-0.86;
            docs/RESULTS.md). The journal's "running statistics" are kept for inference.
        momentum: update rate of the running mean and variance.
        priors: estimate cluster priors from running posteriors (eq. 4.18) instead of fixing
            them at 1/K; meant for uneven clusters, but measured it gives no reliable gain
            there yet (docs/RESULTS.md), so it is off by default.
        prior_momentum: update rate of the running priors.
        drop_threshold: with priors, a cluster whose running share of won samples (the share
            of each batch whose most probable cluster it is, averaged with ``prior_momentum``
            into the buffer ``running_share``) falls below this value (0 < threshold < 1/K) is
            dropped for good: its prior becomes 0 (``log_prior`` -inf), so it takes no posterior
            mass and no sample, and the other priors are renormalised. ``num_clusters`` is then
            an upper bound, and the boolean buffer ``alive`` says which clusters the data kept.
            ``None`` (default) never drops. Why: the thesis fixes K and names finding the
            number of clusters as future work (ch. 5-6); this is the component annihilation of
            Figueiredo and Jain's GMM-MML (surveyed in the MoE thesis) on the priors of eq. 4.18.
            Why the won share and not the prior itself: the posteriors of eq. 4.20 stay soft
            (a* is a bounded z-score), so the prior of a cluster that wins no sample at all
            stayed at 0.10-0.13 with K = 6 on three blobs (measured), and a threshold on it
            never fired. ``routemix bench nclusters`` measures 0.8/K against HDBSCAN
            (docs/RESULTS.md).
        eps: added to the variance, so that a batch whose scores do not vary gives a* = 0, not NaN.
        num_mixtures: M independent mixtures of ``num_clusters`` clusters each, scored together:
            scores of shape (B, M, K), each (mixture, cluster) with its own normalisation
            statistics and priors, posteriors normalised over K within each mixture, and the loss
            the *sum* over mixtures of eq. 4.22, so each mixture gets the gradient it would get
            alone. This is how the gate regulariser scores the P_in gate networks of a router
            (:mod:`routemix.losses.gates`). With the default M = 1, scores are (B, K).
    """

    def __init__(
        self,
        num_clusters: int,
        gamma: float = 5.0,
        *,
        normalization: str = "batch",
        momentum: float = 0.1,
        priors: bool = False,
        prior_momentum: float = 0.01,
        drop_threshold: float | None = None,
        eps: float = 1e-5,
        num_mixtures: int = 1,
    ) -> None:
        super().__init__()
        if num_clusters < 1:
            raise ValueError(f"num_clusters must be at least 1, got {num_clusters}.")
        if num_mixtures < 1:
            raise ValueError(f"num_mixtures must be at least 1, got {num_mixtures}.")
        if not gamma > 0:
            raise ValueError(f"gamma must be positive, got {gamma}.")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}.")
        check_drop_threshold(drop_threshold, num_clusters, priors)
        self.num_clusters = num_clusters
        self.num_mixtures = num_mixtures
        self.gamma = float(gamma)
        self.normalization = normalization
        self.momentum = momentum
        self.priors = priors
        self.prior_momentum = prior_momentum
        self.drop_threshold = drop_threshold
        self.eps = eps
        # one entry per (mixture, cluster), flattened mixture-major
        self.register_buffer("running_mean", torch.zeros(num_mixtures * num_clusters))
        self.register_buffer("running_var", torch.ones(num_mixtures * num_clusters))
        self.register_buffer("log_prior", torch.full((num_mixtures * num_clusters,), -math.log(num_clusters)))
        # for ``drop_threshold``: the running share of samples each cluster wins, and which
        # clusters are still alive (buffers, so they survive checkpoints)
        self.register_buffer("running_share", torch.full((num_mixtures * num_clusters,), 1.0 / num_clusters))
        self.register_buffer("alive", torch.ones(num_mixtures * num_clusters, dtype=torch.bool))

    def extra_repr(self) -> str:
        mixtures = f", num_mixtures={self.num_mixtures}" if self.num_mixtures > 1 else ""
        return (
            f"num_clusters={self.num_clusters}{mixtures}, gamma={self.gamma}, "
            f"normalization={self.normalization!r}, priors={self.priors}"
            + (f", drop_threshold={self.drop_threshold}" if self.drop_threshold is not None else "")
        )

    def _score_shape(self) -> tuple[int, ...]:
        return (self.num_clusters,) if self.num_mixtures == 1 else (self.num_mixtures, self.num_clusters)

    def normalize(self, scores: torch.Tensor, update_stats: bool = True) -> torch.Tensor:
        """Eq. 4.11: normalise each cluster's scores over the batch, no affine parameters.
        ``scores`` is (B, K), or (B, M, K) for M mixtures.

        ``update_stats=False`` uses the batch statistics without touching the running ones, for
        a second look at the same batch (the consistency step of Algorithm 3).
        """
        shape = self._score_shape()
        if tuple(scores.shape[1:]) != shape:
            expected = ", ".join(map(str, ("batch", *shape)))
            raise ValueError(f"expected scores of shape ({expected}), got {tuple(scores.shape)}.")
        # every (mixture, cluster) is one feature of the batch norm; statistics in the buffers'
        # precision also under mixed precision (a bf16 mean of 128 scores is off in the third digit)
        return self._normalize_flat(scores.flatten(1).to(self.running_mean.dtype), update_stats).view(scores.shape)

    def _normalize_flat(self, scores: torch.Tensor, update_stats: bool) -> torch.Tensor:
        if self.normalization == "none":
            return scores
        if not self.training:
            return F.batch_norm(scores, self.running_mean, self.running_var, training=False, eps=self.eps)
        if data_parallel_world_size() > 1:
            batch_normalized = self._normalize_global(scores, update_stats)
        else:
            _check_batch_size(scores.shape[0])
            running = (self.running_mean, self.running_var) if update_stats else (None, None)
            batch_normalized = F.batch_norm(scores, *running, training=True, momentum=self.momentum, eps=self.eps)
        if self.normalization == "batch":
            return batch_normalized
        return (scores - self.running_mean) / torch.sqrt(self.running_var + self.eps)

    def _normalize_global(self, scores: torch.Tensor, update_stats: bool) -> torch.Tensor:
        """Eq. 4.11 over the global batch of a data-parallel run: mean and variance over every
        process's scores (:func:`global_batch_moments`), so each process computes the a* that one
        process would compute on the whole batch, the gradients flow through the shared
        statistics as they do there, and every process keeps the same running statistics (updated
        as ``F.batch_norm`` does: momentum, unbiased variance)."""
        mean, var, count = global_batch_moments(scores)
        _check_batch_size(count)
        if update_stats:
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach() * count / (count - 1), self.momentum)
        return (scores - mean) / torch.sqrt(var + self.eps)

    def log_posterior(self, normalized: torch.Tensor) -> torch.Tensor:
        """Eq. 4.20 (eq. 4.18 with priors) in log space: ``log_softmax(a* [+ log pi])``.

        A dropped cluster (prior 0) gets posterior 0; its log posterior is the most negative
        finite float rather than -inf, so that ``0 * log p`` terms (the KL of eq. 4.24) stay 0
        instead of NaN.
        """
        if not self.priors:
            return torch.log_softmax(normalized, dim=-1)
        shape = self._score_shape()
        log_posterior = torch.log_softmax(normalized + self.log_prior.view(shape), dim=-1)
        return log_posterior.masked_fill(~self.alive.view(shape), torch.finfo(log_posterior.dtype).min)

    def posterior(self, normalized: torch.Tensor) -> torch.Tensor:
        """Eq. 4.20 (eq. 4.18 with priors): cluster posteriors from normalised scores."""
        return self.log_posterior(normalized).exp()

    def log_density(self, normalized: torch.Tensor) -> torch.Tensor:
        """Eq. 4.12 in log space: ``log sigmoid(a* / gamma)``."""
        return F.logsigmoid(normalized / self.gamma)

    def forward(self, scores: torch.Tensor, augmented_scores: torch.Tensor | None = None) -> NMMOutput:
        """Eq. 4.22, or eq. 4.23 when the scores of an augmented copy of the batch are given."""
        normalized = self.normalize(scores)
        posterior = self.posterior(normalized).detach()
        log_likelihood = self.log_density(normalized)
        if augmented_scores is not None:
            if augmented_scores.shape != scores.shape:
                raise ValueError(
                    f"augmented_scores has shape {tuple(augmented_scores.shape)}, "
                    f"scores {tuple(scores.shape)}; they must match."
                )
            log_likelihood = log_likelihood + self.log_density(self.normalize(augmented_scores, update_stats=False))
        loss = -(posterior * log_likelihood).flatten(1).sum(dim=1).mean()  # sum over clusters (and mixtures)
        if self.training and self.priors:
            self._update_priors(posterior)
        density_mean = torch.sigmoid(normalized.detach() / self.gamma).mean(dim=0)
        return NMMOutput(loss=loss, posterior=posterior, normalized=normalized.detach(), density_mean=density_mean)

    @torch.no_grad()
    def _update_priors(self, posterior: torch.Tensor) -> None:
        """Eq. 4.18's priors as a running mean of the batch posteriors; then, with
        ``drop_threshold``, drop the clusters that win too few samples."""
        batch_prior = global_batch_mean(posterior).clamp_min(1e-8)  # all processes' posteriors when data-parallel
        prior = (1 - self.prior_momentum) * self.log_prior.exp().view_as(
            batch_prior
        ) + self.prior_momentum * batch_prior
        prior = prior * self.alive.view_as(prior)  # a dropped cluster keeps prior 0
        prior = prior / prior.sum(dim=-1, keepdim=True)
        if self.drop_threshold is not None:
            prior = self._drop_unused_clusters(prior, posterior)
        self.log_prior.copy_(prior.log().flatten())

    def _drop_unused_clusters(self, prior: torch.Tensor, posterior: torch.Tensor) -> torch.Tensor:
        """Update ``running_share`` (the running share of samples whose most probable cluster
        is j), mark clusters whose share fell below ``drop_threshold`` dead for good, and
        renormalise the priors and shares of the rest. Shares sum to 1 over the alive clusters
        and ``drop_threshold < 1/K``, so the largest of each mixture always survives."""
        won = F.one_hot(posterior.argmax(dim=-1), self.num_clusters).to(prior.dtype)
        batch_share = global_batch_mean(won)  # all processes' samples when data-parallel, as the priors
        share = (1 - self.prior_momentum) * self.running_share.view_as(prior) + self.prior_momentum * batch_share
        unused = share < self.drop_threshold
        if unused.any():
            self.alive &= ~unused.flatten()
            share, prior = share.masked_fill(unused, 0.0), prior.masked_fill(unused, 0.0)
            share, prior = share / share.sum(dim=-1, keepdim=True), prior / prior.sum(dim=-1, keepdim=True)
        self.running_share.copy_(share.flatten())
        return prior

    def num_alive(self) -> torch.Tensor:
        """Clusters not dropped: a count, or one per mixture (M,) with ``num_mixtures > 1``."""
        return self.alive.view(self._score_shape()).sum(dim=-1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before clusters could be dropped: all alive, uniform shares
        state_dict.setdefault(prefix + "alive", torch.ones_like(self.alive))
        state_dict.setdefault(prefix + "running_share", torch.full_like(self.running_share, 1.0 / self.num_clusters))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def predict_proba(self, scores: torch.Tensor) -> torch.Tensor:
        """Posteriors of new samples with the running statistics (call in ``eval()`` mode)."""
        return self.posterior(self.normalize(scores, update_stats=False))
