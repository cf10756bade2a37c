"""LearningCurve: points from every fit started inside it, scoring time excluded, a file that
survives the run."""

import json
import time

import lightning as L
import numpy as np
import pytest
import torch

from routemix.train.clustering import fit, make_loader
from routemix.train.curves import LearningCurve


class Toy(L.LightningModule):
    """A one-weight module whose labels are ``x > threshold``; scoring it takes ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.delay = delay

    def training_step(self, batch, batch_idx):
        return (self.weight - 1.0).square()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def cluster_labels(self, data: torch.Tensor) -> np.ndarray:
        time.sleep(self.delay)
        return (data[:, 0] > 0).long().numpy()


class Unlabelled(Toy):
    cluster_labels = None


DATA = torch.tensor([[-1.0], [-2.0], [1.0], [2.0]])
LABELS = np.array([0, 0, 1, 1])


def test_every_fit_inside_is_scored_and_written(tmp_path):
    path = tmp_path / "curve.jsonl"
    with LearningCurve(LABELS, every_n_epochs=2, path=path) as curve:
        fit(
            Toy(),
            make_loader(DATA, batch_size=2, shuffle=True, seed=0),
            max_epochs=5,
            progress=False,
            accelerator="cpu",
        )
        fit(
            Unlabelled(),
            make_loader(DATA, batch_size=2, shuffle=True, seed=0),
            max_epochs=1,
            progress=False,
            accelerator="cpu",
        )
    # epochs 2, 4 and the last (5) of the first fit; the second fit's only epoch, without scores
    assert [(p["stage"], p["epoch"]) for p in curve.points] == [("Toy", 2), ("Toy", 4), ("Toy", 5), ("Unlabelled", 1)]
    assert all(p["acc"] == 1.0 for p in curve.points[:3]) and "acc" not in curve.points[3]
    assert [json.loads(line) for line in path.read_text().splitlines()] == curve.points
    # outside the with-block, fits are not recorded
    fit(Toy(), make_loader(DATA, batch_size=2, shuffle=True, seed=0), max_epochs=1, progress=False, accelerator="cpu")
    assert len(curve.points) == 4


def test_scoring_time_is_not_training_time():
    start = time.perf_counter()
    with LearningCurve(LABELS) as curve:
        fit(
            Toy(delay=0.3),
            make_loader(DATA, batch_size=2, shuffle=True, seed=0),
            max_epochs=3,
            progress=False,
            accelerator="cpu",
        )
    wall = time.perf_counter() - start
    assert wall - curve.points[-1]["seconds"] >= 0.9  # the three scorings' 0.9 s are not counted


def test_every_n_epochs_must_be_positive():
    with pytest.raises(ValueError, match="every_n_epochs"):
        LearningCurve(LABELS, every_n_epochs=0)


def test_a_stage_outside_lightning_adds_a_scored_point(tmp_path):
    """record_stage scores given labels on the active curve (and its file); without one it does nothing."""
    from routemix.train.curves import record_stage

    labels = np.array([0, 0, 1, 1])
    record_stage("shallow", 3, labels)  # no active curve: nothing to do, nothing raised
    with LearningCurve(labels, path=tmp_path / "curve.jsonl") as curve:
        record_stage("shallow", 3, np.array([1, 1, 0, 0]))
        with pytest.raises(ValueError, match="all 4 training samples"):
            curve.record_labels("shallow", 3, np.array([0, 1]))
    assert len(curve.points) == 1 and curve.points[0]["stage"] == "shallow" and curve.points[0]["acc"] == 1.0
    assert json.loads((tmp_path / "curve.jsonl").read_text())["epoch"] == 3
