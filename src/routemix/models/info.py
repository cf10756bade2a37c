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


def format_models(names: list[str], num_classes: int | None = None) -> str:
    """The ``routemix models`` table: each model's spec, its size and cost for ``num_classes``
    outputs (default: the class count of its published figure, else its own default), the count
    the papers print, and its summary."""
    header = (
        f"{'name':<28}{'family':<17}{'task':<11}{'paths':>5}  {'routing':<15}{'input':<11}"
        f"{'classes':>7}{'params':>9}{'GMACs':>8}  {'published':<17}summary"
    )
    lines = [header]
    for name in names:
        spec = model_spec(name)
        classes = num_classes if num_classes is not None else (spec.published or spec).num_classes
        info = model_info(name, classes)
        shape = (
            "x".join(map(str, spec.input_shape)) + ("" if spec.fixed_input_size else "+")
            if spec.input_shape
            else "vectors"
        )
        size = (
            f"{info.parameters / 1e6:>8.3f}M{info.multiply_adds / 1e9:>8.3f}"
            if info.parameters is not None
            else f"{'-':>9}{'-':>8}"
        )
        published = spec.published
        printed = "-"
        if published is not None:
            printed = f"{published.parameters_m}M {published.source.replace('table', 'T').replace('_', '.')}"
            printed += f" @{published.num_classes}" if published.num_classes != info.num_classes else ""
        lines.append(
            f"{name:<28}{spec.family:<17}{spec.task:<11}{spec.paths:>5}  {spec.routing or '-':<15}{shape:<11}"
            f"{classes:>7}{size}  {printed:<17}{spec.summary}"
        )
    lines.append(
        "\nparams: trainable parameters (millions); "
        "GMACs: multiply-adds of one forward pass of one image (billions); both for `classes` outputs."
    )
    lines.append(
        "input: the default shape; + : any size also works (global pooling). "
        "published: the thesis' count (Table 3.x), @N: for N classes."
    )
    lines.append("Names with a path count build for any count: basecnn_8cc, resnet20_6cp, sparse_basecnn_16_top2, ...")
    return "\n".join(lines)
