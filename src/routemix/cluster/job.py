"""One clustering run from the command line: load, fit, score against k-means, write a run dir.

``--method`` picks any method of :mod:`routemix.cluster.registry`, fitted through its
scikit-learn style estimator, images as flattened rows with ``image_shape``. NMM-EM on images
trains in the run directory (``NMMClustering.fit(..., run=TrainingRun(...))``: learning curves,
checkpoints, ``--resume``, several processes). The dataset is a registered name, a ``.csv`` /
``.npy`` file, or a folder of the user's images (:mod:`routemix.data.folder`, ``--image-size``).

The run directory holds ``config.json`` (the settings as given and the command; ``None`` is the
method's default), ``metrics.json`` (ACC/NMI/ARI and seconds for the method and k-means),
``labels.csv`` (the cluster of every sample, in dataset order, by file for a folder; clusters
numbered by size), ``model.pt`` for the neural methods but N2D (the fitted estimator in the
format of :mod:`routemix.cluster.saved`, which ``routemix predict`` and ``routemix viz`` read)
and, for NMM-EM on images, ``checkpoints/last.ckpt``
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
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans

from routemix.cluster.config import AUTO, DEFAULT_MAX_CLUSTERS, ClusterConfig
from routemix.cluster.registry import estimator_class, get_method, make_estimator
from routemix.cluster.saved import save_clusterer
from routemix.data import LoadedDataset, load_dataset
from routemix.data.registry import is_tabular_path
from routemix.errors import RoutemixError
from routemix.metrics import clustering_scores
from routemix.rundir import check_run_dir, discarded_if_stopped, read_run_config, resume_conflicts, start_run_dir
from routemix.storage import write_json, write_text
from routemix.threads import torch_threads
from routemix.train.clustering import TrainingRun
from routemix.train.common import launched_as_rank_zero, resume_checkpoint, shared_run_dir

# Options of NMM-EM alone (None: the estimator's default), and their names in NMMClustering.
NMM_OPTIONS = ("gamma", "em_lr", "consistency_lr", "two_fold", "normalization", "priors", "max_clusters")
ESTIMATOR_NAMES = {"em_lr": "learning_rate", "consistency_lr": "consistency_learning_rate"}


@dataclass
class ClusterResult:
    run_dir: Path
    rows: list[dict]  # one per method: name, acc, nmi, ari, seconds
    labels: np.ndarray
    n_clusters: int  # as asked, or as NMM-EM chose it (--clusters auto)


def _check_data(dataset: LoadedDataset, clusters: int | str, max_clusters: int | None = None) -> None:
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
    bound = max_clusters or DEFAULT_MAX_CLUSTERS
    if clusters == AUTO and n <= bound:
        raise RoutemixError(
            f"dataset {dataset.name!r} has {n} samples and --clusters auto tries up to {bound} clusters: "
            f"use --max-clusters {n - 1} or fewer."
        )
    if clusters != AUTO and n < clusters:
        raise RoutemixError(
            f"dataset {dataset.name!r} has {n} samples, fewer than the {clusters} clusters asked for: "
            f"use --clusters {n} or fewer."
        )


def estimator_rows(samples: torch.Tensor) -> np.ndarray:
    """A dataset's samples as the rows its estimator takes: images (uint8) flattened to float32 in
    [0, 1] (MNIST in float64 would be 440 MB), vectors as float64, as scikit-learn's loaders give
    them, so the CLI and the Python API agree for one seed."""
    rows = samples.reshape(len(samples), -1).numpy()
    return rows.astype(np.float32) / 255.0 if samples.dim() == 4 else rows.astype(np.float64)


def _fit(cfg: ClusterConfig, dataset: LoadedDataset, run_dir: Path):
    """Fit the method's estimator; images go in as flattened rows with ``image_shape``. NMM-EM on
    images trains in ``run_dir`` (learning curves, checkpoints, resume, several processes).
    Returns the fitted estimator, its labels and the rows it was given."""
    spec = get_method(cfg.method)
    image = dataset.kind == "image"
    data = estimator_rows(dataset.data)
    params = {}
    if spec.deep and cfg.batch_size is not None:
        params["batch_size"] = cfg.batch_size
    if cfg.method == "nmm":
        given = {name: getattr(cfg, name) for name in NMM_OPTIONS if getattr(cfg, name) is not None}
        params.update({ESTIMATOR_NAMES.get(name, name): value for name, value in given.items()})
    estimator = make_estimator(
        cfg.method,
        cfg.clusters,
        n_features=data.shape[1],
        image_shape=tuple(dataset.data.shape[1:]) if image else None,
        max_iter=cfg.epochs,
        random_state=cfg.seed,
        device=cfg.device,
        verbose=cfg.progress,
        **params,
    )
    fit_options = {}
    if image and cfg.method == "nmm" and cfg.clusters != AUTO:  # auto: one fit per K, no checkpoints
        fit_options["run"] = TrainingRun(
            run_dir,
            resume=cfg.resume,
            devices=cfg.devices,
            num_nodes=cfg.num_nodes,
            strategy=cfg.strategy,
            checkpoint_every=cfg.checkpoint_every,
        )
    # a small network on vectors gains nothing from a second thread, and a busy machine costs
    # threads that wait for each other dearly (routemix.threads); the user's OMP_NUM_THREADS rules
    threads = 1 if not image and "OMP_NUM_THREADS" not in os.environ else torch.get_num_threads()
    with torch_threads(threads):
        if fit_options:  # (scikit-learn's fit_predict passes no y to fit, and y here feeds the learning curves)
            labels = estimator.fit(data, dataset.labels, **fit_options).labels_
        else:
            labels = estimator.fit_predict(data)
    return estimator, labels, data


def run_cluster_job(cfg: ClusterConfig) -> ClusterResult | None:
    """One run; None in a data-parallel process other than global rank 0 (rank 0 writes and scores)."""
    get_method(cfg.method)  # an unknown name is an error before any data is loaded
    _check_options(cfg)
    check_run_dir(cfg.run_dir, resume=cfg.resume, overwrite=cfg.overwrite, first_process=launched_as_rank_zero())
    processes = cfg.devices * cfg.num_nodes if isinstance(cfg.devices, int) and isinstance(cfg.num_nodes, int) else 0
    if processes != 1:
        from routemix.train.common import accelerator_for, check_scale_options

        check_scale_options(
            accelerator=accelerator_for(cfg.device),
            devices=cfg.devices,
            num_nodes=cfg.num_nodes,
            strategy=cfg.strategy,
            precision="32",
        )
        if cfg.method != "nmm":
            raise RoutemixError(
                f"--method {cfg.method} trains in one process; "
                "--devices/--num-nodes above 1 are for --method nmm on image data."
            )
        batch_size = cfg.batch_size or estimator_class("nmm")().batch_size
        if batch_size % processes:
            raise RoutemixError(
                f"--batch-size {batch_size} is the global batch and must split evenly over the {processes} processes."
            )
    if cfg.method != "nmm":
        given = [name for name in NMM_OPTIONS if getattr(cfg, name) is not None]
        if given:
            flags = ", ".join("--em-only" if n == "two_fold" else f"--{n.replace('_', '-')}" for n in given)
            raise RoutemixError(
                f"{flags}: options of NMM-EM (--method nmm), which --method {cfg.method} does not take."
            )
    dataset = load_data(cfg)
    report_skipped(dataset)
    if cfg.clusters is None:
        if dataset.num_classes is None:
            raise RoutemixError(f"{cfg.dataset} has no labels to count classes from: pass --clusters K.")
        cfg.clusters = dataset.num_classes
    _check_data(dataset, cfg.clusters, cfg.max_clusters)
    image = dataset.kind == "image"
    nmm_images = image and cfg.method == "nmm"
    if cfg.resume and not nmm_images:
        raise RoutemixError(
            "--resume continues an NMM-EM image run (the only clustering that keeps checkpoints); drop --resume."
        )
    if processes > 1 and not nmm_images:
        raise RoutemixError(
            f"{cfg.dataset} is vector data, which NMM-EM fits in one process; "
            "--devices/--num-nodes above 1 are for image data."
        )
    if cfg.resume:
        resume_checkpoint(cfg.run_dir)  # corrupt: a clear error before anything is written
        _check_resume_agrees(cfg)

    run_dir = shared_run_dir(
        cfg.run_dir,
        f"runs/cluster-{_run_name(cfg.dataset)}-{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}",
        processes=processes,
    )
    created = not run_dir.exists()
    if launched_as_rank_zero():
        start_run_dir(run_dir, overwrite=cfg.overwrite)
        write_json(run_dir / "config.json", asdict(cfg))

    start = time.perf_counter()
    with discarded_if_stopped(run_dir, created=created and launched_as_rank_zero()):
        estimator, labels, rows_given = _fit(cfg, dataset, run_dir)
    seconds = time.perf_counter() - start
    if not launched_as_rank_zero():
        return None  # global rank 0 writes the run
    if get_method(cfg.method).deep and not getattr(estimator, "_not_storable", None):
        save_clusterer(estimator, run_dir / "model.pt", config=asdict(cfg))

    n_clusters = int(getattr(estimator, "n_clusters_", cfg.clusters))
    rows = [{"method": cfg.method, "seconds": seconds, **_scores(dataset, labels)}]
    if cfg.kmeans and cfg.method != "kmeans" and dataset.labels is not None:
        rows += _kmeans_rows(cfg, dataset, estimator, rows_given, n_clusters)
    write_text(run_dir / "labels.csv", labels_csv(dataset, labels))
    metrics = {"dataset": cfg.dataset, "n_samples": len(dataset), "n_clusters": n_clusters, "results": rows}
    if getattr(estimator, "cluster_count_scores_", None) is not None:
        metrics["cluster_count_scores"] = estimator.cluster_count_scores_
    if dataset.skipped:
        metrics["skipped_files"] = [{"file": name, "reason": reason} for name, reason in dataset.skipped]
    write_json(run_dir / "metrics.json", metrics)
    return ClusterResult(run_dir, rows, labels, n_clusters)


def load_data(cfg: ClusterConfig, *, data_dir: str | None = None) -> LoadedDataset:
    """The samples a run clusters, as its settings describe them (``routemix viz`` reloads a run's
    data with this too); ``data_dir`` replaces the run's own."""
    dataset = load_dataset(
        cfg.dataset,
        data_dir=data_dir or cfg.data_dir,
        download=cfg.download,
        split=cfg.split,
        label_column=cfg.label_column,
        n_samples=cfg.n_samples,
        random_state=cfg.seed,
        image_size=cfg.image_size,
    )
    if cfg.limit is not None:
        dataset.data = dataset.data[: cfg.limit]
        dataset.labels = None if dataset.labels is None else dataset.labels[: cfg.limit]
        dataset.files = None if dataset.files is None else dataset.files[: cfg.limit]
    return dataset


