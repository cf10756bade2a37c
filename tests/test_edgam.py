"""EDGaM: the unfolded EM step and the loss terms against hand computations, the auto-encoders,
and the estimator's scikit-learn contract."""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.utils.estimator_checks import parametrize_with_checks

from routemix.cluster.edgam import EDGaMClustering
from routemix.losses.edgam import (
    EDGaMLoss,
    UnfoldedGaussianMixture,
    assignment_entropy,
    cluster_loss,
    cluster_weights,
    e_step,
    log_e_step,
    m_step,
    reconstruction_error,
)
from routemix.metrics import cluster_accuracy
from routemix.models.autoencoders import ConvAutoencoder, DenseAutoencoder
from routemix.train.curves import LearningCurve
from routemix.train.edgam import SOFT_ASSIGNMENTS, EDGaMModule, SoftAssignmentWarning, pass_embedding_through_

# A tiny mixture problem: 5 points in 2-D, 2 centroids (float64).
Z = np.array([[0.0, 0.0], [1.0, 0.5], [2.0, 2.0], [3.0, 2.5], [0.5, 3.0]])
MU = np.array([[0.5, 0.5], [2.5, 2.0]])


def numpy_em_step(z, mu):
    """Closed-form E-step (unit covariances, equal weights) and M-step, written out in numpy."""
    d2 = ((z[:, None, :] - mu[None, :, :]) ** 2).sum(-1)
    lam = np.exp(-0.5 * d2)
    lam /= lam.sum(1, keepdims=True)
    counts = lam.sum(0)
    means = (lam.T @ z) / counts[:, None]
    cov = np.stack(
        [
            (lam[:, k, None, None] * np.einsum("ni,nj->nij", z - means[k], z - means[k])).sum(0) / counts[k]
            for k in range(len(mu))
        ]
    )
    return lam, counts, counts / len(z), means, cov


def set_betas(mixture, value):
    with torch.no_grad():
        mixture.betas.fill_(value)
        mixture.centroids.copy_(torch.as_tensor(MU))


# --- the EM step ------------------------------------------------------------------------------


def test_e_and_m_step_match_closed_form_em():
    lam, counts, weights, means, cov = numpy_em_step(Z, MU)
    z, mu = torch.as_tensor(Z), torch.as_tensor(MU)
    resp = e_step(z, mu)
    np.testing.assert_allclose(resp.numpy(), lam, rtol=1e-12)
    step = m_step(z, resp, covariances=True)
    np.testing.assert_allclose(step.counts.numpy(), counts, rtol=1e-12)
    np.testing.assert_allclose(step.weights.numpy(), weights, rtol=1e-12)
    np.testing.assert_allclose(step.means.numpy(), means, rtol=1e-12)
    np.testing.assert_allclose(step.covariances.numpy(), cov, rtol=1e-10)


