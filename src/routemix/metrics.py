"""Clustering metrics: accuracy under the best one-to-one matching, NMI and ARI.

Clustering accuracy (Table 4.3 of the thesis, following the Hungarian approach) matches predicted
cluster indices to true labels with a linear sum assignment on the contingency table and counts
the samples that fall on matched pairs. When the number of clusters differs from the number of
classes, unmatched clusters (or classes) count as errors.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix


def _check_labels(labels_true, labels_pred) -> tuple[np.ndarray, np.ndarray]:
    labels_true = np.asarray(labels_true).ravel()
    labels_pred = np.asarray(labels_pred).ravel()
    if labels_true.shape != labels_pred.shape:
        raise ValueError(
            f"labels_true has {labels_true.size} entries but labels_pred has {labels_pred.size}; "
            "pass one predicted label per true label."
        )
    if labels_true.size == 0:
        raise ValueError("cannot score an empty clustering: pass at least one label.")
    return labels_true, labels_pred


def cluster_accuracy(labels_true, labels_pred) -> float:
    """Share of samples correctly labelled after the best one-to-one cluster-to-class matching."""
    labels_true, labels_pred = _check_labels(labels_true, labels_pred)
    counts = contingency_matrix(labels_true, labels_pred)  # (classes, clusters)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / labels_true.size)


def nmi(labels_true, labels_pred) -> float:
    """Normalised mutual information (arithmetic normalisation, scikit-learn's default)."""
    return float(normalized_mutual_info_score(*_check_labels(labels_true, labels_pred)))


def ari(labels_true, labels_pred) -> float:
    """Adjusted Rand index."""
    return float(adjusted_rand_score(*_check_labels(labels_true, labels_pred)))


def clustering_scores(labels_true, labels_pred) -> dict[str, float]:
    """ACC, NMI and ARI in one dict, the three numbers every routemix table reports."""
    return {
        "acc": cluster_accuracy(labels_true, labels_pred),
        "nmi": nmi(labels_true, labels_pred),
        "ari": ari(labels_true, labels_pred),
    }
