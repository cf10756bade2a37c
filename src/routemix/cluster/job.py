"""One clustering run from the command line: load, fit, score against k-means, write a run dir.

The run directory holds ``config.json`` (resolved settings and the command), ``metrics.json``
(ACC/NMI/ARI and seconds for the method and k-means), ``labels.csv`` (the predicted cluster of
every sample, in dataset order), ``model.pt`` (the trained network and loss state, loadable with
``weights_only=True``) and, for image sets, Lightning's ``checkpoints/last.ckpt`` and
``logs/version_N/metrics.csv`` (learning curves; a resumed run adds the next version).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans

from routemix.data import LoadedDataset, get_dataset_spec, load_dataset
from routemix.data.registry import is_tabular_path
from routemix.data.transforms import SobelInput, image_augmentation
from routemix.errors import RoutemixError
from routemix.losses import NMMLoss
from routemix.metrics import clustering_scores
from routemix.models import create_model
from routemix.train import clustering as training
from routemix.train.checkpoint import save_checkpoint, write_json, write_text

METHODS = ("nmm",)


@dataclass
class ClusterConfig:
    dataset: str
    method: str = "nmm"
    clusters: int | None = None
    epochs: int | None = None  # None: 200 for vector data, 250 for images (thesis)
    batch_size: int = 128
    gamma: float = 5.0
    em_lr: float | None = None  # None: 1e-3 vector data, 5e-5 images (thesis)
    consistency_lr: float | None = None  # None: 2e-3 vector data, 1e-4 images (thesis)
    two_fold: bool = True
    normalization: str = "batch"
    priors: bool = False
    seed: int = 0
    split: str = "all"
    data_dir: str | None = None
    download: bool = False
    label_column: str | None = None
    n_samples: int | None = None
    limit: int | None = None  # use only the first `limit` samples (quick runs)
    device: str = "auto"
    progress: bool = True
    resume: bool = False
    run_dir: str | None = None
    kmeans: bool = True
    command: list[str] = field(default_factory=lambda: list(sys.argv))


@dataclass
class ClusterResult:
    run_dir: Path
    rows: list[dict]  # one per method: name, acc, nmi, ari, seconds
    labels: np.ndarray


def _check_data(dataset: LoadedDataset, clusters: int) -> None:
    if dataset.kind == "tabular":
        bad = ~torch.isfinite(dataset.data)
        if bad.any():
            rows = torch.nonzero(bad.any(dim=1)).flatten()[:5].tolist()
            raise RoutemixError(
                f"dataset {dataset.name!r} has {int(bad.sum())} NaN or infinite values (first rows: {rows}); "
                "remove or impute them before clustering."
            )
    n = len(dataset)
    if n == 0:
        raise RoutemixError(f"dataset {dataset.name!r} has no samples.")
    if n < 2:
        raise RoutemixError(f"dataset {dataset.name!r} has a single sample; clustering needs at least 2.")
    if n < clusters:
        raise RoutemixError(f"dataset {dataset.name!r} has {n} samples, fewer than the {clusters} clusters asked for: use --clusters {n} or fewer.")


def _fit_vector(cfg: ClusterConfig, dataset: LoadedDataset, run_dir: Path):
    from routemix.cluster.nmm import NMMClustering

    estimator = NMMClustering(
        cfg.clusters, max_iter=cfg.epochs, batch_size=cfg.batch_size, gamma=cfg.gamma,
        learning_rate=cfg.em_lr, consistency_learning_rate=cfg.consistency_lr, two_fold=cfg.two_fold,
        normalization=cfg.normalization, priors=cfg.priors, random_state=cfg.seed,
        device=cfg.device, verbose=cfg.progress,
    )
    # float64, as scikit-learn loaders give it, so the CLI and the Python API agree for one seed
    labels = estimator.fit_predict(dataset.data.numpy().astype(np.float64))
    state = {
        "kind": "nmm_vector",
        "network": estimator.module_.network.state_dict(),
        "loss": estimator.module_.loss.state_dict(),
        "scaler_mean": torch.as_tensor(estimator.scaler_.mean_),
        "scaler_scale": torch.as_tensor(estimator.scaler_.scale_),
        "cluster_order": torch.as_tensor(estimator.cluster_order_),
    }
    return labels, state


def _fit_images(cfg: ClusterConfig, dataset: LoadedDataset, run_dir: Path):
    spec = get_dataset_spec(dataset.name)
    channels, height, width = dataset.data.shape[1:]
    torch.manual_seed(cfg.seed)  # network initialisation and augmentation draws
    network = create_model(spec.default_model, num_classes=cfg.clusters, in_channels=2, input_size=height)
    loss = NMMLoss(cfg.clusters, cfg.gamma, normalization=cfg.normalization, priors=cfg.priors)
    module = training.NMMModule(
        network, loss, em_lr=cfg.em_lr, consistency_lr=cfg.consistency_lr, two_fold=cfg.two_fold,
        augment=image_augmentation(channels, (height, width)), preprocess=SobelInput(),
    )
    train_loader = training.make_loader(dataset.data, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed)
    val_loader = None
    if dataset.labels is not None:
        val_loader = training.make_loader(dataset.data, dataset.labels, batch_size=1024, shuffle=False)
    training.fit(
        module, train_loader, max_epochs=cfg.epochs, val_loader=val_loader, run_dir=run_dir,
        progress=cfg.progress, accelerator=training.accelerator_for(cfg.device), resume=cfg.resume,
    )
    module = module.cpu()
    labels = training.predict_proba(module, dataset.data).argmax(axis=1)
    state = {"kind": "nmm_image", "model": spec.default_model, "network": network.state_dict(), "loss": loss.state_dict()}
    return labels, state


def run_cluster_job(cfg: ClusterConfig) -> ClusterResult:
    if cfg.method not in METHODS:
        raise RoutemixError(f"unknown method {cfg.method!r}; available: {', '.join(METHODS)}.")
    dataset = load_dataset(
        cfg.dataset, data_dir=cfg.data_dir, download=cfg.download, split=cfg.split,
        label_column=cfg.label_column, n_samples=cfg.n_samples, random_state=cfg.seed,
    )
    if cfg.limit is not None:
        dataset.data = dataset.data[: cfg.limit]
        dataset.labels = None if dataset.labels is None else dataset.labels[: cfg.limit]
    if cfg.clusters is None:
        if dataset.num_classes is None:
            raise RoutemixError(f"{cfg.dataset} has no labels to count classes from: pass --clusters K.")
        cfg.clusters = dataset.num_classes
    _check_data(dataset, cfg.clusters)
    image = dataset.kind == "image"
    if cfg.resume:
        if not (image and cfg.run_dir):
            raise RoutemixError("--resume continues an image run: pass the --run-dir of that run.")
        last = Path(cfg.run_dir) / "checkpoints" / "last.ckpt"
        if not last.is_file():  # checked before anything is written into the run dir
            raise RoutemixError(f"--resume: no checkpoint at {last}; pass the --run-dir of an earlier run, or drop --resume.")
    cfg.epochs = cfg.epochs or (250 if image else 200)
    cfg.em_lr = cfg.em_lr or (5e-5 if image else 1e-3)
    cfg.consistency_lr = cfg.consistency_lr or (1e-4 if image else 2e-3)

    name = Path(cfg.dataset).stem if is_tabular_path(cfg.dataset) else cfg.dataset
    run_dir = Path(cfg.run_dir or f"runs/cluster-{name}-{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", asdict(cfg))

    start = time.perf_counter()
    labels, state = (_fit_images if image else _fit_vector)(cfg, dataset, run_dir)
    seconds = time.perf_counter() - start
    save_checkpoint(run_dir / "model.pt", {**state, "config": asdict(cfg)})

    rows = [{"method": cfg.method, "seconds": seconds, **_scores(dataset, labels)}]
    if cfg.kmeans:
        start = time.perf_counter()
        flat = dataset.data.reshape(len(dataset), -1).float().numpy()
        kmeans_labels = KMeans(cfg.clusters, n_init=10, random_state=cfg.seed).fit_predict(flat)
        rows.append({"method": "kmeans", "seconds": time.perf_counter() - start, **_scores(dataset, kmeans_labels)})
    write_text(run_dir / "labels.csv", "index,cluster\n" + "".join(f"{i},{c}\n" for i, c in enumerate(labels)))
    write_json(run_dir / "metrics.json", {"dataset": cfg.dataset, "n_samples": len(dataset), "results": rows})
    return ClusterResult(run_dir, rows, labels)


def _scores(dataset: LoadedDataset, labels: np.ndarray) -> dict:
    if dataset.labels is None:
        return {"acc": None, "nmi": None, "ari": None}
    return clustering_scores(dataset.labels, labels)
