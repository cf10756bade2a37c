import math

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.utils.estimator_checks import parametrize_with_checks

from routemix.cluster.ddc import DDCClustering, align_to_anchor, majority_vote
from routemix.losses.ddc import (
    DDCLoss,
    cauchy_schwarz_term,
    gaussian_kernel,
    median_bandwidth,
    orthogonality_term,
    simplex_corner_similarity,
)
from routemix.metrics import cluster_accuracy
from routemix.models.ddc_nets import DDCMLP, DDCLeNet

# --- loss: hand-computed cases ----------------------------------------------------------------


def one_hot(labels, k):
    return torch.eye(k, dtype=torch.float64)[torch.as_tensor(labels)]


def column(*values):
    return torch.tensor(values, dtype=torch.float64)[:, None]


def test_literal_bandwidth_is_15_percent_of_median_distance():
    # distances 1, 3, 7, 2, 6, 4 -> sorted 1 2 3 4 6 7 -> median (3 + 4) / 2 = 3.5
    assert median_bandwidth(column(0, 1, 3, 7), rule="distance").item() == pytest.approx(0.15 * 3.5)
    # odd number of pairs: distances 1, 3, 2 -> median 2
    assert median_bandwidth(column(0, 1, 3), rule="distance").item() == pytest.approx(0.3)
    # 2-D: a 3 x 4 rectangle, distances 3, 4, 5, 5, 4, 3 -> median 4
    corners = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [3.0, 4.0]])
    assert median_bandwidth(corners, fraction=0.5, rule="distance").item() == pytest.approx(2.0)


def test_default_bandwidth_squared_is_15_percent_of_median_squared_distance():
    # squared distances 1, 9, 49, 4, 36, 16 -> sorted 1 4 9 16 36 49 -> median (9 + 16) / 2 = 12.5
    assert median_bandwidth(column(0, 1, 3, 7)).item() == pytest.approx(math.sqrt(0.15 * 12.5))
    with pytest.raises(ValueError, match="rule"):
        median_bandwidth(column(0, 1), rule="variance")


def test_kernel_uses_two_sigma_squared():
    kernel = gaussian_kernel(column(0, 2), 1.0)
    expected = torch.tensor([[1.0, math.exp(-4 / 2)], [math.exp(-4 / 2), 1.0]], dtype=torch.float64)
    torch.testing.assert_close(kernel, expected)


def test_divergence_of_well_separated_clusters_is_near_its_minimum():
    hidden = column(0, 1, 10, 11)
    sigma = median_bandwidth(hidden)  # squared distances 1 1 81 100 100 121 -> median 90.5
    assert sigma.item() == pytest.approx(math.sqrt(0.15 * 90.5))
    kernel = gaussian_kernel(hidden, sigma)
    value = cauchy_schwarz_term(one_hot([0, 0, 1, 1], 2), kernel).item()
    s2 = 2 * 0.15 * 90.5
    within = 2 + 2 * math.exp(-1 / s2)  # a_i^T K a_i of either cluster
    between = sum(math.exp(-d * d / s2) for d in (10, 11, 9, 10))
    assert value == pytest.approx(between / within, rel=1e-6)  # one pair of clusters
    assert 0 <= value < 0.03  # near the minimum, 0 (the wide kernel still sees across the gap)
    # the same points split across the clusters, {0, 10} and {1, 11}: far from it
    mixed = cauchy_schwarz_term(one_hot([0, 1, 0, 1], 2), kernel).item()
    mixed_between = 2 * math.exp(-1 / s2) + math.exp(-81 / s2) + math.exp(-121 / s2)
    mixed_within = 2 + 2 * math.exp(-100 / s2)
    assert mixed == pytest.approx(mixed_between / mixed_within, rel=1e-6)
    assert mixed > 0.5 > 10 * value


