"""Size and cost of a registered model: parameters and multiply-adds of one forward pass.

Multiply-adds come from ``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device (no
memory, no arithmetic), for one image at the model's default input size; FLOPs in the usual
sense of the ResNet papers (ResNet-50: 4.1G) are multiply-adds, half of what the counter calls FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from routemix.models.registry import count_parameters, create_model

# Outputs of a model listed without a class count.
LISTING_CLASSES = 10


@dataclass
class ModelInfo:
    name: str
    parameters: int
    multiply_adds: int | None  # per image; None for models that take vectors
    input_shape: tuple[int, ...] | None
    num_paths: int


def model_info(name: str, num_classes: int = LISTING_CLASSES) -> ModelInfo:
    """Parameters and forward multiply-adds of ``name`` built for ``num_classes`` outputs.

    Counted on the ``meta`` device; a model with an operator that has no meta kernel (the
    clustered routers' ``bincount``) is built and run once on the CPU instead."""
    try:
        return _measure(name, num_classes, torch.device("meta"))
    except NotImplementedError:
        return _measure(name, num_classes, torch.device("cpu"))


def _measure(name: str, num_classes: int, device: torch.device) -> ModelInfo:
    with device:
        try:
            model = create_model(name, num_classes=num_classes)
        except TypeError:  # builders that need more than num_classes (the tabular MLP)
            return ModelInfo(name, -1, None, None, 1)
        size = getattr(model, "default_input_size", None) or getattr(model, "input_size", None)
        channels = getattr(model, "in_channels", None)
        macs = None
        shape = None
        if size and channels:
            shape = (channels, *size) if isinstance(size, tuple) else (channels, size, size)
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model.eval()(torch.zeros(1, *shape))
            macs = counter.get_total_flops() // 2
    return ModelInfo(name, count_parameters(model), macs, shape, getattr(model, "num_paths", 1))
