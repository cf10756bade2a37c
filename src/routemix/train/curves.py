"""Learning curves of clustering methods: accuracy against training seconds, recorded while they train.

A clustering method is judged by what it reaches in a given time, and the estimators hide their
training loops (several stages, several Lightning fits). :class:`LearningCurve` records from
outside: inside ``with LearningCurve(labels) as curve: estimator.fit(X)`` every Lightning fit
the estimator starts (through :func:`routemix.train.common.make_trainer`) gets a callback that,
every ``every_n_epochs`` epochs, asks the module for its current cluster labels of the whole
training set and scores them against ``labels``::

    {"stage": "EDGaMModule", "epoch": 3, "seconds": 41.2, "acc": ..., "nmi": ..., "ari": ...}

``seconds`` is training time since the curve started, evaluation excluded, so a curve is the
method's own time to accuracy. A module that cannot label data yet (a VAE before any clustering
exists) gets points without scores, which still say when its stage ran. With ``path``, each point
is appended to a JSON-lines file as it is made and flushed, so a killed run keeps its curve.

A module takes part by having ``cluster_labels(data) -> np.ndarray``: its labels of ``data``
(the training tensor, in the module's input format) in its current state. A stage that is not a
Lightning fit (N2D's UMAP and Gaussian mixture after its auto-encoder) reports its labels with
:func:`record_stage`, so that the curve ends at the method's own result.
"""

from __future__ import annotations

import contextvars
import json
import os
import time
from pathlib import Path

import lightning as L
import numpy as np

_ACTIVE: contextvars.ContextVar["LearningCurve | None"] = contextvars.ContextVar(
    "routemix_learning_curve", default=None
)


def record_stage(stage: str, epoch: int, labels) -> None:
    """Score ``labels`` (of the whole training set) as a point of the active curve, if there is one:
    for a stage that runs outside Lightning, its seconds counted as training time."""
    curve = _ACTIVE.get()
    if curve is not None:
        curve.record_labels(stage, epoch, labels)


def active_callbacks() -> list[L.Callback]:
    """Callbacks a trainer made now should carry: the active curve's, or none."""
    curve = _ACTIVE.get()
    return [] if curve is None else [_CurveCallback(curve)]


class LearningCurve:
    """Records ACC/NMI/ARI against training seconds for every fit started inside ``with``.

    Args:
        labels: the true labels of the training set, in the order the estimator gets it.
        every_n_epochs: score every this many epochs of each stage (its last epoch always).
        path: JSON-lines file the points are appended to as they are made (optional).
    """

    def __init__(self, labels, *, every_n_epochs: int = 1, path: str | os.PathLike | None = None) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be at least 1, got {every_n_epochs}.")
        self.labels = np.asarray(labels).ravel()
        self.every_n_epochs = int(every_n_epochs)
        self.path = Path(path) if path is not None else None
        self.points: list[dict] = []
        self._excluded = 0.0  # seconds spent scoring, not training
        self._start: float | None = None
        self._token = None

    def __enter__(self) -> "LearningCurve":
        self._start = time.perf_counter()
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._token)

    def seconds(self) -> float:
        """Training seconds since the curve started (scoring excluded)."""
        return time.perf_counter() - self._start - self._excluded

    def record(self, stage: str, epoch: int, module, data) -> dict:
        """Score ``module``'s labels of ``data`` (when it has them) and keep the point."""
        labeller = getattr(module, "cluster_labels", None)
        usable = labeller is not None and data is not None and len(data) == len(self.labels)
        return self._add(stage, epoch, (lambda: labeller(data)) if usable else None)

    def record_labels(self, stage: str, epoch: int, labels) -> dict:
        """Score ``labels`` of the whole training set and keep the point."""
        if len(labels) != len(self.labels):
            raise ValueError(f"the curve scores all {len(self.labels)} training samples, got {len(labels)} labels.")
        return self._add(stage, epoch, lambda: labels)

    def _add(self, stage: str, epoch: int, labels) -> dict:
        """A point at the training seconds so far, scored when ``labels`` (a callable giving them) is
        not ``None``; written to ``path`` if there is one. Its own time is not training time."""
        seconds = self.seconds()
        began = time.perf_counter()
        point: dict = {"stage": stage, "epoch": int(epoch), "seconds": round(seconds, 3)}
        if labels is not None:
            from routemix.metrics import clustering_scores

            point.update(clustering_scores(self.labels, np.asarray(labels())))
        self.points.append(point)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(point) + "\n")
        self._excluded += time.perf_counter() - began
        return point


class _CurveCallback(L.Callback):
    """Scores the module at the end of every ``every_n_epochs``-th epoch and of its last one."""

    def __init__(self, curve: LearningCurve) -> None:
        self.curve = curve

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        if epoch % self.curve.every_n_epochs and not last:
            return
        tensors = getattr(getattr(trainer.train_dataloader, "dataset", None), "tensors", None)
        data = tensors[0] if tensors else None
        self.curve.record(type(pl_module).__name__, epoch, pl_module, data)
