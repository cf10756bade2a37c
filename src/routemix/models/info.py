"""Size and cost of a registered model: parameters and multiply-adds of one forward pass.

Multiply-adds come from ``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device (no
memory, no arithmetic), for one image of the model's default shape (its :class:`ModelSpec`); FLOPs
in the usual sense of the ResNet papers (ResNet-50: 4.1G) are multiply-adds, half of what the
counter calls FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from routemix.models.registry import ModelSpec, count_parameters, create_model, model_spec


@dataclass
class ModelInfo:
    spec: ModelSpec
    num_classes: int
    parameters: int | None  # None for models that take vectors: their size is set by the data
    multiply_adds: int | None  # per image; None for models that take vectors


def model_info(name: str, num_classes: int | None = None) -> ModelInfo:
    """Parameters and forward multiply-adds of ``name`` built for ``num_classes`` outputs (default:
    its spec's).

    Counted on the ``meta`` device; a model with an operator that has no meta kernel (the
    clustered routers' ``bincount``) is built and run once on the CPU instead."""
    spec = model_spec(name)
    num_classes = spec.num_classes if num_classes is None else num_classes
    if spec.input_shape is None:
        return ModelInfo(spec, num_classes, None, None)
    try:
        return _measure(spec, num_classes, torch.device("meta"))
    except NotImplementedError:
        return _measure(spec, num_classes, torch.device("cpu"))


def _measure(spec: ModelSpec, num_classes: int, device: torch.device) -> ModelInfo:
    with device:
        model = create_model(spec.name, num_classes=num_classes).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, *spec.input_shape))
    return ModelInfo(spec, num_classes, count_parameters(model), counter.get_total_flops() // 2)
