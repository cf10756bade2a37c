"""Cluster priors (eq. 4.18) on uneven clusters: ``NMMClustering(priors=False)`` vs ``True``.

The thesis fixes every prior at 1/K because its image sets are balanced, and names estimated
priors as what uneven data needs (ch. 5-6). Two uneven sets: scikit-learn's digits with class c
subsampled to a share that falls linearly from 100% (class 0) to 10% (class 9), and 2-D Gaussian
blobs of sizes 2000, 1000, 500, 250 and 125.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.datasets import load_digits, make_blobs

from routemix.bench import summarize
from routemix.metrics import clustering_scores


def uneven_digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(y), dtype=bool)
    for c in range(10):
        members = np.flatnonzero(y == c)
        share = 1.0 - 0.1 * c
        keep[rng.choice(members, int(round(share * len(members))), replace=False)] = True
    return X[keep], y[keep]


def uneven_blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(n_samples=[2000, 1000, 500, 250, 125], cluster_std=1.0, center_box=(-10, 10), random_state=seed)


DATASETS = {"uneven digits": uneven_digits, "uneven blobs": uneven_blobs}


def run(seeds, progress=True) -> list[dict]:
    from tqdm.auto import tqdm

    from routemix.cluster import NMMClustering

    rows = []
    for data_name, make in DATASETS.items():
        X, y = make(0)
        k = len(np.unique(y))
        for priors in (False, True):
            runs = []
            for seed in tqdm(seeds, disable=not progress, desc=f"{data_name}, priors={priors}"):
                start = time.perf_counter()
                labels = NMMClustering(n_clusters=k, priors=priors, random_state=seed).fit_predict(X)
                runs.append({**clustering_scores(y, labels), "seconds": time.perf_counter() - start})
            rows.append({"dataset": data_name, "n_samples": len(y), "priors": priors, **summarize(runs)})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| dataset | n | priors | ACC | NMI | ARI | s/fit |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['n_samples']} | {r['priors']} | {r['acc']:.3f} ± {r['acc_std']:.3f} | "
            f"{r['nmi']:.3f} ± {r['nmi_std']:.3f} | {r['ari']:.3f} ± {r['ari_std']:.3f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)
