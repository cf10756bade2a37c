"""EDGaM on scikit-learn's digits: the paper's recipe against the pre-training routemix adds, and
the readings of eq. 6 and eq. 9 (docs/RESULTS.md, "EDGaM: what the paper leaves out").

Each variant is ``EDGaMClustering`` with the parameters below, 100 joint epochs, seeds 0-2, one
thread. Prints one JSON line per fit: ACC/NMI/ARI, appendix E's signals (mean largest
responsibility, agreement with k-means on the learned embedding), the ACC of k-means on the
pre-trained embedding (the last pre-training point of the learning curve) and seconds.

    OMP_NUM_THREADS=1 python scripts/edgam_digits_ablation.py [VARIANT ...]
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import torch
from sklearn.datasets import load_digits

from routemix.cluster import EDGaMClustering
from routemix.metrics import clustering_scores
from routemix.train.curves import LearningCurve

# The table in docs/RESULTS.md was measured when eq. 7 still took its gradient through the
# responsibilities; every variant keeps that reading, so this script repeats the table.
PRETRAINED = {"pretrain_epochs": 50, "centroid_init": "kmeans", "cluster_responsibilities": "differentiable"}
VARIANTS = {
    "paper": {"pretrain_epochs": 0, "centroid_init": "glorot", "cluster_responsibilities": "differentiable"},
    "pretrained": PRETRAINED,
    "pretrained-mean": {**PRETRAINED, "reconstruction": "mean"},
    "pretrained-printed": {**PRETRAINED, "moment_update": "printed"},
    "pixels": {**PRETRAINED, "image_shape": (1, 8, 8), "architecture": "dense"},
    "pixels-usps-etas": {
        **PRETRAINED,
        "image_shape": (1, 8, 8),
        "architecture": "dense",
        "cluster_weight": 0.1,
        "correction_weight": 0.05,
    },
    "minmax": {**PRETRAINED, "input_scaling": "minmax"},
}


def main() -> None:
    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    for name in sys.argv[1:] or VARIANTS:
        for seed in (0, 1, 2):
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught, LearningCurve(y, every_n_epochs=25) as curve:
                warnings.simplefilter("always")
                model = EDGaMClustering(10, max_iter=100, random_state=seed, **VARIANTS[name]).fit(X)
            pretrained = [p["acc"] for p in curve.points if p["stage"] == "AutoencoderModule"]
            print(
                json.dumps(
                    {
                        "variant": name,
                        "seed": seed,
                        **clustering_scores(y, model.labels_),
                        "confidence": model.assignment_confidence_,
                        "kmeans_agreement": model.kmeans_agreement_,
                        "pretrained_kmeans_acc": pretrained[-1] if pretrained else None,
                        "seconds": time.perf_counter() - start,
                        "soft_warning": any("stay soft" in str(w.message) for w in caught),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
