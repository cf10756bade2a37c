"""``routemix cluster`` (a clustering run of NMM-EM or a peer method, beside k-means) and
``routemix predict`` (the clusters a run gives new data)."""

from __future__ import annotations

import argparse
import sys

from routemix.cluster.config import AUTO, ClusterConfig
from routemix.commands.options import add_config_options, add_option, config_values


def add_parser(commands) -> None:
    cluster = commands.add_parser(
        "cluster", help="cluster a dataset (NMM-EM or a peer method) and compare with k-means"
    )
    add_config_options(cluster, ClusterConfig)
    cluster.set_defaults(handler=run_cluster)

    predict = commands.add_parser(
        "predict", help="the clusters a `routemix cluster` run gives new data (labels.csv's format)"
    )
    predict.add_argument(
        "run", help="the run directory of a `routemix cluster` run of a neural method, or its model.pt"
    )
    predict.add_argument(
        "input", help="registered name, a .csv/.npy file or a folder of images (resized to the run's side)"
    )
    add_option(predict, "out", help="write the labels to this CSV file (default: standard output)")
    add_option(predict, "split")
    add_option(predict, "data_dir")
    add_option(predict, "label_column", help="files: the column holding labels, left out of the features")
    predict.set_defaults(handler=run_predict)


def run_cluster(args: argparse.Namespace) -> int:
    from routemix.cluster.job import run_cluster_job

    cfg = ClusterConfig(**config_values(args, ClusterConfig))
    result = run_cluster_job(cfg)
    if result is None:  # a data-parallel process other than global rank 0: rank 0 reports
        return 0
    chosen = " (chosen: --clusters auto)" if cfg.clusters == AUTO else ""
    print(f"\n{cfg.dataset}: {len(result.labels)} samples, {result.n_clusters} clusters{chosen}")
    print(f"{'method':<14}{'ACC':>8}{'NMI':>8}{'ARI':>8}{'seconds':>10}")
    for row in result.rows:
        cells = "".join(f"{row[k]:>8.4f}" if row[k] is not None else f"{'-':>8}" for k in ("acc", "nmi", "ari"))
        print(f"{row['method']:<14}{cells}{row['seconds']:>10.1f}")
    print(f"run directory: {result.run_dir}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from routemix.cluster.predict import predict_run
    from routemix.storage import write_text

    prediction = predict_run(
        args.run, args.input, data_dir=args.data_dir, split=args.split, label_column=args.label_column
    )
    if args.out is None:
        sys.stdout.write(prediction.csv)
        return 0
    write_text(args.out, prediction.csv)
    sizes = np.bincount(prediction.labels)
    print(
        f"{len(prediction.labels)} samples of {args.input} in {np.count_nonzero(sizes)} clusters "
        f"(sizes {', '.join(map(str, sizes))}): {args.out}"
    )
    return 0