def test_e_step_by_hand_in_one_dimension():
    # z = 0 and 2, centroids 0 and 2: lambda = [1, e^-2] / (1 + e^-2) and its mirror.
    resp = e_step(torch.tensor([[0.0], [2.0]], dtype=torch.float64), torch.tensor([[0.0], [2.0]], dtype=torch.float64))
    p = 1.0 / (1.0 + math.exp(-2.0))
    np.testing.assert_allclose(resp.numpy(), [[p, 1 - p], [1 - p, p]], rtol=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_one_unfolded_step_is_em_with_the_moment_update(beta):
    """T = 2: lambda^1 = E(z, mu), m = M(lambda^1), mu^2 = beta mu + (1 - beta) m, lambda^2 = E(z, mu^2)."""
    lam1, _, _, m, _ = numpy_em_step(Z, MU)
    mu2 = beta * MU + (1 - beta) * m
    lam2, *_ = numpy_em_step(Z, mu2)
    mixture = UnfoldedGaussianMixture(2, 2, n_layers=2).double()
    set_betas(mixture, beta)
    out = mixture(torch.as_tensor(Z))
    np.testing.assert_allclose(out.means.detach().numpy(), mu2, rtol=1e-12)
    np.testing.assert_allclose(out.responsibilities.detach().numpy(), lam2, rtol=1e-12)
    np.testing.assert_allclose(out.reconstruction.detach().numpy(), lam2 @ mu2, rtol=1e-12)  # eq. 8
    np.testing.assert_allclose(out.correction_loss.item(), beta**2 * ((MU - m) ** 2).sum(), rtol=1e-12)  # eq. 6


def test_three_layers_chain_two_moment_updates():
    lam, mu, correction = None, MU, 0.0
    lam, *_ = numpy_em_step(Z, mu)
    for _ in range(2):
        m = (lam.T @ Z) / lam.sum(0)[:, None]
        mu = 0.9 * MU + 0.1 * m
        correction += ((mu - m) ** 2).sum()
        lam, *_ = numpy_em_step(Z, mu)
    mixture = UnfoldedGaussianMixture(2, 2, n_layers=3).double()
    set_betas(mixture, 0.9)
    out = mixture(torch.as_tensor(Z))
    np.testing.assert_allclose(out.responsibilities.detach().numpy(), lam, rtol=1e-12)
    np.testing.assert_allclose(out.correction_loss.item(), correction, rtol=1e-12)


def test_single_layer_is_the_plain_e_step():
    mixture = UnfoldedGaussianMixture(2, 2, n_layers=1).double()
    set_betas(mixture, 0.5)
    out = mixture(torch.as_tensor(Z))
    np.testing.assert_allclose(out.responsibilities.detach().numpy(), numpy_em_step(Z, MU)[0], rtol=1e-12)
    assert out.correction_loss.item() == 0.0


# --- correction loss, cluster loss with Delta, entropy -------------------------------------------

# Two tight pairs 40 apart: the responsibilities are exactly one-hot in float64 (exp(-800) = 0).
PAIRS = torch.tensor([[0.0, 0.0], [0.0, 2.0], [40.0, 0.0], [40.0, 2.0]], dtype=torch.float64)
PAIR_CENTROIDS = torch.tensor([[1.0, 1.0], [41.0, 1.0]], dtype=torch.float64)


def test_correction_loss_and_its_beta_gradient_by_hand():
    # Batch means m = (0, 1) and (40, 1); ||mu - m||^2 = 1 + 1 = 2 at both layers (lambda stays one-hot).
    # Correction = 2 layers * beta^2 * 2 = 3.24; d/d beta_t = 2 * beta * 2 = 3.6 for each beta.
    mixture = UnfoldedGaussianMixture(2, 2, n_layers=3).double()
    with torch.no_grad():
        mixture.betas.fill_(0.9)
        mixture.centroids.copy_(PAIR_CENTROIDS)
    out = mixture(PAIRS)
    assert out.correction_loss.item() == pytest.approx(3.24, rel=1e-12)
    out.correction_loss.backward()
    np.testing.assert_allclose(mixture.betas.grad.numpy(), [3.6, 3.6], rtol=1e-12)
    # mu^T = 0.9 mu + 0.1 m = (0.9, 1) and (40.9, 1); every point is 0.81 + 1 = 1.81 away (squared);
    # both clusters hold 2 of 4 points, so w = (2 + 3) / (2 + 3) = 1 and eq. 7 per sample is 1.81 / 2.
    np.testing.assert_allclose(out.means.detach().numpy(), [[0.9, 1.0], [40.9, 1.0]], rtol=1e-12)
    assert cluster_loss(PAIRS, out.responsibilities, out.means).item() == pytest.approx(0.905, rel=1e-12)


def test_reweighting_with_delta_by_hand():
    # Hard assignments, 3 samples in cluster 0 and 1 in cluster 1, B = 4, K = 2, Delta = 3:
    # w = (4/2 + 3) / (3 + 3) = 5/6 and (4/2 + 3) / (1 + 3) = 5/4; with Delta = 0, N_bar / N_k = 2/3 and 2.
    resp = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    np.testing.assert_allclose(cluster_weights(resp, 3.0).numpy(), [5 / 6, 5 / 4], rtol=1e-12)
    np.testing.assert_allclose(cluster_weights(resp, 0.0).numpy(), [2 / 3, 2.0], rtol=1e-12)
    # Distances: samples of cluster 0 at squared distance 1, 4, 9 from mu_0; the lone sample at 16 from mu_1.
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [10.0, 4.0]], dtype=torch.float64)
    mu = torch.tensor([[0.0, 0.0], [10.0, 0.0]], dtype=torch.float64)
    expected = 0.5 * (5 / 6 * (1 + 4 + 9) + 5 / 4 * 16) / 4
    assert cluster_loss(z, resp, mu, delta=3.0).item() == pytest.approx(expected, rel=1e-12)


