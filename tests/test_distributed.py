"""Data-parallel training is the single-process algorithm on the same global batch.

Two CPU processes (gloo) train with the library's own ``fit`` functions, under Lightning's ``ddp``
strategy as torchrun would start them (each process is told its rank through the environment),
and every result is compared with one process training on the same global batches:

* supervised training of a routed model (``basecnn_2cc`` with NMM-EM gate regularisation),
* the two-fold NMM-EM optimisation (manual optimisation, two optimisers, priors),
* a sparse network (``routemix.nn.sparse``), whose paths go unused in a process's share,

plus the traps of data-parallel training: several forward passes through batch norm before one
backward, gradients under manual optimisation, parameters that get no gradient, and evaluation
metrics over shares of a test set that does not split evenly.

The two processes are started once for the whole module (``distributed_runs``), ~10-20 s on two
cores, most of it importing torch and Lightning twice.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
from torch import nn

from routemix.cli import main
from routemix.errors import RoutemixError

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available",
)

PROCESSES = 2
TIMEOUT_S = 240


# --- the runs, identical in one process and in two -------------------------------------------------


def _synthetic_images(n: int, *, channels: int, size: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g), torch.randint(
        0, 10, (n,), generator=g
    )


def _flat_parameters(network: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in network.parameters()]).clone()


def _recording(module_class):
    """``module_class`` that keeps, after every optimisation step, the network's parameters and
    the training loss this process saw (the global batch's loss is the mean over processes: equal
    shares)."""

    class Recording(module_class):
        def on_train_batch_end(self, outputs, batch, batch_idx):
            network = self.model if hasattr(self, "model") else self.network
            self.recorded_parameters = getattr(self, "recorded_parameters", []) + [_flat_parameters(network)]
            if outputs:  # automatic optimisation: the step's loss
                loss = outputs["loss"] if isinstance(outputs, dict) else outputs
                self.recorded_losses = getattr(self, "recorded_losses", []) + [float(loss)]

    return Recording


def run_supervised(devices: int) -> dict:
    """basecnn_2cc with the local gate regulariser, global batch 16 of 32 images, 2 epochs (4
    steps), validation on 21 images in batches of 8 (8, 8, 5: shares 4/4, 4/4, 2/3)."""
    import lightning as L

    from routemix.data.classification import ClassificationDataModule
    from routemix.losses.gates import GateClusteringLoss, gate_networks
    from routemix.train.evaluate import build_classifier
    from routemix.train.supervised import ClassifierModule, fit

    train = _synthetic_images(32, channels=3, size=8, seed=0)
    test = _synthetic_images(21, channels=3, size=8, seed=1)
    data = ClassificationDataModule.from_tensors(
        train, test, num_classes=10, batch_size=16, eval_batch_size=8, seed=3, augment=False
    )
    L.seed_everything(0, verbose=False)
    model = build_classifier("basecnn_2cc", num_classes=10, in_channels=3, input_size=8)
    module = _recording(ClassifierModule)(
        model,
        lr=0.05,
        milestones=[1],
        gate_regularizer=GateClusteringLoss(gate_networks(model), scope="local"),
        gate_weight=0.1,
    )
    trainer = fit(module, data, max_epochs=2, progress=False, accelerator="cpu", devices=devices)
    metrics = {
        k: float(v)
        for k, v in trainer.callback_metrics.items()
        if k.startswith(("val/loss", "val/top1", "val/gate_", "train/loss"))
    }
    return {
        "losses": module.recorded_losses,
        "parameters": module.recorded_parameters,
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "metrics": metrics,
    }


class _MirrorImages(nn.Module):
    """A deterministic "augmentation" (left-right mirror): random draws differ between one and two
    processes by design, so the comparison uses a transform that draws nothing."""

    def forward(self, x):
        return x.flip(-1)


class _ToFloat(nn.Module):
    def forward(self, x):
        return x.float() / 255.0


def run_nmm_two_fold(devices: int) -> dict:
    """Algorithm 3 (EM step, then consistency step) with priors, on a conv-BN net: 32 images,
    global batch 16, 2 epochs; validation ACC/NMI on 21 labelled images in batches of 8."""
    from routemix.losses import NMMLoss
    from routemix.train import clustering as training

    images, labels = _synthetic_images(32, channels=1, size=8, seed=4)
    val_images, val_labels = _synthetic_images(21, channels=1, size=8, seed=5)
    torch.manual_seed(0)
    # no bias before a normalisation (as in the thesis nets): its exact gradient is 0, and Adam would
    # turn the rounding noise of that 0 into full-size steps that differ between runs
    network = nn.Sequential(
        nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3, bias=False)
    )
    loss = NMMLoss(3, gamma=2.0, priors=True, prior_momentum=0.2)
    module = _recording(training.NMMModule)(
        network, loss, em_lr=1e-2, consistency_lr=1e-2, augment=_MirrorImages(), preprocess=_ToFloat()
    )
    trainer = training.fit(
        module,
        training.make_loader(images, batch_size=16, shuffle=True, seed=7),
        max_epochs=2,
        progress=False,
        accelerator="cpu",
        val_loader=training.make_loader(val_images, val_labels.numpy(), batch_size=8, shuffle=False),
        devices=devices,
    )
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    state = {f"network.{k}": v.clone() for k, v in network.state_dict().items()}
    state.update({f"loss.{k}": v.clone() for k, v in loss.state_dict().items()})
    return {"parameters": module.recorded_parameters, "state": state, "metrics": metrics}


def run_sparse(devices: int) -> dict:
    """A sparse network (4 paths, top-1, clustering allocation, no capacity limit so that routing
    does not depend on the share size) with the NMM-EM gate loss: 2 steps of global batch 16.
    Each process routes 8 images over 4 paths, so some path of some layer gets no image in one
    process (``empty_paths`` counts such layers): DDP must accept parameters without gradient.

    Only 2 steps: top-1 routing is discrete, and the rounding differences between one and two
    processes' reductions (1e-6 here) can flip a near-tie between two paths a few steps later;
    from then on the runs differ by more than rounding (seen at the 3rd and 4th steps: 5e-4, 2e-3).
    """
    import lightning as L

    from routemix.data.classification import ClassificationDataModule
    from routemix.losses.gates import gate_regularizer
    from routemix.models.sparse_cnn import SparseCNN
    from routemix.train.supervised import ClassifierModule, fit

    train = _synthetic_images(32, channels=3, size=8, seed=8)
    test = _synthetic_images(16, channels=3, size=8, seed=9)
    data = ClassificationDataModule.from_tensors(
        train, test, num_classes=10, batch_size=16, eval_batch_size=8, seed=3, augment=False
    )
    L.seed_everything(0, verbose=False)
    model = SparseCNN(num_paths=4, top_k=1, allocation="cluster", capacity_factor=None, num_classes=10, input_size=8)
    module = _recording(ClassifierModule)(
        model, lr=0.05, gate_regularizer=gate_regularizer(model, "local"), gate_weight=0.1
    )
    empty = []

    def count_empty_paths(gate, inputs, gates):
        if gate.training:
            empty.append(int((torch.bincount(gates.squeeze(1).argmax(-1), minlength=4) == 0).any()))

    for layer in model.modules():
        if hasattr(layer, "gate") and hasattr(layer, "paths"):
            layer.gate.register_forward_hook(count_empty_paths)
    trainer = fit(module, data, max_epochs=1, progress=False, accelerator="cpu", devices=devices)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/loss", "val/top1"))}
    return {
        "losses": module.recorded_losses,
        "parameters": module.recorded_parameters,
        "empty_paths": sum(empty),
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "metrics": metrics,
    }


SCENARIOS = {"supervised": run_supervised, "nmm_two_fold": run_nmm_two_fold, "sparse": run_sparse}


# --- two processes -------------------------------------------------------------------------------


def _worker(rank: int, port: int, out_dir: str) -> None:
    """One of the two processes: the environment torchrun would give it, a gloo group with a short
    timeout (a failure on one side must not hang the other for 30 minutes), then every scenario."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(PROCESSES),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        NODE_RANK="0",
        OMP_NUM_THREADS="1",
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=PROCESSES, timeout=timedelta(seconds=60))
    results = {}
    for name, run in SCENARIOS.items():
        try:
            results[name] = run(devices=PROCESSES)
        except Exception:  # reported by the test of that scenario
            results[name] = {"error": traceback.format_exc()}
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def distributed_runs(tmp_path_factory) -> list[dict]:
    """Every scenario's results in each of the two processes, rank order."""
    import torch.multiprocessing as mp

    out_dir = tmp_path_factory.mktemp("ddp")
    context = mp.start_processes(
        _worker, args=(_free_port(), str(out_dir)), nprocs=PROCESSES, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not context.join(timeout=5):
            if time.monotonic() > deadline:
                pytest.fail(f"the two processes did not finish within {TIMEOUT_S} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(PROCESSES)]


@pytest.fixture(scope="module")
def single_runs() -> dict:
    return {name: run(devices=1) for name, run in SCENARIOS.items()}


def _results(distributed_runs, name) -> list[dict]:
    runs = [r[name] for r in distributed_runs]
    for rank, run in enumerate(runs):
        assert "error" not in run, f"process {rank} failed:\n{run['error']}"
    return runs


def _assert_states_close(actual: dict, expected: dict, atol: float = 1e-5) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=1e-4, atol=atol, msg=key)


# --- supervised --------------------------------------------------------------------------------


def test_supervised_two_processes_equal_one_on_the_global_batch(distributed_runs, single_runs):
    runs, single = _results(distributed_runs, "supervised"), single_runs["supervised"]
    assert len(single["losses"]) == 4 and all(len(r["losses"]) == 4 for r in runs)
    global_losses = [sum(step) / PROCESSES for step in zip(*(r["losses"] for r in runs))]
    torch.testing.assert_close(torch.tensor(global_losses), torch.tensor(single["losses"]), rtol=1e-4, atol=1e-5)
    for run in runs:  # every step's parameters, every process; the final batch-norm statistics too
        for step, (a, b) in enumerate(zip(run["parameters"], single["parameters"])):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"step {step}")
        _assert_states_close(run["state"], single["state"])


