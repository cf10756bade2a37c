"""``routemix predict RUN_DIR INPUT``: the clusters a fitted run gives new data.

The run is read through :func:`routemix.cluster.saved.load_clusterer` (its ``model.pt``); the
input is anything ``routemix cluster`` takes: a registered dataset, a ``.csv`` / ``.npy`` file or
a folder of images, which is resized to the run's image side. Output is ``labels.csv``'s format
(:func:`routemix.cluster.job.labels_csv`), so predicting a run's own data gives its labels.csv.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from routemix.cluster.job import estimator_rows, labels_csv, report_skipped
from routemix.cluster.saved import load_clusterer
from routemix.data import LoadedDataset, load_dataset
from routemix.data.registry import is_image_folder
from routemix.errors import RoutemixError
from routemix.threads import torch_threads

# ITU-R BT.601 luma: colour images given to a run on grey ones
_LUMA = torch.tensor([0.299, 0.587, 0.114])


@dataclass
class Prediction:
    dataset: LoadedDataset
    labels: np.ndarray
    csv: str  # labels.csv's format


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) with ``channels`` channels: grey copied to RGB, RGB to grey by luma."""
    if images.shape[1] == channels:
        return images
    if images.shape[1] == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if images.shape[1] == 3 and channels == 1:
        grey = (images.float() * _LUMA.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        return grey.round().clamp(0, 255).to(torch.uint8)
    raise RoutemixError(f"the run takes images of {channels} channels; these have {images.shape[1]}.")


def _model_rows(estimator, dataset: LoadedDataset, source: str) -> np.ndarray:
    """``dataset`` as the rows the run's estimator was fitted on (:func:`routemix.cluster.job.estimator_rows`)."""
    if estimator.image_shape is not None:
        channels, height, width = estimator.image_shape
        if dataset.kind != "image":
            raise RoutemixError(f"the run clustered images of {channels}x{height}x{width}; {source} is vector data.")
        if tuple(dataset.data.shape[2:]) != (height, width):
            raise RoutemixError(
                f"the run clustered {height}x{width} images; {source} holds {tuple(dataset.data.shape[2:])[0]}x"
                f"{tuple(dataset.data.shape[2:])[1]} ones (a folder of images is resized to the run's side itself)."
            )
        return estimator_rows(match_channels(dataset.data, channels))
    if dataset.kind == "image":
        raise RoutemixError(f"the run clustered vectors of {estimator.n_features_in_} features; {source} holds images.")
    rows = estimator_rows(dataset.data)
    if rows.shape[1] != estimator.n_features_in_:
        raise RoutemixError(
            f"the run clustered vectors of {estimator.n_features_in_} features; {source} has {rows.shape[1]}."
        )
    return rows


def predict_run(
    run: str | os.PathLike,
    source: str,
    *,
    data_dir: str | None = None,
    split: str = "all",
    label_column: str | None = None,
) -> Prediction:
    """The cluster of every sample of ``source`` under the run saved in ``run`` (a run directory or its model.pt)."""
    saved = load_clusterer(run)
    estimator = saved.estimator
    image_size = None
    if is_image_folder(source):
        if estimator.image_shape is None:
            raise RoutemixError(
                f"the run clustered vectors of {estimator.n_features_in_} features; {source} is a folder of images."
            )
        image_size = int(estimator.image_shape[1])
    dataset = load_dataset(source, data_dir=data_dir, split=split, label_column=label_column, image_size=image_size)
    report_skipped(dataset)
    if len(dataset) == 0:
        raise RoutemixError(f"{source} holds no samples.")
    rows = _model_rows(estimator, dataset, source)
    threads = 1 if estimator.image_shape is None and "OMP_NUM_THREADS" not in os.environ else torch.get_num_threads()
    with torch_threads(threads):
        labels = estimator.predict(rows)
    return Prediction(dataset, labels, labels_csv(dataset, labels))
