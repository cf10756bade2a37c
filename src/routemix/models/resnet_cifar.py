"""ResNets for 32x32 images (He et al. 2016, sec. 4.2) with P paths (thesis sec. 3.4.2, Table 3.3).

``resnet{20,32,44,56,110}``: 3 stacks of (depth-2)/6 basic blocks, widths 16/32/64, the
parameter-free option-A shortcut of the CIFAR ResNets (ResNet20: 0.27M, ResNet110: 1.7M as
printed). ``resnet{D}_{X}cc`` / ``resnet{D}_{X}cp`` add X paths and routing as
:mod:`routemix.models.resnet` describes. ``seresnet110``: squeeze-excitation (reduction 16) on
every residual branch. ``wrn40_2``: Wide ResNet 40-2 (Zagoruyko and Komodakis 2016), pre-activation
blocks of widths 32/64/128 with 1x1 projection shortcuts (2.2M).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from routemix.models.base import Classifier
from routemix.models.registry import register_model
from routemix.models.resnet import PathResNet
from routemix.nn import PathBasicBlock

CIFAR_DEPTHS = (20, 32, 44, 56, 110)
CIFAR_WIDTHS = (16, 32, 64)


def cifar_resnet(
    depth: int,
    *,
    num_paths: int = 1,
    routing: str | None = None,
    se_reduction: int | None = None,
    num_classes: int = 10,
    in_channels: int = 3,
    **kwargs,
) -> PathResNet:
    """A CIFAR ResNet of ``depth`` = 6n+2 layers, optionally with paths and routing."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    return PathResNet(
        PathBasicBlock,
        (n, n, n),
        CIFAR_WIDTHS,
        stem="cifar",
        num_paths=num_paths,
        routing=routing,
        num_classes=num_classes,
        in_channels=in_channels,
        shortcut="A",
        se_reduction=se_reduction,
        **kwargs,
    )


def _builder(depth: int, **defaults):
    def build(*, num_classes: int, in_channels: int, **kwargs) -> PathResNet:
        return cifar_resnet(depth, num_classes=num_classes, in_channels=in_channels, **{**defaults, **kwargs})

    return build


# Any input size (global average pooling); the thesis' recipe of sec. 3.4.2.
_CIFAR = {"family": "cifar-resnet", "recipe": "resnet", "fixed_input_size": False}
_PATHS = {"P": (2, 3, 4)}
register_model(
    "resnet20",
    _builder(20),
    summary="ResNet20 (He et al. 2016, sec. 4.2): 3 x 3 basic blocks, widths 16/32/64",
    **_CIFAR,
)
register_model(
    "resnet20_{P}cc",
    _builder(20, routing="cc"),
    summary="ResNet20-{P}-CC (Table 3.3): {P} paths, cross-connection after each stack",
    listed=_PATHS,
    routing="cc",
    **_CIFAR,
)
register_model(
    "resnet20_{P}cp",
    _builder(20, routing="cp"),
    summary="ResNet20-{P}-CP (Table 3.3): {P} paths, cross-prediction routers between stacks",
    listed=_PATHS,
    routing="cp",
    **_CIFAR,
)
register_model("resnet32", _builder(32), summary="ResNet32 (He et al. 2016, sec. 4.2): 3 x 5 basic blocks", **_CIFAR)
register_model(
    "resnet32_{P}cc",
    _builder(32, routing="cc"),
    summary="ResNet32-{P}-CC (Table 3.3)",
    listed=_PATHS,
    routing="cc",
    **_CIFAR,
)
register_model(
    "resnet32_{P}cp", _builder(32, routing="cp"), summary="ResNet32-{P}-CP", listed=_PATHS, routing="cp", **_CIFAR
)
register_model("resnet44", _builder(44), summary="ResNet44 (He et al. 2016, sec. 4.2): 3 x 7 basic blocks", **_CIFAR)
register_model(
    "resnet44_{P}cc", _builder(44, routing="cc"), summary="ResNet44-{P}-CC", listed=_PATHS, routing="cc", **_CIFAR
)
register_model(
    "resnet44_{P}cp", _builder(44, routing="cp"), summary="ResNet44-{P}-CP", listed=_PATHS, routing="cp", **_CIFAR
)
register_model("resnet56", _builder(56), summary="ResNet56 (He et al. 2016, sec. 4.2): 3 x 9 basic blocks", **_CIFAR)
register_model(
    "resnet56_{P}cc", _builder(56, routing="cc"), summary="ResNet56-{P}-CC", listed=_PATHS, routing="cc", **_CIFAR
)
register_model(
    "resnet56_{P}cp", _builder(56, routing="cp"), summary="ResNet56-{P}-CP", listed=_PATHS, routing="cp", **_CIFAR
)
register_model(
    "resnet110", _builder(110), summary="ResNet110 (He et al. 2016, sec. 4.2): 3 x 18 basic blocks", **_CIFAR
)
register_model(
    "resnet110_{P}cc", _builder(110, routing="cc"), summary="ResNet110-{P}-CC", listed=_PATHS, routing="cc", **_CIFAR
)
register_model(
    "resnet110_{P}cp", _builder(110, routing="cp"), summary="ResNet110-{P}-CP", listed=_PATHS, routing="cp", **_CIFAR
)
register_model(
    "seresnet110",
    _builder(110, se_reduction=16),
    summary="SEResNet110 (Table 3.3): squeeze-excitation (reduction 16) on every residual branch",
    **_CIFAR,
)


class WideBasicBlock(nn.Module):
    """Pre-activation wide residual block: BN-ReLU-conv3x3-BN-ReLU-conv3x3, projection shortcut
    (from the pre-activated input) where the shape changes."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Conv2d(in_channels, channels, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(torch.relu(self.bn2(self.conv1(out))))
        return out + skip


class WideResNet(Classifier):
    """WRN-depth-k for 32x32 images: 3 groups of (depth-4)/6 wide blocks, widths 16k/32k/64k."""

    def __init__(self, depth: int = 40, widen: int = 2, *, num_classes: int = 10, in_channels: int = 3) -> None:
        if (depth - 4) % 6:
            raise ValueError(f"Wide ResNet depth must be 6n+4, got {depth}")
        super().__init__(num_classes=num_classes, in_channels=in_channels, min_input_size=4)
        n = (depth - 4) // 6
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)]
        channels = 16
        for s, width in enumerate((16 * widen, 32 * widen, 64 * widen)):
            for b in range(n):
                layers.append(WideBasicBlock(channels, width, 2 if s > 0 and b == 0 else 1))
                channels = width
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_logits(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def _wrn40_2(*, num_classes: int, in_channels: int) -> WideResNet:
    return WideResNet(40, 2, num_classes=num_classes, in_channels=in_channels)


register_model(
    "wrn40_2",
    _wrn40_2,
    summary="Wide ResNet 40-2 (Zagoruyko and Komodakis 2016): pre-activation blocks, widths 32/64/128",
    **_CIFAR,
)
