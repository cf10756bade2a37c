"""Mixture of VAE experts (MoE thesis): loss terms against hand-computed values, the
pre-training rules (PCA finder, eq. 3.6, eqs. 3.7-3.9), the estimator contract and sampling."""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.utils.estimator_checks import parametrize_with_checks

from routemix.cluster.moe import STAGE_SPLITS, MoEClustering, near_binary
from routemix.cluster.moe_pretrain import latent_size_for_variance, split_epochs, umap_neighbours
from routemix.losses.entropy import (
    MoELoss,
    assignment_kl,
    batch_entropy_term,
    sample_entropy,
    vae_distortion,
    weighted_reconstruction,
)
from routemix.metrics import cluster_accuracy
from routemix.models.vae import ConvEncoder, build_vae, dense_depth, encoder_depth
from routemix.train.moe import VAEModule

# Checks that cannot pass for this estimator, with the reason; at most two.
EXPECTED_FAILED_CHECKS = {}


def small(**kwargs):
    """A quick configuration: 5 epochs (one per stage), small networks, no UMAP."""
    params = {"max_iter": 5, "pretrain_latent_dim": 8, "base_width": 16, "embedding": "none", "batch_size": 32}
    return MoEClustering(**{**params, **kwargs})


# --- loss terms (eqs. 3.2-3.5) -------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 5])
def test_sample_entropy_is_zero_for_one_hot_and_log_k_for_uniform(k):
    one_hot = torch.eye(k)[torch.tensor([0, k - 1, 1])]
    assert sample_entropy(one_hot).item() == pytest.approx(0.0, abs=1e-7)
    assert sample_entropy(torch.full((3, k), 1.0 / k)).item() == pytest.approx(math.log(k), rel=1e-6)


@pytest.mark.parametrize("k", [2, 5])
def test_batch_entropy_term_is_zero_at_collapse_and_minus_log_k_when_balanced(k):
    collapsed = torch.eye(k)[torch.zeros(4, dtype=torch.long)]
    assert batch_entropy_term(collapsed).item() == pytest.approx(0.0, abs=1e-7)
    assert batch_entropy_term(torch.full((3, k), 1.0 / k)).item() == pytest.approx(-math.log(k), rel=1e-6)
    balanced_one_hot = torch.eye(k)  # every expert wins one sample: S = 0 and B = -log K
    assert batch_entropy_term(balanced_one_hot).item() == pytest.approx(-math.log(k), rel=1e-6)
    assert sample_entropy(balanced_one_hot).item() == pytest.approx(0.0, abs=1e-7)


def test_weighted_reconstruction_tiny_case():
    distortion = torch.tensor([[1.0, 3.0], [2.0, 4.0]])
    p = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    # (1*1 + 0*3 + 0.25*2 + 0.75*4) / 2 = (1 + 3.5) / 2
    assert weighted_reconstruction(distortion, p).item() == pytest.approx(2.25)


def test_moe_loss_is_r_plus_alpha_s_plus_beta_b():
    distortion = torch.tensor([[1.0, 3.0], [2.0, 4.0]])
    p = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    out = MoELoss(alpha=100.0, beta=1.0)(distortion, p)
    r = (0.5 * 1 + 0.5 * 3 + 0.5 * 2 + 0.5 * 4) / 2
    assert out.reconstruction.item() == pytest.approx(r)
    assert out.loss.item() == pytest.approx(r + 100 * math.log(2) - math.log(2), rel=1e-6)


def test_moe_loss_gradient_spreads_a_collapsed_batch():
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0]], requires_grad=True)
    MoELoss(alpha=0.0, beta=1.0)(torch.zeros(3, 2), torch.softmax(logits, dim=1)).loss.backward()
    assert torch.all(logits.grad[:, 0] > 0) and torch.all(logits.grad[:, 1] < 0)  # descent moves mass to expert 1


def test_vae_distortion_per_input_value():
    x = torch.tensor([[1.0, 2.0]])
    out = torch.zeros(1, 2)
    mean, log_var = torch.tensor([[1.0]]), torch.tensor([[0.0]])
    # MSE sum 1 + 4 = 5, KL(N(1, 1) || N(0, 1)) = 0.5, divided by 2 input values
    assert vae_distortion(x, out, mean, log_var, kind="mse").item() == pytest.approx(2.75)
    assert vae_distortion(x, out, mean, log_var, kind="mse", kl_weight=0.0).item() == pytest.approx(2.5)
    bce = vae_distortion(
        torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2), torch.zeros(1, 1), torch.zeros(1, 1), kind="bce"
    )
    assert bce.item() == pytest.approx(math.log(2))  # sigmoid(0) = 0.5 for each of two values


def test_assignment_kl_with_one_hot_targets_is_cross_entropy():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]])
    target = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    expected = torch.nn.functional.cross_entropy(logits, target.argmax(dim=1))
    assert assignment_kl(target, logits).item() == pytest.approx(expected.item(), rel=1e-6)


