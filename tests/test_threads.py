"""routemix.threads: OpenMP threads that sleep while they wait, set by the command before torch loads."""

import os
import subprocess
import sys

from routemix.threads import WAIT_POLICY, prefer_passive_waiting


def test_the_command_asks_for_passive_waiting_before_torch_loads():
    code = (
        "import os, sys\nfrom routemix.cli import main\nmain(['datasets'])\nprint(os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != WAIT_POLICY}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.split()[-1] == "PASSIVE"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, WAIT_POLICY: "ACTIVE"}, check=True
    )
    assert result.stdout.split()[-1] == "ACTIVE"  # the user's choice stays


def test_prefer_passive_waiting_reports_whether_it_can_take_effect(monkeypatch):
    monkeypatch.delenv(WAIT_POLICY, raising=False)
    assert prefer_passive_waiting() is False  # the test process imported torch long ago: too late here
    assert os.environ[WAIT_POLICY] == "PASSIVE"  # but the processes it starts get it
    monkeypatch.setenv(WAIT_POLICY, "ACTIVE")
    assert prefer_passive_waiting() is False and os.environ[WAIT_POLICY] == "ACTIVE"


def test_cluster_fits_vectors_on_one_thread_unless_the_user_chose(tmp_path, monkeypatch):
    """Small networks on vectors: one intra-op thread during the fit (as fast idle, 5-7x faster
    on a busy machine: docs/RESULTS.md), the thread count restored after; OMP_NUM_THREADS rules."""
    import torch

    from routemix.cli import main
    from routemix.cluster import job

    seen = []
    make = job.make_estimator

    def spying(*args, **kwargs):
        estimator = make(*args, **kwargs)
        fit_predict = estimator.fit_predict
        estimator.fit_predict = lambda X: (seen.append(torch.get_num_threads()), fit_predict(X))[1]
        return estimator

    monkeypatch.setattr(job, "make_estimator", spying)
    torch.set_num_threads(2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert (
        main(["cluster", "blobs", "--epochs", "1", "--run-dir", str(tmp_path / "a"), "--no-progress", "--no-kmeans"])
        == 0
    )
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert (
        main(["cluster", "blobs", "--epochs", "1", "--run-dir", str(tmp_path / "b"), "--no-progress", "--no-kmeans"])
        == 0
    )
    assert seen == [1, 2] and torch.get_num_threads() == 2
