"""Lightning training of the mixture of VAE experts (MoE thesis, ch. 3 and sec. 4.3-4.5).

Three modules, one per kind of training the method does:

* :class:`VAEModule` - the pre-training autoencoder (a VAE, sec. 4.2): negative ELBO with the
  KL warm-up of eq. 4.1 and the L1 penalty of 1e-4 on the posterior means (sec. 4.4.1);
* :class:`ManagerModule` - manager pre-training on the shallow clustering's labels, KL between
  the labels and the manager's soft assignments (sec. 4.4.4);
* :class:`MoEModule` - the joint training (sec. 4.5.2) in two stages: ``"cluster"`` minimises
  eq. 3.5 with the entropies over experts and manager; ``"specialise"`` freezes the manager, takes
  its hard assignments and trains each expert on its own samples only.

All three use Lightning's automatic optimisation with Adam, and raise ``FloatingPointError`` on a
non-finite loss. Images are augmented as in sec. 4.2 (:func:`moe_image_augmentation`).
"""

from __future__ import annotations

import kornia.augmentation as K
import lightning as L
import numpy as np
import torch
from torch import nn

from routemix.losses.entropy import MoELoss, assignment_kl, vae_distortion
from routemix.models.vae import VAE, Manager
from routemix.train.common import batched_inference


def moe_image_augmentation() -> nn.Module:
    """Sec. 4.2: rotations of up to 10 degrees, 10% zoom, 10% width and height shifts. (The
    horizontal flips it adds for FMNIST, COIL20 and CIFAR10 are dataset-specific; left out.)"""
    return K.RandomAffine(degrees=10.0, translate=(0.1, 0.1), scale=(0.9, 1.1))


def _check_finite(loss: torch.Tensor, what: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"{what} became {loss.item()} at step {step}; lower the learning rate or check the input "
            "for extreme values (binary cross-entropy needs inputs in [0, 1])."
        )


def kl_weight(step: int, warmup_steps: int) -> float:
    """Eq. 4.1's ``W``: rises linearly from 0 to 1 over ``warmup_steps`` optimiser steps."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


class VAEModule(L.LightningModule):
    """A VAE trained alone: ``mean_i d(x_i, x̂_i) + l1 * mean_i |mu_i|_1`` (eq. 4.1, sec. 4.4.1)."""

    def __init__(
        self, vae: VAE, *, lr: float, kl_warmup_steps: int, l1_mean: float = 1e-4, augment: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.vae = vae
        self.lr = lr
        self.kl_warmup_steps = kl_warmup_steps
        self.l1_mean = l1_mean
        self.augment = augment

    def configure_optimizers(self):
        return torch.optim.Adam(self.vae.parameters(), lr=self.lr)

    def training_step(self, batch, batch_idx):
        x = batch[0]
        if self.augment is not None:
            x = self.augment(x)
        out = self.vae(x)
        weight = kl_weight(self.global_step, self.kl_warmup_steps)
        loss = vae_distortion(
            x, out.output, out.mean, out.log_var, kind=self.vae.reconstruction, kl_weight=weight
        ).mean()
        loss = loss + self.l1_mean * out.mean.abs().sum(dim=1).mean()
        _check_finite(loss, "the autoencoder's loss", self.global_step)
        self.log("pretrain/vae_loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss


class ManagerModule(L.LightningModule):
    """Manager pre-training: KL(labels || softmax(manager(x))) over (x, labels) batches."""

    def __init__(self, manager: Manager, *, lr: float, augment: nn.Module | None = None) -> None:
        super().__init__()
        self.manager = manager
        self.lr = lr
        self.augment = augment

    def configure_optimizers(self):
        return torch.optim.Adam(self.manager.parameters(), lr=self.lr)

    def training_step(self, batch, batch_idx):
        x, target = batch
        if self.augment is not None:
            x = self.augment(x)
        loss = assignment_kl(target, self.manager(x))
        _check_finite(loss, "the manager's loss", self.global_step)
        self.log("pretrain/manager_kl", loss.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss

    def cluster_labels(self, data: torch.Tensor) -> np.ndarray:
        """The manager's most probable expert for each sample of ``data`` now (for learning curves)."""
        return manager_proba(self.manager, data).argmax(axis=1)