def report_skipped(dataset: LoadedDataset, *, shown: int = 5) -> None:
    """Name on stderr the files of a folder that could not be read (and were left out)."""
    if not dataset.skipped:
        return
    named = "; ".join(f"{name} ({reason})" for name, reason in dataset.skipped[:shown])
    more = f"; and {len(dataset.skipped) - shown} more" if len(dataset.skipped) > shown else ""
    print(f"routemix: skipped {len(dataset.skipped)} unreadable image file(s): {named}{more}", file=sys.stderr)


def labels_csv(dataset: LoadedDataset, labels: np.ndarray) -> str:
    """``labels.csv``: the cluster of every sample, in dataset order, by file for a folder of images."""
    if dataset.files is not None:
        return "file,cluster\n" + "".join(f"{_csv_field(f)},{c}\n" for f, c in zip(dataset.files, labels))
    return "index,cluster\n" + "".join(f"{i},{c}\n" for i, c in enumerate(labels))


def _csv_field(text: str) -> str:
    """A file name as one CSV field (quoted when it holds a comma, a quote or a line break)."""
    return '"' + text.replace('"', '""') + '"' if any(ch in text for ch in ',"\n\r') else text


def _run_name(dataset: str) -> str:
    """The dataset's part of a default run directory's name: a file's stem, a folder's name, or the registered name."""
    path = Path(dataset)
    if is_tabular_path(dataset):
        return path.stem
    return (path.resolve().name or dataset) if path.is_dir() else dataset


