"""Runs that survive: real `routemix` processes killed or stopped in the middle of an epoch, then
resumed, end exactly where an uninterrupted run of the same command ends (on the CPU, seeded)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA

from routemix.errors import RoutemixError
from routemix.train.resumable import saved_position

BATCHES_PER_EPOCH = 24  # --limit 768 at --batch-size 32
TRAIN = [
    "train",
    "--model",
    "basecnn",
    "--dataset",
    "fashion_mnist",
    "--epochs",
    "2",
    "--limit",
    "768",
    "--batch-size",
    "32",
    "--limit-test",
    "200",
    "--checkpoint-every",
    "1",
    "--no-progress",
]
CLUSTER = [
    "cluster",
    "mnist",
    "--limit",
    "768",
    "--batch-size",
    "32",
    "--epochs",
    "2",
    "--checkpoint-every",
    "1",
    "--no-kmeans",
    "--no-progress",
]


def start(args: list[str], run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "routemix", *args, "--data-dir", str(SHARED_DATA), "--run-dir", str(run_dir)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(args: list[str], run_dir: Path) -> subprocess.CompletedProcess:
    process = start(args, run_dir)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def wait_for_checkpoint_in_epoch(process: subprocess.Popen, run_dir: Path, epoch: int, batches: int) -> None:
    """Return as soon as last.ckpt is at least ``batches`` batches into epoch ``epoch`` (0-based)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        if last.is_file():
            try:
                position = saved_position(last)
            except RoutemixError:  # replaced while we read it
                position = None
            if position is not None and (position["epochs"], position["batches"]) >= (epoch, batches):
                return
        time.sleep(0.02)
    process.kill()
    pytest.fail("the run never reached the point to interrupt it")


def assert_mid_epoch(run_dir: Path, epoch: int) -> dict:
    position = saved_position(run_dir / "checkpoints" / "last.ckpt")
    assert position["epochs"] == epoch and 0 < position["batches"] < BATCHES_PER_EPOCH, position
    return position


def same_weights(a: Path, b: Path, *keys: str) -> None:
    """The state dicts under ``keys`` (a path into the saved dict) are equal, bit for bit."""
    first, second = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    for key in keys:
        first, second = first[key], second[key]
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0, msg=name)


@pytest.fixture(scope="module")
def straight_training(tmp_path_factory) -> Path:
    if not (SHARED_DATA / "FashionMNIST" / "raw").is_dir():
        pytest.skip("../shared/data with Fashion-MNIST is not beside this checkout")
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    finish(TRAIN, run_dir)
    return run_dir


def test_train_killed_mid_epoch_resumes_to_the_same_model(straight_training, tmp_path):
    run_dir = tmp_path / "run"
    process = start(TRAIN, run_dir)
    wait_for_checkpoint_in_epoch(process, run_dir, epoch=1, batches=4)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert not (run_dir / "model.pt").exists()
    assert_mid_epoch(run_dir, epoch=1)
    assert not list((run_dir / "checkpoints").glob(".*partial"))  # no half-written file left to confuse anyone

    finish(["train", "--resume", "--no-progress"], run_dir)  # everything else from the run's config.json
    same_weights(straight_training / "model.pt", run_dir / "model.pt", "state_dict")
    straight = json.loads((straight_training / "metrics.json").read_text())["test"]
    assert json.loads((run_dir / "metrics.json").read_text())["test"] == straight


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_train_stopped_by_a_signal_saves_says_how_to_resume_and_exits_with_its_status(
    straight_training, tmp_path, signum, status
):
    run_dir = tmp_path / "run"
    process = start(TRAIN, run_dir)
    wait_for_checkpoint_in_epoch(process, run_dir, epoch=0, batches=4)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == status
    assert f"interrupted by {signal.Signals(signum).name}" in err and "--resume" in err and str(run_dir) in err
    assert "Traceback" not in err
    assert_mid_epoch(run_dir, epoch=0)
    assert not (run_dir / "model.pt").exists()

    if signum == signal.SIGTERM:  # (resuming after either is the same code; once is enough)
        finish(["train", "--resume", "--no-progress"], run_dir)
        same_weights(straight_training / "model.pt", run_dir / "model.pt", "state_dict")


def test_cluster_images_killed_mid_epoch_resume_to_the_same_clusters(shared_data, tmp_path):
    straight = tmp_path / "straight"
    finish(CLUSTER, straight)
    run_dir = tmp_path / "run"
    process = start(CLUSTER, run_dir)
    wait_for_checkpoint_in_epoch(process, run_dir, epoch=1, batches=4)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert_mid_epoch(run_dir, epoch=1)

    finish([*CLUSTER, "--resume"], run_dir)
    same_weights(straight / "model.pt", run_dir / "model.pt", "modules", "module_")
    assert (run_dir / "labels.csv").read_text() == (straight / "labels.csv").read_text()


def children_of(pid: int) -> list[int]:
    result = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in result.stdout.split()]


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc and relies on Linux's parent-death signal"
)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_bench_leaves_no_fit_running(tmp_path, signum):
    """`bench clustering` fits in a fresh process; stopping the bench (SIGTERM, or SIGKILL which it
    cannot catch) ends that fit too instead of leaving it to run on."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "routemix",
        "bench",
        "clustering",
        "--datasets",
        "digits",
        "--methods",
        "nmm",
        "--seeds",
        "1",
        "--out",
        str(tmp_path / "bench"),
        "--no-progress",
    ]
    bench = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    fits: list[int] = []
    while time.monotonic() < deadline and not fits:  # the pool's worker, once it has started
        fits = [
            c for c in children_of(bench.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")
        ]
        time.sleep(0.2)
    assert fits, "the bench never started its fit"
    time.sleep(2)  # into the fit
    bench.send_signal(signum)
    bench.communicate(timeout=60)
    assert bench.returncode == (143 if signum == signal.SIGTERM else -signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(running(pid) for pid in fits):
        time.sleep(0.2)
    assert not any(running(pid) for pid in fits)


def test_ctrl_c_before_anything_to_resume_leaves_no_run_dir(tmp_path):
    """A method that keeps no checkpoint, stopped by Ctrl-C in the middle of its fit: status 130,
    one line, and no run directory holding a config.json of a run that never was."""
    run_dir = tmp_path / "run"
    process = start(["cluster", "digits", "--method", "ddc", "--epochs", "200", "--no-progress"], run_dir)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run_dir / "config.json").is_file():
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.05)
    time.sleep(3)  # into the fit
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted by SIGINT" in err and "nothing was saved" in err and "Traceback" not in err
    assert not run_dir.exists()
