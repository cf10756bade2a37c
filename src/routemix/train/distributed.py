"""Data-parallel training that is the single-process algorithm on the same global batch.

Under DDP every process trains on a share of each batch and the gradients are averaged. That
equals one process training on the whole batch only if nothing else looks at "the batch": here
three things do, and each is made global.

* **Which samples.** :class:`GlobalBatchShards` splits each batch of the single-process loader into
  one contiguous share per process (``--batch-size`` is the *global* batch, as in the thesis
  recipes, whatever the number of devices). Lightning's own ``DistributedSampler`` would instead
  deal whole batches round-robin and pad the last ones with repeated samples, which changes the
  batches, and double-counts samples in evaluation metrics. Nothing is padded here: every process
  gets the same number of batches, and each sample is in exactly one share.
* **NMM-EM's statistics** (eq. 4.11 and the priors of eq. 4.18): over the global batch, in
  :mod:`routemix.losses.nmm` (an autograd all-reduce; why there and not SyncBatchNorm is explained
  there).
* **Batch norm in the networks.** Normalising over a share is a different network (batch
  statistics over 128 / W samples). Decision: always synchronised when training on several
  processes, on GPUs with Lightning's ``sync_batchnorm`` (``torch.nn.SyncBatchNorm``, fused CUDA
  kernels), on CPUs with :class:`GlobalBatchNorm`, the same statistics through the all-reduce of
  the NMM-EM loss, because ``SyncBatchNorm`` refuses CPU tensors (gloo runs, and the CI tests).

What stays per process: random augmentation draws (each process draws for its own share; they are
decorrelated by rank, not equal to the single-process draws), and DDC, whose loss needs the kernel
matrix of the whole batch and runs on one process only (:mod:`routemix.losses.ddc`).
"""

from __future__ import annotations

import torch
from lightning.pytorch.plugins.layer_sync import LayerSync
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset, Sampler

from routemix.data.loaders import EpochLoader
from routemix.losses.nmm import data_parallel_world_size, global_batch_moments


def process_rank_and_count() -> tuple[int, int]:
    """(rank, number of processes) of the initialised default process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class GlobalBatchShards(Sampler):
    """The batches of ``batches`` (index lists: a ``BatchSampler`` or any sampler yielding lists),
    each cut into contiguous shares, share r for process r (sizes differ by at most one).

    Rank and process count are read when iterating, so the loader built once works in one process
    (whole batches), under ``torchrun``, Lightning's ``ddp`` launcher or ``ddp_spawn``. ``set_epoch``
    is passed on, so epoch-seeded orders stay exactly those of the single-process run.
    """

    def __init__(self, batches) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        rank, count = process_rank_and_count()
        for batch in self.batches:
            batch = list(batch)
            n = len(batch)
            yield batch[n * rank // count : n * (rank + 1) // count]

    def set_epoch(self, epoch: int) -> None:
        if callable(getattr(self.batches, "set_epoch", None)):
            self.batches.set_epoch(epoch)


def shard_batches(loader: DataLoader) -> DataLoader:
    """``loader`` with every batch cut into per-process shares (:class:`GlobalBatchShards`);
    the same batches as ``loader`` in a single process. Workers, pinning and collation are kept."""
    if isinstance(loader.sampler, GlobalBatchShards) or isinstance(loader.batch_sampler, GlobalBatchShards):
        return loader
    if isinstance(loader.dataset, IterableDataset):
        raise ValueError("an IterableDataset cannot be split into per-process shares; use a map-style dataset.")
    options = dict(
        num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
        timeout=loader.timeout, worker_init_fn=loader.worker_init_fn, generator=loader.generator,
        multiprocessing_context=loader.multiprocessing_context, persistent_workers=loader.persistent_workers,
    )
    if loader.num_workers > 0:
        options["prefetch_factor"] = loader.prefetch_factor
    kind = EpochLoader if isinstance(loader, EpochLoader) else DataLoader  # resumable mid-epoch stays so
    if loader.batch_sampler is None:  # batch_size=None: the sampler yields whole batches of indices
        return kind(loader.dataset, sampler=GlobalBatchShards(loader.sampler), batch_size=None, **options)
    return kind(loader.dataset, batch_sampler=GlobalBatchShards(loader.batch_sampler), **options)


def gather_from_processes(tensor: Tensor) -> Tensor:
    """Every process's ``tensor`` concatenated along dim 0 in rank order (shares may differ in
    length); ``tensor`` itself in a single process. For metrics that need all samples at once."""
    import torch.distributed as dist

    _, count = process_rank_and_count()
    if count == 1:
        return tensor
    parts: list = [None] * count
    dist.all_gather_object(parts, tensor.detach().cpu())
    return torch.cat(parts)


def sum_over_processes(tensor: Tensor) -> Tensor:
    """``tensor`` summed over all processes (a new tensor; ``tensor`` itself in a single process)."""
    import torch.distributed as dist

    if process_rank_and_count()[1] == 1:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the global batch of a data-parallel run, on any device and backend.

    In training mode with several processes, the per-channel mean and 1/n variance are those of all
    processes' samples (:func:`routemix.losses.nmm.global_batch_moments`, differentiable), and the
    running statistics are updated as ``nn.BatchNorm`` updates them (unbiased variance), identically
    on every process. Otherwise it is the batch norm it replaced. Made by :class:`GlobalBatchNormSync`.
    """

    original_class: type = nn.BatchNorm2d

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (batch, channels, ...), got {input.dim()}-D.")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and data_parallel_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        rows = input.movedim(1, -1).reshape(-1, self.num_features)  # every position of every sample
        mean, var, count = global_batch_moments(rows)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * count / max(count - 1, 1), factor)
        shape = (1, self.num_features) + (1,) * (input.dim() - 2)
        output = (input - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        return output


def _swap_batchnorm(module: nn.Module, to_global: bool) -> nn.Module:
    """``module`` with each batch norm replaced by a :class:`GlobalBatchNorm` (``to_global``) or
    back to its original class, sharing parameters and buffers (like SyncBatchNorm's converter)."""
    converted = module
    is_global = isinstance(module, GlobalBatchNorm)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and to_global != is_global:
        cls = GlobalBatchNorm if to_global else module.original_class
        converted = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if to_global:
            converted.original_class = type(module)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, _swap_batchnorm(child, to_global))
    return converted


class GlobalBatchNormSync(LayerSync):
    """Lightning plugin: every batch norm of the model normalises over the global batch
    (:class:`GlobalBatchNorm`) while training; the CPU counterpart of ``sync_batchnorm=True``."""

    def apply(self, model: nn.Module) -> nn.Module:
        return _swap_batchnorm(model, True)

    def revert(self, model: nn.Module) -> nn.Module:
        return _swap_batchnorm(model, False)
