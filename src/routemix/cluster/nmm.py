"""``NMMClustering``: NMM-EM clustering behind scikit-learn's estimator contract."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from routemix.cluster.base import COMMON_CONSTRAINTS, DeepClusterer, thesis_network
from routemix.cluster.config import DEFAULT_MAX_CLUSTERS
from routemix.data.transforms import TABULAR_AUGMENTATIONS, tabular_augmentation
from routemix.losses import NMMLoss
from routemix.losses.nmm import NORMALIZATIONS, check_drop_threshold
from routemix.train import clustering as training


class NMMClustering(DeepClusterer):
    """Cluster vectors or images with a neural mixture model trained by batch-wise EM.

    An MLP maps each (standardised) sample to ``n_clusters`` relevance scores; normalised over
    the batch they give cluster densities and posteriors, and every mini-batch is one EM
    iteration (thesis ch. 4; see :class:`routemix.losses.NMMLoss`). With ``two_fold=True`` each
    step is followed by the consistency step of Algorithm 3 on an augmented copy of the batch.

    The thesis defines its augmentation T for images only. For vector data ``"resample"`` replaces
    each feature, with probability ``augmentation_strength`` (default 0.2), by the same feature of
    another sample in the batch; ``"noise"`` adds Gaussian noise of that standard deviation
    (default 0.1). The default ``"auto"`` resamples data of 4 features or more and adds noise to
    fewer: on digits, resampling at 0.2 beat noise and dropout (docs/RESULTS.md), but resampling
    one of two coordinates throws a point anywhere in the plane (2-D moons: ACC 0.73 against 1.00
    with noise; :data:`routemix.data.transforms.RESAMPLE_MIN_FEATURES`).

    Images (rows of ``X`` flattened, ``image_shape=(C, H, W)``) get the thesis' image setting:
    the Table 4.2 CNN on the Sobel input with the augmentation T of sec. 4.4.3
    (:func:`~routemix.cluster.base.thesis_network`) and the thesis' learning rates. Clusters are
    numbered by decreasing size on the training data, so ``labels_`` are always ``0 .. m-1``
    even when some of the ``n_clusters`` output neurons win no sample.

    Parameters
    ----------
    n_clusters : number of clusters K (output neurons), or ``"auto"``: fit every K from 2 to
        ``max_clusters`` and keep the one :mod:`routemix.cluster.nclusters` chooses (the partition
        most modular on the samples' neighbour graph among those more modular than a Gaussian's;
        K = 1, every sample in one cluster, when none is; ``max_clusters - 1`` fits, so that many
        times the time of one).
    max_clusters : the largest K that ``n_clusters="auto"`` considers.
    image_shape : (C, H, W) when rows of ``X`` are flattened images; ``None`` for vector data.
    hidden_layer_sizes : widths of the MLP's hidden layers (Linear-BN-ReLU each), vector data.
    max_iter : training epochs; ``None``: the thesis' 200 for vector data, 250 for images.
    batch_size : samples per EM step (capped at the number of samples).
    gamma : temperature of eq. 4.12; 5 for batches of 128, scale it with batch size
        (:func:`routemix.losses.gamma_for_batch_size`).
    learning_rate : Adam learning rate of the EM step; ``None``: 1e-3 for vectors, 5e-5 for
        images (thesis).
    consistency_learning_rate : Adam learning rate of the consistency step; ``None``: 2e-3 for
        vectors, 1e-4 for images (thesis).
    two_fold : run the consistency step (Algorithm 3); ``False`` gives eq. 4.23 alone, or
        eq. 4.22 with ``augmentation="none"``.
    augmentation, augmentation_strength : see above (vector data; images use T).
    normalization : ``"batch"`` (default) or ``"running"`` statistics while training (NMMLoss);
        running statistics fell to ACC 0.44 on digits and on the 2-D study (docs/RESULTS.md).
    priors : estimate cluster priors from running posteriors, for uneven clusters.
    drop_threshold : with ``priors=True``, drop for good every cluster whose running share of
        won samples falls below this value (0 < drop_threshold < 1/n_clusters; see
        :class:`routemix.losses.NMMLoss`), so that ``n_clusters`` is an upper bound and
        ``n_clusters_found_`` an estimate of how many clusters the data holds.
        ``routemix bench nclusters`` uses ``0.8 / n_clusters``; docs/RESULTS.md ("How many
        clusters") shows where that over- and under-counts. ``None`` (default): never drop.
    n_init : independent fits; the one with the lowest final NMM-EM loss on the whole data is
        kept (no labels involved). On digits this pick did not beat a single fit (the loss
        correlates only weakly with accuracy; docs/RESULTS.md), so the default is 1.
    random_state : seed for the network's initialisation, batch order and augmentation.
    device : ``"cpu"`` (deterministic for a fixed ``random_state``), ``"cuda"`` or ``"auto"``.
    verbose : show a progress bar.

    Attributes
    ----------
    labels_, n_features_in_, cluster_order_ : see
        :class:`~routemix.cluster.base.DeepClusterer`.
    n_clusters_ : the number of output neurons of the kept fit: ``n_clusters``, or the chosen K.
    cluster_count_scores_ : with ``n_clusters="auto"``, the scores behind the choice
        (:meth:`routemix.cluster.nclusters.ClusterCountScores.as_dict`: each K's modularity, the
        null's, and the K chosen); ``None`` otherwise.
    n_clusters_found_ : clusters that win at least one training sample: with ``drop_threshold``
        the estimated number of clusters. A dropped cluster has probability 0 in
        ``predict_proba`` (its column comes after those of the used clusters) and is never predicted.
    n_clusters_alive_ : output neurons not dropped (``n_clusters`` without ``drop_threshold``); at
        least ``n_clusters_found_``, since an alive cluster may still win no sample.
    loss_ : final NMM-EM loss of the kept fit on the whole training data.
    n_iter_ : epochs run by the kept fit.
    module_ : the trained :class:`routemix.train.clustering.NMMModule`.
    """

    _parameter_constraints: dict = {
        **COMMON_CONSTRAINTS,
        "n_clusters": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "max_clusters": [Interval(Integral, 2, None, closed="left")],
        "max_iter": [None, Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like"],
        "gamma": [Interval(Real, 0, None, closed="neither")],
        "learning_rate": [None, Interval(Real, 0, None, closed="neither")],
        "consistency_learning_rate": [None, Interval(Real, 0, None, closed="neither")],
        "two_fold": ["boolean"],
        "augmentation": [StrOptions(set(TABULAR_AUGMENTATIONS))],
        "augmentation_strength": [None, Interval(Real, 0, None, closed="left")],
        "normalization": [StrOptions(set(NORMALIZATIONS))],
        "priors": ["boolean"],
        "drop_threshold": [None, Interval(Real, 0, 1, closed="neither")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_clusters: int | str = 8,
        *,
        max_clusters: int = DEFAULT_MAX_CLUSTERS,
        image_shape=None,
        hidden_layer_sizes=(256, 256),
        max_iter: int | None = None,
        batch_size: int = 128,
        gamma: float = 5.0,
        learning_rate: float | None = None,
        consistency_learning_rate: float | None = None,
        two_fold: bool = True,
        augmentation: str = "auto",
        augmentation_strength: float | None = None,
        normalization: str = "batch",
        priors: bool = False,
        drop_threshold: float | None = None,
        n_init: int = 1,
        random_state=None,
        device: str = "cpu",
        verbose: bool = False,
    ) -> None:
        self.n_clusters = n_clusters
        self.max_clusters = max_clusters
        self.image_shape = image_shape
        self.hidden_layer_sizes = hidden_layer_sizes
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.gamma = gamma
        self.learning_rate = learning_rate
        self.consistency_learning_rate = consistency_learning_rate
        self.two_fold = two_fold
        self.augmentation = augmentation
        self.augmentation_strength = augmentation_strength
        self.normalization = normalization
        self.priors = priors
        self.drop_threshold = drop_threshold
        self.n_init = n_init
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _epochs(self) -> int:
        """``max_iter``, or the thesis' epochs: 200 for vector data, 250 for images."""
        return self.max_iter if self.max_iter is not None else (250 if self.image_shape is not None else 200)

    def _build_module(self, n_features: int | None, n_clusters: int) -> training.NMMModule:
        """The NMM-EM clustering of ``n_clusters`` as the thesis assembles it: network, loss,
        optimisation settings. The one place that does, for this estimator, ``routemix cluster``
        and the saved format."""
        image = self.image_shape is not None
        network, preprocess, augment = thesis_network(
            n_clusters,
            image_shape=self.image_shape,
            n_features=n_features,
            hidden_layer_sizes=self.hidden_layer_sizes,
        )
        if not image:
            augment = tabular_augmentation(self.augmentation, self.augmentation_strength, n_features)
        loss = NMMLoss(
            n_clusters,
            self.gamma,
            normalization=self.normalization,
            priors=self.priors,
            drop_threshold=self.drop_threshold,
        )
        return training.NMMModule(
            network,
            loss,
            em_lr=self.learning_rate or (5e-5 if image else 1e-3),
            consistency_lr=self.consistency_learning_rate or (1e-4 if image else 2e-3),
            two_fold=self.two_fold and augment is not None,
            augment=augment,
            preprocess=preprocess,
        )

    def _empty_modules(self) -> dict:
        n_features = None if self.image_shape is not None else int(self.n_features_in_)
        # models saved before n_clusters="auto" have no n_clusters_: theirs is the parameter
        return {"module_": self._build_module(n_features, int(getattr(self, "n_clusters_", self.n_clusters)))}

    def fit(self, X, y=None, *, run: training.TrainingRun | None = None):
        """Fit NMM-EM to ``X``. ``run`` (a :class:`routemix.train.clustering.TrainingRun`) trains
        in a run directory, with learning curves, checkpoints, ``resume`` and data-parallel
        processes, as ``routemix cluster`` does on images; only then is ``y`` used, and only to
        log ACC/NMI on the training data after every epoch (never for training)."""
        labels = None
        if run is not None and y is not None:
            labels = np.asarray(y)
            if len(labels) != len(X):
                raise ValueError(f"y has {len(labels)} labels for {len(X)} samples.")
        return super().fit(X, run=run, labels=labels)

    def _fit_data(self, data: torch.Tensor, seed: int, run: training.TrainingRun | None = None, labels=None) -> None:
        if self.two_fold and self.augmentation == "none" and self.image_shape is None:
            raise ValueError("two_fold=True needs an augmentation: set augmentation or two_fold=False.")
        if run is not None and self.n_init > 1:
            raise ValueError("a training run (run=) keeps one fit's checkpoints: use n_init=1 with it.")
        auto = self.n_clusters == "auto"
        if auto and self.drop_threshold is not None:
            raise ValueError(
                "n_clusters='auto' chooses K from fits of every K, drop_threshold from one fit: use one of them."
            )
        if auto and run is not None:
            raise ValueError("a training run (run=) keeps one fit's checkpoints: give n_clusters as a number with it.")
        n_features = data.shape[1] if self.image_shape is None else None
        if auto:
            fits = self._fit_counts(data, seed, n_features)
            self.n_clusters_ = self.cluster_count_scores_["chosen"]
        else:
            check_drop_threshold(self.drop_threshold, self.n_clusters, self.priors)
            run_options = run.fit_options() if run is not None else {}
            if labels is not None:
                run_options["val_loader"] = training.make_loader(data, labels, batch_size=1024, shuffle=False)
            fits = {self.n_clusters: self._fit_count(self.n_clusters, data, seed, n_features, run_options)}
            self.n_clusters_, self.cluster_count_scores_ = self.n_clusters, None
        self.loss_, self.module_, self.n_iter_ = fits[self.n_clusters_]
        self.n_clusters_alive_ = int(self.module_.loss.num_alive())

    def _fit_count(self, n_clusters: int, data, seed: int, n_features, run_options: dict) -> tuple:
        """``(loss, module, epochs)`` of the best of ``n_init`` fits with ``n_clusters`` clusters
        (lowest NMM-EM loss on the whole data)."""
        best = None
        for init_seed in self._restart_seeds(seed):  # the fit with the lowest loss is kept
            torch.manual_seed(init_seed)
            module = self._build_module(n_features, n_clusters)
            epochs_run = self._train(module, data, seed=init_seed, epochs=self._epochs(), **run_options)
            loss = training.evaluate_loss(module, data)
            if best is None or loss < best[0]:
                best = (loss, module, epochs_run)
        return best

    def _fit_counts(self, data, seed: int, n_features) -> dict:
        """``n_clusters="auto"``: a fit for every K from 2 to ``max_clusters``, each scored by
        :func:`routemix.cluster.nclusters.score_partitions` (K = 1: all in one cluster); the scores
        go to ``cluster_count_scores_``, and a one-cluster fit is made only if 1 is chosen."""
        from routemix.cluster.nclusters import score_partitions

        if len(data) <= self.max_clusters:
            raise ValueError(
                f"n_clusters='auto' needs more samples than max_clusters={self.max_clusters}, got {len(data)}: "
                "pass more samples or lower max_clusters."
            )
        from tqdm.auto import tqdm

        fits, partitions = {}, {1: np.zeros(len(data), dtype=int)}
        # one bar over the K (on stderr, as the epoch bars), not fourteen unlabelled epoch bars
        counts = tqdm(range(2, self.max_clusters + 1), desc="fits for each K", disable=not self.verbose)
        for n_clusters in counts:
            counts.set_postfix_str(f"K={n_clusters}")
            fits[n_clusters] = self._fit_count(n_clusters, data, seed, n_features, {"progress": False})
            partitions[n_clusters] = training.predict_proba(fits[n_clusters][1], data).argmax(axis=1)
        points = data.reshape(len(data), -1).numpy()
        self.cluster_count_scores_ = score_partitions(points, partitions, random_state=seed).as_dict()
        if self.cluster_count_scores_["chosen"] == 1:
            fits[1] = self._fit_count(1, data, seed, n_features, {"progress": False})
        return fits

    def _predict_proba_data(self, data: torch.Tensor) -> np.ndarray:
        """Posterior of every cluster (eq. 4.20) under the running statistics."""
        return training.predict_proba(self.module_, data)
