"""UMAP as the clustering methods use it: fitted on codes, reused on new ones, torch's threads kept.

Two methods cluster a UMAP embedding of learned codes: the MoE's pre-training (its thesis, sec.
4.4.2, through :func:`routemix.cluster.moe_pretrain.umap_embedding`) and N2D
(:class:`routemix.cluster.N2DClustering`). Both go through :func:`fit_umap` and
:func:`transform_umap`, which do the two things umap-learn does not:

* **torch's threads.** numba's OpenMP layer resets torch's thread count to the core count while
  UMAP runs; left so, every later torch step runs 10-50x slower on a shared CPU. Both functions
  put it back.
* **small data.** UMAP needs ``n_neighbors < N`` and, for its spectral initialisation, a graph
  much larger than the embedding; :func:`fit_umap` caps the neighbours at ``N - 1``, the
  components at ``N - 2`` and falls back to a random initialisation on tiny inputs.
"""

from __future__ import annotations

import numpy as np
import torch


def fit_umap(
    codes: np.ndarray,
    *,
    n_components: int,
    n_neighbors: int,
    metric: str = "euclidean",
    min_dist: float = 0.1,
    random_state: int = 0,
):
    """Fit UMAP to ``codes`` (N, d): ``(reducer, embedding)``, the embedding as float64 (N, n_components).

    umap-learn runs single-threaded with a fixed ``random_state`` (``n_jobs=1`` says so and keeps it
    from warning), so the same seed gives the same embedding.
    """
    import umap  # slow to import (numba); only needed here

    n_samples = len(codes)
    if n_samples < 3:
        raise ValueError(f"UMAP needs at least 3 samples, got {n_samples}.")
    n_components = max(1, int(min(n_components, n_samples - 2)))
    reducer = umap.UMAP(
        n_neighbors=int(min(n_neighbors, n_samples - 1)),
        n_components=n_components,
        metric=metric,
        min_dist=float(min_dist),
        random_state=random_state,
        init="spectral" if n_samples > 4 * n_components + 10 else "random",
        n_jobs=1,
    )
    threads = torch.get_num_threads()
    try:
        embedding = reducer.fit_transform(np.asarray(codes))
    finally:
        torch.set_num_threads(threads)
    return reducer, np.asarray(embedding, dtype=np.float64)


def transform_umap(reducer, codes: np.ndarray) -> np.ndarray:
    """Place new ``codes`` in a fitted reducer's embedding (umap-learn's ``transform``), as float64."""
    threads = torch.get_num_threads()
    try:
        return np.asarray(reducer.transform(np.asarray(codes)), dtype=np.float64)
    finally:
        torch.set_num_threads(threads)
