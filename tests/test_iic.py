"""IIC: the mutual-information objective against closed forms, and the estimator's contract."""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.utils.estimator_checks import parametrize_with_checks

from routemix.cluster.iic import IICClustering
from routemix.losses.iic import iic_loss, joint_assignment, mutual_information
from routemix.metrics import cluster_accuracy


def test_identical_balanced_one_hot_assignments_reach_log_k():
    k = 4
    z = torch.eye(k).repeat(5, 1)  # 20 samples, 5 per cluster, confident
    # the 12 empty cells, clamped to float32 eps to keep log finite, move I by about 2e-5
    assert iic_loss(z, z).item() == pytest.approx(-math.log(k), abs=5e-5)


def test_independent_assignments_carry_no_information():
    z = torch.full((8, 3), 1 / 3)  # uniform: P = outer product of the marginals
    assert mutual_information(joint_assignment(z, z)).item() == pytest.approx(0.0, abs=1e-6)


def test_collapsed_assignment_carries_no_information():
    z = torch.zeros(6, 3)
    z[:, 0] = 1.0  # every sample in cluster 0, in both views
    assert iic_loss(z, z).item() == pytest.approx(0.0, abs=5e-5)  # eps-clamped empty cells, as above


def test_joint_is_symmetric_and_sums_to_one():
    torch.manual_seed(0)
    z, z_aug = torch.randn(10, 4).softmax(1), torch.randn(10, 4).softmax(1)
    joint = joint_assignment(z, z_aug)
    torch.testing.assert_close(joint, joint.T)
    assert joint.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_mutual_information_matches_a_hand_computed_table():
    joint = torch.tensor([[0.4, 0.1], [0.1, 0.4]])
    expected = 2 * 0.4 * math.log(0.4 / 0.25) + 2 * 0.1 * math.log(0.1 / 0.25)
    assert mutual_information(joint).item() == pytest.approx(expected, rel=1e-5)


def test_mismatched_shapes_are_a_clear_error():
    with pytest.raises(ValueError, match="one shape"):
        joint_assignment(torch.ones(4, 3), torch.ones(4, 2))


def small(**kwargs):
    return IICClustering(**{"max_iter": 30, "hidden_layer_sizes": (32, 32), **kwargs})


@parametrize_with_checks([small()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n_samples=400, centers=3, cluster_std=0.6, random_state=1)


def test_recovers_separated_blobs(blobs):
    X, y = blobs
    model = small(n_clusters=3, max_iter=60, random_state=0).fit(X)
    assert cluster_accuracy(y, model.labels_) > 0.9
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1.0, rtol=1e-5)


def test_deterministic_for_fixed_random_state(blobs):
    X, _ = blobs
    first = small(n_clusters=3, max_iter=5, random_state=4).fit(X)
    second = small(n_clusters=3, max_iter=5, random_state=4).fit(X)
    np.testing.assert_allclose(first.predict_proba(X), second.predict_proba(X))


def test_images_use_the_thesis_network_on_sobel_input():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(24, 28 * 28)).astype(np.float32)  # uint8-range pixels, flattened
    model = IICClustering(3, image_shape=(1, 28, 28), max_iter=1, batch_size=8, random_state=0).fit(X)
    assert type(model.module_.network).__name__ == "ClusterNet"
    assert model.module_.network.in_channels == 2  # the Sobel planes
    assert model.predict_proba(X[:5]).shape == (5, 3)


def test_wrong_image_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="image_shape"):
        IICClustering(3, image_shape=(1, 28, 28)).fit(np.zeros((10, 100)))