def test_divergence_of_identical_clusters_is_its_maximum():
    # two clusters with the same points: a_1^T K a_2 = a_1^T K a_1, the ratio is 1
    hidden = column(0, 10, 0, 10)
    kernel = gaussian_kernel(hidden, median_bandwidth(hidden))
    assert cauchy_schwarz_term(one_hot([0, 0, 1, 1], 2), kernel).item() == pytest.approx(1.0)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_divergence_of_uniform_assignment_is_one(k):
    hidden = torch.randn(12, 4, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    kernel = gaussian_kernel(hidden, median_bandwidth(hidden))
    uniform = torch.full((12, k), 1.0 / k, dtype=torch.float64)
    # every ratio is 1, and so is their mean over the k(k-1)/2 pairs
    assert cauchy_schwarz_term(uniform, kernel).item() == pytest.approx(1.0)


def test_divergence_of_a_single_cluster_is_zero():
    assert cauchy_schwarz_term(torch.ones(4, 1), torch.eye(4)).item() == 0.0


def test_triu_of_orthogonal_and_identical_assignments():
    orthogonal = one_hot([0, 1, 2], 3)
    identical = one_hot([1, 1, 1, 1], 3)
    assert orthogonality_term(orthogonal, "sum").item() == 0.0
    assert orthogonality_term(orthogonal, "mean").item() == 0.0
    assert orthogonality_term(identical, "sum").item() == pytest.approx(6.0)  # 4*3/2 pairs of 1
    assert orthogonality_term(identical, "mean").item() == pytest.approx(1.0)
    uniform = torch.full((4, 2), 0.5, dtype=torch.float64)  # inner products 0.5
    assert orthogonality_term(uniform, "sum").item() == pytest.approx(3.0)
    # against the definition: the strictly upper triangle of A A^T
    a = torch.softmax(torch.randn(7, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    assert orthogonality_term(a, "sum").item() == pytest.approx(torch.triu(a @ a.T, diagonal=1).sum().item(), rel=1e-6)


def test_simplex_corner_similarity_at_corners_and_centre():
    k = 3
    at_corner = simplex_corner_similarity(one_hot([0], k))
    torch.testing.assert_close(at_corner, torch.tensor([[1.0, math.exp(-2), math.exp(-2)]], dtype=torch.float64))
    at_centre = simplex_corner_similarity(torch.full((1, k), 1 / k, dtype=torch.float64))
    # ||1/k - e_i||^2 = (k-1)/k for every corner
    torch.testing.assert_close(at_centre, torch.full((1, k), math.exp(-(k - 1) / k), dtype=torch.float64))


def test_corner_term_is_lower_at_corners_than_at_centre():
    kernel = torch.eye(2, dtype=torch.float64)
    corners = cauchy_schwarz_term(simplex_corner_similarity(one_hot([0, 1], 2)), kernel).item()
    # m = [[1, e^-2], [e^-2, 1]]: m_1^T m_2 = 2 e^-2, m_i^T m_i = 1 + e^-4
    assert corners == pytest.approx(2 * math.exp(-2) / (1 + math.exp(-4)))
    centre = cauchy_schwarz_term(simplex_corner_similarity(torch.full((2, 2), 0.5, dtype=torch.float64)), kernel).item()
    assert centre == pytest.approx(1.0)
    assert corners < centre


def test_loss_is_the_sum_of_its_three_terms():
    generator = torch.Generator().manual_seed(1)
    hidden, scores = torch.randn(20, 6, generator=generator), torch.randn(20, 4, generator=generator)
    out = DDCLoss(4)(hidden, scores)
    a = torch.softmax(scores, dim=1)
    kernel = gaussian_kernel(hidden, (0.15 * torch.quantile(torch.pdist(hidden).square(), 0.5)).sqrt())
    expected_l1 = cauchy_schwarz_term(a, kernel)
    expected_l3 = cauchy_schwarz_term(simplex_corner_similarity(a), kernel)
    torch.testing.assert_close(out.divergence, expected_l1)
    torch.testing.assert_close(out.corner_divergence, expected_l3)
    torch.testing.assert_close(out.loss, expected_l1 + orthogonality_term(a) + expected_l3)


def test_loss_gradient_is_finite_when_all_hidden_vectors_coincide():
    hidden = torch.ones(5, 3, requires_grad=True)
    scores = torch.randn(5, 3, requires_grad=True)
    out = DDCLoss(3)(hidden, scores)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert torch.isfinite(hidden.grad).all() and torch.isfinite(scores.grad).all()


def test_loss_rejects_bad_shapes():
    loss = DDCLoss(3)
    with pytest.raises(ValueError, match="scores"):
        loss(torch.randn(4, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="hidden"):
        loss(torch.randn(5, 2), torch.randn(4, 3))
    with pytest.raises(ValueError, match="2 samples"):
        loss(torch.randn(1, 2), torch.randn(1, 3))
    with pytest.raises(ValueError, match="orthogonality"):
        DDCLoss(3, orthogonality="max")


# --- networks ------------------------------------------------------------------------------------


def test_lenet_layers_and_hidden_representation():
    net = DDCLeNet(num_classes=10).eval()
    x = torch.rand(3, 1, 28, 28)
    assert net.forward_features(x).shape == (3, 100)
    assert net(x).shape == (3, 10)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(32, (5, 5)), (64, (5, 5))]
    assert net.features[-3].in_features == 64 * 4 * 4  # valid convolutions: 28 -> 24 -> 12 -> 8 -> 4
    with pytest.raises(ValueError, match="16x16"):
        DDCLeNet(num_classes=2, input_size=(12, 12))


def test_image_kernel_sees_the_batch_normalised_activation():
    # Linear, ReLU, BatchNorm (the co-author's code; see the module docstring): in training mode
    # each hidden unit is centred over the batch, so the kernel gets negative values too, not the
    # ReLU's sparse non-negative code.
    net = DDCLeNet(num_classes=10).train()
    hidden = net.forward_features(torch.rand(64, 1, 28, 28))
    assert isinstance(net.features[-1], torch.nn.BatchNorm1d) and isinstance(net.features[-2], torch.nn.ReLU)
    torch.testing.assert_close(hidden.mean(0), torch.zeros(hidden.shape[1]), atol=1e-5, rtol=0)
    assert (hidden < 0).any()


def test_vector_kernel_sees_the_relu_of_the_batch_normalised_layer():
    net = DDCMLP(num_classes=4, in_features=64).train()
    hidden = net.forward_features(torch.randn(64, 64))
    assert isinstance(net.features[-1], torch.nn.ReLU) and isinstance(net.features[-2], torch.nn.BatchNorm1d)
    assert (hidden >= 0).all() and (hidden == 0).any()


def test_mlp_layers_and_batch_norm_only_in_the_500_unit_layer():
    net = DDCMLP(num_classes=4, in_features=64).eval()
    assert net.forward_features(torch.randn(3, 64)).shape == (3, 500)
    assert [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)] == [200, 200, 500, 4]
    assert [m.num_features for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)] == [500]
    with pytest.raises(ValueError, match="expects input"):
        net(torch.randn(3, 5))


# --- DDC-VOTE ------------------------------------------------------------------------------------


def test_align_to_anchor_undoes_a_relabelling():
    anchor = np.array([0, 0, 1, 1, 2, 2, 2])
    relabelled = np.array([2, 2, 0, 0, 1, 1, 0])  # 2->0, 0->1, 1->2, one disagreement
    permutation = align_to_anchor(anchor, relabelled, 3)
    np.testing.assert_array_equal(permutation, [1, 2, 0])
    np.testing.assert_array_equal(permutation[relabelled], [0, 0, 1, 1, 2, 2, 1])


def test_majority_vote_and_anchor_wins_ties():
    aligned = np.array([[0, 1, 2, 0], [1, 1, 0, 2], [1, 2, 1, 0]])  # anchor first
    np.testing.assert_array_equal(majority_vote(aligned, 3), [1, 1, 2, 0])


# --- estimator -----------------------------------------------------------------------------------


def small(**kwargs):
    return DDCClustering(**{"max_iter": 30, "learning_rate": 1e-3, "batch_size": 50, **kwargs})


@parametrize_with_checks([small()], expected_failed_checks=lambda est: {})
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n_samples=300, centers=3, cluster_std=0.8, random_state=3)


