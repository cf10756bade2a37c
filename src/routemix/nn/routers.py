"""Routers: the layers that mix P_in incoming paths into P_out outgoing paths (thesis ch. 3).

- :class:`CrossConnection` (Algorithm 2, eq. 3.7-3.8): outgoing path j is the gate-weighted sum of
  the incoming paths, ``Y_j = sum_i g_ij X_i``. No weights besides the gates', no depth added.
- :class:`CrossPrediction` / :class:`LinearCrossPrediction` (Algorithm 1, eq. 3.1-3.6): every
  incoming path predicts every outgoing path with its own convolution / dense map,
  ``U_ij = W_ij X_i + b_ij``, and ``Y_j = ReLU(sum_i g_ij U_ij)``. A layer of depth.
- One-to-many routers (:class:`OneToManyConnection`, :class:`OneToManyPrediction`): the same with a
  single incoming tensor that has no path axis; they widen a network's input to P paths.

The gates come from a :class:`~routemix.nn.gates.GateNetwork` (eq. 3.3-3.5) held as ``.gate``;
:class:`~routemix.nn.gates.GateTrace` collects them. Every router is a couple of ``einsum``s over
the path axes, with no loop over paths.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from routemix.nn.gates import GateNetwork
from routemix.nn.paths import PathBatchNorm1d, PathBatchNorm2d, PathConv2d, PathLinear


def mix_paths(x: Tensor, weights: Tensor) -> Tensor:
    """``Y_j = sum_i w_ij X_i`` (eq. 3.7-3.8) for ``x`` of shape ``(B, P_in, ...)``.

    ``weights`` is ``(B, P_in, P_out)`` (per-sample gates) or ``(P_in, P_out)`` (one matrix for all
    samples, as cross-stitch units use). Returns ``(B, P_out, ...)`` in the memory layout of ``x``,
    and the gradient for ``x`` comes back in that layout too: in a network trained channels-last the
    path layers' activations are NHWC, and a router that handed its neighbours another layout would
    make every following activation, pooling and batch-norm kernel convert on the fly (measured on
    CPU: +15% step time on BaseCNN-4-CC).
    """
    if weights.dim() == 2:
        weights = weights.expand(x.shape[0], -1, -1)
    return _MixPaths.apply(x, weights)


class _MixPaths(torch.autograd.Function):
    """Eq. 3.7 forward; backward is the direct term of eq. 3.15 for ``x`` and eq. 3.10 for the gates."""

    @staticmethod
    def forward(ctx, x: Tensor, weights: Tensor) -> Tensor:
        ctx.save_for_backward(x, weights)
        return same_layout(torch.einsum("bio,bi...->bo...", weights, x), x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weights = ctx.saved_tensors
        grad_x = grad_weights = None
        # Under mixed precision the gates (a softmax, kept in float32), the paths and the incoming
        # gradient can differ in dtype; compute in the gradient's and return each input's own.
        if ctx.needs_input_grad[0]:
            grad_x = torch.einsum("bio,bo...->bi...", weights.to(grad.dtype), grad)  # sum_j g_ij dL/dY_j
            grad_x = same_layout(grad_x.to(x.dtype), x)
        if ctx.needs_input_grad[1]:
            grad_weights = torch.einsum(
                "bo...,bi...->bio", grad, x.to(grad.dtype)
            )  # eq. 3.10: dL/dg_ij = sum dL/dY_j * X_i
            grad_weights = grad_weights.to(weights.dtype)
        return grad_x, grad_weights


def same_layout(t: Tensor, like: Tensor) -> Tensor:
    """``t`` with the dimension order in memory of ``like`` (same rank): a copy only when it differs."""
    order = sorted(range(like.dim()), key=lambda d: (-like.stride(d), d))  # outermost dimension first
    physical = t.permute(order)
    if physical.is_contiguous():
        return t
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return physical.contiguous().permute(inverse)


class CrossConnection(nn.Module):
    """Adaptive cross-connections between P_in and P_out paths (Algorithm 2, eq. 3.7).

    Input ``(B, P_in, C, H, W)`` or ``(B, P_in, C)``; output has the same shape with P_out paths.
    ``channels`` is C, which the gate networks read after global average pooling.
    """

    def __init__(self, num_in: int, num_out: int, channels: int, gate_hidden: int | None = None) -> None:
        super().__init__()
        self.gate = GateNetwork(num_in, num_out, channels, gate_hidden)

    def forward(self, x: Tensor) -> Tensor:
        return mix_paths(x, self.gate(x))


class OneToManyConnection(CrossConnection):
    """A cross-connection with one incoming tensor ``(B, C, H, W)`` or ``(B, C)`` and P_out outgoing
    paths: ``Y_j = g_j X``. It widens the input of a multi-path network (sec. 3.4.1)."""

    def __init__(self, num_out: int, channels: int, gate_hidden: int | None = None) -> None:
        super().__init__(1, num_out, channels, gate_hidden)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.unsqueeze(1))


class CrossPrediction(nn.Module):
    """Convolutional cross-prediction routing (Algorithm 1, eq. 3.1-3.6).

    Each of the P_in incoming paths predicts all P_out outgoing paths with its own convolution
    ``W_ij`` (eq. 3.1): the P_in x P_out convolutions are one grouped convolution with P_in groups of
    ``P_out * out_channels`` filters. Outgoing path j is ``ReLU(sum_i g_ij U_ij)`` (eq. 3.6).

    ``norm=True`` puts a per-path batch norm between the gate-weighted sum and the ReLU,
    ``ReLU(BN(sum_i g_ij U_ij))``: a routing layer replaces a conv-BN-ReLU layer of the network, so
    it normalises like one (the thesis' equations omit normalisation, as they do for every layer).
    With ``norm=False`` (the default) the layer is eq. 3.6 exactly.
    """

    def __init__(
        self,
        num_in: int,
        num_out: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        *,
        bias: bool = True,
        norm: bool = False,
        gate_hidden: int | None = None,
    ) -> None:
        super().__init__()
        self.num_out, self.out_channels = num_out, out_channels
        self.gate = GateNetwork(num_in, num_out, in_channels, gate_hidden)
        self.predict = PathConv2d(num_in, in_channels, num_out * out_channels, kernel_size, stride, padding, bias=bias)
        self.norm = PathBatchNorm2d(num_out, out_channels) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        gates = self.gate(x)
        u = self.predict(x)  # eq. 3.1: (B, P_in, P_out * C_out, H', W')
        u = u.view(u.shape[0], u.shape[1], self.num_out, self.out_channels, *u.shape[-2:])
        y = torch.einsum("bio,bio...->bo...", gates, u)  # eq. 3.6, before the ReLU
        return torch.relu(self.norm(y))


class LinearCrossPrediction(nn.Module):
    """Dense cross-prediction routing: eq. 3.1 with dense maps, on ``(B, P_in, D_in) -> (B, P_out, D_out)``.

    ``norm`` as in :class:`CrossPrediction`, with a per-path ``BatchNorm1d``.
    """

    def __init__(
        self,
        num_in: int,
        num_out: int,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        norm: bool = False,
        gate_hidden: int | None = None,
    ) -> None:
        super().__init__()
        self.num_out, self.out_features = num_out, out_features
        self.gate = GateNetwork(num_in, num_out, in_features, gate_hidden)
        self.predict = PathLinear(num_in, in_features, num_out * out_features, bias=bias)
        self.norm = PathBatchNorm1d(num_out, out_features) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        gates = self.gate(x)
        u = self.predict(x).view(x.shape[0], x.shape[1], self.num_out, self.out_features)
        y = torch.einsum("bio,biod->bod", gates, u)
        return torch.relu(self.norm(y))


class OneToManyPrediction(CrossPrediction):
    """Convolutional cross-prediction from one incoming tensor ``(B, C, H, W)`` to P_out paths: the
    first layer of a cross-prediction network (BaseCNN-X-CP, ResNet-X-CP)."""

    def __init__(
        self,
        num_out: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(1, num_out, in_channels, out_channels, kernel_size, stride, padding, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.unsqueeze(1))
