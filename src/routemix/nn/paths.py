"""Ordinary layers lifted to P parallel paths.

The multi-path convention (DESIGN.md): a routed activation is one tensor of shape
``(B, P, C, H, W)``, or ``(B, P, D)`` after flattening, never a list of P tensors. Each class here
holds the weights of all P paths in one module and runs them in one call:

- a per-path convolution is one ``Conv2d`` with ``groups=P`` on the view ``(B, P*C, H, W)``;
- a per-path dense layer is one batched matrix product (``einsum`` over a ``(P, out, in)`` weight);
- per-path batch norm is ``BatchNorm2d(P*C)`` / ``BatchNorm1d(P*D)`` on the same view, so every path
  keeps its own statistics and affine parameters;
- stateless layers (activations, pooling, dropout) run on ``(B*P, C, H, W)`` through :class:`PerPath`.

With ``num_paths=1`` each layer computes exactly what its plain torch counterpart computes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from routemix.errors import RoutemixError


def check_num_paths(num_paths: int) -> int:
    """``num_paths`` as an int, or a clear error when it is below 1."""
    if not isinstance(num_paths, int) or isinstance(num_paths, bool) or num_paths < 1:
        raise RoutemixError(f"num_paths must be a whole number >= 1, got {num_paths!r}.")
    return num_paths


def _check_paths_input(x: Tensor, num_paths: int, dims: int, layer: str) -> None:
    if x.dim() != dims or x.shape[1] != num_paths:
        shape = "(B, P, C, H, W)" if dims == 5 else "(B, P, D)"
        raise RoutemixError(
            f"{layer} expects a {dims}-D multi-path tensor {shape} with P={num_paths}, got shape {tuple(x.shape)}."
        )


class PathConv2d(nn.Module):
    """P parallel 2-D convolutions, computed as one grouped convolution (``groups=P``).

    ``conv.weight`` has shape ``(P*out_channels, in_channels, k, k)``: rows ``p*out:(p+1)*out`` are
    path ``p``'s filters.
    """

    def __init__(
        self,
        num_paths: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.num_paths = check_num_paths(num_paths)
        self.out_channels = out_channels
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(
            num_paths * in_channels,
            num_paths * out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            bias=bias,
            groups=num_paths,
        )

    def forward(self, x: Tensor) -> Tensor:
        _check_paths_input(x, self.num_paths, 5, type(self).__name__)
        b, p, c, h, w = x.shape
        # The convolution keeps the input's layout: NCHW by default, NHWC for a network moved to
        # channels_last. (Forcing NHWC on CPU was faster under glibc's default malloc; with freed
        # memory kept, see routemix.allocator, NCHW is as fast or faster: docs/RESULTS.md.)
        y = self.conv(x.reshape(b, p * c, h, w))
        return y.view(b, p, self.out_channels, *y.shape[-2:])


class PathLinear(nn.Module):
    """P parallel dense layers: ``y[:, p] = x[:, p] @ weight[p].T + bias[p]`` in one batched product.

    Initialised like ``nn.Linear`` (uniform in ``±1/sqrt(in_features)``) path by path.
    """

    def __init__(self, num_paths: int, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.num_paths = check_num_paths(num_paths)
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(num_paths, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(num_paths, out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        _check_paths_input(x, self.num_paths, 3, type(self).__name__)
        y = torch.einsum("bpi,poi->bpo", x, self.weight)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (
            f"num_paths={self.num_paths}, in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class PathBatchNorm2d(nn.Module):
    """Batch norm with separate statistics and affine parameters per path and channel."""

    def __init__(self, num_paths: int, num_features: int, **kwargs) -> None:
        super().__init__()
        self.num_paths = check_num_paths(num_paths)
        self.bn = nn.BatchNorm2d(num_paths * num_features, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        _check_paths_input(x, self.num_paths, 5, type(self).__name__)
        b, p, c, h, w = x.shape
        return self.bn(x.reshape(b, p * c, h, w)).view(b, p, c, h, w)


class PathBatchNorm1d(nn.Module):
    """Batch norm over ``(B, P, D)`` with separate statistics per path and feature."""

    def __init__(self, num_paths: int, num_features: int, **kwargs) -> None:
        super().__init__()
        self.num_paths = check_num_paths(num_paths)
        self.bn = nn.BatchNorm1d(num_paths * num_features, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        _check_paths_input(x, self.num_paths, 3, type(self).__name__)
        b, p, d = x.shape
        return self.bn(x.reshape(b, p * d)).view(b, p, d)


class PerPath(nn.Module):
    """Run a stateless, channel-wise layer (activation, pooling, dropout) on every path.

    The paths are folded into the channel axis, ``(B, P, C, H, W) -> (B, P*C, H, W)`` (``(B, P*D)``
    for vectors), which is a view for the layouts the path layers produce, and back. Layers with
    weights or statistics need a ``Path*`` class instead."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
            raise RoutemixError(
                f"PerPath shares one {type(module).__name__} across paths; it has weights or statistics, "
                "so use its Path* counterpart (PathConv2d, PathLinear, PathBatchNorm2d, ...) instead."
            )
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        b, p, c = x.shape[:3]
        y = self.module(x.flatten(1, 2))
        return y.view(b, p, c, *y.shape[2:]) if x.dim() > 3 else y.view(b, p, c)


class PathFlatten(nn.Module):
    """``(B, P, C, H, W) -> (B, P, C*H*W)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2)


class PathGlobalAvgPool(nn.Module):
    """Global average pooling per path: ``(B, P, C, H, W) -> (B, P, C)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(-2, -1))


class RepeatPaths(nn.Module):
    """Feed one input to P paths unchanged: ``(B, ...) -> (B, P, ...)`` (a view, no copy).

    This is the start of a multi-path network without routing (BaseCNN-X, Cr-Stitch); routed
    networks widen with a one-to-many router instead."""

    def __init__(self, num_paths: int) -> None:
        super().__init__()
        self.num_paths = check_num_paths(num_paths)

    def forward(self, x: Tensor) -> Tensor:
        return x.unsqueeze(1).expand(x.shape[0], self.num_paths, *x.shape[1:])


class AveragePaths(nn.Module):
    """The network's output: the mean of the P path outputs, ``(B, P, ...) -> (B, ...)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=1)