def test_routed_model_with_gate_loss_trains_without_unused_parameter_errors(distributed_runs):
    """DDP runs with find_unused_parameters=False: a path or gate parameter left out of the graph
    would fail at the second step. Four steps ran, and both processes hold the same gates."""
    runs = _results(distributed_runs, "supervised")
    assert all(len(r["parameters"]) == 4 for r in runs)
    gates = [k for k in runs[0]["state"] if "gate" in k]
    assert gates
    for key in gates:
        torch.testing.assert_close(runs[0]["state"][key], runs[1]["state"][key], rtol=0, atol=0)


def test_sparse_model_trains_data_parallel_as_in_one_process(distributed_runs, single_runs):
    """Sparse routing under DDP: paths that get no image in a process's share are unused there
    (find_unused_parameters), the clustering router normalises its scores over the global batch,
    and the run equals one process on the same global batches."""
    runs, single = _results(distributed_runs, "sparse"), single_runs["sparse"]
    assert len(single["losses"]) == 2 and all(len(r["losses"]) == 2 for r in runs)
    assert sum(r["empty_paths"] for r in runs) > 0  # the trap was there: some layer left a path unused
    global_losses = [sum(step) / PROCESSES for step in zip(*(r["losses"] for r in runs))]
    torch.testing.assert_close(torch.tensor(global_losses), torch.tensor(single["losses"]), rtol=1e-4, atol=1e-5)
    # The clustering router divides its scores by their batch standard deviation, which is small
    # here (its layers' paths start alike), so summation-order rounding grows to about 2e-5 in the
    # gate weights after 2 steps (measured, against weights of about 0.3); one image routed to
    # another path would move that image's whole gradient step from one path's filters to another's.
    for run in runs:
        _assert_states_close(run["state"], single["state"], atol=1e-4)


