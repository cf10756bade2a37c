"""EDGaM on the first N images of MNIST or Fashion-MNIST, with appendix E's signals over the joint
stage (docs/RESULTS.md, "MNIST and Fashion-MNIST, all 70,000 images"): what the joint stage does
to the pre-trained partition, seen where a fit takes minutes instead of the benchmark's half hour.

Prints one JSON line: the settings, the learning curve (ACC every 5 epochs, pre-training and joint
stage), the mean largest responsibility per joint epoch, the final agreement with k-means on the
learned embedding, the learned betas, the cluster sizes and the spread (std) of the centroids.

    OMP_NUM_THREADS=1 python scripts/edgam_image_subset.py DATASET 'JSON_SETTINGS' [N_IMAGES] [DATA_DIR]

for example ``fashion_mnist '{"architecture": "conv", "pretrain_epochs": 15, "max_iter": 30,
"cluster_weight": 0.05, "correction_weight": 0.001}' 10000 ../shared/data``.

A diagnostic, not an estimator option: the setting ``"freeze_betas": true`` keeps eq. 4/6's betas
at their initial value instead of learning them (the estimator always learns them, as the paper
does), to see whether the joint stage's drift comes from the betas going to 0. Every other setting is an
estimator parameter (``"cluster_responsibilities": "differentiable"`` gives eq. 7's gradient
through the responsibilities, as routemix did before 2026-12-06's evening).
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import torch

from routemix.cluster import EDGaMClustering
from routemix.data import load_dataset
from routemix.losses.edgam import UnfoldedGaussianMixture
from routemix.train.curves import LearningCurve


def freeze_betas() -> None:
    """Every mixture built from now on keeps its betas fixed (a diagnostic; see the docstring)."""
    build = UnfoldedGaussianMixture.__init__

    def build_frozen(self, *args, **kwargs):
        build(self, *args, **kwargs)
        self.betas.requires_grad_(False)

    UnfoldedGaussianMixture.__init__ = build_frozen


def main(dataset: str, settings: dict, n_images: int, data_dir: str) -> dict:
    torch.set_num_threads(1)
    settings = dict(settings)
    if settings.pop("freeze_betas", False):
        freeze_betas()
    data = load_dataset(dataset, data_dir=data_dir)
    images = data.data[:n_images].reshape(n_images, -1).numpy().astype(np.float32) / 255.0
    labels = np.asarray(data.labels[:n_images])
    with warnings.catch_warnings(), LearningCurve(labels, every_n_epochs=5) as curve:
        warnings.simplefilter("ignore")  # the soft-assignment warning is reported below as numbers
        model = EDGaMClustering(10, image_shape=(1, 28, 28), random_state=0, **settings).fit(images)
    return {
        "dataset": dataset, "n_images": n_images, "settings": settings, "frozen_betas": not model.module_.mixture.betas.requires_grad,
        "curve": [(point["stage"], point["epoch"], round(point["acc"], 3)) for point in curve.points],
        "confidence_per_epoch": [round(v, 3) for v in model.module_.confidence_history],
        "confidence": model.assignment_confidence_, "kmeans_agreement": model.kmeans_agreement_,
        "betas": model.betas_.tolist(), "cluster_sizes": np.bincount(model.labels_, minlength=10).tolist(),
        "centroid_std": float(torch.as_tensor(model.cluster_centers_).std()),
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(main(args[0], json.loads(args[1]), int(args[2]) if len(args) > 2 else 10_000,
                          args[3] if len(args) > 3 else "../shared/data")), flush=True)