def _check_options(cfg: ClusterConfig) -> None:
    """Every number a flag takes, checked before any data is read or file written."""

    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if cfg.clusters == AUTO:
        if cfg.method != "nmm":
            raise RoutemixError(f"--clusters auto is NMM-EM's (--method nmm); --method {cfg.method} needs a number.")
        if cfg.resume:
            raise RoutemixError("--clusters auto fits once per K and keeps no checkpoints to resume; drop --resume.")
        if (cfg.devices, cfg.num_nodes) != (1, 1):
            raise RoutemixError("--clusters auto fits in one process; drop --devices/--num-nodes or give K.")
    elif cfg.max_clusters is not None:
        raise RoutemixError("--max-clusters bounds --clusters auto; drop it or pass --clusters auto.")
    at_least = {
        "--clusters": (None if cfg.clusters == AUTO else cfg.clusters, 1),
        "--max-clusters": (cfg.max_clusters, 2),
        "--epochs": (cfg.epochs, 1),
        "--batch-size": (cfg.batch_size, 1),
        "--limit": (cfg.limit, 1),
        "--n-samples": (cfg.n_samples, 1),
        "--seed": (cfg.seed, 0),
        "--checkpoint-every": (cfg.checkpoint_every, 0),
    }
    for flag, (value, low) in at_least.items():
        if value is not None and (not whole(value) or value < low):
            raise RoutemixError(f"{flag} takes a whole number of at least {low}, got {value!r}.")
    for flag, value in {"--gamma": cfg.gamma, "--em-lr": cfg.em_lr, "--consistency-lr": cfg.consistency_lr}.items():
        if value is not None and not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise RoutemixError(f"{flag} takes a positive number, got {value!r}.")


