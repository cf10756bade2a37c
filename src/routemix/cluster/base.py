"""What every neural clustering estimator shares, so each method writes only its own model.

:class:`DeepClusterer` does the scikit-learn side once: parameter and input validation, input
scaling, seeding, numbering clusters by size, ``predict`` / ``predict_proba`` / ``labels_``. A
method subclasses it and implements two hooks:

* ``_fit_data(data, seed)`` trains on a float32 tensor, ``(N, D)`` for vector data or
  ``(N, C, H, W)`` for images, and stores its fitted state in attributes ending in ``_``,
  ``n_iter_`` (epochs run) among them. It returns ``None``, or the training data's cluster
  probabilities when those are not what ``_predict_proba_data`` would give for the same data
  (N2D clusters UMAP's embedding of the training set, which placing the same points anew only
  approximates);
* ``_predict_proba_data(data)`` returns cluster probabilities ``(N, n_clusters)`` as a numpy array
  (one-hot rows for a method that only gives hard assignments).

**Images through the estimator API.** scikit-learn estimators take 2-D arrays, so images come
as flattened rows together with ``image_shape=(C, H, W)``; the estimator reshapes them and uses
its image network. Pixel values are rescaled to [0, 1] with the minimum and maximum of the
training data (so uint8 0-255 and float 0-1 images give the same result). Vector data is
standardised per feature (``StandardScaler``), as for :class:`~routemix.cluster.NMMClustering`,
unless a method scales to [0, 1] per feature instead (``MinMaxScaler``, by overriding
``_vector_scaler``). :func:`scaler_offset_and_scale` writes either as ``(x - offset) / scale``.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

# The parameters every deep clusterer takes; subclasses add their own to this dict.
COMMON_CONSTRAINTS: dict = {
    "n_clusters": [Interval(Integral, 1, None, closed="left")],
    "image_shape": [None, tuple, list],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "batch_size": [Interval(Integral, 2, None, closed="left")],
    "random_state": ["random_state"],
    "device": [StrOptions({"cpu", "cuda", "auto"})],
    "verbose": ["verbose"],
}


def scaler_offset_and_scale(scaler) -> tuple[np.ndarray, np.ndarray]:
    """``(offset, scale)`` with ``scaler.transform(x) == (x - offset) / scale`` for a fitted
    ``StandardScaler`` or ``MinMaxScaler`` (range (0, 1))."""
    if isinstance(scaler, MinMaxScaler):
        return scaler.data_min_, 1.0 / scaler.scale_
    return scaler.mean_, scaler.scale_


def check_image_shape(image_shape, n_features: int) -> tuple[int, int, int]:
    """``image_shape`` as a (C, H, W) tuple of positive ints whose product is ``n_features``."""
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(s, Integral) and s > 0 for s in shape):
        raise ValueError(f"image_shape must be (channels, height, width) of positive ints, got {image_shape!r}.")
    if int(np.prod(shape)) != n_features:
        raise ValueError(
            f"image_shape={shape} holds {int(np.prod(shape))} values per image but X has {n_features} "
            "features: pass images flattened to rows of C*H*W values."
        )
    return tuple(int(s) for s in shape)


def hidden_widths(hidden_layer_sizes) -> tuple[int, ...]:
    """An estimator's ``hidden_layer_sizes`` as a tuple of ints, refused unless all are positive."""
    hidden = tuple(int(h) for h in np.ravel(hidden_layer_sizes))
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden_layer_sizes must be positive widths, got {hidden_layer_sizes!r}.")
    return hidden


