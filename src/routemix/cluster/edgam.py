"""``EDGaMClustering``: EDGaM (an auto-encoder with an unfolded Gaussian mixture) behind scikit-learn's contract."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils._param_validation import Interval, StrOptions

from routemix.cluster.base import COMMON_CONSTRAINTS, DeepClusterer, hidden_widths
from routemix.losses.edgam import (
    MOMENT_UPDATES,
    RECONSTRUCTIONS,
    RESPONSIBILITY_GRADIENTS,
    EDGaMLoss,
    UnfoldedGaussianMixture,
)
from routemix.metrics import cluster_accuracy
from routemix.models.autoencoders import DEC_HIDDEN_SIZES, ConvAutoencoder, DenseAutoencoder
from routemix.train import edgam
from routemix.train.autoencoder import AutoencoderModule, kmeans_labels


class EDGaMClustering(DeepClusterer):
    """Deep clustering with EDGaM ("Streamlining EM into Auto-Encoder Networks", ICLR 2021 submission).

    An auto-encoder embeds each sample in ``embedding_dim`` dimensions; T EM iterations of a
    Gaussian mixture with unit covariances are unfolded on the embedding (eq. 3-4), and the
    decoder reconstructs the input from the embedding concatenated with its mixture
    reconstruction (eq. 8). Everything trains end to end on eq. 9: reconstruction + ``eta1`` x
    re-weighted cluster loss (eq. 7) + ``eta2`` x correction loss (eq. 6) + ``eta3`` x
    sum of lambda log lambda (see :mod:`routemix.losses.edgam` for the reading of each equation).

    Architectures (sec. 5, Table 5): ``architecture="auto"`` uses the dense d-500-500-2000-c
    auto-encoder for vector data and the convolutional one for images (``image_shape`` set).
    The paper used the dense one on MNIST and USPS and the convolutional one on Fashion and YTF;
    ``architecture="dense"`` gives the former on images too. Images are in [0, 1] and both
    decoders end with Table 5's sigmoid. Vector data is standardised per feature with a linear
    last decoder layer (``input_scaling="standard"``), or scaled to [0, 1] per feature with the
    sigmoid (``"minmax"``): the paper's setting for pixel-like features such as digits (0.80
    against 0.72 standardised, below), while standardisation keeps separated blobs apart in the
    small embedding of a small network (with [0, 1] features it merged 3 blobs, ACC 0.72).

    Training: what the paper leaves out, and routemix's resolution. The paper initialises every
    weight, centroids included, Glorot-uniform and trains end to end (appendix E.1); it says nothing
    of pre-training. Trained so (``pretrain_epochs=0, centroid_init="glorot"``) the embedding stays
    small and the centroids close, and EM with unit covariances merges the components: on digits
    the mean largest responsibility drifts to ~0.25 and ACC ends at 0.33-0.40 (below). Table 5's
    encoder is DEC's, and DEC's recipe pre-trains it: so by default the auto-encoder is first
    trained on the reconstruction alone for ``pretrain_epochs``, k-means (10 restarts) on its
    embedding gives the initial centroids, and eq. 8's fusion layer starts by passing ``z``
    through, so the joint stage starts from the pre-trained auto-encoder. Then ``max_iter``
    joint epochs train everything on eq. 9. After training, the unfolded mixture is run once on
    the whole training set and its last centroids ``mu^T`` are kept (``cluster_centers_``);
    ``predict_proba`` is the E-step (eq. 3) of a sample's embedding under them, independent of the
    other samples passed with it.

    Appendix E's sanity check is kept as attributes and a warning: ``assignment_confidence_`` (mean
    largest responsibility, Fig. 4: towards 1) and ``kmeans_agreement_`` (agreement, after the best
    matching, of the mixture's clusters with k-means on the learned embedding, which appendix E
    says are close at convergence). A :class:`~routemix.train.edgam.SoftAssignmentWarning` is
    raised when the confidence is still below 0.5 after a quarter of the joint epochs.

    Measured on digits (seeds 0-2, 100 joint epochs, docs/RESULTS.md; eq. 7 then differentiated
    through the responsibilities, the default minmax row 0.80 either way): the paper's recipe (no
    pre-training, Glorot centroids) 0.33-0.40 with soft assignments (confidence ~0.25). With
    ``input_scaling="minmax"``, 50 pre-training epochs and k-means centroids: 0.78-0.82 (mean 0.80;
    confidence 0.89-0.92, agreement 0.98-0.99), about what k-means reaches on the pre-trained
    embedding (0.79-0.80): the joint stage sharpens the pre-trained partition and moves it
    little. Standardised input: 0.70-0.73; ``moment_update="printed"`` or ``reconstruction="mean"``
    moved the mean by at most 0.02.

    Parameters
    ----------
    n_clusters : K.
    image_shape : (C, H, W) when the rows of X are flattened images.
    max_iter : joint training epochs (1000 in the paper).
    batch_size : mini-batch size (128 in the paper; 256 for YTF).
    learning_rate : Adam learning rate (1e-3).
    embedding_dim : c, size of the embedding and the centroids (10 for every dataset in the paper).
    n_layers : T, unfolded E-steps (3).
    cluster_weight, correction_weight, entropy_weight : eta1, eta2, eta3 of eq. 9; defaults from
        Table 6's MNIST row (1e-2, 1e-2, 1e-4), which appendix E suggests as the general setting.
    beta_init : initial value of the learnable betas (0.9, Table 6).
    delta : smoothing Delta of the mini-batch re-weighting of eq. 7 (3).
    architecture : ``"auto"``, ``"dense"`` or ``"conv"`` (``"conv"`` needs ``image_shape``).
    hidden_layer_sizes : hidden widths of the dense auto-encoder ((500, 500, 2000)).
    input_dropout : dropout on the dense encoder's input (0.25, Table 5).
    pretrain_epochs : epochs of auto-encoder pre-training on the reconstruction alone before the
        joint stage (DEC's recipe; 0 for none, as the paper).
    centroid_init : ``"kmeans"`` (k-means on the embedding when joint training starts) or
        ``"glorot"`` (the paper's appendix E.1).
    reconstruction : ``"sum"`` (eq. 9's squared error summed over features) or ``"mean"``.
    moment_update : eq. 4's alpha from beta, ``"complement"`` (1 - beta) or ``"printed"`` (2 beta^2);
        see :mod:`routemix.losses.edgam`.
    cluster_responsibilities : whether eq. 7's gradient holds the responsibilities ``"constant"``
        (EM's M-step; the default) or takes it through them (``"differentiable"``), which pulls
        samples into the largest cluster; held constant, the embedding may shrink until the
        components merge (all of Fashion-MNIST); see :mod:`routemix.losses.edgam`.
    input_scaling : vector data ``"standard"``-ised (linear decoder output) or ``"minmax"``-scaled
        to [0, 1] per feature (sigmoid output); images are always scaled to [0, 1].
    random_state, device, verbose : seed, ``"cpu"``/``"cuda"``/``"auto"``, progress bar.

    Attributes
    ----------
    labels_, n_features_in_, n_clusters_found_, cluster_order_ : see :class:`DeepClusterer`.
    cluster_centers_ : (n_clusters, embedding_dim) centroids ``mu^T`` in the embedding space,
        in the order of ``labels_``.
    betas_ : learned betas (eq. 4/6) after training.
    assignment_confidence_ : mean largest responsibility on the training data (appendix E).
    kmeans_agreement_ : agreement of ``labels_`` with k-means on the learned embedding (appendix E).
    pretrain_epochs_ : pre-training epochs run.
    n_iter_ : joint epochs run.
    module_ : the trained :class:`routemix.train.edgam.EDGaMModule` (on the CPU).
    """

    _parameter_constraints: dict = {
        **COMMON_CONSTRAINTS,
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "embedding_dim": [Interval(Integral, 1, None, closed="left")],
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "cluster_weight": [Interval(Real, 0, None, closed="left")],
        "correction_weight": [Interval(Real, 0, None, closed="left")],
        "entropy_weight": [Interval(Real, 0, None, closed="left")],
        "beta_init": [Interval(Real, 0, 1, closed="both")],
        "delta": [Interval(Real, 0, None, closed="left")],
        "architecture": [StrOptions({"auto", "dense", "conv"})],
        "hidden_layer_sizes": ["array-like"],
        "input_dropout": [Interval(Real, 0, 1, closed="left")],
        "pretrain_epochs": [Interval(Integral, 0, None, closed="left")],
        "centroid_init": [StrOptions({"kmeans", "glorot"})],
        "reconstruction": [StrOptions(set(RECONSTRUCTIONS))],
        "moment_update": [StrOptions(set(MOMENT_UPDATES))],
        "cluster_responsibilities": [StrOptions(set(RESPONSIBILITY_GRADIENTS))],
        "input_scaling": [StrOptions({"standard", "minmax"})],
    }

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        image_shape=None,
        max_iter: int = 1000,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        embedding_dim: int = 10,
        n_layers: int = 3,
        cluster_weight: float = 1e-2,
        correction_weight: float = 1e-2,
        entropy_weight: float = 1e-4,
        beta_init: float = 0.9,
        delta: float = 3.0,
        architecture: str = "auto",
        hidden_layer_sizes=DEC_HIDDEN_SIZES,
        input_dropout: float = 0.25,
        pretrain_epochs: int = 50,
        centroid_init: str = "kmeans",
        reconstruction: str = "sum",
        moment_update: str = "complement",
        cluster_responsibilities: str = "constant",
        input_scaling: str = "standard",
        random_state=None,
        device: str = "cpu",
        verbose: bool = False,
    ) -> None:
        self.n_clusters = n_clusters
        self.image_shape = image_shape
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.embedding_dim = embedding_dim
        self.n_layers = n_layers
        self.cluster_weight = cluster_weight
        self.correction_weight = correction_weight
        self.entropy_weight = entropy_weight
        self.beta_init = beta_init
        self.delta = delta
        self.architecture = architecture
        self.hidden_layer_sizes = hidden_layer_sizes
        self.input_dropout = input_dropout
        self.pretrain_epochs = pretrain_epochs
        self.centroid_init = centroid_init
        self.reconstruction = reconstruction
        self.moment_update = moment_update
        self.cluster_responsibilities = cluster_responsibilities
        self.input_scaling = input_scaling
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _vector_scaler(self):
        return MinMaxScaler() if self.input_scaling == "minmax" else StandardScaler()

    def _uses_conv(self) -> bool:
        if self.architecture == "conv" and self.image_shape is None:
            raise ValueError(
                "architecture='conv' needs images: pass image_shape=(C, H, W), or use architecture='dense'."
            )
        return self.architecture == "conv" or (self.architecture == "auto" and self.image_shape is not None)

    def _network_input(self, data: torch.Tensor) -> torch.Tensor:
        """Images stay (N, C, H, W) for the convolutional net; the dense net takes flat rows."""
        return data if self._uses_conv() else data.flatten(1)

    _saved_private = ("_centroids",)

    def _build_module(self, input_shape: tuple[int, ...]) -> edgam.EDGaMModule:
        """An untrained EDGaM for network inputs of ``input_shape`` (``(C, H, W)`` or ``(D,)``)."""
        if self._uses_conv():
            autoencoder = ConvAutoencoder(tuple(input_shape), self.embedding_dim)
        else:
            autoencoder = DenseAutoencoder(
                int(np.prod(input_shape)),
                self.embedding_dim,
                hidden_sizes=hidden_widths(self.hidden_layer_sizes),
                input_dropout=self.input_dropout,
                output_activation="linear"
                if self.image_shape is None and self.input_scaling == "standard"
                else "sigmoid",
            )
        mixture = UnfoldedGaussianMixture(
            self.n_clusters,
            self.embedding_dim,
            n_layers=self.n_layers,
            beta_init=self.beta_init,
            moment_update=self.moment_update,
        )
        loss = EDGaMLoss(
            cluster_weight=self.cluster_weight,
            correction_weight=self.correction_weight,
            entropy_weight=self.entropy_weight,
            delta=self.delta,
            reconstruction=self.reconstruction,
            responsibilities=self.cluster_responsibilities,
        )
        return edgam.EDGaMModule(autoencoder, mixture, loss, lr=self.learning_rate)

    def _fit_data(self, data: torch.Tensor, seed: int) -> None:
        data = self._network_input(data)
        module = self._build_module(tuple(data.shape[1:]))
        if self.pretrain_epochs:
            pretraining = AutoencoderModule(
                module.autoencoder,
                lr=self.learning_rate,
                reconstruction=self.reconstruction,
                n_clusters=self.n_clusters,
            )
            self._train(pretraining, data, seed=seed, epochs=self.pretrain_epochs)
            pretraining.train()  # (joint training starts from the modes Lightning finds)
            edgam.pass_embedding_through_(module.fusion)
        if self.centroid_init == "kmeans":
            _, centroids = kmeans_labels(edgam.embed(module, data), self.n_clusters, seed=seed)
            with torch.no_grad():
                module.mixture.centroids.copy_(torch.as_tensor(centroids, dtype=module.mixture.centroids.dtype))
        self.n_iter_ = self._train(module, data, seed=seed)
        self.module_ = module
        self.pretrain_epochs_ = int(self.pretrain_epochs)
        z = edgam.embed(self.module_, data)
        self._centroids = edgam.final_centroids(self.module_, z)
        self.betas_ = self.module_.mixture.betas.detach().clamp(0.0, 1.0).numpy().copy()
        # Appendix E's sanity check: sharp assignments that agree with k-means on the learned embedding.
        proba = edgam.responsibilities(z, self._centroids)
        self.assignment_confidence_ = float(proba.max(axis=1).mean())
        self.kmeans_agreement_ = cluster_accuracy(kmeans_labels(z, self.n_clusters, seed=seed)[0], proba.argmax(axis=1))

    def _empty_modules(self) -> dict:
        return {"module_": self._build_module(self._input_shape())}

    def _predict_proba_data(self, data: torch.Tensor) -> np.ndarray:
        z = edgam.embed(self.module_, self._network_input(data))
        return edgam.responsibilities(z, self._centroids)

    def fit(self, X, y=None):
        """Fit EDGaM to ``X`` (n_samples, n_features), images as flattened rows with ``image_shape``;
        ``y`` is ignored."""
        super().fit(X, y)
        self.cluster_centers_ = self._centroids[self.cluster_order_].numpy()
        return self
