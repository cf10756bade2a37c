"""Pre-training an auto-encoder on its reconstruction alone, the first stage of DEC's recipe.

EDGaM (routemix's resolution of what its paper leaves out) and N2D both start from the DEC
auto-encoder trained so; :class:`AutoencoderModule` is that stage for any auto-encoder with
``encode``/``decode``. Its learning-curve labels are k-means on the current embedding
(:func:`kmeans_labels`), what the method's next stage would start from if pre-training stopped
now.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import nn

from routemix.losses.edgam import reconstruction_error
from routemix.train.common import batched_inference


def kmeans_labels(z: torch.Tensor, n_clusters: int, *, seed: int, n_init: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """k-means (scikit-learn) of embeddings ``z``: labels (N,) and centroids (K, c)."""
    from sklearn.cluster import KMeans

    kmeans = KMeans(n_clusters, n_init=n_init, random_state=seed).fit(z.double().numpy())
    return kmeans.labels_, kmeans.cluster_centers_


class AutoencoderModule(L.LightningModule):
    """The auto-encoder alone on the squared reconstruction error, Adam.

    ``reconstruction`` is ``"sum"`` (summed over the features of a sample, EDGaM's eq. 9) or
    ``"mean"`` (averaged over them too, Keras' and PyTorch's MSE, which N2D trains on).
    """

    def __init__(
        self, autoencoder: nn.Module, *, n_clusters: int, lr: float = 1e-3, reconstruction: str = "sum"
    ) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.lr = lr
        self.reconstruction = reconstruction
        self.n_clusters = n_clusters

    def configure_optimizers(self):
        return torch.optim.Adam(self.autoencoder.parameters(), lr=self.lr)

    def training_step(self, batch, batch_idx):
        x = batch[0]
        loss = reconstruction_error(x, self.autoencoder(x), self.reconstruction)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"auto-encoder loss became {loss.item()} at step {self.global_step}; lower the learning rate."
            )
        self.log(
            "pretrain/reconstruction", loss.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x)
        )
        return loss

    def cluster_labels(self, data: torch.Tensor) -> np.ndarray:
        z = batched_inference(self, self.autoencoder.encode, data)
        return kmeans_labels(z, self.n_clusters, seed=0, n_init=3)[0]
