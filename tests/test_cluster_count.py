"""How many clusters: the modularity scores, the choice of K, and NMMClustering(n_clusters="auto") (issue 22)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.utils._param_validation import InvalidParameterError

from routemix.cli import main
from routemix.cluster import NMMClustering
from routemix.cluster.nclusters import (
    choose_n_clusters,
    neighbour_graph,
    null_modularity,
    partition_modularity,
    score_partitions,
)
from routemix.data.transforms import FeatureResample, GaussianNoise, tabular_augmentation
from routemix.metrics import clustering_scores


def uneven_blobs(n_features: int = 10, seed: int = 0):
    """Four separated blobs of 300, 200, 100 and 150 samples in ``n_features`` dimensions."""
    centres = np.random.default_rng(seed).normal(0.0, 6.0, size=(4, n_features))
    return make_blobs(n_samples=[300, 200, 100, 150], centers=centres, cluster_std=1.0, random_state=seed)


def test_modularity_of_separated_groups_matches_the_closed_form():
    """No edge crosses between far groups, so Q = 1 - sum over groups of (their share of the degrees)^2."""
    X, y = make_blobs(n_samples=[30, 20, 10], centers=[[0, 0], [100, 0], [0, 100]], cluster_std=1.0, random_state=0)
    graph = neighbour_graph(X, n_neighbors=5)
    degrees = np.array([d for _, d in sorted(graph.degree())], dtype=float)
    shares = np.array([degrees[y == c].sum() for c in range(3)]) / degrees.sum()
    assert partition_modularity(graph, y) == pytest.approx(1.0 - (shares**2).sum())
    assert partition_modularity(graph, np.zeros(len(y), dtype=int)) == pytest.approx(0.0)
    # a partition that cuts across the groups scores lower
    assert partition_modularity(graph, np.arange(len(y)) % 3) < 0.0


def test_modularity_refuses_labels_of_another_length():
    graph = neighbour_graph(np.random.default_rng(0).normal(size=(20, 2)), n_neighbors=3)
    with pytest.raises(ValueError, match="19 labels for a graph of 20 samples"):
        partition_modularity(graph, np.zeros(19, dtype=int))


def test_null_modularity_is_zero_for_one_cluster_and_below_one_otherwise():
    points = np.random.default_rng(0).normal(size=(300, 5))
    null = null_modularity(points, [1, 2, 4])
    assert null[0] == 0.0 and 0.0 < null[1] < null[2] < 1.0


@pytest.mark.parametrize(
    ("modularity", "null", "chosen"),
    [
        ([0.0, 0.30, 0.50, 0.495, 0.40], [0.0, 0.2, 0.3, 0.35, 0.4], 3),  # the best Q beating the null
        ([0.0, 0.30, 0.50, 0.505, 0.40], [0.0, 0.2, 0.3, 0.35, 0.4], 3),  # K = 4 is not better by the tolerance
        ([0.0, 0.30, 0.50, 0.60, 0.40], [0.0, 0.2, 0.3, 0.35, 0.4], 4),
        ([0.0, 0.30, 0.40, 0.45, 0.50], [0.0, 0.3, 0.4, 0.45, 0.5], 1),  # nothing beats the null
        ([0.0, 0.305, 0.40, 0.45, 0.50], [0.0, 0.3, 0.4, 0.45, 0.5], 1),  # by less than the tolerance
    ],
)
def test_choose_n_clusters(modularity, null, chosen):
    assert choose_n_clusters([1, 2, 3, 4, 5], modularity, null, tolerance=0.01) == chosen


def test_choose_n_clusters_refuses_mismatched_or_missing_scores():
    with pytest.raises(ValueError, match="one score per K"):
        choose_n_clusters([1, 2], [0.0], [0.0, 0.1])
    with pytest.raises(ValueError, match="finite"):
        choose_n_clusters([1, 2], [0.0, float("nan")], [0.0, 0.1])


def test_score_partitions_picks_the_true_partition_of_separated_blobs():
    X, y = uneven_blobs()
    rng = np.random.default_rng(0)
    split = y.copy()
    split[(y == 0) & (rng.random(len(y)) < 0.5)] = 4  # the largest blob cut at random in two
    scores = score_partitions(X, {1: np.zeros(len(y), dtype=int), 4: y, 5: split})
    assert scores.chosen == 4
    assert scores.modularity[1] > scores.modularity[2]
    as_dict = scores.as_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict and as_dict["gap"][1] == pytest.approx(
        scores.modularity[1] - scores.null_modularity[1]
    )


def test_auto_finds_blobs_of_several_sizes():
    X, y = uneven_blobs()
    estimator = NMMClustering("auto", max_clusters=6, max_iter=30, random_state=0).fit(X)
    assert estimator.n_clusters_ == 4
    assert clustering_scores(y, estimator.labels_)["acc"] > 0.99
    scores = estimator.cluster_count_scores_
    assert scores["n_clusters"] == [1, 2, 3, 4, 5, 6] and scores["chosen"] == 4
    assert estimator.predict_proba(X).shape == (len(X), 4)


def test_auto_finds_one_cluster():
    X, _ = make_blobs(n_samples=600, n_features=10, centers=1, random_state=0)
    estimator = NMMClustering("auto", max_clusters=6, max_iter=30, random_state=0).fit(X)
    assert estimator.n_clusters_ == 1 and estimator.cluster_count_scores_["chosen"] == 1
    assert (estimator.labels_ == 0).all() and estimator.predict_proba(X[:5]).shape == (5, 1)


def test_a_given_count_keeps_its_fit_and_records_no_scores():
    X, _ = uneven_blobs()
    estimator = NMMClustering(3, max_iter=2, random_state=0).fit(X)
    assert estimator.n_clusters_ == 3 and estimator.cluster_count_scores_ is None


def test_an_auto_fit_saves_and_loads(tmp_path):
    X, _ = uneven_blobs()
    estimator = NMMClustering("auto", max_clusters=5, max_iter=10, random_state=0).fit(X)
    estimator.save(tmp_path / "model.pt")
    loaded = NMMClustering.load(tmp_path / "model.pt")
    assert loaded.n_clusters_ == estimator.n_clusters_
    assert loaded.cluster_count_scores_ == estimator.cluster_count_scores_
    np.testing.assert_allclose(loaded.predict_proba(X), estimator.predict_proba(X), atol=1e-6)


def test_a_verbose_auto_fit_shows_one_bar_over_the_counts(capsys):
    X, _ = uneven_blobs()
    NMMClustering("auto", max_clusters=3, max_iter=2, random_state=0, verbose=True).fit(X)
    err = capsys.readouterr().err
    # the bar over K names the K being fitted; the fits' own epoch bars stay quiet
    assert "fits for each K" in err and "K=3" in err and "Epoch" not in err


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"n_clusters": "many"}, InvalidParameterError, "n_clusters"),
        ({"n_clusters": "auto", "max_clusters": 1}, InvalidParameterError, "max_clusters"),
        ({"n_clusters": "auto", "priors": True, "drop_threshold": 0.01}, ValueError, "use one of them"),
        ({"n_clusters": "auto", "max_clusters": 800}, ValueError, "lower max_clusters"),
    ],
)
def test_auto_refuses_what_it_cannot_do(params, error, message):
    X, _ = uneven_blobs()
    with pytest.raises(error, match=message):
        NMMClustering(max_iter=1, **params).fit(X)


@pytest.fixture
def tiny_moons(monkeypatch):
    from routemix.bench import nclusters

    monkeypatch.setitem(nclusters.BUDGETS, "cpu", {"moons": nclusters.Budget(limit=120, epochs=2)})


def test_bench_runs_auto_and_the_true_count(tmp_path, capsys, tiny_moons):
    out = tmp_path / "nc"
    args = ["bench", "nclusters", "--datasets", "moons", "--methods", "nmm-auto,nmm-true", "--seeds", "1"]
    assert main([*args, "--max-clusters", "4", "--out", str(out), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "| moons | 120 | 2 | NMM-EM, auto | 4 |" in table and "| moons | 120 | 2 | NMM-EM, true K | - |" in table
    auto, true = json.loads((out / "results.json").read_text())
    assert 1 <= auto["k"] <= 4 and auto["scores"]["n_clusters"] == [1, 2, 3, 4] and true["k"] == 2


def test_bench_baselines_without_clustpy_say_what_to_install(tmp_path, capsys, tiny_moons, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "clustpy.centroid", None)  # as if ClustPy were not installed
    args = ["bench", "nclusters", "--datasets", "moons", "--methods", "xmeans", "--seeds", "1"]
    assert main([*args, "--out", str(tmp_path), "--no-progress"]) == 2
    assert "pip install 'routemix[baselines]'" in capsys.readouterr().err


def test_cli_clusters_auto_records_the_choice(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["cluster", "blobs", "-k", "auto", "--max-clusters", "4", "--n-samples", "300", "--epochs", "3"]
    assert main([*args, "--run-dir", str(run_dir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    chosen = metrics["n_clusters"]
    assert f"300 samples, {chosen} clusters (chosen: --clusters auto)" in out
    assert metrics["cluster_count_scores"]["chosen"] == chosen and metrics["cluster_count_scores"]["n_clusters"] == [
        1,
        2,
        3,
        4,
    ]
    assert json.loads((run_dir / "config.json").read_text())["clusters"] == "auto"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-k", "auto", "--method", "kmeans"], "--clusters auto is NMM-EM's"),
        (["-k", "5", "--max-clusters", "8"], "--max-clusters bounds --clusters auto"),
        (["-k", "auto", "--max-clusters", "1"], "--max-clusters takes a whole number of at least 2"),
        (["-k", "many"], "takes a number of clusters or 'auto'"),
        (["-k", "auto", "--n-samples", "12"], "use --max-clusters 11 or fewer"),
    ],
)
def test_cli_clusters_auto_mistakes_are_one_line_errors(tmp_path, capsys, extra, message):
    try:
        code = main(["cluster", "moons", *extra, "--run-dir", str(tmp_path / "run"), "--no-progress"])
    except SystemExit as exit:  # argparse's own usage errors
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "run").exists()
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("n_features", "kind", "strength"),
    [(2, GaussianNoise, 0.1), (3, GaussianNoise, 0.1), (4, FeatureResample, 0.2), (64, FeatureResample, 0.2)],
)
def test_auto_augmentation_adds_noise_to_few_features_and_resamples_many(n_features, kind, strength):
    augment = tabular_augmentation("auto", None, n_features)
    assert isinstance(augment, kind)
    assert (augment.std if kind is GaussianNoise else augment.rate) == strength
    assert (
        isinstance(tabular_augmentation("auto", 0.3, 2), GaussianNoise)
        and tabular_augmentation("auto", 0.3, 2).std == 0.3
    )
    with pytest.raises(ValueError, match="pass n_features"):
        tabular_augmentation("auto", None)


def test_on_two_moons_the_default_augmentation_beats_resampling():
    """Resampling one of two coordinates splits the moons by a line (ACC 0.73); noise follows them."""
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=2000, noise=0.06, random_state=0)
    default = NMMClustering(2, max_iter=50, random_state=0).fit(X).labels_
    resampled = NMMClustering(2, max_iter=50, augmentation="resample", random_state=0).fit(X).labels_
    assert clustering_scores(y, default)["acc"] > clustering_scores(y, resampled)["acc"] + 0.1


@pytest.mark.slow
def test_bench_embed_budget_clusters_one_umap_embedding_for_every_method(tmp_path, capsys, monkeypatch):
    from routemix.bench import nclusters

    monkeypatch.setitem(nclusters.BUDGETS, "cpu", {"moons": nclusters.Budget(limit=150, epochs=2, embed=True)})
    out = tmp_path / "nc"
    args = ["bench", "nclusters", "--datasets", "moons", "--methods", "hdbscan,nmm-true", "--seeds", "1"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    hdbscan, nmm = json.loads((out / "results.json").read_text())
    assert json.loads(nmm["budget"])["embed"] is True
    # computed once, for HDBSCAN, and reused by NMM-EM (the same seconds recorded for both)
    assert nmm["embedding_seconds"] == hdbscan["embedding_seconds"] > 0 and nmm["k"] == 2


def test_bench_keeps_each_embedding_on_disk_so_a_new_process_does_not_recompute_it(tmp_path, monkeypatch):
    from routemix.bench import nclusters
    from routemix.cluster import moe_pretrain

    calls = []
    monkeypatch.setattr(moe_pretrain, "umap_embedding", lambda codes, n, seed: calls.append(seed) or codes[:, :n] * 2)
    X = np.random.default_rng(0).normal(size=(40, 2))
    key = ("moons", None, 3)  # dataset, sample limit, seed
    first, seconds = nclusters.embedding(X, None, 3, key, tmp_path)
    assert calls == [3] and len(list(tmp_path.glob("embedding-moons-seed3-*.npz"))) == 1
    nclusters._EMBEDDINGS.clear()  # as in a new process
    again, same_seconds = nclusters.embedding(X, None, 3, key, tmp_path)
    assert calls == [3] and np.array_equal(again, first) and same_seconds == seconds
    nclusters._EMBEDDINGS.clear()
    nclusters.embedding(X, None, 4, (*key[:2], 4), tmp_path)  # another seed is another embedding
    assert calls == [3, 4]


def test_bench_figure_draws_each_datasets_modularity_curves(tmp_path):
    from routemix.bench.nclusters import draw_scores

    scores = {"n_clusters": [1, 2, 3], "modularity": [0.0, 0.4, 0.5], "null_modularity": [0.0, 0.3, 0.45], "chosen": 3}
    results = [
        {"dataset": name, "method": "nmm-auto", "seed": 0, "true_k": 3, "scores": scores} for name in ("a", "b")
    ] + [{"dataset": "c", "method": "hdbscan", "seed": 0, "true_k": 2}]
    written = draw_scores(results, tmp_path / "modularity")
    assert [p.name for p in written] == ["modularity.png", "modularity.svg"] and all(p.stat().st_size for p in written)
    assert draw_scores(results[2:], tmp_path / "none") == []
