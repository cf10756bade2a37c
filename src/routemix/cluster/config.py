"""What ``routemix cluster`` takes: :class:`ClusterConfig`, each field with its flag's help (:mod:`routemix.fields`).

Apart from :mod:`routemix.cluster.job`, which imports PyTorch and scikit-learn, so that the command
line builds its ``cluster`` options from these fields without importing them.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from routemix.cluster.registry import METHODS
from routemix.fields import flag
from routemix.train import CHECKPOINT_EVERY

AUTO = "auto"  # --clusters auto: NMM-EM chooses K (routemix.cluster.nclusters)
# The largest K that NMMClustering(n_clusters="auto") and `routemix cluster -k auto` consider.
DEFAULT_MAX_CLUSTERS = 15


def cluster_count(text: str) -> int | str:
    """``--clusters``: a number of clusters, or ``auto``."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number of clusters or 'auto', got {text!r}") from None


@dataclass
class ClusterConfig:
    """One ``routemix cluster`` run; ``None``: the method's own default (its estimator's parameter)."""

    dataset: str = field(
        metadata=flag(
            "registered name (see `routemix datasets`), a .csv/.npy file or a folder of images", positional=True
        )
    )
    method: str = field(default="nmm", metadata=flag(f"clustering method: {', '.join(METHODS)} (default: nmm)"))
    clusters: int | str | None = field(
        default=None,
        metadata=flag(
            "number of clusters (default: the number of classes), or auto: nmm fits every K up to "
            "--max-clusters and keeps the one most modular on the samples' neighbour graph",
            aliases=("-k",),
            parse=cluster_count,
        ),
    )
    max_clusters: int | None = field(
        default=None,
        metadata=flag(f"nmm with --clusters auto: the largest K considered (default {DEFAULT_MAX_CLUSTERS})"),
    )
    epochs: int | None = field(
        default=None, metadata=flag("training epochs (default: the method's; nmm: 200 vector data, 250 images)")
    )
    batch_size: int | None = field(default=None, metadata=flag("samples per step (default: the method's; nmm: 128)"))
    gamma: float | None = field(default=None, metadata=flag("nmm: temperature of eq. 4.12 (default 5, for batch 128)"))
    em_lr: float | None = field(
        default=None, metadata=flag("nmm: Adam LR of the EM step (default 1e-3 vectors, 5e-5 images)")
    )
    consistency_lr: float | None = field(
        default=None, metadata=flag("nmm: Adam LR of the consistency step (default 2e-3 / 1e-4)")
    )
    two_fold: bool | None = field(
        default=None,
        metadata=flag("nmm: EM optimisation only (eq. 4.23), no consistency step", flags=("--em-only",), sets=False),
    )
    normalization: str | None = field(
        default=None, metadata=flag("nmm: score normalisation (default: batch)", choices=("batch", "running", "none"))
    )
    priors: bool | None = field(default=None, metadata=flag("nmm: estimate cluster priors (uneven clusters)"))
    seed: int = 0
    split: str = "all"
    data_dir: str | None = None
    download: bool = False
    label_column: str | None = field(
        default=None, metadata=flag("files: the column holding labels (name or 0-based index)")
    )
    n_samples: int | None = field(default=None, metadata=flag("synthetic 2-D sets: number of samples"))
    image_size: int | None = field(
        default=None,
        metadata=flag(
            "a folder of images: resize each (shorter side S, centre crop) to SxS; "
            "needed when its images differ in size",
            metavar="S",
        ),
    )
    limit: int | None = field(default=None, metadata=flag("use only the first N samples (quick runs)"))
    device: str = "auto"
    devices: int = field(
        default=1,
        metadata=flag(
            "nmm on images: data-parallel processes per node (default 1); --batch-size stays the global batch"
        ),
    )
    num_nodes: int = field(
        default=1, metadata=flag("nmm on images: machines, each running --devices processes (default 1)")
    )
    strategy: str = "auto"
    checkpoint_every: int = field(
        default=CHECKPOINT_EVERY,
        metadata=flag(
            f"nmm on images: also save last.ckpt every N training batches inside an epoch "
            f"(default {CHECKPOINT_EVERY}; 0: at epoch ends only)"
        ),
    )
    progress: bool = True
    resume: bool = field(default=False, metadata=flag("nmm on images: continue from RUN_DIR/checkpoints/last.ckpt"))
    overwrite: bool = False  # replace the run already in run_dir (routemix.rundir)
    run_dir: str | None = field(
        default=None, metadata=flag("output directory (default: runs/cluster-DATASET-METHOD-TIME)")
    )
    kmeans: bool = field(default=True, metadata=flag("skip the k-means comparison", flags=("--no-kmeans",), sets=False))
    command: list[str] = field(default_factory=lambda: list(sys.argv))
