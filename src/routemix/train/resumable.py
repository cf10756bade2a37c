"""Checkpoints that let a run stop anywhere and resume as if it never had.

:class:`RunCheckpoint` writes ``run_dir/checkpoints/last.ckpt``

* at the end of every epoch,
* every ``every`` training batches inside an epoch (long epochs), and
* when the process receives SIGINT or SIGTERM: training stops after the batch in progress, the
  state is saved, and :class:`~routemix.errors.Interrupted` propagates (the command line exits
  with 130 or 143 and says how to resume). A second signal stops at once; the last checkpoint
  written stays.

Each write goes to a temporary file that then replaces ``last.ckpt``, so a kill during the write
leaves the previous checkpoint whole.

Besides what Lightning saves (weights, optimizers, schedules, loop counters), a checkpoint holds
the training loader's position inside its epoch (:class:`routemix.data.loaders.EpochLoader`) and
PyTorch's global random state (dropout, the NMM-EM augmentation), restored when training resumes.
With both, a CPU run resumed from any checkpoint ends with exactly the weights of the
uninterrupted run. Data-parallel runs resume with their data order and weights, but each process
starts its random draws afresh: the checkpoint holds rank 0's state only.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint

from routemix.errors import Interrupted, RoutemixError
from routemix.train import CHECKPOINT_EVERY

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunCheckpoint(Checkpoint):
    """``last.ckpt`` at every epoch end, every ``every`` batches (0: epoch ends only) and on
    SIGINT/SIGTERM (see the module docstring). A Lightning ``Checkpoint``, so it runs where
    Lightning's own ``ModelCheckpoint`` would, after the module's epoch-end hooks."""

    def __init__(self, path: str | os.PathLike, every: int = CHECKPOINT_EVERY) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(f"checkpoint interval must be a number of batches >= 0, got {every!r}")
        self.path = Path(path)
        self.every = every
        self._batches_since_save = 0
        self._stop_signal: int | None = None
        self._previous_handlers: dict = {}
        self._random_state: dict | None = None
        self._position = {"epochs": 0, "batches": 0}

    # -- what a checkpoint holds besides Lightning's own state --

    def state_dict(self) -> dict:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
        return {
            "torch_random_state": torch.get_rng_state(),
            "cuda_random_states": cuda,
            "position": dict(self._position),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self._random_state = state_dict  # restored when training starts again (on_train_start)

    # -- signals --

    def _on_signal(self, signum: int, frame) -> None:
        if self._stop_signal is not None:  # asked twice: stop now, mid-batch; last.ckpt is the previous save
            raise Interrupted(signum, self.path if self.path.is_file() else None)
        self._stop_signal = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Restore the random state of a resumed run (here: Lightning skips the epoch-start hooks
        when it resumes inside an epoch) and take over SIGINT and SIGTERM while training."""
        if self._random_state is not None:
            if trainer.world_size == 1:
                torch.set_rng_state(self._random_state["torch_random_state"])
                cuda = self._random_state["cuda_random_states"]
                if cuda and len(cuda) == torch.cuda.device_count():
                    torch.cuda.set_rng_state_all(cuda)
            self._random_state = None
        self._stop_signal = None
        if threading.current_thread() is threading.main_thread():  # Python delivers signals to the main thread only
            for signum in STOP_SIGNALS:
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()

    def _requested_stop(self, trainer: L.Trainer) -> int:
        """The signal that asked this run to stop (0: none); data-parallel, any process's request
        stops all of them at the same batch."""
        stop = self._stop_signal or 0
        if trainer.world_size > 1:
            stop = int(
                trainer.strategy.reduce(torch.tensor(stop, device=trainer.strategy.root_device), reduce_op="max")
            )
        return stop

    # -- when to save --

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        self._batches_since_save += 1
        if batch_idx + 1 >= trainer.num_training_batches:
            return  # the epoch's last batch: on_train_epoch_end saves, after validation
        stop = self._requested_stop(trainer)
        if stop or (self.every and self._batches_since_save >= self.every):
            self._save(trainer, epochs=trainer.current_epoch, batches=batch_idx + 1)
        if stop:
            raise Interrupted(stop, self.path)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer, epochs=trainer.current_epoch + 1, batches=0)
        stop = self._requested_stop(trainer)
        if stop:
            raise Interrupted(stop, self.path)

    def _save(self, trainer: L.Trainer, *, epochs: int, batches: int) -> None:
        """Write last.ckpt at this point: ``epochs`` complete epochs and ``batches`` of the next."""
        self._position = {"epochs": epochs, "batches": batches}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.partial")
        trainer.save_checkpoint(partial, weights_only=False)  # every process takes part; global rank 0 writes
        if trainer.is_global_zero:
            os.replace(partial, self.path)
        self._batches_since_save = 0


def saved_position(checkpoint: str | os.PathLike) -> dict:
    """Where the run of a ``last.ckpt`` stood: ``{"epochs": complete epochs, "batches": batches of
    the next one}`` (a corrupt or foreign file is a RoutemixError)."""
    from routemix.storage import load_checkpoint

    state = load_checkpoint(checkpoint).get("callbacks", {}).get(RunCheckpoint.__qualname__)
    if state is None:
        raise RoutemixError(f"{checkpoint} was not written by routemix's RunCheckpoint; it has no saved position.")
    return state["position"]
