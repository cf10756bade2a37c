"""Lightning training of EDGaM: auto-encoder with an unfolded Gaussian mixture in its middle.

One training step (Fig. 2): encode the batch, ``z = encoder(x)``; run the T unfolded EM layers on
``z`` (:class:`~routemix.losses.edgam.UnfoldedGaussianMixture`), which give the responsibilities
``lambda^T``, the centroids ``mu^T``, the mixture reconstruction ``z_hat = lambda^T mu^T`` and the
correction loss; decode ``f(z, z_hat)``, a fully connected layer on the concatenation of the two
(eq. 8); one Adam step on eq. 9 for every weight at once: network, centroids and betas.

The paper trains end to end from Glorot-initialised weights (appendix E.1) and mentions no
auto-encoder pre-training or mixture initialisation, so every epoch is a joint epoch.

At inference the unfolded layers would make a sample's assignment depend on the rest of its
batch. :func:`final_centroids` therefore runs the unfolding once on the embeddings of the whole
training set and keeps ``mu^T``; :func:`responsibilities` is the E-step (eq. 3) with those fixed
centroids, so on the training set it equals the full-batch ``lambda^T``.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import nn

from routemix.losses.edgam import EDGaMLoss, MixtureOutput, UnfoldedGaussianMixture, e_step
from routemix.models.autoencoders import glorot_init_
from routemix.train.common import batched_inference


class EDGaMModule(L.LightningModule):
    """Auto-encoder + unfolded mixture + skip fusion (eq. 8), trained on eq. 9 with Adam."""

    def __init__(self, autoencoder: nn.Module, mixture: UnfoldedGaussianMixture, loss: EDGaMLoss, *, lr: float = 1e-3) -> None:
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
                f"EDGaM loss became {out.loss.item()} at step {self.global_step} (reconstruction {out.reconstruction.item():.4g}, "
                f"cluster {out.cluster.item():.4g}, correction {out.correction.item():.4g}); lower the learning rate "
                "or the loss weights, or check the input for extreme values."
            )
        confidence = mixture.responsibilities.detach().max(dim=1).values.mean()
        self.log_dict(
            {"train/loss": out.loss.detach(), "train/reconstruction": out.reconstruction, "train/cluster": out.cluster,
             "train/correction": out.correction, "train/entropy": out.entropy, "train/max_lambda": confidence},
            on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x),
        )
        return out.loss


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
