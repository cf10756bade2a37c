"""What every routemix trainer shares: device names, quiet start-up, loggers, the Lightning
``Trainer`` with its run-directory layout, and the resume check.

One implementation for the clustering (:mod:`routemix.train.clustering`) and the supervised
(:mod:`routemix.train.supervised`) trainers, so a run directory looks the same whoever wrote it::

    run_dir/checkpoints/last.ckpt        every epoch, every ``checkpoint_every`` batches and on SIGINT/SIGTERM
                                         (:mod:`routemix.train.resumable`); ``resume=True`` continues from it
    run_dir/logs/version_N/metrics.csv   CSV learning curves, a new version per (re)start
    run_dir/tensorboard/version_N/       the same curves for TensorBoard, when it is installed
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from pathlib import Path

import lightning as L
import torch

from routemix.rundir import LAST_CHECKPOINT


def accelerator_for(device: str) -> str:
    """Lightning accelerator for a routemix device name: ``cpu``, ``cuda`` or ``auto``."""
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return "gpu" if device == "cuda" else "cpu"


def torch_device(device: str) -> torch.device:
    """``torch.device`` for a routemix device name (``auto`` picks CUDA when there is one)."""
    return torch.device("cuda" if accelerator_for(device) == "gpu" else "cpu")


@torch.no_grad()
def batched_inference(module: torch.nn.Module, fn, data: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """``fn(chunk)`` over ``data`` in chunks, on ``module``'s device, in evaluation mode (batch
    norm with running statistics, no dropout), results concatenated on the CPU; ``module``'s
    training mode is restored afterwards. Inference at any batch size, for every trainer."""
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    try:
        return torch.cat([fn(chunk.to(device)).cpu() for chunk in data.split(batch_size)])
    finally:
        module.train(was_training)


def quiet_lightning() -> None:
    """Silence Lightning's start-up banners; the CLI prints what matters itself."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")


PROGRESS_REDRAW_SECONDS = 0.1  # tqdm's own least interval between two redraws of a bar


def throttled_redraws(bar, interval: float = PROGRESS_REDRAW_SECONDS):
    """``bar`` (a tqdm bar) redrawn at most every ``interval`` seconds.

    Lightning forces a redraw of its bars at every batch (count and metrics) and several at every
    epoch start and end, whatever tqdm's own ``mininterval``: on a small table with one batch per
    epoch that is a cost of its own (an iris fit, 200 epochs of one batch: 1.70 s with a bar,
    1.46 s with this one, 1.43 s without any; CPU medians of 12 fits, one thread). The bar's
    state is still updated every time; only drawing it is skipped, and closing the bar draws its
    final state. Batches slower than ``interval`` are drawn as before."""
    import time

    redraw = bar.refresh
    last = -float("inf")

    def refresh(*args, **kwargs):
        nonlocal last
        now = time.monotonic()
        if now - last < interval:
            return True
        last = now
        return redraw(*args, **kwargs)

    bar.refresh = refresh
    return bar


def stderr_progress_bar():
    """Lightning's progress bar on stderr, where progress belongs: stdout keeps the results, so
    ``routemix cluster digits > results.txt`` holds the table alone. (Lightning's bar writes to
    stdout; each of its bars is built with ``file=sys.stdout`` read at construction.) Its bars
    redraw at most every :data:`PROGRESS_REDRAW_SECONDS` (:func:`throttled_redraws`)."""
    import contextlib
    import sys

    from lightning.pytorch.callbacks import TQDMProgressBar

    class StderrProgressBar(TQDMProgressBar):
        def _on_stderr(self, build):
            with contextlib.redirect_stdout(sys.stderr):
                return throttled_redraws(build())

        def init_sanity_tqdm(self):
            return self._on_stderr(super().init_sanity_tqdm)

        def init_train_tqdm(self):
            return self._on_stderr(super().init_train_tqdm)

        def init_validation_tqdm(self):
            return self._on_stderr(super().init_validation_tqdm)

        def init_test_tqdm(self):
            return self._on_stderr(super().init_test_tqdm)

        def init_predict_tqdm(self):
            return self._on_stderr(super().init_predict_tqdm)

    return StderrProgressBar()


def tensorboard_available() -> bool:
    """TensorBoard is an optional dependency (``pip install routemix[tensorboard]``)."""
    return importlib.util.find_spec("tensorboard") is not None