def test_non_finite_loss_is_a_floating_point_error():
    vae = build_vae((4,), 2, reconstruction="mse", base_width=8)
    with torch.no_grad():
        vae.to_mean.weight.fill_(float("nan"))
    module = VAEModule(vae, lr=1e-3, kl_warmup_steps=1)
    with pytest.raises(FloatingPointError, match="learning rate"):
        module.training_step((torch.randn(5, 4),), 0)


# --- pre-training rules --------------------------------------------------------------------


def test_latent_size_finder_on_data_of_known_rank():
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(10, 3)))  # 3 orthonormal directions in 10-D
    centred = rng.normal(size=(500, 3))
    scores, _ = np.linalg.qr(centred - centred.mean(axis=0))  # orthonormal, centred columns
    scores = scores * np.array([3.0, 2.0, 1.0])
    codes = scores @ basis.T + 5.0  # rank 3, explained variance ratios ~ 9/14, 4/14, 1/14
    assert latent_size_for_variance(codes, 0.5) == 1
    assert latent_size_for_variance(codes, 0.9) == 2  # 0.643 + 0.286 = 0.929
    assert latent_size_for_variance(codes, 0.95) == 3
    assert latent_size_for_variance(codes, 1.0) == 3
    assert latent_size_for_variance(np.ones((20, 4)), 0.9) == 1


@pytest.mark.parametrize(
    "n_samples, expected",
    [(70000, 100), (30000, 100), (29999, 99), (9298, 30), (1797, 5), (1500, 5), (600, 5), (100, 5), (5, 4), (3, 2)],
)
def test_umap_neighbours_follows_eq_3_6(n_samples, expected):
    assert umap_neighbours(n_samples) == expected


def test_umap_neighbours_needs_three_samples():
    with pytest.raises(ValueError, match="at least 3"):
        umap_neighbours(2)


@pytest.mark.parametrize(
    "side, blocks, general, specific", [(16, 3, 2, 1), (28, 4, 2, 2), (32, 4, 2, 2), (128, 6, 3, 3), (8, 2, 1, 1)]
)
def test_encoder_depth_follows_eqs_3_7_to_3_9(side, blocks, general, specific):
    depth = encoder_depth(side)
    assert (depth.n_blocks, depth.n_general, depth.n_specific) == (blocks, general, specific)
    assert depth.side == 1 << (side - 1).bit_length()


def test_conv_encoder_ends_at_2x2_and_vae_round_trips_shapes():
    encoder = ConvEncoder((1, 28, 28), base_width=4)
    assert encoder.blocks(torch.zeros(2, 1, 32, 32)).shape == (2, 32, 2, 2)  # 4 blocks: 4, 8, 16, 32 filters
    vae = build_vae((1, 28, 28), 3, reconstruction="bce", base_width=4)
    assert vae(torch.rand(2, 1, 28, 28)).output.shape == (2, 1, 28, 28)
    assert dense_depth(64) == 2 and build_vae((64,), 3, reconstruction="mse")(torch.randn(2, 64)).output.shape == (
        2,
        64,
    )


def test_stage_split_as_epochs_per_stage(blobs):
    X, _ = blobs
    stages = {"autoencoder": 1, "retrain": 3, "manager": 1, "cluster": 1, "specialise": 1}
    model = small(n_clusters=3, max_iter=7, stage_split=stages, embedding="none").fit(X)
    assert model.epochs_ == stages and model.n_iter_ == 7


def test_split_epochs_keeps_the_thesis_ratios():
    epochs = split_epochs(3200, STAGE_SPLITS["paper"])
    assert epochs == {"autoencoder": 1000, "retrain": 1000, "manager": 1000, "cluster": 100, "specialise": 100}
    assert sum(split_epochs(100, STAGE_SPLITS["paper"]).values()) == 100
    assert set(split_epochs(5, STAGE_SPLITS["paper"]).values()) == {1}
    with pytest.raises(ValueError, match="at least 5"):
        split_epochs(4, STAGE_SPLITS["paper"])


def test_near_binary_rule():
    assert near_binary(torch.tensor([0.0, 0.0, 0.0, 1.0, 0.95, 0.02, 0.0, 0.0, 1.0, 0.5]))
    assert not near_binary(torch.tensor([0.0, 0.3, 0.5, 0.6, 1.0]))


# --- the estimator -------------------------------------------------------------------------


@parametrize_with_checks([small()], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n_samples=150, centers=3, n_features=6, cluster_std=0.5, random_state=1)


@pytest.fixture(scope="module")
def fitted_blobs(blobs):
    X, _ = blobs
    # the experts need a few hundred steps to learn their clusters: a high rate, small batches
    return small(n_clusters=3, max_iter=60, learning_rate=1e-2, batch_size=16, embedding="umap", random_state=0).fit(X)