def test_recovers_separated_blobs(blobs):
    X, y = blobs
    model = small(n_clusters=3, random_state=0).fit(X)
    assert cluster_accuracy(y, model.labels_) > 0.95
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(axis=1), model.labels_)
    assert model.n_iter_ == 30


def test_deterministic_for_fixed_random_state(blobs):
    X, _ = blobs
    first = small(n_clusters=3, random_state=5, max_iter=5).fit(X)
    second = small(n_clusters=3, random_state=5, max_iter=5).fit(X)
    np.testing.assert_array_equal(first.labels_, second.labels_)
    np.testing.assert_allclose(first.predict_proba(X), second.predict_proba(X))


def test_vote_anchors_on_the_lowest_loss_run(blobs):
    X, y = blobs
    model = small(n_clusters=3, random_state=0, n_init=4, max_iter=10).fit(X)
    assert model.run_losses_.shape == (4,)
    assert model.loss_ == model.run_losses_.min()
    assert len(model.voters_) == 3 and model.voters_[0] is model.module_
    proba = model.predict_proba(X)
    assert set(np.unique(proba)) <= {0.0, 1.0} and np.all(proba.sum(axis=1) == 1)
    assert cluster_accuracy(y, model.labels_) > 0.9
    # every run's own labels are kept, the anchor's among them
    assert model.run_labels_.shape == (4, len(X))
    anchor = model.run_labels_[np.argmin(model.run_losses_)]
    np.testing.assert_array_equal(anchor, model.module_(torch.as_tensor(model._to_tensor(X))).argmax(dim=1).numpy())


