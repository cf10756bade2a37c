"""Dropping clusters nobody uses (NMMLoss ``drop_threshold``), the estimator's count of clusters,
and ``routemix bench nclusters``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from routemix.cli import main
from routemix.cluster import NMMClustering
from routemix.losses import NMMLoss, consistency_kl


def three_winners(batch: int = 12) -> torch.Tensor:
    """Scores where clusters 0-2 each win a third of the batch and cluster 3 wins nothing: its
    scores are constant, so a* = 0, below each sample's winner (a* = sqrt(2))."""
    scores = torch.zeros(batch, 4)
    for cluster in range(3):
        scores[cluster::3, cluster] = 5.0
    return scores


def test_dropped_cluster_has_zero_posterior_and_the_loss_stays_finite():
    loss = NMMLoss(4, priors=True, prior_momentum=1.0, drop_threshold=0.1)
    loss(three_winners())
    assert loss.alive.tolist() == [True, True, True, False]
    assert loss.log_prior[3].item() == -math.inf
    assert loss.log_prior.exp().sum().item() == pytest.approx(1.0)

    scores = torch.randn(16, 4, requires_grad=True)
    out = loss(scores, scores.detach() + 0.1 * torch.randn(16, 4))
    assert torch.isfinite(out.loss)
    assert torch.all(out.posterior[:, 3] == 0)
    torch.testing.assert_close(out.posterior.sum(dim=1), torch.ones(16))
    out.loss.backward()
    assert torch.all(torch.isfinite(scores.grad))
    # the consistency step (eq. 4.24) sees log 0 for the dropped cluster: KL stays finite
    normalized = loss.normalize(scores.detach(), update_stats=False)
    augmented = loss.normalize(scores.detach() + 0.1, update_stats=False).requires_grad_()
    kl = consistency_kl(loss.posterior(normalized), loss.log_posterior(augmented))
    kl.backward()
    assert torch.isfinite(kl) and torch.all(torch.isfinite(augmented.grad))


def test_a_dropped_cluster_never_comes_back():
    loss = NMMLoss(4, priors=True, prior_momentum=1.0, drop_threshold=0.1)
    loss(three_winners())
    favours_3 = three_winners()
    favours_3[:6, 3] = 50.0  # cluster 3 would win half of this batch if it were alive
    for _ in range(5):
        out = loss(favours_3)
        assert torch.all(out.posterior[:, 3] == 0)
    assert not loss.alive[3]
    assert loss.log_prior[3].item() == -math.inf
    assert loss.running_share[3].item() == 0.0
    assert loss.posterior(torch.tensor([[0.0, 0.0, 0.0, 100.0]]))[0, 3].item() == 0.0


def test_drop_step_matches_the_closed_form():
    # A cluster that wins nothing keeps (1 - m)^n of its starting share 1/K: with m = 0.1, K = 4
    # and threshold 0.2, 0.25 * 0.9^2 = 0.2025 survives and 0.25 * 0.9^3 = 0.182 is dropped.
    momentum, threshold = 0.1, 0.2
    expected_step = math.ceil(math.log(threshold * 4) / math.log(1 - momentum))
    assert expected_step == 3
    loss = NMMLoss(4, priors=True, prior_momentum=momentum, drop_threshold=threshold)
    alive_after = []
    for _ in range(4):
        loss(three_winners())
        alive_after.append(bool(loss.alive[3]))
    assert alive_after == [True, True, False, False]
    # the winners' shares, 1/3 - (1/3 - 1/4) * 0.9^n each, renormalised over the alive three
    torch.testing.assert_close(loss.running_share[:3], torch.full((3,), 1 / 3))
    assert loss.running_share.sum().item() == pytest.approx(1.0)


def test_without_a_threshold_nothing_is_dropped():
    loss = NMMLoss(4, priors=True, prior_momentum=1.0)
    loss(three_winners())
    assert loss.alive.all()
    assert torch.isfinite(loss.log_prior).all()


def test_each_mixture_drops_its_own_clusters():
    loss = NMMLoss(4, priors=True, prior_momentum=1.0, drop_threshold=0.1, num_mixtures=2)
    scores = torch.stack([three_winners(), three_winners().flip(-1)], dim=1)  # (B, 2, 4)
    loss(scores)
    assert loss.alive.view(2, 4).tolist() == [[True, True, True, False], [False, True, True, True]]
    assert loss.num_alive().tolist() == [3, 3]