def test_cluster_loss_gradient_holds_the_responsibilities_constant_by_hand():
    # With lambda constant (EM's M-step), d/dz_n of 1/B * 1/2 sum_k w_k lambda_nk ||z_n - mu_k||^2
    # is 1/B sum_k w_k lambda_nk (z_n - mu_k), and the loss sends nothing back into lambda.
    z = torch.tensor(Z, requires_grad=True)
    mu = torch.tensor(MU, requires_grad=True)
    resp = e_step(z, mu)
    cluster_loss(z, resp, mu).backward()
    lam = resp.detach().numpy()
    w = cluster_weights(resp).numpy()
    diff = Z[:, None, :] - MU[None, :, :]  # (N, K, c)
    np.testing.assert_allclose(z.grad.numpy(), ((w * lam)[:, :, None] * diff).sum(1) / len(Z), rtol=1e-12)
    np.testing.assert_allclose(mu.grad.numpy(), -((w * lam)[:, :, None] * diff).sum(0) / len(Z), rtol=1e-12)


def test_differentiable_responsibilities_pull_a_sample_towards_the_largest_cluster():
    # A sample half-way between a large cluster (3 members) and a small one (1 member): eq. 7
    # differentiated through lambda moves its responsibility towards the large cluster, whose
    # w_k is smaller; held constant, lambda gets no gradient from eq. 7 at all.
    mu = torch.tensor([[0.0, 0.0], [4.0, 0.0]], dtype=torch.float64)
    z = torch.tensor([[0.0, 0.1], [0.1, 0.0], [-0.1, 0.0], [4.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    logits = (-0.5 * ((z[:, None] - mu[None]) ** 2).sum(-1)).requires_grad_(True)
    resp = torch.softmax(logits, dim=1)
    w = cluster_weights(resp)
    assert w[0] < w[1]
    cluster_loss(z, resp, mu, gradient="differentiable").backward()
    # gradient descent raises the large cluster's logit for the middle sample against the small one's
    assert logits.grad[4, 0] < logits.grad[4, 1]
    logits.grad = None
    z.requires_grad_(True)
    cluster_loss(z, torch.softmax(logits, dim=1), mu, gradient="constant").backward()
    assert logits.grad is None and z.grad is not None


def test_reweighting_is_one_for_balanced_batches():
    resp = torch.full((6, 3), 1 / 3, dtype=torch.float64)
    np.testing.assert_allclose(cluster_weights(resp, 3.0).numpy(), np.ones(3), rtol=1e-12)


def test_reweighting_holds_no_gradient():
    resp = torch.tensor([[0.7, 0.3], [0.2, 0.8]], requires_grad=True)
    assert not cluster_weights(resp).requires_grad


def test_entropy_by_hand():
    # Rows [1/2, 1/2] and [1/4, 3/4]: entropies log 2 and -(1/4 log 1/4 + 3/4 log 3/4).
    log_resp = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=torch.float64))
    expected = (math.log(2) - (0.25 * math.log(0.25) + 0.75 * math.log(0.75))) / 2
    assert assignment_entropy(log_resp).item() == pytest.approx(expected, rel=1e-12)


def test_entropy_gradient_is_finite_when_a_responsibility_underflows():
    logits = torch.tensor([[0.0, -2000.0], [0.0, 0.0]], requires_grad=True)
    entropy = assignment_entropy(torch.log_softmax(logits, dim=1))
    entropy.backward()
    assert entropy.item() == pytest.approx(math.log(2) / 2, rel=1e-6)
    assert torch.isfinite(logits.grad).all()


def test_log_e_step_is_the_log_of_the_e_step():
    z, mu = torch.as_tensor(Z), torch.as_tensor(MU)
    np.testing.assert_allclose(log_e_step(z, mu).exp().numpy(), e_step(z, mu).numpy(), rtol=1e-12)


@pytest.mark.parametrize("reconstruction", ["sum", "mean"])
def test_whole_loss_weights_its_terms(reconstruction):
    torch.manual_seed(0)
    mixture = UnfoldedGaussianMixture(3, 2, n_layers=3).double()
    z = torch.randn(8, 2, dtype=torch.float64)
    x, x_hat = torch.randn(8, 5, dtype=torch.float64), torch.randn(8, 5, dtype=torch.float64)
    out_mix = mixture(z)
    loss = EDGaMLoss(cluster_weight=0.5, correction_weight=0.25, entropy_weight=2.0, reconstruction=reconstruction)(
        x, x_hat, z, out_mix
    )
    squared = (x - x_hat) ** 2
    # eq. 9: ||x_n - x_hat_n||^2 summed over the 5 features (as printed), or their mean
    error = squared.sum(dim=1).mean() if reconstruction == "sum" else squared.mean()
    expected = (
        error
        + 0.5 * cluster_loss(z, out_mix.responsibilities, out_mix.means)
        + 0.25 * out_mix.correction_loss
        + 2.0 * assignment_entropy(out_mix.log_responsibilities)
    )
    assert loss.loss.item() == pytest.approx(expected.item(), rel=1e-12)


def test_summed_reconstruction_is_the_mean_times_the_features():
    x, x_hat = torch.rand(6, 1, 4, 5), torch.rand(6, 1, 4, 5)
    assert reconstruction_error(x, x_hat, "sum").item() == pytest.approx(
        20 * reconstruction_error(x, x_hat, "mean").item()
    )


@pytest.mark.parametrize("beta, alpha", [(0.5, 0.5), (0.3, 0.18), (0.9, 1.0)])
def test_printed_moment_update_steps_by_two_beta_squared(beta, alpha):
    """Eq. 6 as printed: alpha = 2 beta^2 (clipped to 1), mu^2 = (1 - alpha) mu + alpha m;
    eq. 6 is beta^2 ||mu - m||^2."""
    lam1, _, _, m, _ = numpy_em_step(Z, MU)
    mu2 = (1 - alpha) * MU + alpha * m
    mixture = UnfoldedGaussianMixture(2, 2, n_layers=2, moment_update="printed").double()
    set_betas(mixture, beta)
    out = mixture(torch.as_tensor(Z))
    np.testing.assert_allclose(out.means.detach().numpy(), mu2, rtol=1e-12)
    np.testing.assert_allclose(out.responsibilities.detach().numpy(), numpy_em_step(Z, mu2)[0], rtol=1e-12)
    np.testing.assert_allclose(out.correction_loss.item(), beta**2 * ((MU - m) ** 2).sum(), rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n_layers": 0}, "n_layers"), ({"beta_init": 1.5}, "beta_init"), ({"moment_update": "average"}, "moment_update")],
)
def test_mixture_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UnfoldedGaussianMixture(3, 2, **kwargs)


def test_mixture_refuses_wrong_embedding_size():
    with pytest.raises(ValueError, match="embeddings"):
        UnfoldedGaussianMixture(3, 2)(torch.zeros(4, 5))


def test_loss_refuses_negative_weights_and_unknown_reductions():
    with pytest.raises(ValueError, match="cluster_weight"):
        EDGaMLoss(cluster_weight=-1.0)
    with pytest.raises(ValueError, match="reconstruction"):
        EDGaMLoss(reconstruction="max")
    with pytest.raises(ValueError, match="responsibilities"):
        EDGaMLoss(responsibilities="detached")


# --- auto-encoders ------------------------------------------------------------------------------


def test_dense_autoencoder_is_dec_architecture_with_its_parameter_count():
    model = DenseAutoencoder(784, 10)
    # encoder 784-500-500-2000-10 and its mirror, weights plus biases
    encoder = 784 * 500 + 500 + 500 * 500 + 500 + 500 * 2000 + 2000 + 2000 * 10 + 10
    decoder = 10 * 2000 + 2000 + 2000 * 500 + 500 + 500 * 500 + 500 + 500 * 784 + 784
    assert sum(p.numel() for p in model.parameters()) == encoder + decoder
    x = torch.rand(3, 784)
    assert model.encode(x).shape == (3, 10)
    out = model(x)
    assert out.shape == (3, 784) and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 9, 13)])