def test_validation_metrics_count_every_test_image_once(distributed_runs, single_runs):
    """21 test images in batches of 8 split unevenly over the processes: the epoch's test error,
    loss and gate statistics are those of the 21 images, as in one process (a padded sampler
    would count 3 images twice)."""
    runs, single = _results(distributed_runs, "supervised"), single_runs["supervised"]
    for key in ("val/loss", "val/top1_error", "val/gate_entropy"):
        for run in runs:
            assert run["metrics"][key] == pytest.approx(single["metrics"][key], rel=1e-4, abs=1e-6), key


# --- NMM-EM ------------------------------------------------------------------------------------


def test_nmm_two_fold_two_processes_equal_one_on_the_global_batch(distributed_runs, single_runs):
    """Eq. 4.11 statistics, eq. 4.18 priors and the network's batch norm over the global batch:
    the EM and consistency steps give the single-process parameters, running statistics and
    priors, and the same epoch losses."""
    runs, single = _results(distributed_runs, "nmm_two_fold"), single_runs["nmm_two_fold"]
    for run in runs:
        _assert_states_close(run["state"], single["state"])
        for key in ("train/em_loss", "train/consistency_kl", "val/acc", "val/nmi"):
            assert run["metrics"][key] == pytest.approx(single["metrics"][key], rel=1e-4, abs=1e-6), key
    assert not torch.equal(
        runs[0]["state"]["loss.log_prior"], torch.full((3,), -torch.log(torch.tensor(3.0)).item())
    )  # priors moved


