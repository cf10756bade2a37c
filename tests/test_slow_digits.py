"""Long runs of the real method on real data (``pytest -m slow``)."""

import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

from routemix.cluster import NMMClustering
from routemix.metrics import cluster_accuracy


@pytest.mark.slow
def test_nmm_beats_kmeans_on_digits():
    X, y = load_digits(return_X_y=True)
    kmeans = cluster_accuracy(y, KMeans(10, n_init=10, random_state=0).fit_predict(X))
    nmm = cluster_accuracy(y, NMMClustering(n_clusters=10, random_state=0).fit_predict(X))
    assert nmm > kmeans
