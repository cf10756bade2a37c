"""Seconds per epoch of each deep clustering method on MNIST, for the ``cpu`` budget of
``routemix bench clustering`` (``routemix.bench.clustering.CPU_SECONDS_PER_EPOCH``).

Fits each method for one epoch (one per stage for the MoE, one of pre-training and one joint for
EDGaM) on the first ``--images`` MNIST images with a learning curve, and prints each stage's
seconds per epoch scaled to all 70,000 images (time per epoch is linear in the images seen).
Run it on an idle machine:

    OMP_NUM_THREADS=1 python scripts/calibrate_cpu_budget.py --data-dir ../shared/data --images 7000 --threads 1
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from routemix.cluster.registry import make_estimator
from routemix.data import load_dataset
from routemix.train.curves import LearningCurve

ONE_EPOCH = {"nmm": {}, "iic": {}, "ddc": {}, "edgam": {"pretrain_epochs": 1}, "moe": {"base_width": 16}, "n2d": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--images", type=int, default=7000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default=",".join(ONE_EPOCH))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist", data_dir=args.data_dir)
    x = data.data[: args.images].reshape(args.images, -1).numpy().astype(np.float32) / 255.0
    labels = np.asarray(data.labels[: args.images])
    scale = 70_000 / args.images
    for method in args.methods.split(","):
        estimator = make_estimator(
            method,
            10,
            n_features=784,
            image_shape=(1, 28, 28),
            max_iter=5 if method == "moe" else 1,
            random_state=0,
            **ONE_EPOCH[method],
        )
        with LearningCurve(labels) as curve:
            estimator.fit(x)
        total = curve.seconds()
        previous, stages = 0.0, []
        for point in curve.points:
            stages.append((point["stage"], round((point["seconds"] - previous) * scale, 1)))
            previous = point["seconds"]
        print(
            json.dumps(
                {
                    "method": method,
                    "images": args.images,
                    "threads": args.threads,
                    "seconds_per_70k_epoch_by_stage": stages,
                    "fit_seconds_scaled": round(total * scale, 1),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