def test_manual_optimisation_synchronises_both_steps_gradients(distributed_runs, single_runs):
    """After every step (EM + consistency, two optimisers, manual_backward) both processes hold
    the same parameters, those of one process on the global batch: unsynchronised gradients
    would let the processes drift apart on their different shares."""
    runs, single = _results(distributed_runs, "nmm_two_fold"), single_runs["nmm_two_fold"]
    assert len(single["parameters"]) == 4
    for step in range(4):
        torch.testing.assert_close(runs[0]["parameters"][step], runs[1]["parameters"][step], rtol=0, atol=0)
        torch.testing.assert_close(runs[0]["parameters"][step], single["parameters"][step], rtol=1e-4, atol=1e-5)


def test_several_forward_passes_through_batch_norm_before_one_backward(distributed_runs, single_runs):
    """The EM step runs the batch and its augmented copy through the network (batch norm, running
    statistics updated) before one backward, under DDP's buffer broadcast: no in-place/version
    error, and the batch-norm statistics are the single-process ones on both processes."""
    runs, single = _results(distributed_runs, "nmm_two_fold"), single_runs["nmm_two_fold"]
    for key in (
        "network.1.running_mean",
        "network.1.running_var",
        "network.1.num_batches_tracked",
        "loss.running_mean",
        "loss.running_var",
    ):
        for run in runs:
            torch.testing.assert_close(run["state"][key], single["state"][key], rtol=1e-4, atol=1e-5, msg=key)


# --- pieces, in one process ----------------------------------------------------------------------


def test_global_batch_shards_partition_each_batch(monkeypatch):
    from torch.utils.data import BatchSampler, SequentialSampler

    from routemix.train import distributed

    batches = BatchSampler(SequentialSampler(range(11)), batch_size=4, drop_last=False)
    sampler = distributed.GlobalBatchShards(batches)
    assert list(sampler) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]  # one process: the batches themselves
    shares = []
    for rank in range(3):
        monkeypatch.setattr(distributed, "process_rank_and_count", lambda rank=rank: (rank, 3))
        shares.append(list(sampler))
    assert all(len(s) == 3 for s in shares)  # the same number of steps everywhere, nothing padded
    for step, batch in enumerate(batches):
        assert sum((shares[r][step] for r in range(3)), []) == batch


def test_global_batch_norm_is_batch_norm_in_one_process():
    from routemix.train.distributed import GlobalBatchNormSync

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.Flatten(), nn.BatchNorm1d(12, affine=False))
    x = torch.randn(5, 2, 2, 2)
    expected = net(x)
    synced = GlobalBatchNormSync().apply(net)
    assert type(synced[1]).__name__ == "GlobalBatchNorm"
    torch.testing.assert_close(synced(x), expected)
    reverted = GlobalBatchNormSync().revert(synced)
    assert type(reverted[1]) is nn.BatchNorm2d and type(reverted[3]) is nn.BatchNorm1d
    assert reverted[1].num_batches_tracked.item() == 2


