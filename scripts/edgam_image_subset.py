"""EDGaM on the first N images of MNIST or Fashion-MNIST, with appendix E's signals over the joint
stage (docs/RESULTS.md, "MNIST and Fashion-MNIST, all 70,000 images"): what the joint stage does
to the pre-trained partition, seen where a fit takes minutes instead of the benchmark's half hour.

Prints one JSON line: the settings, the learning curve (ACC every 5 epochs, pre-training and joint
stage), the mean largest responsibility per joint epoch, the final agreement with k-means on the
learned embedding, the learned betas, the cluster sizes and the spread (std) of the centroids.

    OMP_NUM_THREADS=1 python scripts/edgam_image_subset.py DATASET 'JSON_SETTINGS' [N_IMAGES] [DATA_DIR]

for example ``fashion_mnist '{"architecture": "conv", "pretrain_epochs": 15, "max_iter": 30,
"cluster_weight": 0.05, "correction_weight": 0.001}' 10000 ../shared/data``.

Two diagnostics, not estimator options:

* ``"freeze_betas": true`` keeps eq. 4/6's betas at their initial value instead of learning them
  (the estimator always learns them, as the paper does), to see whether the joint stage's drift
  comes from the betas going to 0.
* ``"soft_start": TARGET`` starts the joint stage with soft assignments, as appendix E's hint 4
  asks (mean largest responsibility "around 0.5 in the first few iterations"): after pre-training
  and the k-means centroids, the embedding is shrunk by the factor s that makes the mean largest
  responsibility equal TARGET (the encoder's last layer and the centroids divided by s, eq. 8's
  fusion layer multiplied by s, so the reconstruction is unchanged and only the mixture sees a
  smaller embedding); s is reported as ``soft_start_scale``.

Every other setting is an estimator parameter (``"cluster_responsibilities": "differentiable"``
gives eq. 7's gradient through the responsibilities, as routemix did before 2026-12-06's evening).
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import torch

from routemix.cluster import EDGaMClustering
from routemix.data import load_dataset
from routemix.losses.edgam import UnfoldedGaussianMixture, e_step
from routemix.train import clustering as training
from routemix.train import edgam as edgam_training
from routemix.train.curves import LearningCurve


def freeze_betas() -> None:
    """Every mixture built from now on keeps its betas fixed (a diagnostic; see the docstring)."""
    build = UnfoldedGaussianMixture.__init__

    def build_frozen(self, *args, **kwargs):
        build(self, *args, **kwargs)
        self.betas.requires_grad_(False)

    UnfoldedGaussianMixture.__init__ = build_frozen


def soft_scale(z: torch.Tensor, centroids: torch.Tensor, target: float) -> float:
    """The s > 1 at which the mean largest responsibility of ``z / s`` under ``centroids / s`` is ``target``."""
    low, high = 1.0, 1e3
    for _ in range(40):  # bisection in log scale; the confidence falls as s grows
        scale = (low * high) ** 0.5
        confidence = e_step(z / scale, centroids / scale).max(dim=1).values.mean().item()
        low, high = (scale, high) if confidence > target else (low, scale)
    return scale


def start_soft(target: float, record: dict) -> None:
    """Every EDGaM joint stage trained from now on starts with its embedding shrunk to ``target``
    (a diagnostic; see the docstring); the scale goes to ``record["soft_start_scale"]``."""
    fit = training.fit

    def fit_soft(module, loader, **kwargs):
        if isinstance(module, edgam_training.EDGaMModule):
            z = edgam_training.embed(module, loader.dataset.tensors[0])
            scale = soft_scale(z, module.mixture.centroids.detach(), target)
            last = [m for m in module.autoencoder.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
            with torch.no_grad():
                last.weight /= scale
                last.bias /= scale
                module.mixture.centroids /= scale
                module.fusion.weight *= scale
            record["soft_start_scale"] = scale
        return fit(module, loader, **kwargs)

    training.fit = fit_soft


def main(dataset: str, settings: dict, n_images: int, data_dir: str) -> dict:
    torch.set_num_threads(1)
    settings = dict(settings)
    if settings.pop("freeze_betas", False):
        freeze_betas()
    record: dict = {}
    if "soft_start" in settings:
        start_soft(float(settings.pop("soft_start")), record)
    data = load_dataset(dataset, data_dir=data_dir)
    images = data.data[:n_images].reshape(n_images, -1).numpy().astype(np.float32) / 255.0
    labels = np.asarray(data.labels[:n_images])
    with warnings.catch_warnings(), LearningCurve(labels, every_n_epochs=5) as curve:
        warnings.simplefilter("ignore")  # the soft-assignment warning is reported below as numbers
        model = EDGaMClustering(10, image_shape=(1, 28, 28), random_state=0, **settings).fit(images)
    return {
        "dataset": dataset,
        "n_images": n_images,
        "settings": settings,
        "frozen_betas": not model.module_.mixture.betas.requires_grad,
        **record,
        "curve": [(point["stage"], point["epoch"], round(point["acc"], 3)) for point in curve.points],
        "confidence_per_epoch": [round(v, 3) for v in model.module_.confidence_history],
        "confidence": model.assignment_confidence_,
        "kmeans_agreement": model.kmeans_agreement_,
        "betas": model.betas_.tolist(),
        "cluster_sizes": np.bincount(model.labels_, minlength=10).tolist(),
        "centroid_std": float(torch.as_tensor(model.cluster_centers_).std()),
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    print(
        json.dumps(
            main(
                args[0],
                json.loads(args[1]),
                int(args[2]) if len(args) > 2 else 10_000,
                args[3] if len(args) > 3 else "../shared/data",
            )
        ),
        flush=True,
    )
