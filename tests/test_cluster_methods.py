"""Every clustering method by name: the registry, `routemix cluster --method`, and
`routemix bench clustering`."""

import json

import numpy as np
import pytest

from routemix.bench import clustering as bench
from routemix.cli import main
from routemix.cluster import EDGaMClustering
from routemix.cluster.registry import METHODS, get_method, make_estimator
from routemix.cluster.saved import load_clusterer
from routemix.errors import RoutemixError
from routemix.metrics import cluster_accuracy
from routemix.published import published_table


@pytest.mark.parametrize("name", ["kmeans", "gmm", "spectral"])
def test_baselines_cluster_separated_blobs(name):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=300, centers=3, cluster_std=0.5, random_state=0)
    labels = make_estimator(name, 3, n_features=2, random_state=0).fit_predict(X)
    assert cluster_accuracy(y, labels) == 1.0


def test_gmm_covariance_follows_the_width():
    assert make_estimator("gmm", 3, n_features=64).covariance_type == "full"
    assert make_estimator("gmm", 3, n_features=784).covariance_type == "diag"


@pytest.mark.parametrize("name", [n for n, spec in METHODS.items() if spec.deep])
def test_every_deep_method_builds_with_the_shared_arguments(name):
    estimator = make_estimator(name, 4, n_features=784, image_shape=(1, 28, 28), max_iter=2, random_state=3)
    params = estimator.get_params()
    assert params["n_clusters"] == 4 and params["image_shape"] == (1, 28, 28)
    assert params["max_iter"] == 2 and params["random_state"] == 3


def test_unknown_method_suggests_the_closest():
    with pytest.raises(RoutemixError, match="Did you mean spectral"):
        get_method("spectrl")


def test_cluster_cli_runs_a_peer_method(tmp_path, capsys):
    run_dir = tmp_path / "iic"
    assert (
        main(["cluster", "digits", "--method", "iic", "--epochs", "2", "--run-dir", str(run_dir), "--no-progress"]) == 0
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["method"] for r in metrics["results"]] == ["iic", "kmeans", "kmeans-scaled"]
    assert (run_dir / "model.pt").is_file()


def test_cluster_cli_peer_method_on_an_image_set(shared_data, tmp_path):
    run_dir = tmp_path / "ddc"
    args = [
        "cluster",
        "mnist",
        "--data-dir",
        str(shared_data),
        "--method",
        "ddc",
        "--limit",
        "300",
        "--epochs",
        "1",
        "--run-dir",
        str(run_dir),
        "--no-progress",
        "--no-kmeans",
    ]
    assert main(args) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_samples"] == 300 and 0 <= metrics["results"][0]["acc"] <= 1
    estimator = load_clusterer(run_dir).estimator
    assert estimator.image_shape == (1, 28, 28) and estimator.pixel_range_ == (0.0, 1.0)  # the job passes pixels / 255