# --- command-line options ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--precision", "16-mixed", "--device", "cpu"], "16-mixed"),
        (["--precision", "fp8"], "precision must be one of"),
        (["--strategy", "fsdp"], "strategy must be one of"),
        (["--devices", "0"], "devices must be a positive"),
        (["--num-nodes", "0"], "num_nodes must be a positive"),
        (["--devices", "2", "--device", "cpu", "--batch-size", "15"], "split evenly"),
    ],
)
def test_train_scale_options_are_one_line_errors(flags, message, capsys):
    assert main(["train", "--model", "basecnn", "--dataset", "mnist", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_train_compile_without_dynamo_is_a_clear_error(monkeypatch, capsys):
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    assert main(["train", "--model", "basecnn", "--dataset", "mnist", "--compile"]) == 2
    assert "torch.compile is not supported" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--method", "kmeans", "--devices", "2", "--device", "cpu"], "trains in one process"),
        (["--devices", "2", "--device", "cpu", "--batch-size", "15"], "split evenly"),
        (["--strategy", "fsdp", "--devices", "2", "--device", "cpu"], "strategy must be one of"),
    ],
)
def test_cluster_scale_options_are_one_line_errors(flags, message, capsys):
    assert main(["cluster", "digits", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cluster_on_vector_data_with_several_devices_is_an_error(capsys):
    assert main(["cluster", "digits", "--devices", "2", "--device", "cpu", "--no-kmeans"]) == 2
    assert "vector data" in capsys.readouterr().err


def test_sixteen_bit_on_cpu_is_refused_by_make_trainer():
    from routemix.train.common import make_trainer

    with pytest.raises(RoutemixError, match="16-mixed"):
        make_trainer(max_epochs=1, accelerator="cpu", precision="16-mixed")


def _train_one_epoch(name: str, **options):
    import lightning as L

    from routemix.data.classification import ClassificationDataModule
    from routemix.train.evaluate import build_classifier
    from routemix.train.supervised import ClassifierModule, fit

    data = ClassificationDataModule.from_tensors(
        _synthetic_images(16, channels=3, size=8, seed=0),
        _synthetic_images(8, channels=3, size=8, seed=1),
        num_classes=10,
        batch_size=8,
    )
    L.seed_everything(0, verbose=False)
    model = build_classifier(name, num_classes=10, in_channels=3, input_size=8)
    module = ClassifierModule(model, lr=0.05, channels_last=options.pop("channels_last", False))
    trainer = fit(module, data, max_epochs=1, progress=False, accelerator="cpu", **options)
    return model, trainer


@pytest.mark.parametrize("name", ["basecnn", "basecnn_2cc"])
def test_channels_last_trains_plain_and_routed_models(name):
    model, trainer = _train_one_epoch(name, channels_last=True)
    assert torch.isfinite(trainer.callback_metrics["train/loss"]) and torch.isfinite(
        trainer.callback_metrics["val/loss"]
    )
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_bf16_mixed_precision_trains_a_plain_model():
    _, trainer = _train_one_epoch("basecnn", precision="bf16-mixed")
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_bf16_mixed_precision_trains_a_routed_model():
    _, trainer = _train_one_epoch("basecnn_2cc", precision="bf16-mixed")
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_cluster_command_on_two_processes_writes_one_run_dir(shared_data, tmp_path):
    """The real command, data-parallel: Lightning's launcher starts the second process once the
    first has written the run directory, which the second must not take for someone else's run."""
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "routemix",
        "cluster",
        "mnist",
        "--data-dir",
        str(shared_data),
        "--limit",
        "256",
        "--epochs",
        "1",
        "--devices",
        "2",
        "--device",
        "cpu",
        "--run-dir",
        str(run_dir),
        "--no-kmeans",
        "--no-progress",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr
    assert (run_dir / "model.pt").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
