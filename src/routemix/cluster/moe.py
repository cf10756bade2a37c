"""``MoEClustering``: the mixture of VAE experts with a manager network (MoE thesis, ch. 3)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from routemix.cluster.base import COMMON_CONSTRAINTS, DeepClusterer, check_image_shape
from routemix.cluster.moe_pretrain import CLUSTER_FINDERS, EMBEDDINGS, PretrainConfig, pretrain, split_epochs
from routemix.losses.entropy import MoELoss
from routemix.models.vae import build_manager, build_vae
from routemix.train import moe as training
from routemix.train.clustering import fit, make_loader
from routemix.train.common import accelerator_for

STAGES = ("autoencoder", "retrain", "manager", "cluster", "specialise")
# How ``max_iter`` epochs are shared among the stages, by name. "paper": the thesis' epochs per
# stage, autoencoder and its retraining 1000 each (sec. 4.2, "1000 iterations", which we read as
# epochs), manager 1000 (sec. 4.4.4), joint training 200 = 100 clustering + 100 specialisation
# (sec. 4.5.2). Shorter budgets give their own proportions (``routemix bench clustering``'s cpu
# budgets favour the retrained VAE, whose codes the labels come from).
STAGE_SPLITS = {
    "paper": {"autoencoder": 1000, "retrain": 1000, "manager": 1000, "cluster": 100, "specialise": 100},
}

# Sec. 4.3: a near-binary image (most pixels near 0 or 1) is modelled with binary cross-entropy.
BINARY_PIXEL_FRACTION = 0.8


def near_binary(images: torch.Tensor, margin: float = 0.1) -> bool:
    """Whether at least 80% of the pixels (in [0, 1]) lie within ``margin`` of 0 or 1."""
    values = images.flatten()
    return bool(((values <= margin) | (values >= 1 - margin)).float().mean() >= BINARY_PIXEL_FRACTION)


class MoEClustering(DeepClusterer):
    """Cluster images or vectors with a manager and one VAE expert per cluster (MoE thesis).

    Pre-training (sec. 3.3, :mod:`routemix.cluster.moe_pretrain`): a VAE with a large latent,
    the PCA latent-size finder (90% explained variance), the VAE retrained at that size, UMAP of
    its codes, a shallow clustering of the embedding, the manager trained on its labels, and the
    experts' latent size (finder at 95% per cluster, averaged). Joint training (sec. 4.5.2): half
    the epochs minimise eq. 3.5 ``R + α S + β B`` over manager and experts, the other half train
    each expert on the manager's hard assignments with the manager frozen. ``predict_proba`` is
    the manager's softmax; :meth:`sample` draws new data from one cluster's expert.

    Finding the clusters: ``cluster_finder="gmm"`` (default) fits a GMM with ``n_clusters``
    components to the UMAP embedding; ``cluster_finder="hdbscan"`` lets HDBSCAN find the number
    of clusters and the noise points (left out of the manager's training) and needs
    ``n_clusters=None``. The thesis prefers HDBSCAN (Table 4.18) when the data's clusters are
    dense; the GMM is the choice when K is known.

    Epoch budget. ``max_iter`` epochs are split among the five stages (autoencoder, retrained
    autoencoder, manager, clustering stage, specialisation stage) in the proportions of
    ``stage_split``, each stage at least one epoch: ``"paper"`` is the thesis' 1000:1000:1000:100:100
    (at the default 100 epochs 32/31/31/3/3); a dict of the five stage names gives other
    proportions (epochs per stage, when they sum to ``max_iter``). At small budgets the joint
    stage is short (the experts get a few hundred steps), so the labels are mostly the pre-trained
    manager's; give more epochs (or a higher ``learning_rate``) for useful experts. ``n_iter_`` is
    their sum and ``epochs_`` the split.

    Parameters
    ----------
    n_clusters : number of experts K for the GMM; ``None`` with ``cluster_finder="hdbscan"``.
    image_shape : (C, H, W) for images passed as flattened rows; ``None`` for vector data.
    max_iter : training epochs over all stages (see above).
    stage_split : ``"paper"`` or a dict of proportions per stage (see above).
    batch_size : 100 in every stage (secs. 4.2, 4.4.4, 4.5.2).
    learning_rate : Adam rate of the joint training, 1e-4 (sec. 4.5.2).
    pretrain_learning_rate : the autoencoders' rate, 5e-4 (sec. 4.2).
    manager_learning_rate : the manager's pre-training rate, 1e-3 (sec. 4.4.4).
    alpha, beta : weights of the sample and batch entropies in eq. 3.5; 100 and 1 (sec. 4.5.2).
    cluster_finder : ``"gmm"`` or ``"hdbscan"`` (see above).
    embedding : ``"umap"`` (the thesis) or ``"none"``, which clusters the L1-normalised VAE codes
        directly (the "VAE" column of Table 4.9; fast, for ablations and tests). With fewer than
        16 samples UMAP is skipped either way.
    pretrain_latent_dim : latent size of the first autoencoder, 100 (sec. 3.3).
    latent_variance : explained variance kept by the latent-size finder, 0.9 (sec. 3.3.1).
    expert_latent_variance : the same for the experts, 0.95 (sec. 4.5.1).
    equal_expert_latent : give every expert the average of the per-cluster sizes, as the thesis
        does (sec. 4.5.1); ``False`` gives each expert its own.
    reconstruction : ``"bce"``, ``"mse"`` or ``"auto"``: binary cross-entropy for near-binary
        images (at least 80% of pixels within 0.1 of 0 or 1, like MNIST), MSE otherwise and for
        vectors (sec. 4.3).
    base_width : filters of the first convolutional block (default 32) or units of the first
        dense layer (default 256); see :mod:`routemix.models.vae`.
    augmentation : random affine augmentation of images in every training stage (sec. 4.2).
    random_state, device, verbose : seed, ``"cpu"``/``"cuda"``/``"auto"``, progress bars.

    Attributes
    ----------
    labels_, n_features_in_, n_clusters_found_, cluster_order_ : see :class:`DeepClusterer`.
    n_experts_ : number of experts (K).
    latent_dim_ : latent size the finder chose for the pre-training autoencoder.
    expert_latent_dims_ : the experts' latent sizes; ``cluster_latent_dims_`` the per-cluster finds.
    pretrain_labels_ : labels of the shallow clustering (-1 = HDBSCAN noise), in expert numbering.
    manager_, experts_ : the trained manager and the list of VAE experts.
    epochs_ : epochs per stage; ``n_iter_`` their sum.
    """

    _parameter_constraints: dict = {
        **COMMON_CONSTRAINTS,
        "n_clusters": [Interval(Integral, 1, None, closed="left"), None],
        "max_iter": [Interval(Integral, len(STAGES), None, closed="left")],
        "stage_split": [StrOptions(set(STAGE_SPLITS)), dict],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "pretrain_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "manager_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "beta": [Interval(Real, 0, None, closed="left")],
        "cluster_finder": [StrOptions(set(CLUSTER_FINDERS))],
        "embedding": [StrOptions(set(EMBEDDINGS))],
        "pretrain_latent_dim": [Interval(Integral, 1, None, closed="left")],
        "latent_variance": [Interval(Real, 0, 1, closed="right")],
        "expert_latent_variance": [Interval(Real, 0, 1, closed="right")],
        "equal_expert_latent": ["boolean"],
        "reconstruction": [StrOptions({"auto", "bce", "mse"})],
        "base_width": [Interval(Integral, 1, None, closed="left"), None],
        "augmentation": ["boolean"],
    }

    def __init__(
        self,
        n_clusters: int | None = 8,
        *,
        image_shape=None,
        max_iter: int = 100,
        stage_split="paper",
        batch_size: int = 100,
        learning_rate: float = 1e-4,
        pretrain_learning_rate: float = 5e-4,
        manager_learning_rate: float = 1e-3,
        alpha: float = 100.0,
        beta: float = 1.0,
        cluster_finder: str = "gmm",
        embedding: str = "umap",
        pretrain_latent_dim: int = 100,
        latent_variance: float = 0.9,
        expert_latent_variance: float = 0.95,
        equal_expert_latent: bool = True,
        reconstruction: str = "auto",
        base_width: int | None = None,
        augmentation: bool = True,
        random_state=None,
        device: str = "cpu",
        verbose: bool = False,
    ) -> None:
        self.n_clusters = n_clusters
        self.image_shape = image_shape
        self.max_iter = max_iter
        self.stage_split = stage_split
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.pretrain_learning_rate = pretrain_learning_rate
        self.manager_learning_rate = manager_learning_rate
        self.alpha = alpha
        self.beta = beta
        self.cluster_finder = cluster_finder
        self.embedding = embedding
        self.pretrain_latent_dim = pretrain_latent_dim
        self.latent_variance = latent_variance
        self.expert_latent_variance = expert_latent_variance
        self.equal_expert_latent = equal_expert_latent
        self.reconstruction = reconstruction
        self.base_width = base_width
        self.augmentation = augmentation
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # --- validation ------------------------------------------------------------------------

    def _validate_input(self, X, *, reset: bool) -> np.ndarray:
        if not reset:
            return super()._validate_input(X, reset=False)
        if self.cluster_finder == "hdbscan" and self.n_clusters is not None:
            raise ValueError(
                f"cluster_finder='hdbscan' finds the number of clusters itself; pass n_clusters=None "
                f"(got n_clusters={self.n_clusters}), or use cluster_finder='gmm' to fix it."
            )
        if self.cluster_finder == "gmm" and self.n_clusters is None:
            raise ValueError(
                "cluster_finder='gmm' needs n_clusters; pass it, or use cluster_finder='hdbscan' to find it."
            )
        if self.n_clusters is not None:
            return super()._validate_input(X, reset=True)
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2, reset=True)
        if self.image_shape is not None:
            check_image_shape(self.image_shape, X.shape[1])
        return X

    def _stage_weights(self) -> dict[str, float]:
        if isinstance(self.stage_split, str):
            return STAGE_SPLITS[self.stage_split]
        weights = dict(self.stage_split)
        if set(weights) != set(STAGES) or not all(isinstance(w, Real) and w > 0 for w in weights.values()):
            raise ValueError(
                f"stage_split as a dict needs a positive weight for each of {', '.join(STAGES)}, "
                f"got {self.stage_split!r}; "
                f"or name a split: {', '.join(STAGE_SPLITS)}."
            )
        return {stage: float(weights[stage]) for stage in STAGES}

    def _reconstruction_for(self, data: torch.Tensor) -> str:
        if self.reconstruction != "auto":
            return self.reconstruction
        return "bce" if data.dim() == 4 and near_binary(data) else "mse"

    # --- training --------------------------------------------------------------------------

    def _fit_data(self, data: torch.Tensor, seed: int) -> None:
        self.epochs_ = split_epochs(self.max_iter, self._stage_weights())
        self.reconstruction_ = self._reconstruction_for(data)
        if self.reconstruction_ == "bce" and (data.min() < 0 or data.max() > 1):
            raise ValueError("reconstruction='bce' needs values in [0, 1]: pass images with image_shape, or use 'mse'.")
        progress = bool(self.verbose)
        cfg = PretrainConfig(
            epochs=self.epochs_,
            batch_size=self.batch_size,
            learning_rate=self.pretrain_learning_rate,
            manager_learning_rate=self.manager_learning_rate,
            latent_dim=self.pretrain_latent_dim,
            latent_variance=self.latent_variance,
            expert_latent_variance=self.expert_latent_variance,
            equal_expert_latent=self.equal_expert_latent,
            cluster_finder=self.cluster_finder,
            embedding=self.embedding,
            n_clusters=self.n_clusters,
            reconstruction=self.reconstruction_,
            base_width=self.base_width,
            augment=self.augmentation,
            device=self.device,
            progress=progress,
        )
        result = pretrain(data, cfg, seed)
        self.latent_dim_ = result.latent_dim
        self.n_experts_ = result.n_experts
        self.cluster_latent_dims_ = result.cluster_latent_dims
        self.expert_latent_dims_ = result.expert_latent_dims
        self.pretrain_labels_ = result.labels

        # Sec. 3.3.4 / Fig. 3.5: the experts start from random weights, the manager pre-trained.
        input_shape = tuple(data.shape[1:])
        experts = [
            build_vae(input_shape, dim, reconstruction=self.reconstruction_, base_width=self.base_width)
            for dim in result.expert_latent_dims
        ]
        batch_size = min(self.batch_size, len(data))
        loader = make_loader(data, batch_size=batch_size, shuffle=True, seed=seed + 3)
        n_joint = self.epochs_["cluster"] + self.epochs_["specialise"]
        module = self._joint_module(result.manager, experts, kl_warmup_steps=max(1, n_joint // 2) * len(loader))
        accelerator = accelerator_for(self.device)
        for stage in ("cluster", "specialise"):
            module.stage = stage
            fit(module, loader, max_epochs=self.epochs_[stage], progress=progress, accelerator=accelerator)
        module = module.cpu().eval()
        self.module_ = module
        self.manager_ = module.manager
        self.experts_ = list(module.experts)
        self.n_iter_ = result.epochs_run + n_joint

    _derived_attributes = ("manager_", "experts_")

    def _joint_module(self, manager, experts, *, kl_warmup_steps: int) -> training.MoEModule:
        """Manager + experts with the loss of eq. 3.5, as the joint stages train them."""
        return training.MoEModule(
            manager,
            experts,
            MoELoss(self.alpha, self.beta),
            lr=self.learning_rate,
            kl_warmup_steps=kl_warmup_steps,
            augment=training.moe_image_augmentation() if self.augmentation and self.image_shape is not None else None,
        )

    def _empty_modules(self) -> dict:
        shape = self._input_shape()
        manager = build_manager(shape, self.n_experts_, base_width=self.base_width)
        experts = [
            build_vae(shape, dim, reconstruction=self.reconstruction_, base_width=self.base_width)
            for dim in self.expert_latent_dims_
        ]
        return {"module_": self._joint_module(manager, experts, kl_warmup_steps=1)}

    def _after_load(self) -> None:
        self.manager_ = self.module_.manager
        self.experts_ = list(self.module_.experts)

    def _predict_proba_data(self, data: torch.Tensor) -> np.ndarray:
        return training.manager_proba(self.manager_, data)

    # --- generation ------------------------------------------------------------------------

    def sample(self, n_samples: int = 1, cluster: int = 0, *, random_state=None) -> np.ndarray:
        """Draw ``n_samples`` new samples from cluster ``cluster`` (numbered as in ``labels_``).

        Latent codes from the expert's prior N(0, I) are decoded (sec. 4.5.3; the decoder's mean,
        no observation noise) and mapped back to the input's units: the inverse of the
        standardisation for vectors, the training pixel range for images (flattened rows).
        ``random_state`` seeds the draw (``None``: fresh randomness).
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}.")
        if not isinstance(cluster, Integral) or not 0 <= cluster < self.n_experts_:
            raise ValueError(f"cluster must be an int in [0, {self.n_experts_ - 1}], got {cluster!r}.")
        expert = self.experts_[int(self.cluster_order_[cluster])]
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        generator = torch.Generator().manual_seed(seed)
        values = expert.cpu().eval().generate(int(n_samples), generator=generator).flatten(1).double().numpy()
        if self.image_shape is not None:
            low, high = self.pixel_range_
            return values * (high - low) + low
        return self.scaler_.inverse_transform(values)