STAGES = ("cluster", "specialise")


class MoEModule(L.LightningModule):
    """Manager + K VAE experts trained with eq. 3.5 (stage ``"cluster"``), then each expert on
    the manager's hard assignments with the manager frozen (stage ``"specialise"``, sec. 4.5.2).

    Set :attr:`stage` before each ``Trainer.fit``. The experts' KL warm-up (eq. 4.1) counts steps
    across both stages.
    """

    def __init__(
        self,
        manager: Manager,
        experts: list[VAE],
        loss: MoELoss,
        *,
        lr: float,
        kl_warmup_steps: int,
        augment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if len(experts) != manager.n_experts:
            raise ValueError(f"the manager scores {manager.n_experts} experts but {len(experts)} were given.")
        self.manager = manager
        self.experts = nn.ModuleList(experts)
        self.loss = loss
        self.lr = lr
        self.kl_warmup_steps = kl_warmup_steps
        self.augment = augment
        self.stage = "cluster"
        self.steps_done = 0

    def configure_optimizers(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}.")
        params = list(self.experts.parameters())
        if self.stage == "cluster":
            params += list(self.manager.parameters())
        return torch.optim.Adam(params, lr=self.lr)

    def on_fit_start(self) -> None:
        self.train()  # Lightning keeps submodules in the mode it finds them (a pre-trained manager: eval)

    def distortions(self, x: torch.Tensor, kl_weight_value: float = 1.0) -> torch.Tensor:
        """Per-sample distortion of every expert (B, K), the ``d(x_i, x̂_k^i)`` of eq. 3.2."""
        columns = []
        for expert in self.experts:
            out = expert(x)
            columns.append(
                vae_distortion(
                    x, out.output, out.mean, out.log_var, kind=expert.reconstruction, kl_weight=kl_weight_value
                )
            )
        return torch.stack(columns, dim=1)

    def training_step(self, batch, batch_idx):
        x = batch[0]
        if self.augment is not None:
            x = self.augment(x)
        weight = kl_weight(self.steps_done, self.kl_warmup_steps)
        self.steps_done += 1
        if self.stage == "cluster":
            p = torch.softmax(self.manager(x), dim=1)
            out = self.loss(self.distortions(x, weight), p)
            loss = out.loss
            logs = {
                "moe/loss": loss.detach(),
                "moe/reconstruction": out.reconstruction,
                "moe/sample_entropy": out.sample_entropy,
                "moe/batch_entropy": out.batch_entropy,
            }
        else:
            self.manager.eval()  # frozen: no gradient and no batch-norm statistics updates
            with torch.no_grad():
                hard = self.manager(x).argmax(dim=1)
            loss = x.new_zeros(())
            for k, expert in enumerate(self.experts):
                mine = x[hard == k]
                if len(mine) < 2:  # batch norm needs two samples; the expert sits this batch out
                    continue
                out = expert(mine)
                loss = loss + vae_distortion(
                    mine, out.output, out.mean, out.log_var, kind=expert.reconstruction, kl_weight=weight
                ).sum() / len(x)
            logs = {"moe/reconstruction": loss.detach()}
        _check_finite(loss, f"the MoE loss (stage {self.stage!r})", self.steps_done)
        self.log_dict(logs, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss if loss.requires_grad else None

    def cluster_labels(self, data: torch.Tensor) -> np.ndarray:
        """The manager's most probable expert for each sample of ``data`` now (for learning curves)."""
        return manager_proba(self.manager, data).argmax(axis=1)


def encode_means(vae: VAE, data: torch.Tensor, *, batch_size: int = 1024) -> np.ndarray:
    """Posterior means of ``data`` (N, latent_dim) in eval mode: the codes the pre-training
    analyses (PCA, UMAP) use (sec. 4.4.1)."""
    return batched_inference(vae, lambda x: vae.encode(x)[0], data, batch_size=batch_size).numpy()


def manager_proba(manager: Manager, data: torch.Tensor, *, batch_size: int = 1024) -> np.ndarray:
    """The manager's assignment probabilities softmax(manager(x)) (N, K), in eval mode."""
    return (
        batched_inference(manager, lambda x: torch.softmax(manager(x), dim=1), data, batch_size=batch_size)
        .double()
        .numpy()
    )
