"""Multi-path blocks shared by the model zoo: residual blocks, squeeze-excitation, cross-stitch.

Every block works on ``(B, P, C, H, W)`` with P parallel copies of its weights; with ``num_paths=1``
it is the ordinary single-path block (the tests check this against torchvision's ResNet blocks).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from routemix.nn.paths import PathBatchNorm2d, PathConv2d, PathLinear, check_num_paths
from routemix.nn.routers import mix_paths


def conv_bn(
    num_paths: int, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1
) -> nn.Sequential:
    """Per-path convolution (no bias) followed by per-path batch norm."""
    return nn.Sequential(
        PathConv2d(num_paths, in_channels, out_channels, kernel_size, stride=stride, bias=False),
        PathBatchNorm2d(num_paths, out_channels),
    )


MIN_SQUEEZE = 4


class PathSqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) on every path: ``x * sigmoid(W2 ReLU(W1 GAP(x)))``.

    Same computation as ``torchvision.ops.SqueezeExcitation``, with the P paths' weights batched.
    The squeeze width is ``channels // reduction`` but at least 4, and the squeeze bias starts at
    zero. Both keep the ReLU alive: on a batch-normed residual branch GAP(x) starts near zero, so
    the hidden units start at their bias, and SENet's reduction 16 leaves a 16-channel CIFAR stage
    a single unit; a negative random bias would switch it off for every input, for good (we saw it
    in SE-ResNet-110's first stage).
    """

    def __init__(self, num_paths: int, channels: int, reduction: int) -> None:
        super().__init__()
        squeeze_channels = max(channels // reduction, MIN_SQUEEZE)
        self.squeeze = PathLinear(num_paths, channels, squeeze_channels)
        self.excite = PathLinear(num_paths, squeeze_channels, channels)
        nn.init.zeros_(self.squeeze.bias)

    def forward(self, x: Tensor) -> Tensor:
        scale = torch.sigmoid(self.excite(torch.relu(self.squeeze(x.mean(dim=(-2, -1))))))
        return x * scale[..., None, None]


class CrossStitch(nn.Module):
    """Cross-stitch unit (Misra et al. 2016, the thesis' Cr-Stitch baseline): ``Y_j = sum_i a_ij X_i``
    with one learned matrix ``a`` for all inputs, where the routers compute gates from the input.

    Initialised as in Misra et al.: 0.9 on the diagonal and the remaining 0.1 spread over the other
    paths, so each path starts mostly as itself.
    """

    def __init__(self, num_paths: int, self_weight: float = 0.9) -> None:
        super().__init__()
        check_num_paths(num_paths)
        other = (1.0 - self_weight) / (num_paths - 1) if num_paths > 1 else 0.0
        weights = torch.full((num_paths, num_paths), other)
        weights.fill_diagonal_(self_weight if num_paths > 1 else 1.0)
        self.weights = nn.Parameter(weights)

    def forward(self, x: Tensor) -> Tensor:
        return mix_paths(x, self.weights)


class PathBasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut (He et al. 2016), on P paths.

    ``shortcut="A"``: the parameter-free shortcut of the CIFAR ResNets (subsample, zero-pad the new
    channels); ``"B"``: 1x1 conv + BN projection where the shape changes (ImageNet ResNets).
    ``se_reduction`` adds squeeze-excitation on the residual branch before the sum (SE-ResNet).
    """

    expansion = 1

    def __init__(
        self,
        num_paths: int,
        in_channels: int,
        channels: int,
        stride: int = 1,
        *,
        shortcut: str = "B",
        se_reduction: int | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv_bn(num_paths, in_channels, channels, 3, stride)
        self.conv2 = conv_bn(num_paths, channels, channels, 3)
        self.se = PathSqueezeExcitation(num_paths, channels, se_reduction) if se_reduction else nn.Identity()
        self.shortcut = _shortcut(num_paths, in_channels, channels, stride, shortcut)

    def forward(self, x: Tensor) -> Tensor:
        out = self.se(self.conv2(torch.relu(self.conv1(x))))
        return torch.relu(out + self.shortcut(x))


class PathBottleneck(nn.Module):
    """1x1 -> 3x3 (stride here, as torchvision's ResNet v1.5) -> 1x1 conv-BN bottleneck on P paths.

    ``width_factor`` widens the inner layers (2 for Wide ResNet-50-2), as torchvision's ``width_per_group / 64``.
    """

    expansion = 4

    def __init__(
        self,
        num_paths: int,
        in_channels: int,
        channels: int,
        stride: int = 1,
        *,
        shortcut: str = "B",
        se_reduction: int | None = None,
        width_factor: int = 1,
    ) -> None:
        super().__init__()
        width = channels * width_factor
        out_channels = channels * self.expansion
        self.conv1 = conv_bn(num_paths, in_channels, width, 1)
        self.conv2 = conv_bn(num_paths, width, width, 3, stride)
        self.conv3 = conv_bn(num_paths, width, out_channels, 1)
        self.se = PathSqueezeExcitation(num_paths, out_channels, se_reduction) if se_reduction else nn.Identity()
        self.shortcut = _shortcut(num_paths, in_channels, out_channels, stride, shortcut)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.conv1(x))
        out = torch.relu(self.conv2(out))
        out = self.se(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut of He et al. (2016) for CIFAR: take every ``stride``-th pixel and zero-pad the
    channels up to ``out_channels``. No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride, self.extra = stride, out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        x = x[..., :: self.stride, :: self.stride]
        front = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, front, self.extra - front))


def _shortcut(num_paths: int, in_channels: int, out_channels: int, stride: int, kind: str) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    if kind == "B":
        return conv_bn(num_paths, in_channels, out_channels, 1, stride)
    raise ValueError(f"shortcut must be 'A' or 'B', got {kind!r}")


def init_conv_bn(model: nn.Module) -> None:
    """torchvision's ResNet initialisation: He-normal (fan-out) convolutions, BN weight 1 and bias 0.

    The fan-out is counted per group, so a P-path (grouped) convolution starts exactly as P
    separately initialised convolutions would (``kaiming_normal_`` would count all P paths' filters
    and start every path sqrt(P) times too small).
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            weight = module.weight
            fan_out = weight.shape[0] // module.groups * weight[0, 0].numel()
            nn.init.normal_(weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
