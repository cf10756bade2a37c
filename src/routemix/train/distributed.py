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
  :mod:`routemix.losses.nmm`, through the autograd all-reduce of :mod:`routemix.nn.collectives`
  (why that and not SyncBatchNorm is explained there).
* **Batch norm in the networks.** Normalising over a share is a different network (batch
  statistics over 128 / W samples). Decision: always synchronised when training on several
  processes, on GPUs with Lightning's ``sync_batchnorm`` (``torch.nn.SyncBatchNorm``, fused CUDA
  kernels), on CPUs with :class:`routemix.nn.collectives.GlobalBatchNorm`, the same statistics through the all-reduce of
  the NMM-EM loss, because ``SyncBatchNorm`` refuses CPU tensors (gloo runs, and the CI tests).

What stays per process: random augmentation draws (each process draws for its own share; they are
decorrelated by rank, not equal to the single-process draws), and DDC, whose loss needs the kernel
matrix of the whole batch and runs on one process only (:mod:`routemix.losses.ddc`).
"""

from __future__ import annotations

from lightning.pytorch.plugins.layer_sync import LayerSync
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, Sampler

from routemix.data.loaders import EpochLoader
from routemix.nn.collectives import process_rank_and_count, swap_batchnorm


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
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        generator=loader.generator,
        multiprocessing_context=loader.multiprocessing_context,
        persistent_workers=loader.persistent_workers,
    )
    if loader.num_workers > 0:
        options["prefetch_factor"] = loader.prefetch_factor
    kind = EpochLoader if isinstance(loader, EpochLoader) else DataLoader  # resumable mid-epoch stays so
    if loader.batch_sampler is None:  # batch_size=None: the sampler yields whole batches of indices
        return kind(loader.dataset, sampler=GlobalBatchShards(loader.sampler), batch_size=None, **options)
    return kind(loader.dataset, batch_sampler=GlobalBatchShards(loader.batch_sampler), **options)


class GlobalBatchNormSync(LayerSync):
    """Lightning plugin: every batch norm of the model normalises over the global batch
    (:class:`routemix.nn.collectives.GlobalBatchNorm`) while training; the CPU counterpart of
    ``sync_batchnorm=True``."""

    def apply(self, model: nn.Module) -> nn.Module:
        return swap_batchnorm(model, True)

    def revert(self, model: nn.Module) -> nn.Module:
        return swap_batchnorm(model, False)