def test_conv_autoencoder_reconstructs_the_input_shape(shape):
    model = ConvAutoencoder(shape, 10)
    x = torch.rand(2, *shape)
    assert model.encode(x).shape == (2, 10)
    assert model(x).shape == x.shape


def test_autoencoders_refuse_wrong_input():
    with pytest.raises(ValueError, match="expects input"):
        DenseAutoencoder(5).encode(torch.zeros(2, 6))
    with pytest.raises(ValueError, match="expects input"):
        ConvAutoencoder((1, 8, 8)).encode(torch.zeros(2, 1, 8, 9))
    with pytest.raises(ValueError, match="at least 4x4"):
        ConvAutoencoder((1, 3, 8))


# --- training module ----------------------------------------------------------------------------


def tiny_module(n_features=4):
    autoencoder = DenseAutoencoder(n_features, 2, hidden_sizes=(8,), output_activation="linear")
    return EDGaMModule(autoencoder, UnfoldedGaussianMixture(3, 2), EDGaMLoss())


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    module = tiny_module()
    x = torch.randn(16, 4)
    z, mixture, x_hat = module(x)
    module.loss(x, x_hat, z, mixture).loss.backward()
    dead = [n for n, p in module.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead


def test_non_finite_loss_raises_floating_point_error():
    x = torch.randn(8, 4)
    x[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="learning rate"):
        tiny_module().training_step((x,), 0)


def test_module_refuses_mismatched_embedding_sizes():
    with pytest.raises(ValueError, match="embedding_dim"):
        EDGaMModule(DenseAutoencoder(4, 3, hidden_sizes=(8,)), UnfoldedGaussianMixture(2, 2), EDGaMLoss())


# --- estimator ----------------------------------------------------------------------------------


def small(**kwargs):
    return EDGaMClustering(**{"max_iter": 40, "hidden_layer_sizes": (32, 32), "embedding_dim": 4, **kwargs})


@parametrize_with_checks([small()], expected_failed_checks=lambda est: {})
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n_samples=300, centers=3, cluster_std=0.6, random_state=3)


