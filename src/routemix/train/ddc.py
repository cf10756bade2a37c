"""Lightning training of a DDC network (Kampffmeyer et al. 2019, Algorithm 1).

One training step: forward pass to the hidden representation and the output scores, kernel
bandwidth and kernel matrix from the hidden representation, loss eq. (4), one Adam step
(sec. 3.2, 4.6). Train with :func:`routemix.train.clustering.fit` and
:func:`routemix.train.clustering.make_loader` (shuffled every epoch, as the paper does).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import nn

from routemix.losses.ddc import DDCLoss, DDCOutput
from routemix.train.common import batched_inference


class DDCModule(L.LightningModule):
    """A network with ``forward_features`` / ``forward_head`` + the DDC loss + Adam."""

    def __init__(self, network: nn.Module, loss: DDCLoss, *, learning_rate: float) -> None:
        super().__init__()
        self.network = network
        self.loss = loss
        self.learning_rate = learning_rate

    def evaluate(self, x: torch.Tensor) -> DDCOutput:
        """Eq. (4) for the batch ``x``."""
        hidden = self.network.forward_features(x)
        return self.loss(hidden, self.network.forward_head(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def configure_optimizers(self):
        return torch.optim.Adam(self.network.parameters(), lr=self.learning_rate)

    def training_step(self, batch, batch_idx):
        out = self.evaluate(batch[0])
        if not torch.isfinite(out.loss):
            raise FloatingPointError(
                f"DDC loss became {out.loss.item()} at step {self.global_step}; lower the learning rate "
                "or check the input for extreme values."
            )
        self.log_dict(
            {
                "train/loss": out.loss.detach(),
                "train/divergence": out.divergence,
                "train/orthogonality": out.orthogonality,
                "train/corner_divergence": out.corner_divergence,
            },
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch[0]),
        )
        return out.loss

    def cluster_labels(self, data: torch.Tensor) -> np.ndarray:
        """Most probable cluster of each sample of ``data`` now (for learning curves)."""
        return predict_proba(self, data).argmax(axis=1)


def predict_proba(module: DDCModule, data: torch.Tensor, *, batch_size: int = 1024) -> np.ndarray:
    """Softmax cluster memberships (N, k) of ``data`` (batch norm with running statistics)."""
    return batched_inference(module, lambda x: torch.softmax(module(x), dim=1), data, batch_size=batch_size).numpy()


@torch.no_grad()
def evaluate_loss(module: DDCModule, data: torch.Tensor, *, batch_size: int) -> float:
    """Mean eq. (4) over consecutive batches of ``data`` (batch norm with running statistics),
    weighted by batch size: the unsupervised criterion DDC-VOTE ranks runs by (sec. 4.6).

    The kernel needs 2 samples, so a last batch of one sample joins the batch before it.
    """
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    starts = list(range(0, len(data), batch_size))
    if len(starts) > 1 and len(data) - starts[-1] < 2:
        starts.pop()
    bounds = list(zip(starts, starts[1:] + [len(data)]))
    total = 0.0
    for start, stop in bounds:
        total += module.evaluate(data[start:stop].to(device)).loss.item() * (stop - start)
    module.train(was_training)
    return total / len(data)