def test_cluster_cli_baseline_has_no_model_file_and_no_second_kmeans(tmp_path):
    run_dir = tmp_path / "km"
    assert main(["cluster", "digits", "--method", "kmeans", "--run-dir", str(run_dir), "--no-progress"]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["method"] for r in metrics["results"]] == ["kmeans"]
    assert metrics["results"][0]["acc"] > 0.7
    assert not (run_dir / "model.pt").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "ddc", "--gamma", "3"], "--gamma: options of NMM-EM"),
        (["--method", "iic", "--em-only"], "--em-only: options of NMM-EM"),
        (["--method", "kmean"], "Did you mean kmeans"),
    ],
)
def test_cluster_cli_bad_method_options_are_one_line_errors(tmp_path, capsys, args, message):
    assert main(["cluster", "digits", *args, "--run-dir", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_reference_numbers_name_their_source():
    rows = published_table("clustering")
    assert {r["method"] for r in rows} >= {"nmm", "ddc", "edgam", "moe", "iic", "kmeans", "gmm", "spectral"}
    for row in rows:
        assert row["source"] and 0 < row["acc"] <= 1
    by_key = {(r["dataset"], r["method"], r["protocol"]): r for r in rows}
    assert len(by_key) == len(rows)  # one number per dataset, method and protocol
    assert by_key[("mnist", "ddc", "lowest loss")]["acc"] == pytest.approx(0.8658)  # DDC Table 1
    assert by_key[("mnist", "ddc", "vote")]["acc"] == pytest.approx(0.8849)  # DDC Table 1, DDC-VOTE
    assert by_key[("mnist", "ddc", "single run")]["acc"] == pytest.approx(0.808)  # DDC Table 2's mean
    assert by_key[("fashion_mnist", "edgam", "single run")]["acc"] == pytest.approx(0.644)  # EDGaM Table 3


def test_fit_one_scores_and_measures():
    [result] = bench.fit_one("digits", "kmeans", 0, bench.Budget())
    assert result["n_samples"] == 1797 and result["acc"] > 0.7 and result["protocol"] == "single run"
    assert result["seconds"] > 0 and result["peak_mb"] >= result["fit_mb"] >= 0


def test_fit_one_honours_the_budget_limit(shared_data):
    [result] = bench.fit_one("mnist", "kmeans", 0, bench.Budget(limit=300), data_dir=str(shared_data))
    assert result["n_samples"] == 300


def test_run_in_fresh_processes_resumes_and_writes_tables(tmp_path, monkeypatch):
    results = bench.run(("digits",), ("kmeans",), (0, 1), out=str(tmp_path), progress=False)
    assert [(r["method"], r["seed"]) for r in results] == [("kmeans", 0), ("kmeans", 1)]
    assert len(json.loads((tmp_path / "results.json").read_text())) == 2

    def refit(*args):
        raise AssertionError("a finished fit was run again")

    monkeypatch.setattr(bench, "_in_fresh_process", refit)
    assert bench.run(("digits",), ("kmeans",), (0, 1), out=str(tmp_path), progress=False) == results
    rows = bench.summarize(results)
    assert rows[0]["seeds"] == 2 and rows[0]["acc_std"] >= 0
    markdown, table = bench.write_tables(rows, tmp_path)
    assert "| kmeans | single run |" in markdown.read_text() and table.read_text().startswith("dataset,method,protocol")


def test_deep_fits_write_learning_curves_and_the_time_to_accuracy_figure(tmp_path):
    budget = bench.Budget(epochs={"ddc": 4}, curve_every={"ddc": 2})
    curve = bench.curve_path(tmp_path, "digits", "ddc", 0)
    [result] = bench.fit_one("digits", "ddc", 0, budget, curve=str(curve))
    points = bench.read_curve(curve)
    assert [p["epoch"] for p in points] == [2, 4] and points[0]["seconds"] < points[1]["seconds"] <= result["seconds"]
    assert points[-1]["acc"] == pytest.approx(result["acc"])  # the last point is the fitted model's labels
    [unrecorded] = bench.fit_one("digits", "ddc", 0, budget)
    assert unrecorded["acc"] == result["acc"]  # recording the curve changes nothing in training
    [baseline] = bench.fit_one("digits", "kmeans", 0, budget)
    [png, svg] = bench.plot_time_to_accuracy([result, baseline], tmp_path, "digits")
    assert png.stat().st_size > 10_000 and svg.is_file()


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("budget", sorted(bench.BUDGETS))
def test_every_budget_builds_valid_estimators_that_fit_tiny_images(budget, dataset):
    """Each profile's settings on tiny data: its parameters are accepted, and a scaled-down fit
    with them (fewest epochs, two runs, one pre-training epoch) clusters 40 images."""
    rng = np.random.default_rng(0)
    images = rng.random((40, 1, 28, 28)).astype(np.float32)
    images[:20, :, :14] += 1.0  # two patterns
    X = images.reshape(40, -1) / 2
    plan = bench.budget_for(budget, dataset)
    for method in ("nmm", "ddc", "edgam", "moe", "iic", "n2d"):
        params = plan.params.get(method, {})
        full = make_estimator(
            method, 2, n_features=784, image_shape=(1, 28, 28), max_iter=plan.epochs[method], **params
        )
        full._validate_params()
        small = {**params, **{k: v for k, v in (("n_init", 2), ("pretrain_epochs", 1)) if k in params}}
        estimator = make_estimator(
            method,
            2,
            n_features=784,
            image_shape=(1, 28, 28),
            max_iter=5 if method == "moe" else 1,
            batch_size=20,
            **small,
        )
        assert estimator.fit(X).labels_.shape == (40,)


@pytest.mark.parametrize("budget", sorted(bench.CPU_SECONDS))
def test_cpu_budgets_give_every_deep_method_about_the_same_time(budget):
    seconds = bench.CPU_SECONDS[budget]
    for dataset in ("mnist", "fashion_mnist"):
        plan = bench.budget_for(budget, dataset)
        for method in ("nmm", "iic", "ddc", "edgam", "moe", "n2d"):
            planned = bench.planned_seconds(plan, method)
            # the MoE's one epoch per stage is its floor (about 40 minutes here)
            assert 0.7 * seconds <= planned <= 1.3 * max(seconds, bench.CPU_MOE_FIXED_SECONDS), method
            assert method in plan.curve_every
        moe = plan.params["moe"]["stage_split"]
        assert plan.epochs["moe"] == sum(moe.values()) and set(moe) == {
            "autoencoder",
            "retrain",
            "manager",
            "cluster",
            "specialise",
        }


def test_edgam_runs_each_dataset_as_its_paper_did():
    """Table 5's auto-encoder and Table 6's loss weights per dataset, in every image budget."""
    for budget in ("cpu", "cpu-long", "paper"):
        mnist, fashion = (bench.budget_for(budget, d).params["edgam"] for d in ("mnist", "fashion_mnist"))
        assert mnist["architecture"] == "dense" and fashion["architecture"] == "conv"
        mnist_weights = {
            k: mnist.get(k, EDGaMClustering().get_params()[k])
            for k in ("cluster_weight", "correction_weight", "entropy_weight")
        }
        fashion_weights = {k: fashion.get(k, EDGaMClustering().get_params()[k]) for k in mnist_weights}
        assert mnist_weights == {"cluster_weight": 1e-2, "correction_weight": 1e-2, "entropy_weight": 1e-4}
        assert fashion_weights == {"cluster_weight": 5e-2, "correction_weight": 1e-3, "entropy_weight": 1e-4}


def test_a_result_depends_only_on_its_own_methods_budget():
    """Changing DDC's epochs reruns DDC, not k-means; the curve interval changes no result."""
    before, after = bench.Budget(epochs={"ddc": 1}), bench.Budget(epochs={"ddc": 2}, curve_every={"ddc": 1})
    assert before.key("kmeans") == after.key("kmeans")
    assert before.key("ddc") != after.key("ddc")
    assert bench.Budget(limit=10).key("kmeans") != before.key("kmeans")
