"""The pre-training pipeline of the mixture of VAE experts (MoE thesis, sec. 3.3 and 4.4).

1. train a VAE with a large latent (100) on all data;
2. latent-size finder: PCA on its posterior means, the fewest components that explain 90% of
   the variance (:func:`latent_size_for_variance`, sec. 3.3.1 / 4.4.1);
3. retrain the VAE with that latent size;
4. UMAP of its posterior means, L1-normalised (10+ units), Manhattan metric, as many components as latent
   units, ``n_neighbors`` by eq. 3.6 (:func:`umap_neighbours`, sec. 3.3.2 / 4.4.2);
5. cluster the embedding: HDBSCAN (Manhattan, ``min_cluster_size = N/50``, ``"leaf"`` selection,
   sec. 4.4.3) finds K and the noise points, or a GMM with K given components (full covariances);
6. pre-train the manager on those labels, noise points left out (sec. 3.3.4 / 4.4.4);
7. the latent-size finder at 95% on each cluster's codes gives the experts' latent sizes; the
   thesis gives every expert their average (sec. 4.5.1).

Steps 1, 3 and 6 are training; this module holds the analysis steps 2, 4, 5 and 7 and
:func:`pretrain`, which runs all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import HDBSCAN
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import normalize

from routemix.cluster.manifold import fit_umap
from routemix.models.vae import VAE, Manager, build_manager, build_vae
from routemix.train import moe as training
from routemix.train.clustering import fit, make_loader
from routemix.train.common import accelerator_for

CLUSTER_FINDERS = ("gmm", "hdbscan")
EMBEDDINGS = ("umap", "none")
# Below this many samples UMAP's neighbour graph says nothing; the codes are clustered directly.
MIN_UMAP_SAMPLES = 16
MIN_NEIGHBOURS = 5
# L1 normalisation projects d-dim codes onto a (d-1)-dim surface (d = 1: every code becomes +-1);
# the thesis applied it to latents of 18-34 units, we apply it from this many units on.
MIN_UNITS_FOR_L1_NORMALISATION = 10


def l1_normalised(codes: np.ndarray) -> np.ndarray:
    """Codes scaled to unit L1 norm before UMAP (sec. 4.4.2), when they have enough units."""
    codes = np.asarray(codes, dtype=np.float64)
    return normalize(codes, norm="l1") if codes.shape[1] >= MIN_UNITS_FOR_L1_NORMALISATION else codes


def latent_size_for_variance(codes: np.ndarray, threshold: float) -> int:
    """Fewest principal components of ``codes`` (N, d) whose explained variance ratios sum to at
    least ``threshold`` (sec. 3.3.1; scikit-learn's PCA with a fractional ``n_components``).
    Codes without any variance (or fewer than two) need one unit."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"the explained-variance threshold must be in (0, 1], got {threshold}.")
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be (n_samples, n_units), got shape {codes.shape}.")
    if len(codes) < 2 or not np.any(codes.var(axis=0) > 1e-12 * max(1.0, float(np.abs(codes).max()) ** 2)):
        return 1
    if threshold >= 1.0:
        return int(np.linalg.matrix_rank(codes - codes.mean(axis=0)))
    return int(PCA(n_components=threshold, svd_solver="full").fit(codes).n_components_)


def umap_neighbours(n_samples: int) -> int:
    """Eq. 3.6, ``n_neighbours = int(N / 300)`` capped at 100.

    The extracted formula reads ``max{int(N/300), 100}``, but the text says the number "caps at
    100 due to memory constraints", so we take the minimum. Below 1500 samples ``N/300`` falls
    under 5 (under 2, UMAP's smallest, below 600); such neighbourhoods tore small data sets apart
    in our runs (3 separated blobs of 50: GMM accuracy 0.6 with 2 neighbours), so we use at least
    5 (digits, N=1797, gets 5 either way; COIL20 would get 5 instead of 4); at most ``N - 1``.
    """
    if n_samples < 3:
        raise ValueError(f"UMAP needs at least 3 samples, got {n_samples}.")
    return int(min(max(n_samples // 300, MIN_NEIGHBOURS), 100, n_samples - 1))


def umap_embedding(codes: np.ndarray, n_components: int, random_state: int) -> np.ndarray:
    """Sec. 4.4.2: UMAP of the L1-normalised codes with the Manhattan metric and eq. 3.6's
    ``n_neighbors`` (:func:`routemix.cluster.manifold.fit_umap`, UMAP's default ``min_dist``)."""
    _, embedding = fit_umap(
        l1_normalised(codes),
        n_components=n_components,
        n_neighbors=umap_neighbours(len(codes)),
        metric="manhattan",
        random_state=random_state,
    )
    return embedding


def hdbscan_labels(embedding: np.ndarray) -> np.ndarray:
    """Sec. 4.4.3: HDBSCAN with the Manhattan metric, ``min_cluster_size = N/50`` (at least 2)
    and ``"leaf"`` cluster selection. Labels ``0..K-1``; ``-1`` marks noise points."""
    min_size = max(2, len(embedding) // 50)
    return (
        HDBSCAN(min_cluster_size=min_size, metric="manhattan", cluster_selection_method="leaf", copy=True)
        .fit(embedding)
        .labels_
    )


def gmm_posteriors(embedding: np.ndarray, n_clusters: int, random_state: int) -> np.ndarray:
    """Sec. 4.4.3: GMM with ``n_clusters`` components and one full covariance each; its
    posteriors (N, K) are the manager's soft targets (sec. 4.4.4). ``reg_covar`` is raised from
    scikit-learn's 1e-6 to 1e-4 (the embedding's scale is ~1) so tiny clusters stay well-posed,
    and the best of 5 initialisations is kept (the thesis does not say; one varied by +-0.04 ACC
    on digits)."""
    gmm = GaussianMixture(
        n_components=n_clusters, covariance_type="full", reg_covar=1e-4, n_init=5, random_state=random_state
    )
    return gmm.fit(embedding).predict_proba(embedding)


def expert_latent_sizes(
    codes: np.ndarray, labels: np.ndarray, n_clusters: int, threshold: float, fallback: int
) -> list[int]:
    """Sec. 4.5.1: the latent-size finder at ``threshold`` on each cluster's codes (``fallback``
    for a cluster with fewer than two points)."""
    sizes = []
    for k in range(n_clusters):
        members = codes[labels == k]
        sizes.append(latent_size_for_variance(members, threshold) if len(members) >= 2 else int(fallback))
    return sizes


@dataclass
class PretrainConfig:
    """What :func:`pretrain` needs besides the data (the estimator's parameters)."""

    epochs: dict  # "autoencoder", "retrain", "manager"
    batch_size: int
    learning_rate: float  # the autoencoders' (5e-4, sec. 4.2)
    manager_learning_rate: float  # 1e-3 (sec. 4.4.4)
    latent_dim: int  # the large first latent (100)
    latent_variance: float  # 0.9
    expert_latent_variance: float  # 0.95
    equal_expert_latent: bool
    cluster_finder: str
    embedding: str  # "umap" (the thesis) or "none" (cluster the codes; Table 4.9's ablation)
    n_clusters: int | None
    reconstruction: str
    base_width: int | None
    augment: bool
    device: str
    progress: bool


@dataclass
class PretrainResult:
    """What the pre-training hands to the joint training (sec. 3.3.4)."""

    latent_dim: int  # found at ``latent_variance`` by the finder
    codes: np.ndarray  # posterior means of the retrained VAE (N, latent_dim)
    embedding: np.ndarray  # its UMAP embedding (or the codes, for tiny data)
    labels: np.ndarray  # hard labels of the shallow clustering, -1 = noise (HDBSCAN)
    n_experts: int
    cluster_latent_dims: list[int]  # the finder at ``expert_latent_variance`` per cluster
    expert_latent_dims: list[int]  # what the experts get
    manager: Manager
    epochs_run: int


def _train_vae(data: torch.Tensor, latent_dim: int, epochs: int, cfg: PretrainConfig, seed: int) -> VAE:
    vae = build_vae(tuple(data.shape[1:]), latent_dim, reconstruction=cfg.reconstruction, base_width=cfg.base_width)
    batch_size = min(cfg.batch_size, len(data))
    loader = make_loader(data, batch_size=batch_size, shuffle=True, seed=seed)
    augment = training.moe_image_augmentation() if cfg.augment and data.dim() == 4 else None
    warmup = max(1, epochs // 2) * len(loader)  # KL weight 0 -> 1 over the first half (eq. 4.1)
    module = training.VAEModule(vae, lr=cfg.learning_rate, kl_warmup_steps=warmup, augment=augment)
    fit(module, loader, max_epochs=epochs, progress=cfg.progress, accelerator=accelerator_for(cfg.device))
    return vae.cpu().eval()


def _train_manager(data: torch.Tensor, targets: np.ndarray, epochs: int, cfg: PretrainConfig, seed: int) -> Manager:
    manager = build_manager(tuple(data.shape[1:]), targets.shape[1], base_width=cfg.base_width)
    batch_size = min(cfg.batch_size, len(data))
    loader = make_loader(
        data, torch.as_tensor(targets, dtype=torch.float32), batch_size=batch_size, shuffle=True, seed=seed
    )
    augment = training.moe_image_augmentation() if cfg.augment and data.dim() == 4 else None
    module = training.ManagerModule(manager, lr=cfg.manager_learning_rate, augment=augment)
    fit(module, loader, max_epochs=epochs, progress=cfg.progress, accelerator=accelerator_for(cfg.device))
    return manager.cpu().eval()


def pretrain(data: torch.Tensor, cfg: PretrainConfig, seed: int) -> PretrainResult:
    """Steps 1-7 of sec. 3.3 (module docstring) on ``data`` (N, D) or (N, C, H, W)."""
    if cfg.cluster_finder not in CLUSTER_FINDERS:
        raise ValueError(f"cluster_finder must be one of {CLUSTER_FINDERS}, got {cfg.cluster_finder!r}.")
    if cfg.cluster_finder == "gmm" and cfg.n_clusters is None:
        raise ValueError("cluster_finder='gmm' needs n_clusters; pass it, or cluster_finder='hdbscan' to find it.")
    n_samples = len(data)
    # Steps 1-3: large latent, PCA finder, retrain.
    vae = _train_vae(data, cfg.latent_dim, cfg.epochs["autoencoder"], cfg, seed)
    latent_dim = latent_size_for_variance(training.encode_means(vae, data), cfg.latent_variance)
    vae = _train_vae(data, latent_dim, cfg.epochs["retrain"], cfg, seed + 1)
    codes = training.encode_means(vae, data)
    # Step 4: UMAP (skipped for tiny data, where it has no neighbourhoods to learn from).
    if cfg.embedding == "umap" and n_samples >= MIN_UMAP_SAMPLES:
        embedding = umap_embedding(codes, latent_dim, seed)
    else:
        embedding = l1_normalised(codes)
    # Step 5: the shallow clustering.
    if cfg.cluster_finder == "hdbscan":
        labels = hdbscan_labels(embedding)
        n_experts = int(labels.max()) + 1
        if n_experts < 1:
            raise ValueError(
                "HDBSCAN marked every sample as noise and found no cluster; give more data, or use "
                "cluster_finder='gmm' with n_clusters."
            )
        keep = labels >= 0
        targets = np.eye(n_experts)[labels[keep]]
        manager_data = data[torch.as_tensor(keep)]
    else:
        n_experts = int(cfg.n_clusters)
        targets = gmm_posteriors(embedding, n_experts, seed)
        labels = targets.argmax(axis=1)
        manager_data = data
    # Step 6: the manager.
    manager = _train_manager(manager_data, targets, cfg.epochs["manager"], cfg, seed + 2)
    # Step 7: the experts' latent sizes.
    per_cluster = expert_latent_sizes(codes, labels, n_experts, cfg.expert_latent_variance, latent_dim)
    if cfg.equal_expert_latent:
        expert_dims = [max(1, int(round(float(np.mean(per_cluster)))))] * n_experts
    else:
        expert_dims = list(per_cluster)
    epochs_run = cfg.epochs["autoencoder"] + cfg.epochs["retrain"] + cfg.epochs["manager"]
    return PretrainResult(
        latent_dim, codes, embedding, labels, n_experts, per_cluster, expert_dims, manager, epochs_run
    )


def split_epochs(max_iter: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``max_iter`` epochs among stages in proportion to ``weights`` (largest-remainder
    rounding), each stage at least one epoch, so that the parts sum to ``max_iter``."""
    if max_iter < len(weights):
        raise ValueError(
            f"max_iter={max_iter} is fewer than the {len(weights)} training stages; "
            f"give at least {len(weights)} epochs."
        )
    total = sum(weights.values())
    shares = {name: max_iter * w / total for name, w in weights.items()}
    epochs = {name: max(1, math.floor(share)) for name, share in shares.items()}
    while sum(epochs.values()) < max_iter:  # hand out what flooring left, largest remainder first
        name = max(shares, key=lambda n: shares[n] - epochs[n])
        epochs[name] += 1
    while sum(epochs.values()) > max_iter:  # the minimum of one overshot: take from the largest
        epochs[max(epochs, key=lambda n: epochs[n])] -= 1
    return epochs
