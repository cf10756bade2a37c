"""Supervised training of the model zoo's classifiers (thesis sec. 3.4).

:class:`ClassifierModule` holds a zoo classifier, SGD with momentum and a step schedule;
:func:`fit` runs it with Lightning (progress bar, ``last.ckpt`` every epoch, exact resume, CSV and
TensorBoard curves, CPU or GPU); :func:`run_training` is one ``routemix train`` run: resolve the
recipe, load the data, train, save ``model.pt`` and evaluate on the test split.

The recipes of sec. 3.4 (SGD, momentum 0.9, initial learning rate 0.1, decayed by 10x):

=========================  =======  =====  ==========================
models                     epochs   batch  learning-rate decay at
=========================  =======  =====  ==========================
BaseCNN family (Tab. 3.2)  200      128    80, 150
  multi-path benchmark     350      128    150, 250
CIFAR ResNets (Tab. 3.3)   350      64     150, 250
ImageNet (Tab. 3.4)        120 / 90 256    every 30 (full / 100-class subset)
=========================  =======  =====  ==========================

Scale. ``devices`` x ``num_nodes`` processes train data-parallel (DDP) as the same algorithm as
one process: ``batch_size`` is the *global* batch (the recipe's 128 stays 128 on 4 GPUs, 32 each),
every batch is cut into per-process shares, batch norm normalises over the global batch, and the
validation metrics count every test image once (:mod:`routemix.train.distributed`). Only the
augmentation draws differ: each process draws for its share, seeded by (seed, step, rank).
``precision`` (``bf16-mixed``, ``16-mixed`` on CUDA), ``channels_last`` and ``compile``
(``torch.compile`` of the network's forward, in place, so checkpoints keep their keys) are speed
options that leave the recipe alone.

Weight decay is not stated in the thesis. The defaults are the values these architectures are
usually trained with: 5e-4 for CIFAR-scale data (VGG- and WRN-style CIFAR training; small
networks on 50k images overfit and benefit from the stronger penalty, and one value for the whole
of Tables 3.2 and 3.3 keeps the rows comparable, as the thesis trains them "identically") and 1e-4
for ImageNet (He et al.'s ResNet recipe: with 1.28M images, 5e-4 under-fits the large ResNets).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from routemix.errors import RoutemixError, unknown_name
from routemix.fields import field_types
from routemix.losses.gates import DEFAULT_WEIGHT as DEFAULT_GATE_WEIGHT
from routemix.losses.gates import REGULARIZERS as GATE_REGULARIZERS
from routemix.metrics import gate_statistics, summarize_gate_statistics
from routemix.models import model_spec
from routemix.models.basecnn import ensemble_log_probs
from routemix.nn.collectives import gather_from_processes, sum_over_processes
from routemix.nn.gates import GateTrace
from routemix.nn.sparse import sparse_top_k
from routemix.rundir import check_run_dir, discarded_if_stopped, start_run_dir
from routemix.train.common import (
    accelerator_for,
    check_scale_options,
    launched_as_rank_zero,
    make_trainer,
    resume_checkpoint,
    shared_run_dir,
    torch_device,
)
from routemix.train.config import TrainConfig
from routemix.train.distributed import shard_batches
from routemix.train.evaluate import (
    EvalResult,
    batch_metrics,
    build_classifier,
    check_classifier_name,
    classify,
    evaluate_model,
    gate_log_keys,
    save_classifier,
)

CIFAR_WEIGHT_DECAY = 5e-4
IMAGENET_WEIGHT_DECAY = 1e-4


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy; for an ensemble's training output (B, M, K) the *sum* of the members' mean
    cross-entropies, so each member gets exactly the gradient of training it alone (the members'
    parameters are disjoint) and the ensemble is M independently trained networks (Table 3.1)."""
    if logits.dim() == 3:
        return sum(F.cross_entropy(logits[:, m], labels) for m in range(logits.shape[1]))
    return F.cross_entropy(logits, labels)


