import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pytest
import torch

from routemix.cli import build_parser, main
from routemix.cluster.config import ClusterConfig
from routemix.cluster.saved import load_clusterer
from routemix.commands.options import OPTIONS, config_values
from routemix.errors import RoutemixError
from routemix.fields import field_types
from routemix.storage import load_checkpoint, save_checkpoint
from routemix.train.config import TrainConfig
from routemix.train.resumable import saved_position


def test_cluster_digits_writes_a_run_directory(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["cluster", "digits", "--epochs", "3", "--run-dir", str(run_dir), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "nmm" in out and "kmeans" in out and "ACC" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["method"] for r in metrics["results"]] == ["nmm", "kmeans", "kmeans-scaled"]
    assert 0 <= metrics["results"][0]["acc"] <= 1
    # the row named kmeans is the k-means of `--method kmeans` and of the papers: on the digits as given
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_digits

    from routemix.metrics import clustering_scores

    digits = load_digits()
    raw = KMeans(10, n_init=10, random_state=0).fit_predict(digits.data.astype(np.float32))
    expected = clustering_scores(digits.target, raw)["acc"]
    assert metrics["results"][1]["acc"] == pytest.approx(expected) and expected > 0.75
    labels = (run_dir / "labels.csv").read_text().splitlines()
    assert labels[0] == "index,cluster" and len(labels) == 1798
    config = json.loads((run_dir / "config.json").read_text())
    assert config["epochs"] == 3 and config["clusters"] == 10
    saved = load_clusterer(run_dir)  # the one run format, with the run's settings
    assert saved.method == "nmm" and saved.estimator.image_shape is None and saved.config["epochs"] == 3
    labels_csv = [int(line.split(",")[1]) for line in labels[1:]]
    assert np.array_equal(saved.estimator.labels_, labels_csv)


def test_cluster_images_with_learning_curves_and_resume(shared_data, tmp_path):
    run_dir = tmp_path / "mnist"
    args = [
        "cluster",
        "mnist",
        "--data-dir",
        str(shared_data),
        "--limit",
        "512",
        "--epochs",
        "1",
        "--run-dir",
        str(run_dir),
        "--no-progress",
        "--no-kmeans",
    ]
    assert main(args) == 0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    curves = (run_dir / "logs" / "version_0" / "metrics.csv").read_text()
    assert "val/acc" in curves and "train/em_loss" in curves
    assert (
        main([*args[:-4], "--epochs", "2", "--run-dir", str(run_dir), "--resume", "--no-progress", "--no-kmeans"]) == 0
    )
    assert saved_position(run_dir / "checkpoints" / "last.ckpt") == {"epochs": 2, "batches": 0}
    # the resumed run trained only the second epoch, logged beside the first
    resumed = (run_dir / "logs" / "version_1" / "metrics.csv").read_text().splitlines()
    epochs = {line.split(",")[0] for line in resumed[1:]}
    assert resumed[0].startswith("epoch") and epochs == {"1"}


def test_cluster_csv_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 0.3, (40, 2)), rng.normal(5, 0.3, (40, 2))])
    lines = ["a,b,label"] + [f"{x},{y},{int(i >= 40)}" for i, (x, y) in enumerate(points)]
    path = tmp_path / "two.csv"
    path.write_text("\n".join(lines) + "\n")
    code = main(
        [
            "cluster",
            str(path),
            "--label-column",
            "label",
            "--epochs",
            "40",
            "--run-dir",
            str(tmp_path / "r"),
            "--no-progress",
        ]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["results"][0]["acc"] == 1.0


@pytest.mark.parametrize(
    "content, message",
    [
        ("a,b\n1,2\n3,nan\n5,6\n", "NaN or infinite"),
        ("a,b\n1,x\n", "not a number"),
        ("", "empty"),
        ("a,b\n1,2\n", "single sample"),
        ("a,b\n1,2\n3,4\n5,6\n", "fewer than the 10 clusters"),
    ],
)
def test_bad_files_exit_cleanly(tmp_path, capsys, content, message):
    path = tmp_path / "data.csv"
    path.write_text(content)
    run_dir = tmp_path / "run"
    code = main(["cluster", str(path), "--clusters", "10", "--run-dir", str(run_dir), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not run_dir.exists()  # nothing half-written


def test_unknown_dataset_and_missing_root(tmp_path, capsys):
    assert main(["cluster", "mnsit"]) == 2
    assert "Did you mean mnist" in capsys.readouterr().err
    assert main(["cluster", "cifar10", "--data-dir", str(tmp_path)]) == 2
    assert "not found under" in capsys.readouterr().err


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"network": {"w": torch.ones(2)}})
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(RoutemixError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_resume_without_or_with_corrupt_checkpoint(shared_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = [
        "cluster",
        "mnist",
        "--data-dir",
        str(shared_data),
        "--limit",
        "256",
        "--epochs",
        "1",
        "--run-dir",
        str(run_dir),
        "--resume",
        "--no-progress",
        "--no-kmeans",
    ]
    assert main(args) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    assert not run_dir.exists()  # a failed resume writes nothing
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "not a readable checkpoint" in err and "Traceback" not in err


def test_module_entry_point_and_listings():
    result = subprocess.run(
        [sys.executable, "-m", "routemix", "models", "clusternet_*"], capture_output=True, text=True, check=True
    )
    listed = [line.split()[0] for line in result.stdout.split("\n\n")[0].splitlines()[1:]]  # the rows, above the notes
    assert (
        "clusternet_mnist" in listed
        and "0.772M" in result.stdout
        and all(name.startswith("clusternet_") for name in listed)
    )
    result = subprocess.run([sys.executable, "-m", "routemix", "datasets"], capture_output=True, text=True, check=True)
    assert "cifar100_20" in result.stdout and "digits" in result.stdout


def test_results_on_stdout_progress_on_stderr(tmp_path):
    """`routemix cluster ... > results.txt` holds the table alone; the progress bar goes to stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "routemix", "cluster", "blobs", "--epochs", "2", "--run-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["blobs:", "method", "nmm", "kmeans", "kmeans-scaled", "run"], (
        result.stdout
    )
    assert "Epoch 1" in result.stderr  # the bar of the second epoch (Lightning counts from 0)


@pytest.mark.parametrize("count", ["0", "-3"])
def test_models_refuses_a_class_count_below_one(count, capsys):
    # 0 had been read as "not given" and listed the default counts
    assert main(["models", "basecnn", "--num-classes", count]) == 2
    assert "num_classes must be at least 1" in capsys.readouterr().err


def test_models_lists_every_registered_model(capsys):
    """`routemix models` (a README command) prints a row for each registered model, the clustered
    routers included (their bincount has no meta kernel: counted on the CPU instead)."""
    from routemix.models import list_models

    assert main(["models"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines if line.strip()}
    assert set(list_models()) <= set(rows)
    cells = dict(zip(header.split(), rows["clustered_basecnn_2_top1"].split()))
    assert (cells["paths"], cells["params"]) == ("2", "0.840M")


def test_help_does_not_import_torch():
    """`routemix --help` and `routemix cluster --help` build the parser without PyTorch (6 s and
    1 GB before; well under a second now), and `from routemix.cluster import X` still works."""
    code = (
        "import sys\nfrom routemix.cli import main\n"
        "for args in (['--help'], ['cluster', '--help'], ['bench', 'clustering', '--help']):\n"
        "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "from routemix.cluster import NMMClustering\nprint(NMMClustering.__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("NMMClustering") and "usage: routemix" in result.stdout


def test_kmeans_baseline_sees_the_input_the_method_sees(tmp_path, capsys):
    """NMM-EM standardises vectors; the k-means row beside it clusters the same standardised
    rows, not the raw features (where a feature in large units would decide alone)."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    from routemix.metrics import clustering_scores

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    points = np.column_stack(
        [labels + rng.normal(0, 0.1, 80), rng.normal(0, 1000, 80)]
    )  # the label lives in small units
    path = tmp_path / "scales.csv"
    path.write_text("a,b,label\n" + "".join(f"{a},{b},{y}\n" for (a, b), y in zip(points, labels)))
    assert (
        main(
            [
                "cluster",
                str(path),
                "--label-column",
                "label",
                "--epochs",
                "5",
                "--run-dir",
                str(tmp_path / "r"),
                "--no-progress",
            ]
        )
        == 0
    )
    rows = {row["method"]: row for row in json.loads((tmp_path / "r" / "metrics.json").read_text())["results"]}
    expected = KMeans(2, n_init=10, random_state=0).fit_predict(StandardScaler().fit_transform(points))
    assert rows["kmeans-scaled"]["acc"] == clustering_scores(labels, expected)["acc"] == 1.0
    # and k-means on the input as given, as --method kmeans and the papers run it: here the weaker one
    raw = KMeans(2, n_init=10, random_state=0).fit_predict(points)
    assert rows["kmeans"]["acc"] == clustering_scores(labels, raw)["acc"] < 0.75


@pytest.mark.parametrize("seeds", ["5-2", "0", "a,b", "1-x"])
def test_seeds_that_name_no_seed_are_an_error(seeds, capsys):
    assert main(["bench", "nmm-digits", "--seeds", seeds, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"got {seeds!r}" in err and "one seed: 4-4" in err  # '0' is a count of none, not seed 0


def test_bench_sparse_refuses_impossible_paths_before_training(tmp_path, capsys):
    out = tmp_path / "sparse"
    assert (
        main(
            [
                "bench",
                "sparse",
                "--paths",
                "2",
                "--k",
                "3",
                "--data-dir",
                str(tmp_path),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "must not exceed P" in capsys.readouterr().err
    assert not out.exists()


def test_output_piped_into_a_reader_that_stops_early_ends_quietly():
    # `routemix models | head -1`: the reader closes the pipe after one line
    result = subprocess.run(
        f"{sys.executable} -m routemix models | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.stdout.startswith("name") and len(result.stdout.splitlines()) == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


# --- the command line's shape (issue 21): cli.py dispatches, routemix.commands declares --------

SRC = Path(__file__).resolve().parents[1] / "src" / "routemix"


def test_cli_module_only_dispatches():
    assert len((SRC / "cli.py").read_text().splitlines()) < 250


def _subparser(*names):
    parser = build_parser()
    for name in names:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def _generated_flags(config) -> list[str]:
    """The flags add_config_options makes from the fields of ``config`` that are no shared option,
    and the aliases it adds to a shared option (cluster's -k)."""
    flags = []
    for field in fields(config):
        if field.name == "command" or field.metadata.get("positional"):
            continue
        if field.name in OPTIONS:
            flags += field.metadata.get("aliases", ())
        else:
            flags += field.metadata.get("flags", ("--" + field.name.replace("_", "-"),))
    return flags


def test_no_option_is_defined_in_two_places():
    """Each flag is spelled once: in one add_argument call, in the table of shared options, or as a
    field of TrainConfig or ClusterConfig that is no shared option; the viz figures' too."""
    sources = [SRC / "cli.py", *sorted((SRC / "commands").glob("*.py")), *sorted((SRC / "viz").glob("*.py"))]
    written = []
    for path in sources:
        for call in re.findall(r'(?:add_argument|Option)\(\s*("-[^"]*"(?:\s*,\s*"-[^"]*")*)', path.read_text()):
            written += re.findall(r'"(-[^"]*)"', call)
    assert "--data-dir" in written and "--seeds" in written and "--no-progress" in written  # the scan sees the table
    assert "--formats" in written and "--bins" in written and "--perplexity" in written  # and viz's own flags
    flags = written + _generated_flags(TrainConfig) + _generated_flags(ClusterConfig)
    assert "--lr" in flags and "--em-only" in flags and "-k" in flags
    twice = sorted(flag for flag, count in Counter(flags).items() if count > 1)
    assert not twice, f"defined in more than one place: {twice}"


def _setting_every_field(parser, config, positionals=()):
    """A command line that gives every field of ``config`` a value other than its default, and those values."""
    actions = {a.dest: a for a in parser._actions}
    argv, expected = list(positionals), {}
    kinds = field_types(config)
    for field in fields(config):
        if field.name == "command" or field.metadata.get("positional"):
            continue
        action = actions[field.name]  # every setting is an option of the command
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append("--no-" + flag[2:])
            expected[field.name] = False
        elif action.nargs == 0:
            argv.append(flag)
            expected[field.name] = action.const
        elif action.choices:
            argv += [flag, action.choices[-1]]
            expected[field.name] = action.choices[-1]
        else:
            # object: a field of several types, such as clusters (a number or "auto")
            text, value = {int: ("7", 7), float: ("0.5", 0.5), list: ("3,5", [3, 5]), object: ("7", 7)}.get(
                kinds[field.name], ("x", "x")
            )
            argv += [flag, text]
            expected[field.name] = value
        assert expected[field.name] != field.default, field.name
    return argv, expected


def test_every_train_setting_is_a_flag_and_none_is_set_unless_given():
    parser = _subparser("train")
    argv, expected = _setting_every_field(parser, TrainConfig)
    assert config_values(parser.parse_args(argv), TrainConfig) == expected
    # a flag not given is None, so that a --config file's value stands
    assert set(config_values(parser.parse_args([]), TrainConfig).values()) == {None}


def test_every_cluster_setting_is_a_flag_with_the_configs_defaults():
    parser = _subparser("cluster")
    argv, expected = _setting_every_field(parser, ClusterConfig, positionals=["digits"])
    assert config_values(parser.parse_args(argv), ClusterConfig) == {"dataset": "digits", **expected}
    assert parser.parse_args(["digits", "-k", "4"]).clusters == 4
    given = ClusterConfig(**config_values(parser.parse_args(["digits"]), ClusterConfig))
    assert {k: v for k, v in asdict(given).items() if k != "command"} == {
        k: v for k, v in asdict(ClusterConfig("digits")).items() if k != "command"
    }


def test_gate_options_agree_with_the_gate_losses():
    from routemix.losses.gates import DEFAULT_WEIGHT, REGULARIZERS
    from routemix.train.config import DEFAULT_GATE_WEIGHT, GATE_REGULARIZERS

    assert (GATE_REGULARIZERS, DEFAULT_GATE_WEIGHT) == (REGULARIZERS, DEFAULT_WEIGHT)


def test_unknown_names_in_a_list_suggest_the_closest(capsys):
    assert main(["bench", "gates", "--variants", "none,lokal", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown variant 'lokal'. Did you mean local" in err and "bench gates compares none, local, global" in err