def test_recovers_separated_blobs(blobs):
    X, y = blobs
    model = small(n_clusters=3, random_state=0).fit(X)
    assert cluster_accuracy(y, model.labels_) > 0.95
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(proba.argmax(axis=1), model.labels_)
    assert model.cluster_centers_.shape == (3, 4)
    assert model.n_iter_ == 40
    assert np.all((model.betas_ >= 0) & (model.betas_ <= 1)) and model.betas_.shape == (2,)


def test_deterministic_for_fixed_random_state(blobs):
    X, _ = blobs
    first = small(n_clusters=3, random_state=5, max_iter=5).fit(X)
    second = small(n_clusters=3, random_state=5, max_iter=5).fit(X)
    np.testing.assert_array_equal(first.labels_, second.labels_)
    np.testing.assert_allclose(first.predict_proba(X), second.predict_proba(X))


def test_images_use_the_convolutional_autoencoder():
    rng = np.random.default_rng(0)
    images = np.zeros((40, 1, 8, 8))
    images[:20, :, :4, :] = 1.0  # top half bright
    images[20:, :, 4:, :] = 1.0  # bottom half bright
    images += rng.uniform(0, 0.1, images.shape)
    X = (images.reshape(40, -1) * 255).astype(np.float32)
    model = EDGaMClustering(2, image_shape=(1, 8, 8), max_iter=30, batch_size=20, random_state=0).fit(X)
    assert isinstance(model.module_.autoencoder, ConvAutoencoder)
    assert cluster_accuracy(np.repeat([0, 1], 20), model.labels_) == 1.0
    dense = EDGaMClustering(
        2,
        image_shape=(1, 8, 8),
        architecture="dense",
        hidden_layer_sizes=(16,),
        max_iter=1,
        batch_size=20,
        random_state=0,
    ).fit(X)
    assert isinstance(dense.module_.autoencoder, DenseAutoencoder)


