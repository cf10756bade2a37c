"""Every clustering method by name: the registry, `routemix cluster --method`, and
`routemix bench clustering`."""

import json

import numpy as np
import pytest

from routemix.bench import clustering as bench
from routemix.bench.published import published_table
from routemix.cli import main
from routemix.cluster.registry import METHODS, get_method, make_estimator
from routemix.errors import RoutemixError
from routemix.metrics import cluster_accuracy
from routemix.train.checkpoint import load_checkpoint


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
    assert main(["cluster", "digits", "--method", "iic", "--epochs", "2", "--run-dir", str(run_dir), "--no-progress"]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["method"] for r in metrics["results"]] == ["iic", "kmeans"]
    assert (run_dir / "model.pt").is_file()


def test_cluster_cli_peer_method_on_an_image_set(shared_data, tmp_path):
    run_dir = tmp_path / "ddc"
    args = ["cluster", "mnist", "--data-dir", str(shared_data), "--method", "ddc", "--limit", "300", "--epochs", "1",
            "--run-dir", str(run_dir), "--no-progress", "--no-kmeans"]
    assert main(args) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_samples"] == 300 and 0 <= metrics["results"][0]["acc"] <= 1
    state = load_checkpoint(run_dir / "model.pt")
    assert state["kind"] == "ddc_image" and state["pixel_range"] == [0.0, 1.0]  # the job passes pixels / 255


def test_cluster_cli_baseline_has_no_model_file_and_no_second_kmeans(tmp_path):
    run_dir = tmp_path / "km"
    assert main(["cluster", "digits", "--method", "kmeans", "--run-dir", str(run_dir), "--no-progress"]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["method"] for r in metrics["results"]] == ["kmeans"]
    assert metrics["results"][0]["acc"] > 0.7
    assert not (run_dir / "model.pt").exists()


@pytest.mark.parametrize("args, message", [
    (["--method", "ddc", "--gamma", "3"], "--gamma: options of NMM-EM"),
    (["--method", "iic", "--em-only"], "--em-only: options of NMM-EM"),
    (["--method", "kmean"], "Did you mean kmeans"),
])
def test_cluster_cli_bad_method_options_are_one_line_errors(tmp_path, capsys, args, message):
    assert main(["cluster", "digits", *args, "--run-dir", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_reference_numbers_name_their_source():
    rows = published_table("clustering")
    assert {r["method"] for r in rows} >= {"nmm", "ddc", "edgam", "moe", "iic", "kmeans", "gmm", "spectral"}
    for row in rows:
        assert row["source"] and 0 < row["acc"] <= 1
    by_key = {(r["dataset"], r["method"]): r for r in rows}
    assert by_key[("mnist", "ddc")]["acc"] == pytest.approx(0.8658)  # DDC Table 1
    assert by_key[("fashion_mnist", "edgam")]["acc"] == pytest.approx(0.644)  # EDGaM Table 3


def test_fit_one_scores_and_measures():
    result = bench.fit_one("digits", "kmeans", 0, bench.Budget())
    assert result["n_samples"] == 1797 and result["acc"] > 0.7
    assert result["seconds"] > 0 and result["peak_mb"] >= result["fit_mb"] >= 0


def test_fit_one_honours_the_budget_limit(shared_data):
    result = bench.fit_one("mnist", "kmeans", 0, bench.Budget(limit=300), data_dir=str(shared_data))
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
    assert "| kmeans |" in markdown.read_text() and table.read_text().startswith("dataset,method")


def test_summary_puts_the_papers_numbers_beside_ours():
    fake = [{"dataset": "mnist", "method": "ddc", "seed": s, "budget": "b", "n_samples": 10, "epochs": 1,
             "acc": a, "nmi": 0.5, "ari": 0.4, "seconds": 1.0, "peak_mb": 900.0, "fit_mb": 10.0} for s, a in ((0, 0.6), (1, 0.8))]
    row = bench.summarize(fake)[0]
    assert row["acc"] == pytest.approx(0.7) and row["acc_std"] == pytest.approx(0.1)
    assert row["paper_acc"] == pytest.approx(0.8658) and "DDC" in row["paper_source"]
    assert "0.866 [1]" in bench.format_markdown([row])


def test_bench_cli_rejects_unknown_names(capsys):
    assert main(["bench", "clustering", "--methods", "ddc,kmean"]) == 2
    assert "kmean" in capsys.readouterr().err
    assert main(["bench", "clustering", "--datasets", "mnst"]) == 2
    assert "Did you mean mnist" in capsys.readouterr().err
