"""Loaders whose every draw is a function of (seed, epoch), so a run can stop anywhere and resume.

* :class:`EpochShuffle` orders the indices by ``(seed, epoch)`` alone; Lightning calls its
  ``set_epoch`` before every epoch.
* :class:`EpochLoader` is a ``DataLoader`` over one that counts the batches it has handed out in
  the current epoch. Lightning stores that count with every checkpoint (``state_dict``) and, when
  a run resumes in the middle of an epoch, gives it back (``load_state_dict``) before iterating
  again: the sampler then skips the batches already trained on, and the resumed run sees exactly
  the batches the uninterrupted one would have seen.
* :func:`tensor_loader` is the one in-memory loader of every trainer (supervised and clustering).
  Without worker processes or memory pinning, an :class:`EpochLoader` indexes its batches out of the
  dataset itself instead of building a ``DataLoader`` iterator every epoch: the same batches, in the
  same order, without the per-epoch and per-batch machinery (which, for a table of a few hundred
  rows and one batch per epoch, costs more than indexing it).

The loaders draw their worker seeds from a private generator, so iterating them never moves
PyTorch's global random state (which the model's own draws use, and checkpoints restore).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Sampler, TensorDataset
from torch.utils.data.dataloader import _DatasetKind


def derived_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from non-negative integers (seed, epoch, step, ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class EpochShuffle(Sampler):
    """Indices ``0..n-1``, shuffled in an order fixed by ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch, so a resumed run replays the order the
    uninterrupted run would have used. ``item_seeds=True`` yields ``(index, seed)`` pairs whose seed
    is fixed by ``(seed, epoch, index)`` for per-image random transforms. :meth:`skip_once` makes
    the next pass start further in (a run resumed in the middle of an epoch).
    """

    def __init__(self, n: int, seed: int = 0, *, shuffle: bool = True, item_seeds: bool = False) -> None:
        self.n, self.seed, self.shuffle, self.item_seeds = n, seed, shuffle, item_seeds
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_once(self, count: int) -> None:
        """The next pass leaves out the first ``count`` indices of its order; later passes are whole."""
        self._skip = count

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        if self.shuffle:
            generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=generator).tolist()
        else:
            order = list(range(self.n))
        order, self._skip = order[self._skip :], 0
        if not self.item_seeds:
            return iter(order)
        return ((i, derived_seed(self.seed, self.epoch, i)) for i in order)


class EpochBatches(BatchSampler):
    """A ``BatchSampler`` that passes ``set_epoch`` on to its :class:`EpochShuffle`."""

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)


def _epoch_batches(sampler) -> BatchSampler:
    """The batch sampler over an :class:`EpochShuffle` inside ``sampler``, through any wrappers
    that keep the wrapped batches in ``.batches`` (the data-parallel shards of
    :class:`routemix.train.distributed.GlobalBatchShards`)."""
    while not isinstance(sampler, BatchSampler) and hasattr(sampler, "batches"):
        sampler = sampler.batches
    if not (isinstance(sampler, BatchSampler) and isinstance(sampler.sampler, EpochShuffle)):
        raise TypeError(f"an EpochLoader needs batches of an EpochShuffle, not {type(sampler).__name__}")
    return sampler


class EpochLoader(DataLoader):
    """A ``DataLoader`` over an :class:`EpochShuffle` that resumes in the middle of an epoch.

    ``state_dict()`` is ``{"epoch", "batches"}``: the epoch being iterated and how many batches it
    has handed out. Lightning fetches nothing ahead from a loader of known length, so when a
    checkpoint is written after a training step, that count is the number of batches trained on.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._batches = _epoch_batches(self.batch_sampler if self.batch_sampler is not None else self.sampler)
        self._handed_out = 0
        self._resume_at = 0

    def __iter__(self):
        self._handed_out, self._resume_at = self._resume_at, 0
        for batch in self._indexed_batches() if self._in_process_batches() else super().__iter__():
            self._handed_out += 1
            yield batch

    def _in_process_batches(self) -> bool:
        """Whether this loader's batches are whole index lists of a map-style dataset, fetched in this
        process without pinning: then :meth:`_indexed_batches` gives what ``DataLoader``'s iterator would."""
        return (
            self.num_workers == 0
            and not self.pin_memory
            and self.batch_sampler is None
            and self._dataset_kind == _DatasetKind.Map
        )

    def _indexed_batches(self):
        """``DataLoader``'s single-process iteration without its iterator object: each batch of indices
        from the sampler, ``collate_fn(dataset[indices])`` as its fetcher does with ``batch_size=None``
        (for a ``TensorDataset``, the list of the tensors' rows at those indices)."""
        dataset, collate = self.dataset, self.collate_fn
        for indices in self.sampler:
            yield collate(dataset[indices])

    def state_dict(self) -> dict:
        return {"epoch": self._batches.sampler.epoch, "batches": self._handed_out}

    def load_state_dict(self, state: dict) -> None:
        """Continue epoch ``state["epoch"]`` after its first ``state["batches"]`` batches."""
        self._batches.sampler.set_epoch(state["epoch"])
        self._batches.sampler.skip_once(state["batches"] * self._batches.batch_size)
        self._resume_at = state["batches"]


def tensor_loader(*tensors: Tensor, batch_size: int, shuffle: bool, seed: int = 0) -> EpochLoader:
    """Whole batches indexed out of in-memory tensors at once (``batch_size=None`` hands the
    index list to ``TensorDataset``), shuffled by ``(seed, epoch)``. Training drops a last batch
    smaller than ``batch_size`` (batch norm cannot normalise a batch of one) unless the set is
    smaller than one batch."""
    drop_last = shuffle and len(tensors[0]) > batch_size
    batches = EpochBatches(EpochShuffle(len(tensors[0]), seed, shuffle=shuffle), batch_size, drop_last)
    return EpochLoader(
        TensorDataset(*tensors), sampler=batches, batch_size=None, generator=torch.Generator().manual_seed(seed)
    )
