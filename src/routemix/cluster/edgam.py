"""``EDGaMClustering``: EDGaM (an auto-encoder with an unfolded Gaussian mixture) behind scikit-learn's contract."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from routemix.cluster.base import COMMON_CONSTRAINTS, DeepClusterer
from routemix.losses.edgam import EDGaMLoss, UnfoldedGaussianMixture
from routemix.models.autoencoders import DEC_HIDDEN_SIZES, ConvAutoencoder, DenseAutoencoder
from routemix.train import clustering as training
from routemix.train import edgam


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
    ``architecture="dense"`` gives the former on images too. Vector data is standardised, so the
    dense decoder then ends linearly; on images (in [0, 1]) it ends with Table 5's sigmoid.

    Training: the paper initialises all weights (centroids included) Glorot-uniform and trains end
    to end; it describes no pre-training, so all ``max_iter`` epochs are joint EDGaM epochs. After
    training, the unfolded mixture is run once on the whole training set and its last centroids
    ``mu^T`` are kept (``cluster_centers_``); ``predict_proba`` is the E-step (eq. 3) of a sample's
    embedding under them, independent of the other samples passed with it.

    Measured (one CPU thread; 100 of the paper's 1000 epochs, which take ~1 s each on digits):
    on digits, Table 6's etas give ACC 0.41-0.54 (3 seeds) with soft assignments (mean max
    lambda ~0.2-0.3) because the cluster loss shrinks the embedding faster than the tiny entropy
    weight sharpens it; ``entropy_weight=0.1`` reproduces Fig. 4's course (betas -> 0, max lambda
    -> 1) but reaches only ACC 0.44-0.61, below k-means on the raw features (~0.79).

    Parameters
    ----------
    n_clusters : K.
    image_shape : (C, H, W) when the rows of X are flattened images.
    max_iter : training epochs (1000 in the paper).
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
    random_state, device, verbose : seed, ``"cpu"``/``"cuda"``/``"auto"``, progress bar.

    Attributes
    ----------
    labels_, n_features_in_, n_clusters_found_, cluster_order_ : see :class:`DeepClusterer`.
    cluster_centers_ : (n_clusters, embedding_dim) centroids ``mu^T`` in the embedding space,
        in the order of ``labels_``.
    betas_ : learned betas (eq. 4/6) after training.
    n_iter_ : epochs run.
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
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _uses_conv(self) -> bool:
        if self.architecture == "conv" and self.image_shape is None:
            raise ValueError("architecture='conv' needs images: pass image_shape=(C, H, W), or use architecture='dense'.")
        return self.architecture == "conv" or (self.architecture == "auto" and self.image_shape is not None)

    def _network_input(self, data: torch.Tensor) -> torch.Tensor:
        """Images stay (N, C, H, W) for the convolutional net; the dense net takes flat rows."""
        return data if self._uses_conv() else data.flatten(1)

    def _build_module(self, data: torch.Tensor) -> edgam.EDGaMModule:
        if self._uses_conv():
            autoencoder = ConvAutoencoder(tuple(data.shape[1:]), self.embedding_dim)
        else:
            hidden = tuple(int(h) for h in np.ravel(self.hidden_layer_sizes))
            if not hidden or min(hidden) < 1:
                raise ValueError(f"hidden_layer_sizes must be positive widths, got {self.hidden_layer_sizes!r}.")
            autoencoder = DenseAutoencoder(
                data.shape[1], self.embedding_dim, hidden_sizes=hidden, input_dropout=self.input_dropout,
                output_activation="linear" if self.image_shape is None else "sigmoid",
            )
        mixture = UnfoldedGaussianMixture(self.n_clusters, self.embedding_dim, n_layers=self.n_layers, beta_init=self.beta_init)
        loss = EDGaMLoss(cluster_weight=self.cluster_weight, correction_weight=self.correction_weight,
                         entropy_weight=self.entropy_weight, delta=self.delta)
        return edgam.EDGaMModule(autoencoder, mixture, loss, lr=self.learning_rate)

    def _fit_data(self, data: torch.Tensor, seed: int) -> None:
        data = self._network_input(data)
        module = self._build_module(data)
        loader = training.make_loader(data, batch_size=min(self.batch_size, len(data)), shuffle=True, seed=seed)
        trainer = training.fit(module, loader, max_epochs=self.max_iter, progress=bool(self.verbose),
                               accelerator=training.accelerator_for(self.device))
        self.module_ = module.cpu().eval()
        self.n_iter_ = int(trainer.current_epoch)
        self._centroids = edgam.final_centroids(self.module_, edgam.embed(self.module_, data))
        self.betas_ = self.module_.mixture.betas.detach().clamp(0.0, 1.0).numpy().copy()

    def _predict_proba_data(self, data: torch.Tensor) -> np.ndarray:
        z = edgam.embed(self.module_, self._network_input(data))
        return edgam.responsibilities(z, self._centroids)

    def fit(self, X, y=None):
        """Fit EDGaM to ``X`` (n_samples, n_features), images as flattened rows with ``image_shape``; ``y`` is ignored."""
        super().fit(X, y)
        self.cluster_centers_ = self._centroids[self.cluster_order_].numpy()
        return self
