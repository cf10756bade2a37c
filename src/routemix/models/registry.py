"""The model registry: ``create_model("clusternet_mnist", num_classes=10)``.

Each model family module registers its public builders with :func:`register_model`; builders take
``num_classes`` and ``in_channels`` as keywords plus family-specific options.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from routemix.errors import RoutemixError, unknown_name

ModelBuilder = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(builder: ModelBuilder, name: str | None = None) -> ModelBuilder:
    """Register ``builder`` under ``name`` (default: its function name). Usable as a decorator."""
    name = name or builder.__name__
    if name in _REGISTRY:
        raise RuntimeError(f"model {name!r} is registered twice")
    _REGISTRY[name] = builder
    return builder


def list_models(*patterns: str) -> list[str]:
    """Names of the registered models, sorted: every one, or those matching any of the shell-style
    ``patterns`` (``list_models("resnet20*", "*_3cc")``, :func:`fnmatch.fnmatch`)."""
    from fnmatch import fnmatch

    return sorted(name for name in _REGISTRY if not patterns or any(fnmatch(name, pattern) for pattern in patterns))


def get_model_builder(name: str) -> ModelBuilder:
    """The builder registered as ``name``; an unknown name suggests the closest ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise unknown_name("model", name, _REGISTRY, f"`routemix models` lists all {len(_REGISTRY)} models.") from None


def create_model(name: str, *, num_classes: int, in_channels: int | None = None, **kwargs) -> nn.Module:
    """Build a registered model. ``in_channels`` left as ``None`` keeps the builder's default."""
    if num_classes < 1:
        raise RoutemixError(f"num_classes must be at least 1, got {num_classes}.")
    if in_channels is not None:
        kwargs["in_channels"] = in_channels
    return get_model_builder(name)(num_classes=num_classes, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