def test_bench_reports_every_protocol_of_one_multi_run_fit(blobs):
    """Single runs (each run alone), the lowest-loss run and DDC-VOTE, all from the same N runs."""
    from routemix.bench.clustering import LOWEST_LOSS, SINGLE_RUN, VOTE, ddc_protocol_rows

    X, y = blobs
    model = small(n_clusters=3, random_state=0, n_init=4, max_iter=3).fit(X)
    rows = ddc_protocol_rows({"seconds": 8.0}, y, model)
    singles = [r for r in rows if r["protocol"] == SINGLE_RUN]
    assert [r["run"] for r in singles] == [0, 1, 2, 3] and all(r["seconds"] == 2.0 for r in singles)
    for r, labels in zip(singles, model.run_labels_):
        assert r["acc"] == cluster_accuracy(y, labels)
    [lowest] = [r for r in rows if r["protocol"] == LOWEST_LOSS]
    assert lowest["acc"] == singles[int(np.argmin(model.run_losses_))]["acc"] and lowest["runs"] == 4
    [vote] = [r for r in rows if r["protocol"] == VOTE]
    assert vote["acc"] == cluster_accuracy(y, model.labels_)


def test_images_use_the_lenet_and_uint8_pixels():
    rng = np.random.default_rng(0)
    images = np.zeros((40, 1, 16, 16), dtype=np.uint8)
    images[:20, :, :8, :] = 255  # two patterns: bright top half, bright bottom half
    images[20:, :, 8:, :] = 255
    images = np.clip(images + rng.integers(0, 40, images.shape), 0, 255).astype(np.uint8)
    X = images.reshape(40, -1).astype(np.float64)
    model = small(n_clusters=2, image_shape=(1, 16, 16), batch_size=20, max_iter=10, random_state=0).fit(X)
    assert isinstance(model.module_.network, DDCLeNet)
    assert cluster_accuracy(np.repeat([0, 1], 20), model.labels_) == 1.0
    with pytest.raises(ValueError, match="16x16"):
        small(n_clusters=2, image_shape=(1, 4, 4)).fit(np.ones((5, 16)))
