"""NMM-EM's vector augmentations side by side, K given: what `augmentation="auto"` rests on.

For each set, NMMClustering with the true number of clusters and each augmentation of the
consistency step (feature resampling at 0.2, Gaussian noise of std 0.03, 0.05 and 0.1, and EM
alone without a consistency step); prints ACC, mean over the seeds. The 2-D sets of the dataset
registry at 50 epochs and seeds 0-5 (their fits vary most from seed to seed), digits at 50 epochs
and seed 0; scikit-learn's iris, wine and breast cancer at the estimator's 200 epochs and seeds 0-2
(docs/RESULTS.md, "NMM-EM's vector augmentation"):

    OMP_NUM_THREADS=1 python scripts/vector_augmentation.py [--sets moons,rings,blobs]
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_breast_cancer, load_iris, load_wine

from routemix.cluster import NMMClustering
from routemix.data import load_dataset
from routemix.metrics import clustering_scores

VARIANTS = {
    "resample 0.2": {"augmentation": "resample", "augmentation_strength": 0.2},
    "noise 0.03": {"augmentation": "noise", "augmentation_strength": 0.03},
    "noise 0.05": {"augmentation": "noise", "augmentation_strength": 0.05},
    "noise 0.1": {"augmentation": "noise", "augmentation_strength": 0.1},
    "EM only": {"two_fold": False},
}


def registered(name: str) -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset(name)
    return data.data.numpy().reshape(len(data.data), -1).astype(np.float64), np.asarray(data.labels)


TWO_D_SEEDS = (0, 1, 2, 3, 4, 5)
SETS = {  # name: (loader, epochs (None: the estimator's 200), seeds)
    "moons": (lambda: registered("moons"), 50, TWO_D_SEEDS),
    "rings": (lambda: registered("rings"), 50, TWO_D_SEEDS),
    "blobs": (lambda: registered("blobs"), 50, TWO_D_SEEDS),
    "digits": (lambda: registered("digits"), 50, (0,)),
    "iris": (lambda: load_iris(return_X_y=True), None, (0, 1, 2)),
    "wine": (lambda: load_wine(return_X_y=True), None, (0, 1, 2)),
    "breast cancer": (lambda: load_breast_cancer(return_X_y=True), None, (0, 1, 2)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of: {', '.join(SETS)}")
    names = [name.strip() for name in parser.parse_args().sets.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SETS))
    if unknown:
        parser.error(f"unknown set(s) {', '.join(unknown)}; available: {', '.join(SETS)}.")
    print("| set | features | " + " | ".join(VARIANTS) + " |")
    print("|---|---|" + "---|" * len(VARIANTS))
    for name in names:
        loader, epochs, seeds = SETS[name]
        X, y = loader()
        k = len(np.unique(y))
        extra = {} if epochs is None else {"max_iter": epochs}
        cells = []
        for params in VARIANTS.values():
            accs = [
                clustering_scores(y, NMMClustering(k, random_state=s, **extra, **params).fit(X).labels_)["acc"]
                for s in seeds
            ]
            cells.append(f"{np.mean(accs):.3f}")
        print(f"| {name} | {X.shape[1]} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