def test_conv_without_image_shape_is_a_clear_error(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="image_shape"):
        small(architecture="conv").fit(X)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"beta_init": 2.0}, "beta_init"),
        ({"architecture": "rnn"}, "architecture"),
        ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes"),
        ({"cluster_responsibilities": "detached"}, "cluster_responsibilities"),
    ],
)
def test_bad_parameters_are_clear_errors(blobs, params, match):
    X, _ = blobs
    with pytest.raises(ValueError, match=match):
        small(**params).fit(X)


# --- pre-training and appendix E's sanity check -------------------------------------------------


def test_fusion_passing_the_embedding_through_decodes_like_the_plain_autoencoder():
    torch.manual_seed(0)
    module = tiny_module().eval()  # no input dropout
    pass_embedding_through_(module.fusion)
    x = torch.randn(5, 4)
    z, mixture, x_hat = module(x)
    assert not torch.allclose(mixture.reconstruction, z)  # z_hat differs from z, yet is ignored
    torch.testing.assert_close(x_hat, module.autoencoder(x), rtol=0, atol=1e-6)


def test_pretraining_runs_first_and_centroids_start_at_kmeans_of_the_embedding(blobs):
    X, y = blobs
    with LearningCurve(y) as curve:
        # a learning rate of ~0 freezes the joint stage, so the centroids are still k-means's after it
        model = small(n_clusters=3, random_state=0, pretrain_epochs=3, max_iter=1, learning_rate=1e-12).fit(X)
    stages = [p["stage"] for p in curve.points]
    assert stages == ["AutoencoderModule"] * 3 + ["EDGaMModule"]
    assert model.pretrain_epochs_ == 3 and model.n_iter_ == 1
    from routemix.train.edgam import embed

    z = embed(model.module_, model._to_tensor(X)).double()
    centroids = model.module_.mixture.centroids.detach().double()
    nearest = torch.cdist(z, centroids).argmin(dim=1).numpy()
    from sklearn.cluster import KMeans

    kmeans = KMeans(3, n_init=10, random_state=0).fit(z.numpy())
    assert cluster_accuracy(kmeans.labels_, nearest) == 1.0
    matched = torch.cdist(torch.as_tensor(kmeans.cluster_centers_), centroids).min(dim=1).values
    assert matched.max().item() < 1e-4 * float(z.abs().max())


def test_sharp_assignments_agree_with_kmeans_on_the_embedding(blobs):
    """Appendix E: the soft assignments' clustering is close to k-means on the learned embedding."""
    X, y = blobs
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", SoftAssignmentWarning)
        model = small(n_clusters=3, random_state=0, pretrain_epochs=20).fit(X)
    # separated blobs in a small embedding: softer than 1 (unit covariances), but no merging
    assert model.assignment_confidence_ > SOFT_ASSIGNMENTS
    assert model.kmeans_agreement_ > 0.95
    assert cluster_accuracy(y, model.labels_) > 0.95


def test_soft_assignments_are_warned_about():
    """No cluster structure and no pre-training: the mixture cannot sharpen, and says so."""
    X = np.random.default_rng(0).normal(size=(200, 6))
    with pytest.warns(SoftAssignmentWarning, match="stay soft"):
        model = small(n_clusters=8, random_state=0, pretrain_epochs=0, centroid_init="glorot", max_iter=8).fit(X)
    assert model.assignment_confidence_ < 0.5


def test_minmax_input_scaling_feeds_the_sigmoid_decoder_values_in_0_1(blobs):
    from sklearn.preprocessing import MinMaxScaler

    from routemix.cluster.base import scaler_offset_and_scale

    X, _ = blobs
    model = small(n_clusters=3, random_state=0, max_iter=1, pretrain_epochs=1, input_scaling="minmax").fit(X)
    assert isinstance(model.scaler_, MinMaxScaler)
    data = model._to_tensor(X)
    assert data.min() == 0 and data.max() == 1
    assert isinstance(model.module_.autoencoder.decoder[-1], torch.nn.Sigmoid)
    offset, scale = scaler_offset_and_scale(model.scaler_)  # what a run directory stores
    np.testing.assert_allclose((X - offset) / scale, data.numpy(), atol=1e-6)
    assert not isinstance(small(n_clusters=3, max_iter=1).fit(X).module_.autoencoder.decoder[-1], torch.nn.Sigmoid)