class ClassifierModule(L.LightningModule):
    """A zoo classifier trained with SGD + momentum and a multi-step schedule (sec. 3.4).

    Logs per epoch: ``train/loss``, ``train/acc``, ``train/lr``; on the validation (= test) split
    ``val/loss``, ``val/top1_error``, ``val/top5_error`` (K >= 5); and for routed models the mean
    gates ``train/gate/{router}/{i}_{j}`` (augmented training images, training mode) and
    ``val/gate/{router}/{i}_{j}`` (test images, eval mode, what ``routemix eval`` reports): the
    epoch mean of ``gates[router].mean(0)``, a (P_in, P_out) matrix whose rows sum to 1; and the
    gate statistics of :func:`routemix.metrics.summarize_gate_statistics` over the validation
    set, ``val/gate_skewed_share``, ``val/gate_entropy``, ``val/gate_spread``, ``val/gate_minority_high``.

    ``gate_regularizer`` (a :class:`~routemix.losses.gates.GateClusteringLoss`) adds
    ``gate_weight`` times the NMM-EM loss of the gates' relevance scores to the task loss (thesis
    ch. 5.1); ``train/loss`` is then the sum, ``train/task_loss`` and ``train/gate_loss`` its parts.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = CIFAR_WEIGHT_DECAY,
        milestones: tuple[int, ...] | list[int] = (80, 150),
        gamma: float = 0.1,
        gate_regularizer: nn.Module | None = None,
        gate_weight: float = DEFAULT_GATE_WEIGHT,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.channels_last = channels_last
        self.gate_regularizer, self.gate_weight = gate_regularizer, gate_weight
        self._val_gates: dict[str, list[Tensor]] = {}
        self._val_sums: dict[str, Tensor] = {}  # metric -> [sum of batch mean x batch size, images], this process
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.milestones, self.gamma = list(milestones), gamma

    def forward(self, x: Tensor, return_gates: bool = False):
        return self.model(x, return_gates=return_gates)

    def on_fit_start(self) -> None:
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def _memory_format(self, images: Tensor) -> Tensor:
        """NHWC images for a ``channels_last`` network (ten-crop batches stay as they are)."""
        return (
            images.contiguous(memory_format=torch.channels_last) if self.channels_last and images.dim() == 4 else images
        )

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(
            self.model.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=self.milestones, gamma=self.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}

    def training_step(self, batch, batch_idx):
        images, labels = batch
        images = self._memory_format(images)
        if self.gate_regularizer is None:
            logits, gates = self.model(images, return_gates=True)
            loss = classification_loss(logits, labels)
        else:
            with GateTrace(self.model) as trace:
                logits = self.model(images)
            gates = dict(trace.gates)
            task_loss, gate_loss = classification_loss(logits, labels), self.gate_regularizer(trace.scores)
            loss = task_loss + self.gate_weight * gate_loss
            self.log_dict(
                {"train/task_loss": task_loss.detach(), "train/gate_loss": gate_loss.detach()},
                on_step=False,
                on_epoch=True,
                batch_size=len(labels),
                sync_dist=True,
            )
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {loss.item()} at step {self.global_step}; lower the learning rate."
            )
        prediction = ensemble_log_probs(logits) if logits.dim() == 3 else logits
        accuracy = (prediction.argmax(-1) == labels).float().mean()
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        # sync_dist: epoch means over every process's samples (Lightning sums values x batch sizes
        # and batch sizes across processes), not process 0's share alone
        self.log_dict(
            {"train/loss": loss.detach(), "train/acc": accuracy},
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(labels),
            sync_dist=True,
        )
        self.log("train/lr", lr, on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True)
        if gates:
            self.log_dict(
                gate_log_keys(gates, "train"), on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True
            )
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        if len(labels) == 0:  # a process's share of a last batch smaller than the number of processes
            return
        log_probs, gates = classify(self.model, self._memory_format(images))
        metrics = {f"val/{k}": v for k, v in batch_metrics(log_probs, labels).items()}
        if gates:
            metrics.update(gate_log_keys(gates, "val"))
        for key, value in metrics.items():
            total = self._val_sums.setdefault(key, torch.zeros(2, device=value.device))
            total += torch.stack([value.detach().float() * len(labels), value.new_tensor(float(len(labels)))])
        if gates:
            for name, g in gates.items():
                self._val_gates.setdefault(name, []).append(g.detach().float().cpu())

    def on_validation_epoch_end(self) -> None:
        # Means over every test image once, whatever the shares: sums and counts added up across
        # processes (Lightning's sync_dist mean floors an odd total count of images).
        if self._val_sums:
            keys = sorted(self._val_sums)
            totals = sum_over_processes(torch.stack([self._val_sums[key] for key in keys]))
            self._val_sums.clear()
            means = {key: total / count for key, (total, count) in zip(keys, totals)}
            self.log_dict(
                {k: v for k, v in means.items() if "/gate/" not in k}, prog_bar=True, sync_dist=True
            )  # equal everywhere
            self.log_dict({k: v for k, v in means.items() if "/gate/" in k}, sync_dist=True)
        if not self._val_gates:
            return
        gates = {name: gather_from_processes(torch.cat(parts)) for name, parts in self._val_gates.items()}
        self._val_gates.clear()
        summary = summarize_gate_statistics(gate_statistics(gates))
        self.log_dict(
            {f"val/gate_{key}": value for key, value in summary.items()}, on_epoch=True, sync_dist=True
        )  # equal everywhere


class GlobalBatchData(L.LightningDataModule):
    """A :class:`~routemix.data.classification.ClassificationDataModule` for a data-parallel run:
    its loaders' batches cut into per-process shares (:func:`~routemix.train.distributed.shard_batches`,
    so the batches are the single-process ones) and each process's training share augmented
    from its own random stream, seeded by (seed, step, rank) instead of (seed, step), so that
    the shares do not all draw the same shifts and flips."""

    def __init__(self, data) -> None:
        super().__init__()
        self.data = data

    def prepare_data(self) -> None:
        self.data.prepare_data()

    def setup(self, stage: str) -> None:
        self.data.trainer = self.trainer
        self.data.setup(stage)

    def train_dataloader(self):
        return shard_batches(self.data.train_dataloader())

    def val_dataloader(self):
        return shard_batches(self.data.val_dataloader())

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        trainer = self.trainer
        if not trainer.training:
            return self.data.prepare(images, train=False), labels
        step = trainer.global_step * trainer.world_size + trainer.global_rank
        return self.data.prepare(images, train=True, step=step), labels

    def state_dict(self) -> dict:
        return self.data.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.data.load_state_dict(state_dict)


def fit(
    module: ClassifierModule,
    datamodule: L.LightningDataModule,
    *,
    max_epochs: int,
    run_dir: str | os.PathLike | None = None,
    progress: bool = True,
    accelerator: str = "auto",
    resume: bool = False,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str = "32",
    checkpoint_every: int | None = None,
) -> L.Trainer:
    """Train for ``max_epochs`` epochs (run-directory layout: :mod:`routemix.train.common`;
    checkpoints at epoch ends, every ``checkpoint_every`` batches and on SIGINT/SIGTERM:
    :mod:`routemix.train.resumable`).

    ``resume=True`` continues from ``run_dir/checkpoints/last.ckpt`` exactly, even when it was
    written in the middle of an epoch: Lightning restores weights, optimizer momentum, schedule,
    epoch, global step and the loader's place in its epoch, routemix the global random state, and
    the data module's draws are functions of (seed, epoch, step) rather than of a generator's
    history (:mod:`routemix.data.classification`), so on CPU the resumed run equals the
    uninterrupted one.

    ``devices`` x ``num_nodes`` > 1 trains data-parallel on shares of the data module's batches,
    which stay the global batches (see the module docstring); its ``batch_size`` must divide evenly.
    """
    if resume and run_dir is None:
        raise RoutemixError("resume needs the run directory of the run to continue.")
    ckpt_path = resume_checkpoint(run_dir) if resume else None
    trainer = make_trainer(
        max_epochs=max_epochs,
        run_dir=run_dir,
        progress=progress,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        find_unused_parameters=bool(sparse_top_k(module.model)),
        checkpoint_every=checkpoint_every,
    )
    if trainer.world_size > 1:
        if datamodule.batch_size % trainer.world_size:
            raise RoutemixError(
                f"batch size {datamodule.batch_size} (the global batch) "
                f"does not split evenly over {trainer.world_size} processes."
            )
        datamodule = GlobalBatchData(datamodule)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    return trainer


# --- one run from the command line -------------------------------------------------------------


# what a YAML config may set, with its type: every field but the command and what only this
# invocation decides (resume, overwrite)
_FIELD_TYPES = {
    name: kind for name, kind in field_types(TrainConfig).items() if name not in ("command", "resume", "overwrite")
}
# how a run is executed rather than what it computes: a resumed run takes them from its own command
_INVOCATION_KEYS = ("progress", "devices", "num_nodes", "strategy", "compile", "checkpoint_every")
CONFIG_KEYS = tuple(_FIELD_TYPES)  # what a YAML config may set
# what a resumed run must keep: everything that changes what it computes, except the number of
# epochs (a run may be extended) and what only says where the data is or how the test set is read
_RESUME_KEYS = tuple(
    k
    for k in _FIELD_TYPES
    if k not in _INVOCATION_KEYS
    and k not in ("epochs", "data_dir", "download", "workers", "device", "limit_test", "ten_crop", "run_dir")
)


def _check_value(key: str, value: Any, where: str) -> Any:
    expected = _FIELD_TYPES[key]
    if value is None:
        return None
    if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, str):  # YAML 1.1 reads "5e-4" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if expected is list:
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
        raise RoutemixError(f"{where}: {key} must be a list of epochs like [80, 150], got {value!r}.")
    if (expected is int and isinstance(value, bool)) or not isinstance(value, expected):
        raise RoutemixError(f"{where}: {key} must be {expected.__name__}, got {value!r}.")
    return value


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The settings of a YAML config, checked: unknown keys (with the closest known one) and
    values of the wrong type are a RoutemixError naming the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise RoutemixError(f"no config file at {path}.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RoutemixError(f"{path} is not valid YAML ({str(error).splitlines()[0]}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RoutemixError(f"{path} must be a mapping of option: value, got a {type(data).__name__}.")
    settings = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in _FIELD_TYPES:
            raise unknown_name("key", str(key), CONFIG_KEYS, f"in {path}. Config keys: {', '.join(CONFIG_KEYS)}.")
        settings[name] = _check_value(name, value, str(path))
    return settings


def is_imagenet_scale(cfg: TrainConfig) -> bool:
    return cfg.dataset == "imagenet"


def apply_recipe(cfg: TrainConfig) -> TrainConfig:
    """Fill what the user left open with the thesis recipe for this model and dataset."""
    if is_imagenet_scale(cfg):
        epochs, batch, milestones, decay = (120 if cfg.classes is None else 90), 256, None, IMAGENET_WEIGHT_DECAY
    elif cfg.model is not None and model_spec(cfg.model).recipe == "resnet":
        epochs, batch, milestones, decay = 350, 64, [150, 250], CIFAR_WEIGHT_DECAY
    else:
        epochs, batch, milestones, decay = 200, 128, [80, 150], CIFAR_WEIGHT_DECAY
    cfg.epochs = cfg.epochs if cfg.epochs is not None else epochs
    cfg.batch_size = cfg.batch_size if cfg.batch_size is not None else batch
    cfg.weight_decay = cfg.weight_decay if cfg.weight_decay is not None else decay
    if cfg.milestones is None:
        cfg.milestones = milestones if milestones is not None else list(range(30, cfg.epochs, 30))
    return cfg


def validate_config(cfg: TrainConfig) -> None:
    if not cfg.model:
        raise RoutemixError("no model: pass --model NAME (`routemix models` lists them) or a --config that names one.")
    if not cfg.dataset:
        raise RoutemixError("no dataset: pass --dataset NAME or a --config that names one.")
    for key in ("epochs", "batch_size", "image_size", "limit", "limit_test"):
        value = getattr(cfg, key)
        if value is not None and value < 1:
            raise RoutemixError(f"{key} must be at least 1, got {value}.")
    if cfg.seed < 0:
        raise RoutemixError(f"seed must be non-negative, got {cfg.seed}.")
    if cfg.checkpoint_every < 0:
        raise RoutemixError(
            f"checkpoint_every must be a number of batches >= 0 (0: at epoch ends only), got {cfg.checkpoint_every}."
        )
    if not cfg.lr > 0:
        raise RoutemixError(f"lr must be positive, got {cfg.lr}.")
    if cfg.weight_decay is not None and cfg.weight_decay < 0:
        raise RoutemixError(f"weight_decay must be non-negative, got {cfg.weight_decay}.")
    milestones = cfg.milestones or []
    if any(m < 1 for m in milestones) or milestones != sorted(set(milestones)):
        raise RoutemixError(f"milestones must be increasing positive epochs, got {milestones}.")
    if cfg.gate_reg not in GATE_REGULARIZERS:
        raise RoutemixError(f"gate_reg must be one of {', '.join(GATE_REGULARIZERS)}, got {cfg.gate_reg!r}.")
    if not cfg.gate_reg_weight >= 0:
        raise RoutemixError(f"gate_reg_weight must be non-negative, got {cfg.gate_reg_weight}.")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise RoutemixError(f"device must be auto, cpu or cuda, got {cfg.device!r}.")
    check_scale_options(
        accelerator=accelerator_for(cfg.device),
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=cfg.precision,
    )
    processes = cfg.devices * cfg.num_nodes
    if cfg.batch_size is not None and cfg.batch_size % processes:
        raise RoutemixError(
            f"batch_size {cfg.batch_size} is the global batch and must split evenly over the {processes} processes."
        )
    if cfg.compile:
        import torch._dynamo

        if not torch._dynamo.is_dynamo_supported():
            raise RoutemixError(
                "--compile: torch.compile is not supported on this Python or platform; train without --compile."
            )


def resolve_config(overrides: dict[str, Any], config_file: str | None = None) -> TrainConfig:
    """Defaults < the run's saved ``config.json`` (on resume) < the YAML file < ``overrides``
    (command-line flags that were given). A resumed run keeps what it computes: a flag or file
    that changes it (the model, the data, a limit, a learning rate; not the number of epochs) is
    an error naming every difference."""

    from routemix.rundir import read_run_config, resume_conflicts

    saved: dict[str, Any] = {}
    if overrides.get("resume") and overrides.get("run_dir"):
        if (Path(overrides["run_dir"]) / "config.json").is_file():
            # what the run was, not how it was watched: the progress bar is this invocation's choice
            saved = {
                k: v
                for k, v in read_run_config(overrides["run_dir"]).items()
                if k in _FIELD_TYPES and k not in _INVOCATION_KEYS
            }
    from_file = load_config_file(config_file) if config_file else {}
    settings = {**saved, **from_file, **{k: v for k, v in overrides.items() if v is not None}}
    conflicts = resume_conflicts(saved, settings, _RESUME_KEYS)
    if conflicts:
        raise RoutemixError(
            f"--resume: this command differs from the run in {overrides['run_dir']} ({'; '.join(conflicts)}). "
            "Drop those options to continue the run as it was, or start a new one (--overwrite or another --run-dir)."
        )
    cfg = TrainConfig(**{k: v for k, v in settings.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}})
    return cfg


def gate_regularizer_for(cfg: TrainConfig, model: nn.Module) -> nn.Module | None:
    """The gate regulariser ``cfg`` asks for (None for ``gate_reg="none"``), with a clear error for
    a model without routers or router patterns that match nothing."""
    from routemix.losses.gates import gate_networks, gate_regularizer

    if cfg.gate_reg == "none":
        return None
    patterns = [p.strip() for p in cfg.gate_reg_routers.split(",") if p.strip()] if cfg.gate_reg_routers else None
    try:
        gates = gate_networks(model, patterns)
    except ValueError as error:
        raise RoutemixError(f"--gate-reg-routers: {error}") from None
    if not gates:
        raise RoutemixError(
            f"--gate-reg {cfg.gate_reg}: model {cfg.model} has no router to regularise; "
            "use a routed model such as basecnn_2cc."
        )
    return gate_regularizer(model, cfg.gate_reg, routers=patterns, priors=cfg.gate_reg_priors)


@dataclass
class TrainResult:
    run_dir: Path
    result: EvalResult
    seconds: float
    parameters: int


def run_training(cfg: TrainConfig) -> TrainResult | None:
    """One supervised run: writes ``run_dir/config.json``, ``model.pt``, ``metrics.json``, the
    Lightning checkpoint and the learning curves; returns the test evaluation.

    Data-parallel, every process runs this (Lightning's ``ddp`` launcher re-runs the command):
    all train, global rank 0 alone writes and evaluates, the others return None."""
    from routemix.data.classification import ClassificationDataModule
    from routemix.models import count_parameters
    from routemix.storage import write_json

    validate_config(cfg)
    check_classifier_name(cfg.model)  # an unknown or unsuitable model fails before any data is read
    apply_recipe(cfg)
    validate_config(cfg)
    check_run_dir(cfg.run_dir, resume=cfg.resume, overwrite=cfg.overwrite, first_process=launched_as_rank_zero())
    if cfg.resume:
        resume_checkpoint(cfg.run_dir)  # corrupt: a clear error before anything is written
    workers = cfg.workers
    if workers is None and cfg.devices > 1:  # streamed sets: the node's cores shared by its processes
        workers = max(1, min(8, (os.cpu_count() or 1) // cfg.devices))
    datamodule = ClassificationDataModule(
        cfg.dataset,
        data_dir=cfg.data_dir,
        download=cfg.download,
        batch_size=cfg.batch_size,
        limit=cfg.limit,
        limit_test=cfg.limit_test,
        classes=cfg.classes,
        image_size=cfg.image_size,
        ten_crop=cfg.ten_crop,
        num_workers=workers,
        seed=cfg.seed,
    )
    datamodule.setup("fit")
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # the network's initialisation
    model = build_classifier(
        cfg.model,
        num_classes=datamodule.num_classes,
        in_channels=datamodule.in_channels,
        input_size=datamodule.input_size,
    )

    if cfg.compile:
        model.compile()  # in place: the forward is compiled, the state dict keeps its keys

    gate_regularizer = gate_regularizer_for(cfg, model)  # the last option to check: it needs the model

    default = f"runs/train-{cfg.model}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = shared_run_dir(cfg.run_dir, default, processes=cfg.devices * cfg.num_nodes)
    cfg.run_dir = str(run_dir)
    created = not run_dir.exists()
    if launched_as_rank_zero():
        start_run_dir(run_dir, overwrite=cfg.overwrite)
        write_json(run_dir / "config.json", asdict(cfg))

    module = ClassifierModule(
        model,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        milestones=cfg.milestones,
        gamma=cfg.gamma,
        gate_regularizer=gate_regularizer,
        gate_weight=cfg.gate_reg_weight,
        channels_last=cfg.channels_last,
    )
    start = time.perf_counter()
    with discarded_if_stopped(run_dir, created=created and launched_as_rank_zero()):
        trainer = fit(
            module,
            datamodule,
            max_epochs=cfg.epochs,
            run_dir=run_dir,
            progress=cfg.progress,
            accelerator=accelerator_for(cfg.device),
            resume=cfg.resume,
            devices=cfg.devices,
            num_nodes=cfg.num_nodes,
            strategy=cfg.strategy,
            precision=cfg.precision,
            checkpoint_every=cfg.checkpoint_every,
        )
    seconds = time.perf_counter() - start
    if not trainer.is_global_zero:
        return None
    save_classifier(run_dir / "model.pt", model, cfg.model, input_size=datamodule.input_size, config=asdict(cfg))
    result = evaluate_model(
        model, datamodule, ten_crop=cfg.ten_crop, device=torch_device(cfg.device), progress=cfg.progress
    )
    write_json(
        run_dir / "metrics.json",
        {
            "model": cfg.model,
            "dataset": cfg.dataset,
            "epochs": cfg.epochs,
            "seconds": seconds,
            "test": result.as_dict(),
        },
    )
    return TrainResult(run_dir, result, seconds, count_parameters(model))
