"""EDGaM's joint stage started with soft assignments, as appendix E's hint 4 asks (mean largest
responsibility "around 0.5 in the first few iterations", rising to 1), on the first N images
(docs/RESULTS.md, "MNIST and Fashion-MNIST after the evening's fixes").

After pre-training and the k-means centroids, the embedding is shrunk by the factor s that makes
the mean largest responsibility equal TARGET: the encoder's last layer and the centroids are
divided by s and the fusion layer of eq. 8 multiplied by s, so the reconstruction is unchanged
and only the mixture sees a smaller embedding. A diagnostic, not an estimator option.

    OMP_NUM_THREADS=1 python scripts/edgam_soft_start.py DATASET 'JSON_SETTINGS' TARGET [N_IMAGES] [DATA_DIR]

Prints one JSON line: the scale, the learning curve, the confidence per joint epoch, the agreement
with k-means on the learned embedding, the betas and the cluster sizes.
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import torch

from routemix.cluster import EDGaMClustering
from routemix.data import load_dataset
from routemix.losses.edgam import e_step
from routemix.train import clustering as training
from routemix.train import edgam as edgam_training
from routemix.train.curves import LearningCurve


def soft_scale(z: torch.Tensor, centroids: torch.Tensor, target: float) -> float:
    """The s > 1 at which the mean largest responsibility of ``z / s`` under ``centroids / s`` is ``target``."""
    low, high = 1.0, 1e3
    for _ in range(40):  # bisection in log scale; the confidence falls as s grows
        scale = (low * high) ** 0.5
        confidence = e_step(z / scale, centroids / scale).max(dim=1).values.mean().item()
        low, high = (scale, high) if confidence > target else (low, scale)
    return scale


def start_soft(target: float, record: dict) -> None:
    """Every EDGaM joint stage trained from now on starts with its embedding shrunk to ``target``."""
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
            record["scale"] = scale
        return fit(module, loader, **kwargs)

    training.fit = fit_soft


def main(dataset: str, settings: dict, target: float, n_images: int, data_dir: str) -> dict:
    torch.set_num_threads(1)
    record: dict = {}
    start_soft(target, record)
    data = load_dataset(dataset, data_dir=data_dir)
    images = data.data[:n_images].reshape(n_images, -1).numpy().astype(np.float32) / 255.0
    labels = np.asarray(data.labels[:n_images])
    with warnings.catch_warnings(), LearningCurve(labels, every_n_epochs=5) as curve:
        warnings.simplefilter("ignore")  # the soft-assignment warning is expected here; the numbers say it
        model = EDGaMClustering(10, image_shape=(1, 28, 28), random_state=0, **settings).fit(images)
    return {
        "dataset": dataset, "n_images": n_images, "settings": settings, "target": target, **record,
        "curve": [(point["stage"], point["epoch"], round(point["acc"], 3)) for point in curve.points],
        "confidence_per_epoch": [round(v, 3) for v in model.module_.confidence_history],
        "kmeans_agreement": model.kmeans_agreement_, "betas": model.betas_.tolist(),
        "cluster_sizes": np.bincount(model.labels_, minlength=10).tolist(),
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(main(args[0], json.loads(args[1]), float(args[2]), int(args[3]) if len(args) > 3 else 10_000,
                          args[4] if len(args) > 4 else "../shared/data")), flush=True)
