"""N2D: the DEC auto-encoder, UMAP of its embedding, a Gaussian mixture on UMAP's (McConville et al.)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from routemix.cluster import N2DClustering
from routemix.cluster.manifold import fit_umap, transform_umap
from routemix.metrics import cluster_accuracy


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n_samples=240, centers=4, n_features=12, cluster_std=1.0, random_state=0)


@pytest.fixture(scope="module")
def fitted(blobs):
    X, _ = blobs
    return N2DClustering(4, max_iter=30, hidden_layer_sizes=(32, 32, 64), random_state=0).fit(X)


def test_recovers_separated_blobs(blobs, fitted):
    _, y = blobs
    assert cluster_accuracy(y, fitted.labels_) == 1.0
    assert fitted.n_clusters_found_ == 4 and fitted.n_iter_ == 30


def test_the_papers_three_stages_and_settings(fitted):
    """Auto-encoder with a K-unit embedding, no dropout and a linear output; UMAP to K dimensions
    with 20 neighbours and min_dist 0; one full covariance per mixture component."""
    autoencoder = fitted.autoencoder_
    assert autoencoder.embedding_dim == 4
    assert not any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in autoencoder.modules())
    assert isinstance(list(autoencoder.decoder)[-1], torch.nn.Linear)
    assert fitted.embedding_.shape == (240, 4)
    reducer = fitted.reducer_
    assert reducer.n_neighbors == 20 and reducer.min_dist == 0.0 and reducer.metric == "euclidean"
    assert fitted.mixture_.covariance_type == "full" and fitted.mixture_.n_components == 4


def test_training_labels_are_the_mixture_on_the_fitted_embedding(fitted):
    """labels_ come from UMAP's embedding of the training set itself, not from placing it anew."""
    expected = fitted.mixture_.predict_proba(fitted.embedding_)[:, fitted.cluster_order_].argmax(axis=1)
    np.testing.assert_array_equal(fitted.labels_, expected)


def test_new_data_is_placed_in_the_fitted_embedding(blobs, fitted):
    X, _ = blobs
    assert (fitted.predict(X) == fitted.labels_).mean() >= 0.99
    proba = fitted.predict_proba(X[:5] + 0.01)
    assert proba.shape == (5, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_same_seed_same_labels(blobs, fitted):
    X, _ = blobs
    again = N2DClustering(4, max_iter=30, hidden_layer_sizes=(32, 32, 64), random_state=0).fit(X)
    np.testing.assert_array_equal(again.labels_, fitted.labels_)


def test_umap_leaves_torch_threads_as_they_were():
    """numba's OpenMP layer resets torch's thread count while UMAP runs; both helpers restore it."""
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(60, 5))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reducer, embedding = fit_umap(codes, n_components=2, n_neighbors=10, random_state=0)
        assert torch.get_num_threads() == 1
        assert transform_umap(reducer, codes[:3]).shape == (3, 2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert embedding.shape == (60, 2) and embedding.dtype == np.float64


def test_umap_on_tiny_data_caps_neighbours_and_components():
    codes = np.random.default_rng(0).normal(size=(6, 3))
    reducer, embedding = fit_umap(codes, n_components=10, n_neighbors=20, random_state=0)
    assert reducer.n_neighbors == 5 and embedding.shape == (6, 4)
    with pytest.raises(ValueError, match="at least 3 samples"):
        fit_umap(codes[:2], n_components=2, n_neighbors=5)


def test_bad_settings_are_refused(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="umap_neighbors"):
        N2DClustering(4, umap_neighbors=1).fit(X)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        N2DClustering(4, hidden_layer_sizes=(), max_iter=1).fit(X)


def test_a_learning_curve_ends_at_n2ds_result(blobs):
    """The auto-encoder's epochs are points of the curve (k-means on its embedding), and the last
    point is the UMAP + GMM stage's labels: the method's own result, not the auto-encoder's."""
    from routemix.train.curves import LearningCurve

    X, y = blobs
    with LearningCurve(y, every_n_epochs=5) as curve:
        model = N2DClustering(4, max_iter=10, hidden_layer_sizes=(32, 32, 64), random_state=0).fit(X)
    assert [p["stage"] for p in curve.points] == ["AutoencoderModule"] * 2 + ["UMAP + GMM"]
    assert curve.points[-1]["epoch"] == 10 and curve.points[-1]["seconds"] >= curve.points[-2]["seconds"]
    assert curve.points[-1]["acc"] == cluster_accuracy(y, model.labels_)
