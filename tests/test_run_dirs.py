"""One rule for run directories (routemix.rundir), and every flag mistake answered in one line
that names the flag, with nothing written."""

import json

import pytest
import torch

from routemix.cli import main
from routemix.rundir import check_run_dir, discard_if_nothing_to_resume, resume_conflicts, start_run_dir


def one_line_error(args: list[str], capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("routemix: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_run_dir_holding_files_needs_resume_or_overwrite(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["cluster", "blobs", "--method", "kmeans", "--run-dir", str(run_dir), "--no-progress", "--no-kmeans"]
    assert main(args) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}

    err = one_line_error(args, capsys)
    assert "already holds files" in err and "--resume" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # untouched

    (run_dir / "notes.txt").write_text("mine")
    (run_dir / "logs").mkdir()
    assert main([*args, "--seed", "1", "--overwrite"]) == 0
    assert json.loads((run_dir / "config.json").read_text())["seed"] == 1
    assert not (run_dir / "logs").exists()  # the old run's files went
    assert (run_dir / "notes.txt").read_text() == "mine"  # the user's stayed

    assert "pass one of them" in one_line_error([*args, "--resume", "--overwrite"], capsys)


def test_run_dir_that_is_a_file_or_below_one(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("")
    err = one_line_error(["cluster", "blobs", "--method", "kmeans", "--run-dir", str(target)], capsys)
    assert "--run-dir" in err and "is a file" in err
    err = one_line_error(["cluster", "blobs", "--method", "kmeans", "--run-dir", str(target / "below")], capsys)
    assert "--run-dir" in err and f"{target} is a file" in err


def test_unwritable_run_dir_is_refused_before_work(tmp_path, monkeypatch):
    import os

    from routemix.errors import RoutemixError

    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a non-root user without write permission
    with pytest.raises(RoutemixError, match="permission denied"):
        check_run_dir(tmp_path / "new", resume=False, overwrite=False)


@pytest.mark.parametrize(
    "flags, named",
    [
        (["-k", "0"], "--clusters"),
        (["--batch-size", "0"], "--batch-size"),
        (["--epochs", "0"], "--epochs"),
        (["--limit", "-5"], "--limit"),
        (["--n-samples", "0"], "--n-samples"),
        (["--gamma", "0"], "--gamma"),
        (["--em-lr", "-1"], "--em-lr"),
        (["--checkpoint-every", "-1"], "--checkpoint-every"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_cluster_flag_mistakes_name_the_flag_and_write_nothing(tmp_path, capsys, flags, named):
    run_dir = tmp_path / "run"
    err = one_line_error(["cluster", "blobs", "--run-dir", str(run_dir), "--no-progress", *flags], capsys)
    assert named in err
    assert not run_dir.exists()


def test_resume_must_agree_with_the_run_and_says_what_differs(shared_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    common = ["--data-dir", str(shared_data), "--run-dir", str(run_dir), "--no-progress"]
    assert (
        main(
            [
                "train",
                "--model",
                "basecnn",
                "--dataset",
                "fashion_mnist",
                "--epochs",
                "1",
                "--limit",
                "128",
                "--limit-test",
                "64",
                "--batch-size",
                "64",
                *common,
            ]
        )
        == 0
    )
    capsys.readouterr()
    config = (run_dir / "config.json").read_text()

    err = one_line_error(["train", "--resume", "--epochs", "2", "--limit", "256", "--lr", "0.5", *common], capsys)
    assert "limit: 128 in the run, 256 now" in err and "lr: 0.1 in the run, 0.5 now" in err and "--overwrite" in err
    assert (run_dir / "config.json").read_text() == config  # a refused resume writes nothing

    # an empty checkpoint is a clear error, not a traceback from the error message itself
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    err = one_line_error(["train", "--resume", "--epochs", "2", *common], capsys)
    assert "not a readable checkpoint (the file is empty)" in err
    (run_dir / "model.pt").write_bytes(b"")
    assert "the file is empty" in one_line_error(["eval", str(run_dir), "--no-progress"], capsys)


def test_cluster_resume_must_repeat_the_run(shared_data, tmp_path, capsys):
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
        "--no-progress",
        "--no-kmeans",
    ]
    assert main(args) == 0
    capsys.readouterr()
    config = (run_dir / "config.json").read_text()
    err = one_line_error([*args[:-6], "--limit", "512", *args[-4:], "--resume"], capsys)
    assert "limit: 256 in the run, 512 now" in err
    assert (run_dir / "config.json").read_text() == config
    err = one_line_error(
        ["cluster", "blobs", "--method", "kmeans", "--run-dir", str(tmp_path / "other"), "--resume"], capsys
    )
    assert "no checkpoint at" in err


def test_run_dir_helpers(tmp_path):
    assert resume_conflicts(
        {"limit": 5, "milestones": [1, 2], "lr": 0.1},
        {"limit": 5, "milestones": (1, 2), "lr": 0.2},
        ["limit", "milestones", "lr", "absent"],
    ) == ["lr: 0.1 in the run, 0.2 now"]
    created = tmp_path / "new"
    start_run_dir(created, overwrite=False)
    (created / "config.json").write_text("{}")
    discard_if_nothing_to_resume(created, created=True)  # stopped before any checkpoint: nothing worth keeping
    assert not created.exists()
    kept = tmp_path / "kept"
    (kept / "checkpoints").mkdir(parents=True)
    torch.save({}, kept / "checkpoints" / "last.ckpt")
    discard_if_nothing_to_resume(kept, created=True)
    assert kept.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    discard_if_nothing_to_resume(existing, created=False)  # never removes what it did not create
    assert existing.exists()


def test_run_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    from routemix.storage import save_checkpoint, write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "metrics.json", {"acc": 1.0})
        save_checkpoint(tmp_path / "model.pt", {"w": torch.ones(1)})
    finally:
        os.umask(old)
    for name in ("metrics.json", "model.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name  # as Lightning's files, not mkstemp's 0600
