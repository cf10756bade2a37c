"""``IICClustering``: Invariant Information Clustering as the thesis runs it (Table 4.3)."""

from __future__ import annotations

from numbers import Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from routemix.cluster.base import COMMON_CONSTRAINTS, DeepClusterer, thesis_network
from routemix.data.transforms import TABULAR_AUGMENTATIONS, tabular_augmentation
from routemix.train.iic import IICModule, predict_proba


class IICClustering(DeepClusterer):
    """Cluster by maximising the mutual information between the assignments of each sample and
    of its augmented copy (Ji et al., 2019; objective in :mod:`routemix.losses.iic`).

    "In our setting" of thesis Table 4.3: a single clustering head with ``n_clusters`` outputs
    (no over-clustering head), one augmented copy of every sample per batch (IIC's paper uses
    five), and the same network, input and augmentation as NMM-EM
    (:func:`~routemix.cluster.base.thesis_network`): the Table 4.2 CNN on Sobel edges for
    images, the Linear-BN-ReLU MLP with feature resampling for vector data. So a comparison with
    :class:`~routemix.cluster.NMMClustering` isolates the objective.

    Parameters
    ----------
    n_clusters : clusters K (output neurons).
    image_shape : (C, H, W) when rows of ``X`` are flattened images; ``None`` for vector data.
    max_iter : training epochs.
    batch_size : samples per step.
    learning_rate : Adam learning rate; ``None`` gives 1e-4 for images (IIC's) and 1e-3 for
        vectors (as NMM-EM's vector default).
    hidden_layer_sizes : widths of the MLP for vector data.
    augmentation, augmentation_strength : the vector-data augmentation (as in NMMClustering);
        resampling 30% of the features did best on digits (ACC over seeds 0-2: 0.69 at 0.2,
        0.77 at 0.3, 0.73 at 0.5; docs/RESULTS.md).
    random_state, device, verbose : as in NMMClustering.
    """

    _parameter_constraints: dict = {
        **COMMON_CONSTRAINTS,
        "learning_rate": [None, Interval(Real, 0, None, closed="neither")],
        "hidden_layer_sizes": ["array-like"],
        "augmentation": [StrOptions(set(TABULAR_AUGMENTATIONS) - {"none"})],
        "augmentation_strength": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        image_shape=None,
        max_iter: int = 200,
        batch_size: int = 128,
        learning_rate: float | None = None,
        hidden_layer_sizes=(256, 256),
        augmentation: str = "resample",
        augmentation_strength: float = 0.3,
        random_state=None,
        device: str = "cpu",
        verbose: bool = False,
    ) -> None:
        self.n_clusters = n_clusters
        self.image_shape = image_shape
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.hidden_layer_sizes = hidden_layer_sizes
        self.augmentation = augmentation
        self.augmentation_strength = augmentation_strength
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _build_module(self, n_features: int | None) -> IICModule:
        network, preprocess, augment = thesis_network(
            self.n_clusters,
            image_shape=self.image_shape,
            n_features=n_features,
            hidden_layer_sizes=self.hidden_layer_sizes,
        )
        if augment is None:
            augment = tabular_augmentation(self.augmentation, self.augmentation_strength, n_features)
        lr = self.learning_rate or (1e-4 if self.image_shape is not None else 1e-3)
        return IICModule(network, augment, preprocess=preprocess, lr=lr)

    def _empty_modules(self) -> dict:
        return {"module_": self._build_module(None if self.image_shape is not None else int(self.n_features_in_))}

    def _fit_data(self, data: torch.Tensor, seed: int) -> None:
        module = self._build_module(data.shape[1] if data.dim() == 2 else None)
        self.n_iter_ = self._train(module, data, seed=seed)
        self.module_ = module

    def _predict_proba_data(self, data: torch.Tensor) -> np.ndarray:
        return predict_proba(self.module_, data)