def test_alive_clusters_survive_a_checkpoint_and_old_checkpoints_load():
    loss = NMMLoss(4, priors=True, prior_momentum=1.0, drop_threshold=0.1)
    loss(three_winners())
    restored = NMMLoss(4, priors=True, drop_threshold=0.1)
    restored.load_state_dict(loss.state_dict())
    assert restored.alive.tolist() == [True, True, True, False]
    old = {k: v for k, v in NMMLoss(4).state_dict().items() if k not in ("alive", "running_share")}
    fresh = NMMLoss(4, priors=True)
    fresh.load_state_dict(old)
    assert fresh.alive.all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drop_threshold": 0.1}, "needs priors=True"),
        ({"drop_threshold": 0.25, "priors": True}, "between 0 and 1/n_clusters"),
        ({"drop_threshold": 0.0, "priors": True}, "between 0 and 1/n_clusters"),
    ],
)
def test_bad_drop_threshold_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NMMLoss(4, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drop_threshold": 0.1, "priors": False}, "needs priors=True"),
        ({"drop_threshold": 0.3, "priors": True}, "between 0 and 1/n_clusters"),
        ({"drop_threshold": 1.5, "priors": True}, "drop_threshold"),
    ],
)
def test_estimator_rejects_bad_drop_settings(kwargs, message):
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match=message):
        NMMClustering(n_clusters=4, max_iter=1, **kwargs).fit(X)


def test_estimator_reports_fewer_clusters_than_its_upper_bound():
    # 3 well separated blobs, an upper bound of 6: the clusters that stop winning samples are
    # dropped (measured: 4-5 of 6 left over 6 seeds at this short budget, 3 with 100 epochs, with
    # feature resampling; the noise that is now the default on 2-D data drops none in 30 epochs)
    X, _ = make_blobs(n_samples=300, centers=3, cluster_std=0.5, center_box=(-10, 10), random_state=0)
    est = NMMClustering(
        n_clusters=6,
        augmentation="resample",
        priors=True,
        drop_threshold=0.8 / 6,
        max_iter=30,
        batch_size=32,
        hidden_layer_sizes=(32, 32),
        random_state=0,
    ).fit(X)
    assert est.n_clusters_alive_ < 6
    assert est.n_clusters_found_ <= est.n_clusters_alive_
    assert set(np.unique(est.predict(X))) == set(range(est.n_clusters_found_))
    proba = est.predict_proba(X)
    dropped = ~est.module_.loss.alive.numpy()[est.cluster_order_]
    assert dropped.sum() == 6 - est.n_clusters_alive_
    assert np.all(proba[:, dropped] == 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


@pytest.fixture
def tiny_budget(monkeypatch):
    from routemix.bench import nclusters

    monkeypatch.setitem(nclusters.BUDGETS, "cpu", {"moons": nclusters.Budget(limit=200, epochs=2)})


def test_bench_cli_runs_nmm_and_resumes(tmp_path, capsys, tiny_budget, monkeypatch):
    out = tmp_path / "nc"
    args = [
        "bench",
        "nclusters",
        "--datasets",
        "moons",
        "--methods",
        "nmm",
        "--seeds",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "| moons | 200 | 2 | NMM-EM, dropping | 4 |" in table
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 1 and results[0]["bound"] == 4 and 1 <= results[0]["k"] <= results[0]["alive"] <= 4
    # a rerun continues: nothing left to fit
    from routemix.bench import nclusters

    fit_one = nclusters.fit_one
    monkeypatch.setattr(nclusters, "fit_one", lambda *a, **k: pytest.fail("refitted a finished result"))
    assert main(args) == 0
    # a row made under other NMM-EM defaults is fitted again, not mixed in
    from routemix.cluster import nclusters as count

    monkeypatch.setattr(count, "DEFAULT_TOLERANCE", 0.05)
    monkeypatch.setattr(nclusters, "fit_one", fit_one)
    capsys.readouterr()
    assert main(args) == 0
    assert "1 NMM-EM result(s)" in capsys.readouterr().err
    first, again = json.loads((out / "results.json").read_text())
    assert json.loads(first["defaults"])["tolerance"] != json.loads(again["defaults"])["tolerance"] == 0.05


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "kmeans"], "unknown method"),
        (["--bound-factor", "0.5"], "bound factor"),
        (["--drop-factor", "1.0"], "drop factor"),
        (["--budget", "huge"], "unknown budget"),
    ],
)
def test_bench_cli_bad_options_are_one_line_errors(tmp_path, capsys, extra, message):
    assert main(["bench", "nclusters", "--datasets", "moons", "--out", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_bench_hdbscan_estimate_on_a_tiny_set(tmp_path, capsys, tiny_budget):
    out = tmp_path / "nc"
    assert (
        main(
            [
                "bench",
                "nclusters",
                "--datasets",
                "moons",
                "--methods",
                "hdbscan",
                "--seeds",
                "1",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    result = json.loads((out / "results.json").read_text())[0]
    assert result["method"] == "hdbscan" and result["k"] >= 1 and 0.0 <= result["noise"] < 1.0
