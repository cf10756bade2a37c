import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from routemix.cluster import NMMClustering
from routemix.metrics import cluster_accuracy

# Checks that cannot pass for a mini-batch neural clusterer, with the reason; at most two.
EXPECTED_FAILED_CHECKS = {}


def small(**kwargs):
    return NMMClustering(**{"max_iter": 60, "hidden_layer_sizes": (32, 32), **kwargs})


@parametrize_with_checks([small()], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n_samples=600, centers=4, cluster_std=0.8, random_state=3)


def test_recovers_separated_blobs(blobs):
    X, y = blobs
    model = small(n_clusters=4, random_state=0).fit(X)
    assert cluster_accuracy(y, model.labels_) > 0.95
    assert model.n_features_in_ == 2
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(axis=1), model.labels_)


def test_deterministic_for_fixed_random_state(blobs):
    X, _ = blobs
    first = small(n_clusters=4, random_state=5).fit(X)
    second = small(n_clusters=4, random_state=5).fit(X)
    np.testing.assert_array_equal(first.labels_, second.labels_)
    np.testing.assert_allclose(first.predict_proba(X), second.predict_proba(X))


def test_labels_numbered_by_decreasing_size(blobs):
    X, _ = blobs
    model = small(n_clusters=6, random_state=0).fit(X)
    sizes = np.bincount(model.labels_)
    assert np.all(np.diff(sizes) <= 0)
    assert model.n_clusters_found_ == len(sizes)


def test_works_in_a_pipeline(blobs):
    X, y = blobs
    pipe = make_pipeline(MinMaxScaler(), small(n_clusters=4, random_state=0))
    assert cluster_accuracy(y, pipe.fit_predict(X)) > 0.9


def test_n_init_keeps_the_lowest_loss(blobs):
    X, _ = blobs
    model = small(n_clusters=4, random_state=0, n_init=2, max_iter=10).fit(X)
    assert np.isfinite(model.loss_)


@pytest.mark.parametrize(
    "X, message",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]), "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 4.0]]), "infinity"),
        (np.empty((0, 3)), "0 sample"),
        (np.ones((1, 3)), "1 sample"),
        (np.ones((3, 2)), "n_clusters=4"),
        (np.ones(5), "2D array"),
    ],
)
def test_bad_input_is_a_clear_error(X, message):
    with pytest.raises(ValueError, match=message):
        small(n_clusters=4).fit(X)


def test_predict_with_wrong_width_is_a_clear_error(blobs):
    X, _ = blobs
    model = small(n_clusters=4, max_iter=2).fit(X)
    with pytest.raises(ValueError, match="features"):
        model.predict(np.ones((3, 5)))


def test_non_numeric_input_is_a_clear_error():
    with pytest.raises(ValueError):
        small(n_clusters=2).fit(np.array([["a", "b"], ["c", "d"], ["e", "f"]], dtype=object))