# What a resumed run may change: the number of epochs and where and how it runs. Every other
# setting changes what it computes and must agree with the run's config.json (new settings are
# checked by default).
_FREE_ON_RESUME = {
    "epochs",
    "data_dir",
    "download",
    "device",
    "devices",
    "num_nodes",
    "strategy",
    "checkpoint_every",
    "progress",
    "resume",
    "overwrite",
    "run_dir",
    "kmeans",
    "command",
}
_RESUME_KEYS = tuple(f.name for f in fields(ClusterConfig) if f.name not in _FREE_ON_RESUME)


def _check_resume_agrees(cfg: ClusterConfig) -> None:
    conflicts = resume_conflicts(read_run_config(cfg.run_dir), asdict(cfg), _RESUME_KEYS)
    if conflicts:
        raise RoutemixError(
            f"--resume: this command differs from the run in {cfg.run_dir} ({'; '.join(conflicts)}). "
            "Repeat the run's own options to continue it, or start a new one (--overwrite or another --run-dir)."
        )


def _kmeans_rows(cfg: ClusterConfig, dataset: LoadedDataset, estimator, rows_given, n_clusters: int) -> list[dict]:
    """The k-means rows beside a method: ``kmeans`` on the input as given (what ``--method kmeans``
    and the papers' k-means rows use) and, where the method standardised vectors, ``kmeans-scaled``
    on the input as the method saw it, with the method's number of clusters. Either can be the
    stronger baseline: standardising helps features in different units (a CSV of lengths and
    weights) and hurts pixels (digits: 0.59 against 0.79). Images are scaled to [0, 1] only,
    which k-means does not see, so they get one row."""
    inputs = {"kmeans": rows_given}
    if hasattr(estimator, "scaled_input"):
        scaled = estimator.scaled_input(rows_given)
        inputs = {"kmeans": scaled} if dataset.kind == "image" else {"kmeans": rows_given, "kmeans-scaled": scaled}
    rows = []
    for method, data in inputs.items():
        start = time.perf_counter()
        labels = KMeans(n_clusters, n_init=10, random_state=cfg.seed).fit_predict(data)
        rows.append({"method": method, "seconds": time.perf_counter() - start, **_scores(dataset, labels)})
    return rows


def _scores(dataset: LoadedDataset, labels: np.ndarray) -> dict:
    if dataset.labels is None:
        return {"acc": None, "nmi": None, "ari": None}
    return clustering_scores(dataset.labels, labels)
