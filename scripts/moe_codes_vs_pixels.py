"""Are the MoE pre-training's VAE codes a better input for UMAP + GMM than the raw pixels?
(docs/RESULTS.md, "The MoE's pre-training on all 70,000 images").

``pixels``: UMAP (the thesis' settings, 10 components) + GMM on the raw pixels of all images.
``vae WIDTH EPOCHS``: the MoE's VAE (sec. 3.4, ``base_width`` WIDTH, a 10-unit latent, the
thesis' learning rate, batch, augmentation and KL warm-up) trained EPOCHS epochs on all images,
then UMAP + GMM on its posterior means: the labels the MoE's manager is trained on.

    OMP_NUM_THREADS=1 python scripts/moe_codes_vs_pixels.py mnist pixels
    OMP_NUM_THREADS=1 python scripts/moe_codes_vs_pixels.py mnist vae 16 10
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from routemix.cluster.moe import near_binary
from routemix.cluster.moe_pretrain import PretrainConfig, _train_vae, gmm_posteriors, umap_embedding
from routemix.data import load_dataset
from routemix.metrics import clustering_scores
from routemix.train import moe as training


def umap_gmm_scores(features: np.ndarray, labels: np.ndarray) -> dict:
    start = time.perf_counter()
    predicted = gmm_posteriors(umap_embedding(features, 10, 0), 10, 0).argmax(axis=1)
    return {**clustering_scores(labels, predicted), "umap_gmm_seconds": time.perf_counter() - start}


def main() -> None:
    dataset, mode = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    data = load_dataset(dataset, data_dir="../shared/data")
    x, labels = data.data.float() / 255.0, np.asarray(data.labels)
    if mode == "pixels":
        print(json.dumps({"dataset": dataset, "input": "pixels", **umap_gmm_scores(x.flatten(1).numpy(), labels)}))
        return
    width, epochs = int(sys.argv[3]), int(sys.argv[4])
    cfg = PretrainConfig(
        epochs={},
        batch_size=100,
        learning_rate=5e-4,
        manager_learning_rate=1e-3,
        latent_dim=10,
        latent_variance=0.9,
        expert_latent_variance=0.95,
        equal_expert_latent=True,
        cluster_finder="gmm",
        embedding="umap",
        n_clusters=10,
        reconstruction="bce" if near_binary(x) else "mse",
        base_width=width,
        augment=True,
        device="cpu",
        progress=False,
    )
    start = time.perf_counter()
    vae = _train_vae(x, 10, epochs, cfg, 0)
    seconds = time.perf_counter() - start
    codes = training.encode_means(vae, x)
    print(
        json.dumps(
            {
                "dataset": dataset,
                "input": f"vae codes, width {width}, {epochs} epochs",
                "train_seconds": seconds,
                **umap_gmm_scores(codes, labels),
            }
        )
    )


if __name__ == "__main__":
    main()
