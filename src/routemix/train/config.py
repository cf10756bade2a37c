"""What ``routemix train`` takes: :class:`TrainConfig`, each field with its flag's help (:mod:`routemix.fields`).

Apart from :mod:`routemix.train.supervised`, which imports Lightning, so that the command line
builds its ``train`` options from these fields without importing PyTorch.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from routemix.fields import flag
from routemix.train import CHECKPOINT_EVERY

# routemix.losses.gates' regularisers and default weight, repeated here because that module
# imports PyTorch (tests/test_cli.py checks that the two agree)
GATE_REGULARIZERS = ("none", "local", "global", "balance")
DEFAULT_GATE_WEIGHT = 0.01


def parse_milestones(text: str) -> list[int]:
    """'80,150' -> [80, 150]; 'none' or '' -> [] (no decay)."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes epochs like 80,150, got {text!r}") from None


@dataclass
class TrainConfig:
    """Everything ``routemix train`` takes; a YAML config holds any of these keys but ``command``,
    ``resume`` and ``overwrite``. ``epochs``, ``batch_size``, ``weight_decay`` and ``milestones``
    left at None take the recipe's values (:func:`routemix.train.supervised.apply_recipe`)."""

    model: str | None = field(default=None, metadata=flag("registered model name (see `routemix models`)"))
    dataset: str | None = field(
        default=None, metadata=flag("mnist, fashion_mnist, cifar10, cifar100 or imagenet (an ImageFolder root)")
    )
    epochs: int | None = field(
        default=None, metadata=flag("default: the recipe's (200 BaseCNNs, 350 CIFAR ResNets, 120/90 ImageNet)")
    )
    batch_size: int | None = field(default=None, metadata=flag("default: 128 BaseCNNs, 64 CIFAR ResNets, 256 ImageNet"))
    lr: float = field(default=0.1, metadata=flag("initial SGD learning rate (default 0.1)"))
    momentum: float = field(default=0.9, metadata=flag("SGD momentum (default 0.9)"))
    weight_decay: float | None = field(default=None, metadata=flag("default 5e-4 CIFAR-scale, 1e-4 ImageNet"))
    milestones: list[int] | None = field(
        default=None, metadata=flag("epochs where the LR drops, e.g. 80,150 ('none': never)", parse=parse_milestones)
    )
    gamma: float = field(default=0.1, metadata=flag("LR factor at each milestone (default 0.1)"))
    seed: int = field(default=0, metadata=flag("seed of initialisation, shuffling and augmentation (default 0)"))
    classes: int | None = field(
        default=None, metadata=flag("imagenet: keep the first N classes (the thesis' 100-class subset)")
    )
    image_size: int = field(default=224, metadata=flag("imagenet: crop size (default 224, resized to 256 first)"))
    ten_crop: bool = field(default=False, metadata=flag("imagenet: final test error with ten crops"))
    data_dir: str | None = field(
        default=None, metadata=flag("root of the datasets (default: $ROUTEMIX_DATA or the user cache)")
    )
    download: bool = False
    limit: int | None = field(default=None, metadata=flag("use only the first N training images (quick runs)"))
    limit_test: int | None = field(default=None, metadata=flag("use only the first N test images"))
    workers: int | None = field(
        default=None, metadata=flag("imagenet: DataLoader worker processes (default min(8, CPUs))")
    )
    gate_reg: str = field(
        default="none",
        metadata=flag(
            "regularise the routers' gates with the NMM-EM loss: "
            "local (thesis ch. 5.1, one mixture per gating vector) or global (ch. 5.2, one per router); "
            "or balance, the load-balancing loss of sparse mixtures of experts (for sparse_basecnn_*); "
            "default none",
            choices=GATE_REGULARIZERS,
        ),
    )
    gate_reg_weight: float = field(
        default=DEFAULT_GATE_WEIGHT,
        metadata=flag("weight of the gate loss against the task loss (default 0.01, ch. 5.1)"),
    )
    gate_reg_priors: bool = field(
        default=True,
        metadata=flag("learn cluster priors in the gate loss (default: yes, as ch. 5.1 recommends)", negatable=True),
    )
    gate_reg_routers: str | None = field(
        default=None, metadata=flag("comma-separated shell patterns of the gate networks to regularise (default: all)")
    )
    device: str = "auto"
    devices: int = field(
        default=1,
        metadata=flag("data-parallel processes (GPUs) per node (default 1); --batch-size stays the global batch"),
    )
    num_nodes: int = field(default=1, metadata=flag("machines, each running --devices processes (default 1)"))
    strategy: str = "auto"  # ddp when devices x num_nodes > 1; ddp_spawn where the command cannot be re-run
    precision: str = field(default="32", metadata=flag("32 (default), bf16-mixed, or 16-mixed (CUDA only)"))
    channels_last: bool = field(default=False, metadata=flag("NHWC memory layout (faster convolutions on recent GPUs)"))
    compile: bool = field(default=False, metadata=flag("torch.compile the network (minutes of compilation first)"))
    checkpoint_every: int = field(
        default=CHECKPOINT_EVERY,
        metadata=flag(
            f"also save last.ckpt every N training batches inside an epoch "
            f"(default {CHECKPOINT_EVERY}; 0: at epoch ends only)"
        ),
    )
    progress: bool = True
    resume: bool = field(default=False, metadata=flag("continue from RUN_DIR/checkpoints/last.ckpt"))
    overwrite: bool = False  # replace the run already in run_dir (routemix.rundir)
    run_dir: str | None = field(
        default=None, metadata=flag("output directory (default: runs/train-MODEL-DATASET-TIME)")
    )
    command: list[str] = field(default_factory=lambda: list(sys.argv))
