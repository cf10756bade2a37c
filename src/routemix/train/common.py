"""What every routemix trainer shares: device names, quiet start-up, loggers, the Lightning
``Trainer`` with its run-directory layout, and the resume check.

One implementation for the clustering (:mod:`routemix.train.clustering`) and the supervised
(:mod:`routemix.train.supervised`) trainers, so a run directory looks the same whoever wrote it::

    run_dir/checkpoints/last.ckpt        every epoch; ``resume=True`` continues from it
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
    from routemix.train.checkpoint import load_checkpoint

    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    load_checkpoint(last)
    return str(last)


def make_trainer(
    *,
    max_epochs: int,
    run_dir: str | os.PathLike | None = None,
    progress: bool = True,
    accelerator: str = "auto",
    val_every_n_epochs: int = 1,
    deterministic: bool | str | None = None,
) -> L.Trainer:
    """A single-device ``Trainer``. With ``run_dir``: loggers and ``last.ckpt`` every epoch
    (see the module docstring); without it, nothing is written."""
    quiet_lightning()
    callbacks = []
    logger: list | bool = False
    if run_dir is not None:
        from lightning.pytorch.callbacks import ModelCheckpoint

        run_dir = Path(run_dir)
        logger = run_loggers(run_dir)
        callbacks.append(ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), save_last=True, save_top_k=0))
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=1,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=run_dir is not None,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=val_every_n_epochs,
        log_every_n_steps=1,
        deterministic=deterministic,
    )
