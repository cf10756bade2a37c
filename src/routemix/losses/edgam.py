"""EDGaM: a Gaussian mixture whose EM iterations are unfolded into network layers.

"Streamlining EM into Auto-Encoder Networks" (EDGaM, ICLR 2021 submission), sec. 3. The mixture
lives on an auto-encoder's embedding ``z`` (B, c). Following Remark 2, every covariance is the
identity and every weight 1/K, so the learnable parameters are the centroids ``mu`` (K, c) and
one coefficient ``beta`` per moment update.

* eq. 3  E-step, ``lambda_nk = softmax_k(-||z_n - mu^t_k||^2 / 2)``, and ``mu^1 = mu``.
* eq. 4  moment update: batch M-step ``m^{t+1}_k = sum_n lambda^t_nk z_n / sum_n lambda^t_nk``,
  then ``mu^{t+1} = (1 - alpha_{t+1}) mu + alpha_{t+1} m^{t+1}`` with ``alpha`` a function of the
  learnable ``beta`` (``1 - beta`` by default; see the choices below).
* eq. 6  correction loss ``sum_t ||mu^{t+1} - m^{t+1}||^2 = sum_t beta_{t+1}^2 ||mu - m^{t+1}||^2``.
* eq. 7  re-weighted cluster loss ``1/2 sum_n sum_k w_k lambda^T_nk ||z_n - mu^T_k||^2``, with the
  mini-batch weights of appendix B, ``w_k = (B/K + Delta) / (N_k + Delta)``, ``N_k = sum_n lambda^T_nk``.
* eq. 8  mixture reconstruction of the embedding, ``z_hat_n = sum_k lambda^T_nk mu^T_k``.
* eq. 9  entropy term: the entropy of each sample's assignment, minimised (sharper assignments;
  the printed sign of eq. 9 would maximise it, see :func:`assignment_entropy`).

**Where this lives.** The unfolded mixture and the loss terms share one file in ``losses/``:
the centroids and ``beta`` are parameters of the objective rather than of a feature extractor
(eq. 6 is computed *inside* the unfolding, and its only job is to give ``mu`` the M-step's
gradient, eq. 5), and the auto-encoders in :mod:`routemix.models.autoencoders` stay ordinary
networks that know nothing about mixtures. :func:`e_step` and :func:`m_step` are the plain EM
step, usable on their own.

**Choices where the extracted text is unclear.**

* The relation between ``alpha`` (eq. 4) and ``beta`` (eq. 6) is garbled. Eq. 6 equates
  ``1/2 alpha ||mu - m||^2`` with ``||(beta mu + (1 - beta) m) - m||^2 = beta^2 ||mu - m||^2``, which
  as printed means ``alpha = 2 beta^2`` (``moment_update="printed"``). With Table 6's initial
  ``beta = 0.9`` that is ``alpha = 1.62``, outside eq. 4's [0, 1], and the correction loss then
  drives ``beta`` and so ``alpha`` to 0, where every unfolded layer repeats the first E-step and
  T could not matter, against Fig. 3. We read eq. 6's second form as ``mu^{t+1} - m^{t+1}``
  instead, i.e. the moment update written with ``alpha = 1 - beta`` (``moment_update="complement"``,
  the default): ``alpha`` stays in [0, 1], and as the correction loss drives ``beta`` to 0 (Fig.
  4) the T layers become full EM iterations on the batch, so T matters as Fig. 3 finds. The
  correction loss is ``beta^2 ||mu - m||^2`` under both readings; only eq. 4's step differs. Under
  "printed", ``alpha`` is clipped to [0, 1]; ``beta`` is clamped to [0, 1] under both.
* Eq. 7's re-weighting is written two ways; we use appendix B's ``w_k = (B/K + Delta) /
  (N_k + Delta)`` with ``Delta = 3``. The weights are statistics of the batch, held constant
  (no gradient through ``w``).
* Eq. 7 is derived from the mixture's likelihood with the responsibilities of the E-step, and EM
  holds those constant while it moves the parameters (sec. 3.1's M-step). We do the same by
  default (``responsibilities="constant"``): eq. 7's gradient pulls each embedding towards the
  centroids it is assigned to, and the centroids towards their members. Taken through ``lambda``
  as well (``"differentiable"``), the gradient also moves samples *between* clusters, towards the
  one with the smallest ``w_k ||z_n - mu_k||^2``: as ``w_k`` is smallest for the largest cluster,
  that is a rich-get-richer pull, the opposite of what the re-weighting is for. Measured on
  10,000 Fashion-MNIST images (docs/RESULTS.md): with the gradient through ``lambda`` the joint
  stage lost 0.04 ACC in five epochs and one cluster grew to 35% of the images (another
  emptied); with ``lambda`` constant the clusters stay balanced and the first five epochs lose
  0.007, and on all of MNIST the joint stage holds (0.778 against 0.724 after the cpu budget's 9
  epochs). The cost: with ``lambda`` constant nothing in eq. 9 but the small entropy term keeps
  the embedding from shrinking (the cluster loss falls as embeddings and centroids draw together
  and the decoder undoes the scale), and under unit covariances the components then overlap. On
  all of Fashion-MNIST (eta1 = 5e-2, five times MNIST's) the mixture merged after 7 joint epochs
  (mean largest responsibility 0.25, ACC 0.285; the soft-assignment warning fires). Neither
  reading reaches the paper there.
* The cluster loss uses the last layer's responsibilities and centroids (``lambda^T``, ``mu^T``),
  "we calculate the loss at the last layer".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

MOMENT_UPDATES = ("complement", "printed")  # eq. 4's alpha from beta: 1 - beta, or 2 beta^2 (eq. 6 as printed)
RECONSTRUCTIONS = ("sum", "mean")  # eq. 9's squared error summed over features per sample, or averaged
RESPONSIBILITY_GRADIENTS = ("constant", "differentiable")  # eq. 7's lambda held as EM's M-step does, or not


@dataclass
class MStep:
    """Closed-form M-step of a Gaussian mixture from responsibilities (sec. 3.1)."""

    counts: torch.Tensor  # (K,) N_k = sum_n lambda_nk
    weights: torch.Tensor  # (K,) pi_k = N_k / N
    means: torch.Tensor  # (K, c) 1/N_k sum_n lambda_nk z_n
    covariances: torch.Tensor | None  # (K, c, c) 1/N_k sum_n lambda_nk (z_n - mu_k)(z_n - mu_k)^T


def squared_distances(z: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """``||z_n - mu_k||^2`` for every pair, shape (N, K)."""
    return (z.unsqueeze(1) - means.unsqueeze(0)).square().sum(dim=2)


def log_e_step(z: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Log-responsibilities ``log lambda`` (N, K) under unit covariances and equal weights, eq. 3."""
    return torch.log_softmax(-0.5 * squared_distances(z, means), dim=1)


