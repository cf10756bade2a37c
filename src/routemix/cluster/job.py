"""One clustering run from the command line: load, fit, score against k-means, write a run dir.

``--method`` picks any method of :mod:`routemix.cluster.registry`. NMM-EM on images runs its
own Lightning loop here (validation curves, checkpoints, ``--resume``); every other method, and
NMM-EM on vectors, runs through its scikit-learn style estimator, images as flattened rows.

The run directory holds ``config.json`` (resolved settings and the command), ``metrics.json``
(ACC/NMI/ARI and seconds for the method and k-means), ``labels.csv`` (the predicted cluster of
every sample, in dataset order), ``model.pt`` for the neural methods (the trained network and its
state, loadable with ``weights_only=True``) and, for NMM-EM on image sets, ``checkpoints/last.ckpt``
(:mod:`routemix.train.resumable`: every epoch, every ``--checkpoint-every`` batches, on SIGINT/SIGTERM)
and ``logs/version_N/metrics.csv`` (learning curves; a resumed run adds the next version). Every
option is checked, and the run directory too (:mod:`routemix.rundir`: a directory holding a run
needs ``--resume`` or ``--overwrite``), before any data is read or file written.

``--devices`` / ``--num-nodes`` train NMM-EM on images data-parallel, as the same algorithm on the
same global batch (:mod:`routemix.train.clustering`); every process runs this job, global rank 0
alone writes the run directory and scores. The other methods run in one process: DDC's and
EDGaM's objectives need the whole batch at once, and the scikit-learn style estimators own their
loops, so more than one device is an error for them rather than a silently different algorithm.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans

from routemix.cluster.base import scaler_offset_and_scale, thesis_network
from routemix.cluster.registry import get_method, make_estimator
from routemix.data import LoadedDataset, load_dataset
from routemix.data.registry import is_tabular_path
from routemix.errors import RoutemixError
from routemix.losses import NMMLoss
from routemix.metrics import clustering_scores
from routemix.rundir import check_run_dir, discarded_if_stopped, read_run_config, resume_conflicts, start_run_dir
from routemix.threads import torch_threads
from routemix.train import CHECKPOINT_EVERY
from routemix.train import clustering as training
from routemix.train.checkpoint import save_checkpoint, write_json, write_text
from routemix.train.common import launched_as_rank_zero, resume_checkpoint, shared_run_dir

# Options of NMM-EM alone, with the value that means "not given".
NMM_OPTIONS = {"gamma": 5.0, "em_lr": None, "consistency_lr": None, "two_fold": True, "normalization": "batch", "priors": False}


@dataclass
class ClusterConfig:
    dataset: str
    method: str = "nmm"
    clusters: int | None = None
    epochs: int | None = None  # None: the method's default (NMM-EM: 200 vector data, 250 images, thesis)
    batch_size: int | None = None  # None: the method's default (NMM-EM: 128)
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
    devices: int = 1  # data-parallel processes per node (nmm on images); batch_size stays the global batch
    num_nodes: int = 1
    strategy: str = "auto"
    checkpoint_every: int = CHECKPOINT_EVERY  # nmm on images: training batches between checkpoints inside an epoch
    progress: bool = True
    resume: bool = False
    overwrite: bool = False  # replace the run already in run_dir (routemix.rundir)
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


def _fit_estimator(cfg: ClusterConfig, dataset: LoadedDataset, run_dir: Path):
    """Any method through its estimator; images go in as flattened rows with ``image_shape``.
    Returns the labels, the state to save (None for the baselines) and the rows the method saw."""
    spec = get_method(cfg.method)
    image = dataset.kind == "image"
    data = dataset.data.reshape(len(dataset), -1).numpy()
    # float64 for vectors, as scikit-learn loaders give it, so the CLI and the Python API agree for one seed;
    # images stay float32 in [0, 1] (MNIST in float64 is 440 MB)
    data = data.astype(np.float32) / 255.0 if image else data.astype(np.float64)
    params = {}
    if spec.deep and cfg.batch_size is not None:
        params["batch_size"] = cfg.batch_size
    if cfg.method == "nmm":
        params.update(gamma=cfg.gamma, learning_rate=cfg.em_lr, consistency_learning_rate=cfg.consistency_lr,
                      two_fold=cfg.two_fold, normalization=cfg.normalization, priors=cfg.priors)
    estimator = make_estimator(
        cfg.method, cfg.clusters, n_features=data.shape[1], image_shape=tuple(dataset.data.shape[1:]) if image else None,
        max_iter=cfg.epochs, random_state=cfg.seed, device=cfg.device, verbose=cfg.progress, **params,
    )
    # a small network on vectors gains nothing from a second thread, and a busy machine costs
    # threads that wait for each other dearly (routemix.threads); the user's OMP_NUM_THREADS rules
    threads = 1 if not image and "OMP_NUM_THREADS" not in os.environ else torch.get_num_threads()
    with torch_threads(threads):
        labels = estimator.fit_predict(data)
    seen = estimator.scaled_input(data) if hasattr(estimator, "scaled_input") else data
    module = getattr(estimator, "module_", None)
    if not isinstance(module, torch.nn.Module):
        return labels, None, seen  # the scikit-learn baselines: labels and metrics only
    state = {"kind": f"{cfg.method}_{'image' if image else 'vector'}", "network": module.state_dict(),
             "cluster_order": torch.as_tensor(estimator.cluster_order_)}
    if hasattr(estimator, "scaler_"):  # (x - mean) / scale, whichever scaler the method uses
        offset, scale = scaler_offset_and_scale(estimator.scaler_)
        state.update(scaler_mean=torch.as_tensor(offset), scaler_scale=torch.as_tensor(scale))
    if hasattr(estimator, "pixel_range_"):
        state["pixel_range"] = list(estimator.pixel_range_)
    return labels, state, seen


def _fit_images(cfg: ClusterConfig, dataset: LoadedDataset, run_dir: Path):
    """NMM-EM on images in its own Lightning loop; returns as :func:`_fit_estimator` does, with
    None for the rows seen: the network takes the pixels themselves."""
    torch.manual_seed(cfg.seed)  # network initialisation and augmentation draws
    network, preprocess, augment = thesis_network(cfg.clusters, image_shape=tuple(dataset.data.shape[1:]))
    loss = NMMLoss(cfg.clusters, cfg.gamma, normalization=cfg.normalization, priors=cfg.priors)
    module = training.NMMModule(
        network, loss, em_lr=cfg.em_lr, consistency_lr=cfg.consistency_lr, two_fold=cfg.two_fold,
        augment=augment, preprocess=preprocess,
    )
    train_loader = training.make_loader(dataset.data, batch_size=cfg.batch_size or 128, shuffle=True, seed=cfg.seed)
    val_loader = None
    if dataset.labels is not None:
        val_loader = training.make_loader(dataset.data, dataset.labels, batch_size=1024, shuffle=False)
    trainer = training.fit(
        module, train_loader, max_epochs=cfg.epochs, val_loader=val_loader, run_dir=run_dir,
        progress=cfg.progress, accelerator=training.accelerator_for(cfg.device), resume=cfg.resume,
        devices=cfg.devices, num_nodes=cfg.num_nodes, strategy=cfg.strategy, checkpoint_every=cfg.checkpoint_every,
    )
    if not trainer.is_global_zero:
        return None, None, None
    module = module.cpu()
    labels = training.predict_proba(module, dataset.data).argmax(axis=1)
    state = {"kind": "nmm_image", "network": network.state_dict(), "loss": loss.state_dict()}
    return labels, state, None  # the network saw the pixels (k-means takes them in [0, 1])


def run_cluster_job(cfg: ClusterConfig) -> ClusterResult | None:
    """One run; None in a data-parallel process other than global rank 0 (rank 0 writes and scores)."""
    get_method(cfg.method)  # an unknown name is an error before any data is loaded
    _check_options(cfg)
    check_run_dir(cfg.run_dir, resume=cfg.resume, overwrite=cfg.overwrite, first_process=launched_as_rank_zero())
    processes = cfg.devices * cfg.num_nodes if isinstance(cfg.devices, int) and isinstance(cfg.num_nodes, int) else 0
    if processes != 1:
        from routemix.train.common import accelerator_for, check_scale_options

        check_scale_options(accelerator=accelerator_for(cfg.device), devices=cfg.devices, num_nodes=cfg.num_nodes,
                            strategy=cfg.strategy, precision="32")
        if cfg.method != "nmm":
            raise RoutemixError(f"--method {cfg.method} trains in one process; --devices/--num-nodes above 1 are for --method nmm on image data.")
        if (cfg.batch_size or 128) % processes:
            raise RoutemixError(f"--batch-size {cfg.batch_size or 128} is the global batch and must split evenly over the {processes} processes.")
    if cfg.method != "nmm":
        given = [name for name, unset in NMM_OPTIONS.items() if getattr(cfg, name) != unset]
        if given:
            flags = ", ".join("--em-only" if n == "two_fold" else f"--{n.replace('_', '-')}" for n in given)
            raise RoutemixError(f"{flags}: options of NMM-EM (--method nmm), which --method {cfg.method} does not take.")
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
    nmm_images = image and cfg.method == "nmm"
    if cfg.resume and not nmm_images:
        raise RoutemixError("--resume continues an NMM-EM image run (the only clustering that keeps checkpoints); drop --resume.")
    if processes > 1 and not nmm_images:
        raise RoutemixError(f"{cfg.dataset} is vector data, which NMM-EM fits in one process; --devices/--num-nodes above 1 are for image data.")
    if cfg.method == "nmm":
        cfg.epochs = cfg.epochs or (250 if image else 200)
        cfg.em_lr = cfg.em_lr or (5e-5 if image else 1e-3)
        cfg.consistency_lr = cfg.consistency_lr or (1e-4 if image else 2e-3)
    if cfg.resume:
        resume_checkpoint(cfg.run_dir)  # corrupt: a clear error before anything is written
        _check_resume_agrees(cfg)

    name = Path(cfg.dataset).stem if is_tabular_path(cfg.dataset) else cfg.dataset
    run_dir = shared_run_dir(cfg.run_dir, f"runs/cluster-{name}-{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}", processes=processes)
    created = not run_dir.exists()
    if launched_as_rank_zero():
        start_run_dir(run_dir, overwrite=cfg.overwrite)
        write_json(run_dir / "config.json", asdict(cfg))

    start = time.perf_counter()
    with discarded_if_stopped(run_dir, created=created and launched_as_rank_zero()):
        labels, state, seen = (_fit_images if nmm_images else _fit_estimator)(cfg, dataset, run_dir)
    seconds = time.perf_counter() - start
    if labels is None:
        return None
    if state is not None:
        save_checkpoint(run_dir / "model.pt", {**state, "config": asdict(cfg)})

    rows = [{"method": cfg.method, "seconds": seconds, **_scores(dataset, labels)}]
    if cfg.kmeans and cfg.method != "kmeans":  # on the input the method saw (standardised vectors for the deep methods)
        start = time.perf_counter()
        if seen is None:
            seen = dataset.data.reshape(len(dataset), -1).float().div(255.0).numpy()
        kmeans_labels = KMeans(cfg.clusters, n_init=10, random_state=cfg.seed).fit_predict(seen)
        rows.append({"method": "kmeans", "seconds": time.perf_counter() - start, **_scores(dataset, kmeans_labels)})
    write_text(run_dir / "labels.csv", "index,cluster\n" + "".join(f"{i},{c}\n" for i, c in enumerate(labels)))
    write_json(run_dir / "metrics.json", {"dataset": cfg.dataset, "n_samples": len(dataset), "results": rows})
    return ClusterResult(run_dir, rows, labels)


def _check_options(cfg: ClusterConfig) -> None:
    """Every number a flag takes, checked before any data is read or file written."""
    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    at_least = {"--clusters": (cfg.clusters, 1), "--epochs": (cfg.epochs, 1), "--batch-size": (cfg.batch_size, 1),
                "--limit": (cfg.limit, 1), "--n-samples": (cfg.n_samples, 1), "--seed": (cfg.seed, 0),
                "--checkpoint-every": (cfg.checkpoint_every, 0)}
    for flag, (value, low) in at_least.items():
        if value is not None and (not whole(value) or value < low):
            raise RoutemixError(f"{flag} takes a whole number of at least {low}, got {value!r}.")
    for flag, value in {"--gamma": cfg.gamma, "--em-lr": cfg.em_lr, "--consistency-lr": cfg.consistency_lr}.items():
        if value is not None and not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise RoutemixError(f"{flag} takes a positive number, got {value!r}.")


# What a resumed run must keep: everything that changes what it computes but the number of epochs.
_RESUME_KEYS = ("dataset", "method", "clusters", "batch_size", "gamma", "em_lr", "consistency_lr", "two_fold",
                "normalization", "priors", "seed", "split", "limit", "n_samples", "label_column")


def _check_resume_agrees(cfg: ClusterConfig) -> None:
    conflicts = resume_conflicts(read_run_config(cfg.run_dir), asdict(cfg), _RESUME_KEYS)
    if conflicts:
        raise RoutemixError(
            f"--resume: this command differs from the run in {cfg.run_dir} ({'; '.join(conflicts)}). "
            "Repeat the run's own options to continue it, or start a new one (--overwrite or another --run-dir)."
        )


def _scores(dataset: LoadedDataset, labels: np.ndarray) -> dict:
    if dataset.labels is None:
        return {"acc": None, "nmi": None, "ari": None}
    return clustering_scores(dataset.labels, labels)
