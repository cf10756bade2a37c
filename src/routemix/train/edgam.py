"""Lightning training of EDGaM: auto-encoder with an unfolded Gaussian mixture in its middle.

One training step (Fig. 2): encode the batch, ``z = encoder(x)``; run the T unfolded EM layers on
``z`` (:class:`~routemix.losses.edgam.UnfoldedGaussianMixture`), which give the responsibilities
``lambda^T``, the centroids ``mu^T``, the mixture reconstruction ``z_hat = lambda^T mu^T`` and the
correction loss; decode ``f(z, z_hat)``, a fully connected layer on the concatenation of the two
(eq. 8); one Adam step on eq. 9 for every weight at once: network, centroids and betas.

The paper trains end to end from Glorot-initialised weights (appendix E.1) and mentions no
auto-encoder pre-training or mixture initialisation. From random weights the embedding stays small
and the centroids close together, and EM with unit covariances merges the components (the
responsibilities drift to 1/K). routemix therefore follows the recipe of DEC, whose auto-encoder
EDGaM's Table 5 takes: :class:`~routemix.train.autoencoder.AutoencoderModule` pre-trains the
auto-encoder on the reconstruction term alone, k-means on its embedding gives the initial centroids, and the fusion
layer starts by passing ``z`` through (:func:`pass_embedding_through_`), so joint training starts
from the pre-trained auto-encoder (see :class:`routemix.cluster.EDGaMClustering`).

Appendix E's sanity signal is watched while training: the mean largest responsibility, which
should rise towards 1 (Fig. 4). If it is still below :data:`SOFT_ASSIGNMENTS` after a quarter of
the joint epochs, :class:`EDGaMModule` warns once (:class:`SoftAssignmentWarning`).

At inference the unfolded layers would make a sample's assignment depend on the rest of its
batch. :func:`final_centroids` therefore runs the unfolding once on the embeddings of the whole
training set and keeps ``mu^T``; :func:`responsibilities` is the E-step (eq. 3) with those fixed
centroids, so on the training set it equals the full-batch ``lambda^T``.
"""

from __future__ import annotations

import warnings

import lightning as L
import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import nn

from routemix.losses.edgam import EDGaMLoss, MixtureOutput, UnfoldedGaussianMixture, e_step
from routemix.models.autoencoders import glorot_init_
from routemix.train.common import batched_inference

# A mean largest responsibility below this is no clustering: with K = 10 the components overlap so
# much that a typical sample is shared among three or more of them (Fig. 4 shows ~0.85 early, then 1).
SOFT_ASSIGNMENTS = 0.5


class SoftAssignmentWarning(ConvergenceWarning):
    """EDGaM's responsibilities stay soft: appendix E's sanity check fails."""


def pass_embedding_through_(fusion: nn.Linear) -> None:
    """Set eq. 8's fusion layer ``f(z, z_hat) = W [z; z_hat] + b`` to ``f = z`` (``W = [I 0]``, ``b = 0``),
    so a pre-trained decoder sees at first exactly the embedding it learned to decode."""
    c = fusion.out_features
    with torch.no_grad():
        fusion.weight.zero_()
        fusion.weight[:, :c] = torch.eye(c)
        fusion.bias.zero_()