class DeepClusterer(ClusterMixin, BaseEstimator):
    """Base class of the neural clustering estimators (see the module docstring).

    Attributes set by ``fit`` for every subclass: ``labels_`` (cluster of each training
    sample, numbered by decreasing cluster size on the training data, so always ``0 .. m-1``),
    ``n_features_in_``, ``n_clusters_found_`` (clusters that won at least one training sample)
    and ``cluster_order_`` (the permutation from the model's output units to those numbers).
    """

    _parameter_constraints: dict = COMMON_CONSTRAINTS

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = getattr(self, "device", "cpu") != "cpu"
        return tags

    # --- hooks -------------------------------------------------------------------------------

    def _fit_data(self, data: torch.Tensor, seed: int) -> np.ndarray | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict_proba_data(self, data: torch.Tensor) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- training: one loop and one way to restart for every method ---------------------------

    def _train(
        self,
        module,
        data: torch.Tensor,
        *,
        seed: int,
        epochs: int | None = None,
        progress: bool | None = None,
        **fit_options,
    ) -> int:
        """Train the Lightning ``module`` on ``data`` for ``epochs`` (default ``max_iter``) epochs of
        batches of ``batch_size`` (capped at the number of samples) shuffled by ``(seed, epoch)``, on
        ``device``, with a progress bar when ``progress`` (default: ``verbose``):
        :func:`routemix.train.clustering.fit`.
        ``fit_options`` go to it (a run directory, resume, processes). Returns the epochs run;
        ``module`` ends on the CPU in eval mode."""
        from routemix.train import clustering as training
        from routemix.train.common import accelerator_for

        loader = training.make_loader(data, batch_size=min(self.batch_size, len(data)), shuffle=True, seed=seed)
        trainer = training.fit(
            module,
            loader,
            max_epochs=epochs or self.max_iter,
            progress=bool(self.verbose if progress is None else progress),
            accelerator=accelerator_for(self.device),
            **fit_options,
        )
        module.cpu().eval()
        return int(trainer.current_epoch)

    def _restart_seeds(self, seed: int) -> list[int]:
        """One seed per restart (``n_init`` of them, the first ``seed`` itself): each restart is a
        fit from a fresh initialisation and batch order; the method decides what it keeps."""
        rng = np.random.RandomState(seed)
        return [seed] + [int(s) for s in rng.randint(np.iinfo(np.int32).max, size=self.n_init - 1)]

    # --- saving and loading (routemix.cluster.saved) -------------------------------------------

    # fitted attributes holding trained networks (a module, or a list of modules), saved as state dicts
    _module_attributes: tuple[str, ...] = ("module_",)
    # fitted attributes that _after_load rebuilds from the others, so not saved
    _derived_attributes: tuple[str, ...] = ()
    # private fitted attributes that predictions need, saved with the public ones
    _saved_private: tuple[str, ...] = ()
    # why this method cannot be saved, if it cannot
    _not_storable: str | None = None

    def _empty_modules(self) -> dict:  # pragma: no cover - abstract
        """Untrained networks of the fitted shapes, one per name of ``_module_attributes``, for
        loading saved weights into; built from the parameters and the other fitted attributes."""
        raise NotImplementedError

    def _after_load(self) -> None:
        """Rebuild ``_derived_attributes`` once the networks are loaded."""

    def _input_shape(self) -> tuple[int, ...]:
        """Shape of one sample as the networks take it: ``image_shape``, or ``(n_features,)``."""
        return tuple(self.image_shape) if self.image_shape is not None else (int(self.n_features_in_),)

    def save(self, path) -> None:
        """Write the fitted estimator to ``path`` in routemix's clustering format
        (:mod:`routemix.cluster.saved`); read it back with :meth:`load`."""
        from routemix.cluster.saved import save_clusterer

        save_clusterer(self, path)

    @classmethod
    def load(cls, path):
        """The fitted estimator saved at ``path`` (by :meth:`save`, or ``routemix cluster``'s ``model.pt``)."""
        from routemix.cluster.saved import load_clusterer

        estimator = load_clusterer(path).estimator
        if cls is not DeepClusterer and not isinstance(estimator, cls):
            raise TypeError(f"{path} holds a {type(estimator).__name__}, not a {cls.__name__}.")
        return estimator

    # --- shared plumbing ---------------------------------------------------------------------

    def _validate_input(self, X, *, reset: bool) -> np.ndarray:
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2 if reset else 1, reset=reset)
        if reset:
            if isinstance(self.n_clusters, Integral) and X.shape[0] < self.n_clusters:
                raise ValueError(
                    f"n_samples={X.shape[0]} should be >= n_clusters={self.n_clusters}: "
                    "pass more samples or ask for fewer clusters."
                )
            if self.image_shape is not None:
                check_image_shape(self.image_shape, X.shape[1])
        return X

    def _vector_scaler(self):
        """The (unfitted) scaler of vector data: per-feature standardisation."""
        return StandardScaler()

    def _fit_scaling(self, X: np.ndarray) -> None:
        if self.image_shape is not None:
            low, high = float(X.min()), float(X.max())
            self.pixel_range_ = (low, high if high > low else low + 1.0)
        else:
            self.scaler_ = self._vector_scaler().fit(X)

    def _to_tensor(self, X: np.ndarray) -> torch.Tensor:
        """Scaled float32 tensor: (N, D) for vectors, (N, C, H, W) in [0, 1] for images."""
        if self.image_shape is not None:
            low, high = self.pixel_range_
            data = torch.as_tensor(np.asarray(X, dtype=np.float32)).sub(low).div_(high - low)
            return data.reshape(-1, *check_image_shape(self.image_shape, X.shape[1]))
        return torch.as_tensor(self.scaler_.transform(X), dtype=torch.float32)

    def scaled_input(self, X) -> np.ndarray:
        """``X`` as the fitted estimator's network sees it, as rows (n_samples, n_features):
        standardised vectors, images scaled to [0, 1]. The input a baseline compared with this
        method should see."""
        check_is_fitted(self)
        X = self._validate_input(X, reset=False)
        return self._to_tensor(X).reshape(len(X), -1).numpy()

    def fit(self, X, y=None, **fit_params):
        """Fit the clustering to ``X`` (n_samples, n_features); ``y`` is ignored. ``fit_params``
        go to the method's ``_fit_data`` (only NMM-EM takes any: its training run)."""
        self._validate_params()
        X = self._validate_input(X, reset=True)
        self._fit_scaling(X)
        data = self._to_tensor(X)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            proba = self._fit_data(data, seed, **fit_params)
        if proba is None:
            proba = self._predict_proba_data(data)
        sizes = np.bincount(proba.argmax(axis=1), minlength=proba.shape[1])
        self.cluster_order_ = np.argsort(-sizes, kind="stable")
        self.n_clusters_found_ = int((sizes > 0).sum())
        self.labels_ = proba[:, self.cluster_order_].argmax(axis=1)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Probability of every cluster for each sample, shape (n_samples, n_clusters)."""
        check_is_fitted(self)
        X = self._validate_input(X, reset=False)
        return self._predict_proba_data(self._to_tensor(X))[:, self.cluster_order_]

    def predict(self, X) -> np.ndarray:
        """Most probable cluster of each sample."""
        return self.predict_proba(X).argmax(axis=1)


def thesis_network(n_clusters: int, *, image_shape=None, n_features: int | None = None, hidden_layer_sizes=(256, 256)):
    """The NMM-EM network and input of the thesis, shared by every method that uses them.

    Returns ``(network, preprocess, augmentation)``: for images (``image_shape=(C, H, W)``) the
    Table 4.2 CNN for that side on the 2-plane Sobel input (sec. 4.5.2) with the augmentation T
    of sec. 4.4.3; for vectors the Linear-BN-ReLU MLP on the input as it is, with no
    augmentation (the caller picks a tabular one).
    """
    from torch import nn

    from routemix.data.transforms import SobelInput, image_augmentation
    from routemix.models.clusternets import clustering_network

    if image_shape is None:
        return (
            clustering_network(n_clusters, n_features=n_features, hidden_sizes=hidden_layer_sizes),
            nn.Identity(),
            None,
        )
    channels, height, width = image_shape
    if height != width:
        raise ValueError(f"the thesis networks take square images; got image_shape={tuple(image_shape)}.")
    return (
        clustering_network(n_clusters, image_side=height),
        SobelInput(),
        image_augmentation(channels, (height, width)),
    )
