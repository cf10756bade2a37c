"""Spectral clustering of all 70,000 images with one eigensolver: seconds, peak memory, scores
(why ``routemix.cluster.registry`` uses LOBPCG; docs/RESULTS.md).

    OMP_NUM_THREADS=1 python scripts/spectral_solvers.py mnist lobpcg
    OMP_NUM_THREADS=1 python scripts/spectral_solvers.py mnist arpack    # over 25 minutes and 12 GB here
"""

import json
import resource
import sys
import time

import numpy as np
from sklearn.cluster import SpectralClustering

from routemix.data import load_dataset
from routemix.metrics import clustering_scores

dataset, solver = sys.argv[1], sys.argv[2]
data = load_dataset(dataset, data_dir="../shared/data")
x = data.data.reshape(len(data.data), -1).numpy().astype(np.float32) / 255.0
start = time.perf_counter()
labels = SpectralClustering(
    10, affinity="nearest_neighbors", n_neighbors=10, assign_labels="cluster_qr", random_state=0, eigen_solver=solver
).fit_predict(x)
print(
    json.dumps(
        {
            "dataset": dataset,
            "solver": solver,
            "seconds": time.perf_counter() - start,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **clustering_scores(np.asarray(data.labels), labels),
        }
    )
)