def test_recovers_separated_blobs_with_umap(blobs, fitted_blobs):
    X, y = blobs
    model = fitted_blobs
    assert cluster_accuracy(y, model.labels_) > 0.95
    proba = model.predict_proba(X)
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(proba.argmax(axis=1), model.labels_)
    assert sum(model.epochs_.values()) == model.n_iter_ == 60
    assert len(model.experts_) == model.n_experts_ == 3
    assert all(expert.latent_dim == model.expert_latent_dims_[0] for expert in model.experts_)


def test_sample_decodes_the_chosen_expert_in_input_units(blobs, fitted_blobs):
    X, _ = blobs
    model = fitted_blobs
    for cluster in range(3):
        samples = model.sample(5, cluster, random_state=7)
        assert samples.shape == (5, X.shape[1])
        expert = model.experts_[model.cluster_order_[cluster]]
        z = torch.randn(
            5,
            expert.latent_dim,
            generator=torch.Generator().manual_seed(np.random.RandomState(7).randint(np.iinfo(np.int32).max)),
        )
        expected = model.scaler_.inverse_transform(expert.decode(z).detach().double().numpy())
        np.testing.assert_allclose(samples, expected, rtol=1e-5, atol=1e-5)


def test_samples_look_like_their_cluster(blobs, fitted_blobs):
    X, _ = blobs
    model = fitted_blobs
    for cluster in range(3):
        samples = model.sample(40, cluster, random_state=0)
        assert np.mean(model.predict(samples) == cluster) > 0.8
        centre = X[model.labels_ == cluster].mean(axis=0)
        others = [X[model.labels_ == c].mean(axis=0) for c in range(3) if c != cluster]
        assert np.linalg.norm(samples.mean(axis=0) - centre) < min(np.linalg.norm(o - centre) for o in others) / 3


def test_sample_rejects_bad_arguments(fitted_blobs):
    with pytest.raises(ValueError, match="cluster"):
        fitted_blobs.sample(2, 3)
    with pytest.raises(ValueError, match="n_samples"):
        fitted_blobs.sample(0, 0)


def test_deterministic_for_fixed_random_state(blobs):
    X, _ = blobs
    first = small(n_clusters=3, random_state=5).fit(X)
    second = small(n_clusters=3, random_state=5).fit(X)
    np.testing.assert_array_equal(first.labels_, second.labels_)
    np.testing.assert_allclose(first.predict_proba(X), second.predict_proba(X))


def test_hdbscan_finds_the_number_of_clusters(blobs):
    X, _ = blobs
    model = small(n_clusters=None, cluster_finder="hdbscan", random_state=0).fit(X)
    found = set(model.pretrain_labels_.tolist()) - {-1}
    assert model.n_experts_ == len(found) >= 1
    assert model.predict_proba(X).shape == (len(X), model.n_experts_)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_clusters": 3, "cluster_finder": "hdbscan"}, "n_clusters=None"),
        ({"n_clusters": None, "cluster_finder": "gmm"}, "needs n_clusters"),
        ({"n_clusters": 3, "reconstruction": "bce"}, r"\[0, 1\]"),
        ({"n_clusters": 3, "max_iter": 4}, "max_iter"),
        ({"n_clusters": 3, "stage_split": "cpu"}, "stage_split"),
        ({"n_clusters": 3, "stage_split": {"autoencoder": 1, "retrain": 1}}, "each of autoencoder, retrain, manager"),
        (
            {
                "n_clusters": 3,
                "stage_split": {"autoencoder": 1, "retrain": 1, "manager": 1, "cluster": 1, "specialise": 0},
            },
            "positive",
        ),
    ],
)
def test_bad_parameters_are_clear_errors(blobs, params, message):
    X, _ = blobs
    with pytest.raises(ValueError, match=message):
        small(**params).fit(X)


def test_images_use_the_convolutional_networks_and_sample_in_pixel_units():
    rng = np.random.default_rng(0)
    images = np.zeros((40, 1, 8, 8))
    images[:20, :, :4, :] = 255  # top half lit
    images[20:, :, 4:, :] = 255  # bottom half lit
    images = np.clip(images + rng.normal(0, 10, images.shape), 0, 255).reshape(40, -1)
    model = small(n_clusters=2, image_shape=(1, 8, 8), max_iter=30, batch_size=8, random_state=0).fit(images)
    assert model.reconstruction_ == "bce"
    assert isinstance(model.manager_.encoder, ConvEncoder)
    assert cluster_accuracy(np.repeat([0, 1], 20), model.labels_) == 1.0
    samples = model.sample(3, 1, random_state=0)
    low, high = model.pixel_range_
    assert samples.shape == (3, 64) and samples.min() >= low and samples.max() <= high
