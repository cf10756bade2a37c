import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from routemix.losses import NMMLoss, consistency_kl, gamma_for_batch_size, zscore_bound


def reference_loss(a, a_tr=None, gamma=5.0, eps=1e-5):
    """Eq. 4.11, 4.20, 4.22/4.23 written out by hand."""

    def norm(s):
        mu = s.mean(0)
        var = ((s - mu) ** 2).mean(0)
        return (s - mu) / torch.sqrt(var + eps)

    a_star = norm(a)
    p = torch.exp(a_star) / torch.exp(a_star).sum(1, keepdim=True)
    ll = torch.log(1 / (1 + torch.exp(-a_star / gamma)))
    if a_tr is not None:
        ll = ll + torch.log(1 / (1 + torch.exp(-norm(a_tr) / gamma)))
    return -(p * ll).sum(1).mean()


def test_loss_matches_equations():
    torch.manual_seed(0)
    a, a_tr = torch.randn(32, 5, dtype=torch.float64), torch.randn(32, 5, dtype=torch.float64)
    loss = NMMLoss(5, gamma=5.0).double()
    assert loss(a).loss.item() == pytest.approx(reference_loss(a).item(), rel=1e-10)
    assert loss(a, a_tr).loss.item() == pytest.approx(reference_loss(a, a_tr).item(), rel=1e-10)


def test_posterior_is_held_constant():
    torch.manual_seed(0)
    a = torch.randn(16, 4, dtype=torch.float64, requires_grad=True)
    NMMLoss(4).double()(a).loss.backward()
    # Gradient with p constant: d/da* of -1/n sum p log sigmoid(a*/gamma), through the normalisation.
    b = a.detach().clone().requires_grad_(True)
    a_star = F.batch_norm(b, None, None, training=True, eps=1e-5)
    p = torch.softmax(a_star, 1).detach()
    (-(p * F.logsigmoid(a_star / 5.0)).sum(1).mean()).backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_normalized_scores_have_zero_mean_unit_variance():
    a = torch.randn(128, 10) * 7 + 3
    out = NMMLoss(10)(a)
    torch.testing.assert_close(out.normalized.mean(0), torch.zeros(10), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.normalized.var(0, unbiased=False), torch.ones(10), atol=1e-3, rtol=0)
    # eq. 4.14: batch mean of every density ~0.5 in the sigmoid's linear region
    assert torch.all((out.density_mean - 0.5).abs() < 0.01)


def test_running_statistics_used_in_eval():
    loss = NMMLoss(3, momentum=1.0)
    a = torch.randn(64, 3) * 2 + 1
    loss(a)
    loss.eval()
    single = a[:1]
    expected = (single - a.mean(0)) / torch.sqrt(a.var(0, unbiased=True) + 1e-5)
    torch.testing.assert_close(loss.normalize(single), expected)
    assert loss.predict_proba(single).shape == (1, 3)


def test_zero_variance_batch_gives_no_nan():
    loss = NMMLoss(4)
    out = loss(torch.ones(8, 4), torch.ones(8, 4))
    assert torch.isfinite(out.loss)
    assert torch.isfinite(out.posterior).all()


def test_single_sample_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 samples"):
        NMMLoss(3)(torch.randn(1, 3))


def test_wrong_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        NMMLoss(3)(torch.randn(4, 5))


def test_unnormalized_densities_are_arbitrary():
    # Table 4.1 mechanism: without normalisation a dominant score drives its density mean to ~1.
    a = torch.randn(128, 3)
    a[:, 1] += 40
    out = NMMLoss(3, normalization="none", gamma=5.0)(a)
    assert out.density_mean[1] > 0.99
    normalized = NMMLoss(3)(a)
    assert torch.all((normalized.density_mean - 0.5).abs() < 0.01)


def test_priors_shift_posteriors_toward_frequent_clusters():
    loss = NMMLoss(2, priors=True, prior_momentum=1.0)
    a = torch.zeros(10, 2)
    a[:8, 0] = 5.0  # 8 of 10 samples prefer cluster 0
    a[8:, 1] = 5.0
    loss(a)
    prior = loss.log_prior.exp()
    # a*: cluster 0 -> 0.5 (x8), -2 (x2); cluster 1 -> -0.5 (x8), 2 (x2); prior = mean posterior
    p0 = (8 * torch.sigmoid(torch.tensor(1.0)) + 2 * torch.sigmoid(torch.tensor(-4.0))) / 10
    assert prior[0].item() == pytest.approx(p0.item(), rel=1e-4)
    assert prior.sum().item() == pytest.approx(1.0)
    plain = NMMLoss(2).posterior(torch.zeros(1, 2))
    with_prior = loss.posterior(torch.zeros(1, 2))
    assert with_prior[0, 0] > plain[0, 0]


def test_running_normalization_mode_trains_and_stays_finite():
    loss = NMMLoss(3, normalization="running")
    a = torch.randn(32, 3, requires_grad=True)
    out = loss(a)
    out.loss.backward()
    assert torch.isfinite(a.grad).all()


def test_consistency_kl_closed_form():
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    q = torch.tensor([[0.25, 0.75], [0.9, 0.1]])
    expected = (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)) / 2
    assert consistency_kl(p, q.log()).item() == pytest.approx(expected, rel=1e-6)


def test_gamma_scaling_with_batch_size():
    assert zscore_bound(128, ddof=1) == pytest.approx(11.226, abs=1e-3)  # thesis Fig. 4.2: [-11.23, 11.23]
    assert zscore_bound(128) == pytest.approx(math.sqrt(127))  # eq. 4.11 uses the 1/n variance
    assert gamma_for_batch_size(128) == pytest.approx(5.0)
    assert gamma_for_batch_size(512) > gamma_for_batch_size(128) > gamma_for_batch_size(32)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 64), k=st.integers(1, 12), scale=st.floats(1e-3, 1e3))
def test_normalized_scores_respect_shiffler_bound(n, k, scale):
    a = torch.randn(n, k, dtype=torch.float64) * scale
    out = NMMLoss(k).double()(a)
    assert torch.isfinite(out.loss)
    assert out.normalized.abs().max() <= zscore_bound(n) + 1e-6