def e_step(z: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Responsibilities ``lambda`` (N, K) under unit covariances and equal weights, eq. 3."""
    return log_e_step(z, means).exp()


def m_step(z: torch.Tensor, responsibilities: torch.Tensor, *, covariances: bool = False, eps: float = 1e-8) -> MStep:
    """Weights, means and (optionally) full covariances from responsibilities, sec. 3.1.

    Soft counts below ``eps`` are raised to ``eps``, so an empty cluster's mean is 0 rather than
    0/0 (and its gradient stays finite); other clusters get the exact closed form.
    """
    counts = responsibilities.sum(dim=0)
    denominators = counts.clamp_min(eps)
    means = responsibilities.T @ z / denominators.unsqueeze(1)
    cov = None
    if covariances:
        centred = z.unsqueeze(1) - means.unsqueeze(0)  # (N, K, c)
        cov = torch.einsum("nk,nki,nkj->kij", responsibilities, centred, centred) / denominators[:, None, None]
    return MStep(counts=counts, weights=counts / counts.sum(), means=means, covariances=cov)


def reconstruction_error(x: torch.Tensor, x_hat: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Eq. 9's first term per sample, averaged over the batch: ``||x_n - x_hat_n||^2`` summed over
    the features (``"sum"``, as printed) or averaged over them (``"mean"``)."""
    squared = (x_hat - x).square().flatten(1)
    return squared.sum(dim=1).mean() if reduction == "sum" else squared.mean()


def cluster_weights(responsibilities: torch.Tensor, delta: float = 3.0) -> torch.Tensor:
    """Mini-batch re-weighting of eq. 7 (appendix B): ``(B/K + Delta) / (N_k + Delta)``, constant."""
    batch, k = responsibilities.shape
    counts = responsibilities.detach().sum(dim=0)
    return (batch / k + delta) / (counts + delta)


def cluster_loss(
    z: torch.Tensor,
    responsibilities: torch.Tensor,
    means: torch.Tensor,
    delta: float = 3.0,
    *,
    gradient: str = "constant",
) -> torch.Tensor:
    """Eq. 7 per sample: ``1/B * 1/2 sum_n sum_k w_k lambda_nk ||z_n - mu_k||^2``, with ``lambda``
    held constant (``gradient="constant"``, EM's M-step) or differentiated (``"differentiable"``)."""
    if gradient not in RESPONSIBILITY_GRADIENTS:
        raise ValueError(f"gradient must be one of {', '.join(RESPONSIBILITY_GRADIENTS)}, got {gradient!r}.")
    weights = cluster_weights(responsibilities, delta)
    if gradient == "constant":
        responsibilities = responsibilities.detach()
    return 0.5 * (responsibilities * squared_distances(z, means) * weights).sum(dim=1).mean()


def assignment_entropy(log_responsibilities: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the assignments, ``-1/B sum_n sum_k lambda_nk log lambda_nk``, from ``log lambda``.

    Eq. 9 prints ``+ eta3 sum lambda log lambda``, which minimised would *raise* the entropy
    towards uniform assignments; the text says the term minimises the entropy to distil a clear
    cluster structure (sec. 3.3.2, Fig. 4), so the loss adds ``+ eta3 * entropy``. Taking the
    logarithms from ``log_softmax`` keeps the gradient finite where a responsibility underflows to
    0 (``d/dp p log p`` is infinite at 0).
    """
    return -(log_responsibilities.exp() * log_responsibilities).sum(dim=1).mean()


@dataclass
class MixtureOutput:
    """What one pass through the unfolded mixture gives."""

    responsibilities: torch.Tensor  # (B, K) lambda^T, eq. 3 at the last layer
    log_responsibilities: torch.Tensor  # (B, K) log lambda^T
    means: torch.Tensor  # (K, c) mu^T
    reconstruction: torch.Tensor  # (B, c) z_hat = lambda^T mu^T, eq. 8
    correction_loss: torch.Tensor  # scalar, eq. 6


class UnfoldedGaussianMixture(nn.Module):
    """The differentiable Gaussian mixture network of Fig. 1(b): T E-steps linked by T-1 moment updates.

    Args:
        n_clusters: K.
        embedding_dim: c, the size of the embedding and of each centroid.
        n_layers: T, the number of unfolded E-steps (3 in the paper).
        beta_init: initial value of every learnable ``beta_{t+1}`` (0.9, Table 6).
        moment_update: how eq. 4's ``alpha`` follows from ``beta``: ``"complement"``
            (``alpha = 1 - beta``, the default) or ``"printed"`` (``alpha = 2 beta^2``, eq. 6 as
            printed, clipped to [0, 1]); see the module docstring.
    """

    def __init__(
        self,
        n_clusters: int,
        embedding_dim: int,
        *,
        n_layers: int = 3,
        beta_init: float = 0.9,
        moment_update: str = "complement",
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be at least 1 (one E-step), got {n_layers}.")
        if not 0.0 <= beta_init <= 1.0:
            raise ValueError(
                f"beta_init must lie in [0, 1] (it mixes the centroids with batch means), got {beta_init}."
            )
        if moment_update not in MOMENT_UPDATES:
            raise ValueError(f"moment_update must be one of {', '.join(MOMENT_UPDATES)}, got {moment_update!r}.")
        self.n_clusters = n_clusters
        self.embedding_dim = embedding_dim
        self.n_layers = n_layers
        self.moment_update = moment_update
        # Appendix E.1: the centroids are initialised like every weight, Glorot-uniform.
        self.centroids = nn.Parameter(torch.empty(n_clusters, embedding_dim))
        nn.init.xavier_uniform_(self.centroids)
        self.betas = nn.Parameter(torch.full((n_layers - 1,), float(beta_init)))

    def alphas(self) -> torch.Tensor:
        """Eq. 4's step ``alpha_{t+1}`` towards the batch means, one per moment update."""
        betas = self.betas.clamp(0.0, 1.0)
        if self.moment_update == "printed":
            return (2.0 * betas.square()).clamp(max=1.0)
        return 1.0 - betas

    def forward(self, z: torch.Tensor) -> MixtureOutput:
        if z.dim() != 2 or z.shape[1] != self.embedding_dim:
            raise ValueError(f"the mixture expects embeddings (batch, {self.embedding_dim}), got {tuple(z.shape)}.")
        means = self.centroids  # mu^1 = mu, eq. 3
        log_resp = log_e_step(z, means)
        resp = log_resp.exp()
        correction = z.new_zeros(())
        for beta, alpha in zip(self.betas.clamp(0.0, 1.0), self.alphas()):
            batch_means = m_step(z, resp).means  # m^{t+1}, eq. 4 (first step)
            means = (1.0 - alpha) * self.centroids + alpha * batch_means  # eq. 4
            correction = correction + beta.square() * (self.centroids - batch_means).square().sum()  # eq. 6
            log_resp = log_e_step(z, means)  # eq. 3 at layer t+1
            resp = log_resp.exp()
        return MixtureOutput(
            responsibilities=resp,
            log_responsibilities=log_resp,
            means=means,
            reconstruction=resp @ means,
            correction_loss=correction,
        )

    def extra_repr(self) -> str:
        return f"n_clusters={self.n_clusters}, embedding_dim={self.embedding_dim}, n_layers={self.n_layers}"


@dataclass
class EDGaMLossOutput:
    """Eq. 9 and its four terms (the terms detached, for logging)."""

    loss: torch.Tensor
    reconstruction: torch.Tensor
    cluster: torch.Tensor
    correction: torch.Tensor
    entropy: torch.Tensor


class EDGaMLoss(nn.Module):
    """The whole objective, eq. 9, with the per-sample terms averaged over the batch:

    ``rec(x, x_hat) + eta1 L_cluster/B + eta2 L_correction + eta3 * mean entropy of lambda``.

    Scale of the terms: eq. 9 sums ``||x_n - x_hat_n||^2`` over the features of each sample
    (``reconstruction="sum"``, the default); ``"mean"`` averages it over the features too
    (PyTorch's ``MSELoss``), which is the same objective with every eta multiplied by the number of
    features (64 on digits, 784 on MNIST). The cluster and entropy terms are averaged over the
    batch and so is the reconstruction, so the weights do not depend on the batch size; the
    correction loss (a sum over centroids, not samples) is taken as it is. Defaults: Table 6's
    MNIST row, which appendix E also suggests as the general setting. ``responsibilities`` says
    whether eq. 7 holds the last layer's ``lambda`` constant (``"constant"``, as EM does; the
    default) or differentiates through it (``"differentiable"``); see the module docstring.
    """

    def __init__(
        self,
        *,
        cluster_weight: float = 1e-2,
        correction_weight: float = 1e-2,
        entropy_weight: float = 1e-4,
        delta: float = 3.0,
        reconstruction: str = "sum",
        responsibilities: str = "constant",
    ) -> None:
        super().__init__()
        for name, value in (
            ("cluster_weight", cluster_weight),
            ("correction_weight", correction_weight),
            ("entropy_weight", entropy_weight),
            ("delta", delta),
        ):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}.")
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {', '.join(RECONSTRUCTIONS)}, got {reconstruction!r}.")
        if responsibilities not in RESPONSIBILITY_GRADIENTS:
            raise ValueError(
                f"responsibilities must be one of {', '.join(RESPONSIBILITY_GRADIENTS)}, got {responsibilities!r}."
            )
        self.cluster_weight = cluster_weight
        self.correction_weight = correction_weight
        self.entropy_weight = entropy_weight
        self.delta = delta
        self.reconstruction = reconstruction
        self.responsibilities = responsibilities

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, z: torch.Tensor, mixture: MixtureOutput) -> EDGaMLossOutput:
        reconstruction = reconstruction_error(x, x_hat, self.reconstruction)
        cluster = cluster_loss(z, mixture.responsibilities, mixture.means, self.delta, gradient=self.responsibilities)
        entropy = assignment_entropy(mixture.log_responsibilities)
        loss = (
            reconstruction
            + self.cluster_weight * cluster
            + self.correction_weight * mixture.correction_loss
            + self.entropy_weight * entropy
        )
        return EDGaMLossOutput(
            loss=loss,
            reconstruction=reconstruction.detach(),
            cluster=cluster.detach(),
            correction=mixture.correction_loss.detach(),
            entropy=entropy.detach(),
        )
