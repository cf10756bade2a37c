"""Lightning training of a clustering network with the IIC objective (:mod:`routemix.losses.iic`).

One step: softmax assignments of the batch and of one augmented copy of it (augmentation once
per batch, as the thesis runs IIC in Table 4.3), loss ``-I(z, z')``, one Adam step.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import nn

from routemix.losses.iic import iic_loss
from routemix.train.common import batched_inference


class IICModule(L.LightningModule):
    """Network (raw scores) + input preprocessing + augmentation, trained to maximise I(z, z')."""

    def __init__(
        self, network: nn.Module, augment: nn.Module, *, preprocess: nn.Module | None = None, lr: float = 1e-4
    ) -> None:
        super().__init__()
        self.network = network
        self.augment = augment
        self.preprocess = preprocess if preprocess is not None else nn.Identity()
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Cluster probabilities (B, K)."""
        return self.network(self.preprocess(x)).softmax(dim=1)

    def training_step(self, batch, batch_idx):
        x = batch[0]
        loss = iic_loss(self(x), self(self.augment(x)))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"IIC loss became {loss.item()} at step {self.global_step}; lower the learning rate."
            )
        self.log("train/iic_loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.network.parameters(), lr=self.lr)

    def cluster_labels(self, data: torch.Tensor) -> np.ndarray:
        """Most probable cluster of each sample of ``data`` now (for learning curves)."""
        return predict_proba(self, data).argmax(axis=1)


def predict_proba(module: IICModule, data: torch.Tensor, *, batch_size: int = 1024) -> np.ndarray:
    """Cluster probabilities (N, K) in evaluation mode."""
    return batched_inference(module, module, data, batch_size=batch_size).numpy()
