"""Small data without the per-epoch machinery: an in-memory EpochLoader hands out its batches
without building a DataLoader iterator each epoch, and they are exactly the batches that iterator
would give (same order, same values, same mid-epoch resume), so fits keep their results."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.dataloader import _SingleProcessDataLoaderIter

from routemix.data.loaders import EpochBatches, EpochLoader, EpochShuffle, tensor_loader
from routemix.train.distributed import shard_batches


def dataloader_batches(loader: EpochLoader, epoch: int) -> list:
    """The batches of ``epoch`` as torch's own DataLoader iterator gives them."""
    loader._batches.sampler.set_epoch(epoch)
    return list(DataLoader.__iter__(loader))


def loader_batches(loader: EpochLoader, epoch: int) -> list:
    loader._batches.sampler.set_epoch(epoch)
    return list(loader)


def assert_same_batches(first: list, second: list) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert x.dtype == y.dtype and torch.equal(x, y)


@pytest.mark.parametrize(
    "n, batch_size, shuffle", [(150, 128, True), (1797, 128, True), (100, 128, True), (37, 8, False), (64, 16, True)]
)
def test_in_process_batches_are_the_dataloaders(n, batch_size, shuffle):
    data = torch.randn(n, 5)
    labels = torch.arange(n)
    loader = tensor_loader(data, labels, batch_size=batch_size, shuffle=shuffle, seed=3)
    assert loader._in_process_batches()
    for epoch in (0, 1, 7):
        assert_same_batches(loader_batches(loader, epoch), dataloader_batches(loader, epoch))
    assert len(loader) == len(loader_batches(loader, 0))


def test_iterating_builds_no_dataloader_iterator(monkeypatch):
    built = []
    original = _SingleProcessDataLoaderIter.__init__
    monkeypatch.setattr(
        _SingleProcessDataLoaderIter, "__init__", lambda self, loader: (built.append(loader), original(self, loader))[1]
    )
    loader = tensor_loader(torch.randn(150, 4), batch_size=128, shuffle=True)
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        assert [len(x) for (x,) in loader] == [128]
    assert built == []


def test_loaders_that_need_the_dataloader_keep_it():
    data = TensorDataset(torch.randn(20, 3))
    batches = EpochBatches(EpochShuffle(20, 0), 4, False)
    assert not EpochLoader(data, batch_sampler=batches)._in_process_batches()  # items collated by the DataLoader
    assert not EpochLoader(data, sampler=batches, batch_size=None, num_workers=1)._in_process_batches()
    assert EpochLoader(data, sampler=batches, batch_size=None)._in_process_batches()


def test_mid_epoch_resume_gives_the_rest_of_the_epoch():
    data = torch.randn(100, 3)
    straight = tensor_loader(data, batch_size=16, shuffle=True, seed=5)
    straight.sampler.set_epoch(2)
    whole = []
    for batch in straight:
        whole.append(batch)
        if len(whole) == 2:
            state = straight.state_dict()
    assert state == {"epoch": 2, "batches": 2}
    resumed = tensor_loader(data, batch_size=16, shuffle=True, seed=5)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert_same_batches(rest, whole[2:])
    assert resumed.state_dict() == {"epoch": 2, "batches": len(whole)}
    assert_same_batches(list(resumed), whole)  # the next pass is whole again


def test_sharded_batches_of_one_process_are_the_loaders():
    loader = tensor_loader(torch.randn(70, 3), torch.arange(70), batch_size=16, shuffle=True, seed=1)
    sharded = shard_batches(loader)
    assert isinstance(sharded, EpochLoader) and sharded._in_process_batches()
    for epoch in (0, 4):
        sharded.sampler.set_epoch(epoch)
        assert_same_batches(list(sharded), loader_batches(loader, epoch))


def test_nmm_fit_is_the_same_with_the_dataloaders_iterator(monkeypatch):
    """A seeded fit gives bit-identical labels, loss and weights whether the batches come from
    the in-process path or from torch's DataLoader iterator."""
    from sklearn.datasets import load_iris

    from routemix.cluster import NMMClustering

    X = load_iris().data
    fast = NMMClustering(3, max_iter=15, random_state=0).fit(X)
    monkeypatch.setattr(EpochLoader, "_in_process_batches", lambda self: False)
    slow = NMMClustering(3, max_iter=15, random_state=0).fit(X)
    np.testing.assert_array_equal(fast.labels_, slow.labels_)
    assert fast.loss_ == slow.loss_
    for key, value in slow.module_.state_dict().items():
        assert torch.equal(fast.module_.state_dict()[key], value), key


def test_progress_bar_redraws_at_most_every_interval_and_shows_the_end():
    import io

    from tqdm import tqdm

    from routemix.train.common import throttled_redraws

    def epochs(interval: float) -> str:
        out = io.StringIO()
        bar = throttled_redraws(tqdm(total=1, file=out, leave=True, mininterval=0), interval)
        for epoch in range(300):  # as Lightning drives its bar: reset, describe, count, postfix
            bar.reset()
            bar.set_description(f"Epoch {epoch}")
            bar.n = 1
            bar.refresh()
            bar.set_postfix({"loss": epoch})
        bar.close()
        return out.getvalue()

    every, throttled = epochs(0.0), epochs(60.0)
    assert every.count("Epoch") >= 4 * 300
    assert throttled.count("Epoch") <= 3  # the first draw and the final state
    assert "Epoch 299: 100%" in throttled.split("\r")[-1] and "loss=299" in throttled.split("\r")[-1]
