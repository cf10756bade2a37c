"""Lightning training of a clustering network with NMM-EM (thesis Algorithm 3).

:class:`NMMModule` holds the network, the :class:`~routemix.losses.NMMLoss` and the optional
augmentation and input preprocessing; one training step is

1. EM step (its own Adam): scores of the batch and of its augmented copy, loss eq. 4.23 (eq. 4.22
   with no augmentation), one gradient step;
2. consistency step (a second Adam, ``two_fold=True``): posteriors recomputed with the updated
   network and held constant, then one gradient step on KL(p || q) of eq. 4.24.

:func:`fit` runs it with a Lightning ``Trainer`` (progress bar, CSV metrics, checkpoints, resume,
CPU or GPU, one or several processes), and :func:`predict_proba` returns posteriors with the
running statistics.

Data-parallel (``devices`` x ``num_nodes`` > 1) it is the same algorithm on the same global batch
(:mod:`routemix.train.distributed`): each process takes a share of every batch, eq. 4.11's
statistics and eq. 4.18's priors are those of the global batch (:mod:`routemix.losses.nmm`), so
is every batch norm of the network, and both steps' gradients are averaged by DDP through
``manual_backward``. Only the augmentation draws differ: each process draws for its own share,
from a generator offset by its rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from routemix.data.loaders import tensor_loader
from routemix.losses import NMMLoss, consistency_kl
from routemix.metrics import clustering_scores
from routemix.nn.collectives import gather_from_processes
from routemix.train.common import batched_inference, make_trainer, resume_checkpoint
from routemix.train.distributed import shard_batches


class NMMModule(L.LightningModule):
    """Network + NMM-EM loss + the two-step optimisation of Algorithm 3."""

    def __init__(
        self,
        network: nn.Module,
        loss: NMMLoss,
        *,
        em_lr: float = 5e-5,
        consistency_lr: float = 1e-4,
        two_fold: bool = True,
        augment: nn.Module | None = None,
        preprocess: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if two_fold and augment is None:
            raise ValueError("the two-fold optimisation needs an augmentation: pass augment= or two_fold=False.")
        self.network = network
        self.loss = loss
        self.augment = augment
        self.preprocess = preprocess if preprocess is not None else nn.Identity()
        self.em_lr = em_lr
        self.consistency_lr = consistency_lr
        self.two_fold = two_fold
        self.automatic_optimization = False
        self._val_predictions: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Raw relevance scores ``a`` (B, K), eq. 4.6."""
        return self.network(self.preprocess(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x)

    def cluster_labels(self, data: torch.Tensor) -> np.ndarray:
        """Most probable cluster of each sample of ``data`` now (running statistics; for learning curves)."""
        return predict_proba(self, data).argmax(axis=1)

    def on_train_start(self) -> None:
        if self.trainer.world_size > 1:  # same seed everywhere: decorrelate the augmentation draws of the shares
            torch.manual_seed(torch.initial_seed() + self.global_rank)

    def configure_optimizers(self):
        em = torch.optim.Adam(self.network.parameters(), lr=self.em_lr)
        if not self.two_fold:
            return em
        return em, torch.optim.Adam(self.network.parameters(), lr=self.consistency_lr)

    def training_step(self, batch, batch_idx):
        x = batch[0]
        x_aug = self.augment(x) if self.augment is not None else None
        optimizers = self.optimizers()
        em_optimizer = optimizers[0] if isinstance(optimizers, (list, tuple)) else optimizers

        # EM step: E (posteriors, constant) and M (one gradient step), eq. 4.22 / 4.23.
        out = self.loss(self.scores(x), None if x_aug is None else self.scores(x_aug))
        if not torch.isfinite(out.loss):
            raise FloatingPointError(
                f"NMM-EM loss became {out.loss.item()} at step {self.global_step}; "
                "lower the learning rate or check the input for extreme values."
            )
        em_optimizer.zero_grad()
        self.manual_backward(out.loss)
        em_optimizer.step()
        logs = {"train/em_loss": out.loss.detach()}

        if self.two_fold:  # Consistency step with the updated network, eq. 4.24.
            with torch.no_grad():
                posterior = self.loss.posterior(self.loss.normalize(self.scores(x), update_stats=False))
            log_q = self.loss.log_posterior(self.loss.normalize(self.scores(x_aug), update_stats=False))
            kl = consistency_kl(posterior, log_q)
            consistency_optimizer = optimizers[1]
            consistency_optimizer.zero_grad()
            self.manual_backward(kl)
            consistency_optimizer.step()
            logs["train/consistency_kl"] = kl.detach()
        self.log_dict(logs, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        if len(x) == 0:  # a process's share of a last batch smaller than the number of processes
            return
        self._val_predictions.append(self.loss.predict_proba(self.scores(x)).argmax(dim=1).cpu())
        self._val_labels.append(y.cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_predictions:
            return
        # every process's share: the scores of the whole validation set, each sample once
        predictions = gather_from_processes(torch.cat(self._val_predictions)).numpy()
        labels = gather_from_processes(torch.cat(self._val_labels)).numpy()
        self._val_predictions.clear()
        self._val_labels.clear()
        scores = clustering_scores(labels, predictions)
        self.log_dict(
            {f"val/{k}": v for k, v in scores.items()}, prog_bar=True, sync_dist=True
        )  # equal everywhere (gathered)


@dataclass(frozen=True)
class TrainingRun:
    """Where and how a fit trains, beyond the estimator's own settings (``NMMClustering.fit(..., run=)``,
    what ``routemix cluster`` asks for on images): a run directory with learning curves and
    checkpoints (:func:`fit`), resuming from it, and data-parallel processes."""

    run_dir: str | os.PathLike
    resume: bool = False
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    checkpoint_every: int | None = None

    def fit_options(self) -> dict:
        """The keyword arguments of :func:`fit` this run sets."""
        return {
            "run_dir": self.run_dir,
            "resume": self.resume,
            "devices": self.devices,
            "num_nodes": self.num_nodes,
            "strategy": self.strategy,
            "checkpoint_every": self.checkpoint_every,
        }


def make_loader(
    data: torch.Tensor, labels=None, *, batch_size: int, shuffle: bool, seed: int | None = None
) -> DataLoader:
    """In-memory loader (:func:`routemix.data.loaders.tensor_loader`): shuffled by ``(seed, epoch)``,
    so a run resumes exactly, even from the middle of an epoch. Training drops a last batch smaller
    than ``batch_size`` (a batch of one cannot be normalised) unless the whole set is smaller than one batch."""
    tensors = [data] if labels is None else [data, torch.as_tensor(np.asarray(labels))]
    return tensor_loader(*tensors, batch_size=batch_size, shuffle=shuffle, seed=0 if seed is None else seed)


def fit(
    module: NMMModule,
    train_loader: DataLoader,
    *,
    max_epochs: int,
    val_loader: DataLoader | None = None,
    run_dir: str | os.PathLike | None = None,
    progress: bool = True,
    accelerator: str = "auto",
    resume: bool = False,
    val_every_n_epochs: int = 1,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    checkpoint_every: int | None = None,
) -> L.Trainer:
    """Train ``module`` for ``max_epochs`` epochs.

    With ``run_dir``, metrics go to ``run_dir/logs/version_N/metrics.csv`` (CSV logger) and checkpoints to
    ``run_dir/checkpoints`` (``last.ckpt`` every epoch, every ``checkpoint_every`` batches and on
    SIGINT/SIGTERM: :mod:`routemix.train.resumable`); ``resume=True`` continues from it exactly
    (layout: :mod:`routemix.train.common`). ``devices`` x ``num_nodes`` processes train
    data-parallel on shares of each batch of the loaders, which stay the global batches.
    """
    ckpt_path = resume_checkpoint(run_dir) if run_dir is not None and resume else None
    trainer = make_trainer(
        max_epochs=max_epochs,
        run_dir=run_dir,
        progress=progress,
        accelerator=accelerator,
        val_every_n_epochs=val_every_n_epochs,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        checkpoint_every=checkpoint_every,
    )
    if trainer.world_size > 1:
        train_loader = shard_batches(train_loader)
        val_loader = shard_batches(val_loader) if val_loader is not None else None
    trainer.fit(
        module, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=ckpt_path, weights_only=True
    )
    return trainer


def predict_proba(module: NMMModule, data: torch.Tensor, *, batch_size: int = 1024) -> np.ndarray:
    """Posteriors (N, K) of ``data`` with the running statistics (inference at any batch size)."""
    return batched_inference(
        module, lambda x: module.loss.predict_proba(module.scores(x)), data, batch_size=batch_size
    ).numpy()


@torch.no_grad()
def evaluate_loss(module: NMMModule, data: torch.Tensor, *, batch_size: int = 1024) -> float:
    """NMM-EM loss (eq. 4.22) of ``data`` under the running statistics: the model-selection
    criterion for restarts, computed without labels."""
    module.eval()
    device = next(module.parameters()).device
    total = 0.0
    for chunk in data.split(batch_size):
        total += module.loss(module.scores(chunk.to(device))).loss.item() * len(chunk)
    return total / len(data)