def run_loggers(run_dir: Path) -> list:
    """CSV logger, plus a TensorBoard logger when TensorBoard is installed (silently CSV only
    otherwise: the CSV files hold every number, TensorBoard is a convenience)."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = [CSVLogger(save_dir=str(run_dir), name="logs")]
    if tensorboard_available():
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", default_hp_metric=False))
    return loggers


def resume_checkpoint(run_dir: str | os.PathLike) -> str:
    """Path of ``run_dir/checkpoints/last.ckpt`` after checking it loads: a missing or corrupt
    file is a :class:`~routemix.errors.RoutemixError`, not a traceback from inside Lightning."""
    from routemix.storage import load_checkpoint

    last = Path(run_dir) / LAST_CHECKPOINT
    load_checkpoint(last)
    return str(last)


STRATEGIES = ("auto", "ddp", "ddp_spawn")
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
RUN_DIR_ENV = "ROUTEMIX_RUN_DIR"  # the run directory, handed to the processes Lightning's ddp launcher starts


def check_scale_options(*, accelerator: str, devices: int, num_nodes: int, strategy: str, precision: str) -> None:
    """A RoutemixError for device counts, strategies and precisions this machine cannot run."""
    from routemix.errors import RoutemixError

    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise RoutemixError(f"devices must be a positive number of devices per node, got {devices!r}.")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise RoutemixError(f"num_nodes must be a positive number of machines, got {num_nodes!r}.")
    if strategy not in STRATEGIES:
        raise RoutemixError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}.")
    if precision not in PRECISIONS:
        raise RoutemixError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    if accelerator == "gpu":
        available = torch.cuda.device_count()
        if devices > available:
            raise RoutemixError(
                f"--devices {devices}: this machine has {available} CUDA GPU{'s' if available != 1 else ''}."
            )
        if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
            raise RoutemixError("bf16-mixed needs a GPU with bfloat16 (Ampere or newer); use --precision 16-mixed.")
    elif precision == "16-mixed":
        raise RoutemixError("16-mixed is float16 autocast on CUDA GPUs; on the CPU use --precision bf16-mixed or 32.")


def launched_as_rank_zero() -> bool:
    """Whether this process is (or will be) global rank 0, from the variables launchers set
    (torchrun, SLURM, Lightning's ddp launcher); True for a plain single process."""
    return all(
        os.environ.get(key, "0") == "0" for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
    )


def shared_run_dir(run_dir: str | os.PathLike | None, default: str, *, processes: int) -> Path:
    """The run directory every process of one run writes to.

    ``run_dir`` when given; else the one the launching process chose (Lightning's ``ddp``
    launcher starts the other processes later, with this command line and environment: they must
    not pick a new time-stamped name); else ``default``, handed on through ``$ROUTEMIX_RUN_DIR``.
    Processes started by torchrun or a scheduler cannot agree on a default name: a RoutemixError.
    """
    from routemix.errors import RoutemixError

    if run_dir:
        return Path(run_dir)
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        raise RoutemixError(
            "a run launched by torchrun or a scheduler needs --run-dir (a directory every process can reach)."
        )
    if processes > 1:
        os.environ[RUN_DIR_ENV] = default
    return Path(default)


def make_trainer(
    *,
    max_epochs: int,
    run_dir: str | os.PathLike | None = None,
    progress: bool = True,
    accelerator: str = "auto",
    val_every_n_epochs: int = 1,
    deterministic: bool | str | None = None,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str = "32",
    find_unused_parameters: bool = False,
    checkpoint_every: int | None = None,
) -> L.Trainer:
    """A Lightning ``Trainer``. With ``run_dir``: loggers and ``last.ckpt`` every epoch, every
    ``checkpoint_every`` training batches (default :data:`routemix.train.CHECKPOINT_EVERY`;
    0: epoch ends only) and when SIGINT or SIGTERM stops training (see the module docstring);
    without it, nothing is written.

    ``devices`` per node times ``num_nodes`` processes train data-parallel (``strategy`` ``ddp`` by
    default when that is more than one; ``ddp_spawn`` where the script cannot be re-run, e.g. a
    notebook), as the same algorithm as one process on the same global batch: the loaders must cut
    their batches into shares (:func:`routemix.train.distributed.shard_batches`, so Lightning's
    ``DistributedSampler`` is off) and batch norm is global (:mod:`routemix.train.distributed`).
    ``precision``: ``32``, ``bf16-mixed`` (CPU or GPU) or ``16-mixed`` (CUDA only).
    ``find_unused_parameters``: for models where a step may leave parameters unused (a sparse
    path that no sample of a process's share was routed to, :mod:`routemix.nn.sparse`).
    """
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from routemix.errors import RoutemixError

    resolved = accelerator_for(accelerator) if accelerator in ("auto", "cuda") else accelerator
    check_scale_options(
        accelerator=resolved, devices=devices, num_nodes=num_nodes, strategy=strategy, precision=precision
    )
    from routemix.train.curves import active_callbacks

    quiet_lightning()
    callbacks = active_callbacks()
    if progress:
        callbacks.append(stderr_progress_bar())
    logger: list | bool = False
    if run_dir is not None:
        from routemix.train import CHECKPOINT_EVERY
        from routemix.train.resumable import RunCheckpoint

        run_dir = Path(run_dir)
        logger = run_loggers(run_dir)
        every = CHECKPOINT_EVERY if checkpoint_every is None else checkpoint_every
        callbacks.append(RunCheckpoint(run_dir / LAST_CHECKPOINT, every=every))
    scale: dict = {"strategy": strategy}
    if devices * num_nodes > 1 or strategy != "auto":
        from lightning.pytorch.strategies import DDPStrategy

        from routemix.train.distributed import GlobalBatchNormSync

        # every dense zoo model uses all its parameters in every step (tests/test_models.py), so
        # DDP need not search the graph for unused ones; sparse models ask for the search
        scale["strategy"] = DDPStrategy(
            start_method="spawn" if strategy == "ddp_spawn" else "popen", find_unused_parameters=find_unused_parameters
        )
        scale["use_distributed_sampler"] = False  # the loaders shard each global batch themselves
        if resolved == "gpu":
            scale["sync_batchnorm"] = True
        else:
            scale["plugins"] = [GlobalBatchNormSync()]
    try:
        return L.Trainer(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            precision=precision,
            logger=logger,
            callbacks=callbacks,
            enable_checkpointing=run_dir is not None,
            enable_progress_bar=progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            check_val_every_n_epoch=val_every_n_epochs,
            log_every_n_steps=1,
            deterministic=deterministic,
            **scale,
        )
    except MisconfigurationException as error:
        raise RoutemixError(
            f"cannot train on {devices} {resolved} device(s) x {num_nodes} node(s): {str(error).splitlines()[0]}"
        ) from None