class EDGaMModule(L.LightningModule):
    """Auto-encoder + unfolded mixture + skip fusion (eq. 8), trained on eq. 9 with Adam."""

    def __init__(
        self, autoencoder: nn.Module, mixture: UnfoldedGaussianMixture, loss: EDGaMLoss, *, lr: float = 1e-3
    ) -> None:
        super().__init__()
        if autoencoder.embedding_dim != mixture.embedding_dim:
            raise ValueError(
                f"the auto-encoder embeds in {autoencoder.embedding_dim} dimensions but the mixture's centroids have "
                f"{mixture.embedding_dim}: build both with the same embedding_dim."
            )
        c = mixture.embedding_dim
        self.autoencoder = autoencoder
        self.mixture = mixture
        self.fusion = nn.Linear(2 * c, c)  # f(z, z_hat) of eq. 8: concatenation, one fully connected layer
        glorot_init_(self.fusion)
        self.loss = loss
        self.lr = lr
        self._confidence: list = [0.0, 0]  # this epoch: sum of the batches' mean max lambda (a tensor), batches
        self.confidence_history: list[float] = []  # per joint epoch: mean largest responsibility
        self._warned_soft = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, MixtureOutput, torch.Tensor]:
        """Embedding ``z``, the mixture's output and the reconstruction ``x_hat``."""
        z = self.autoencoder.encode(x)
        mixture = self.mixture(z)
        x_hat = self.autoencoder.decode(self.fusion(torch.cat([z, mixture.reconstruction], dim=1)))
        return z, mixture, x_hat

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    def training_step(self, batch, batch_idx):
        x = batch[0]
        z, mixture, x_hat = self(x)
        out = self.loss(x, x_hat, z, mixture)
        if not torch.isfinite(out.loss):
            raise FloatingPointError(
                f"EDGaM loss became {out.loss.item()} at step {self.global_step} "
                f"(reconstruction {out.reconstruction.item():.4g}, "
                f"cluster {out.cluster.item():.4g}, correction {out.correction.item():.4g}); lower the learning rate "
                "or the loss weights, or check the input for extreme values."
            )
        confidence = mixture.responsibilities.detach().max(dim=1).values.mean()
        self._confidence[0] = self._confidence[0] + confidence  # summed on the device: no sync per step
        self._confidence[1] += 1
        self.log_dict(
            {
                "train/loss": out.loss.detach(),
                "train/reconstruction": out.reconstruction,
                "train/cluster": out.cluster,
                "train/correction": out.correction,
                "train/entropy": out.entropy,
                "train/max_lambda": confidence,
            },
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(x),
        )
        return out.loss

    def on_train_epoch_end(self) -> None:
        total, batches = self._confidence
        self._confidence = [0.0, 0]
        if not batches:
            return
        mean = float(total) / batches
        self.confidence_history.append(mean)
        epoch, max_epochs = self.current_epoch + 1, self.trainer.max_epochs or 0
        if not self._warned_soft and epoch >= max(1, max_epochs // 4) and mean < SOFT_ASSIGNMENTS:
            self._warned_soft = True
            warnings.warn(
                f"EDGaM's assignments stay soft: the mean largest responsibility is {mean:.2f} after {epoch} of "
                f"{max_epochs} epochs (1/K = {1 / self.mixture.n_clusters:.2f}; appendix E expects it to approach 1), "
                "so the mixture is merging its components. Pre-train the auto-encoder (pretrain_epochs) with "
                "k-means centroids (centroid_init='kmeans'), or raise entropy_weight.",
                SoftAssignmentWarning,
                stacklevel=2,
            )

    def cluster_labels(self, data: torch.Tensor) -> np.ndarray:
        """Labels of ``data`` under the unfolding run on all of it (what the estimator predicts)."""
        z = embed(self, data)
        return responsibilities(z, final_centroids(self, z)).argmax(axis=1)


def embed(module: EDGaMModule, data: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Embeddings ``z`` (N, c) of ``data`` in evaluation mode (no dropout, running batch-norm statistics)."""
    return batched_inference(module, module.autoencoder.encode, data, batch_size=batch_size)


@torch.no_grad()
def final_centroids(module: EDGaMModule, z: torch.Tensor) -> torch.Tensor:
    """``mu^T`` of the unfolded mixture run once on all embeddings ``z`` (the whole training set)."""
    device = module.mixture.centroids.device
    return module.mixture(z.to(device)).means.cpu()


@torch.no_grad()
def responsibilities(z: torch.Tensor, centroids: torch.Tensor) -> np.ndarray:
    """E-step (eq. 3) of embeddings ``z`` under fixed ``centroids``, as a float64 array (N, K)."""
    return e_step(z.double(), centroids.double()).numpy()
