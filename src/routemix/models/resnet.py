"""Residual networks with P parallel paths and routing: the shared body of the CIFAR (sec. 3.4.2)
and ImageNet (sec. 3.4.3) multi-path ResNets.

A :class:`PathResNet` is a stem, stacks of residual blocks of one feature-map size each, global
average pooling and a dense layer, every part holding P parallel paths; the P path outputs are
averaged at the end. Routing (the thesis places it the same way for both families):

- ``routing="cc"``: the stem is a single path, a one-to-many cross-connection widens it to P
  paths, and a cross-connection follows every stack ("after the first convolution, we add a
  one-to-many router and ... cross-connection-based routers after the first, second, and third
  stacks"; ImageNet: "after the first convolution and max-pooling layer ... following each stack").
- ``routing="cp"``: a convolutional one-to-many cross-prediction replaces the stem convolution and
  a cross-prediction router (3x3, the width of the stack before it) sits before every stack but
  the first, adding that many layers of depth ("two additional routing layers before the second
  and third stacks"). The counts confirm the 3x3 width-preserving routers: ResNet20-2-CP has
  0.59M parameters against the printed 0.59M.
- ``routing=None`` with ``num_paths=1``: the plain ResNet.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import Tensor, nn

from routemix.errors import RoutemixError
from routemix.models.base import Classifier
from routemix.nn import (
    AveragePaths,
    CrossConnection,
    CrossPrediction,
    OneToManyPrediction,
    PathBasicBlock,
    PathBottleneck,
    PathGlobalAvgPool,
    PathLinear,
    PerPath,
    RepeatPaths,
)
from routemix.nn.blocks import conv_bn, init_conv_bn
from routemix.nn.paths import check_num_paths

ROUTINGS = (None, "cc", "cp")


class PathResNet(Classifier):
    """A ResNet on P paths. ``block`` is :class:`PathBasicBlock` or :class:`PathBottleneck`;
    ``layers`` the number of blocks per stack and ``widths`` their base widths.

    ``stem="cifar"``: 3x3 convolution, stride 1. ``stem="imagenet"``: 7x7 stride-2 convolution and
    3x3 stride-2 max-pool. ``block_kwargs`` go to every block (``shortcut``, ``se_reduction``,
    ``width_factor``).
    """

    def __init__(
        self,
        block: type[PathBasicBlock] | type[PathBottleneck],
        layers: Sequence[int],
        widths: Sequence[int],
        *,
        stem: str,
        num_paths: int = 1,
        routing: str | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        gate_hidden: int | None = None,
        **block_kwargs,
    ) -> None:
        check_num_paths(num_paths)
        if routing not in ROUTINGS:
            raise RoutemixError(f"routing must be one of {ROUTINGS}, got {routing!r}.")
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        downsample = 2 ** (len(layers) - 1) * (4 if stem == "imagenet" else 1)
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            num_paths=num_paths,
            min_input_size=downsample,
            default_input_size=224 if stem == "imagenet" else 32,
        )
        self.routing = routing
        p = num_paths
        gates = {"gate_hidden": gate_hidden}
        stem_width = widths[0]
        kernel, stride = (7, 2) if stem == "imagenet" else (3, 1)

        # Named layers: gates read as "features.widen.gate", "features.route2.gate", ...
        body: OrderedDict[str, nn.Module] = OrderedDict()
        if routing == "cp":
            body["conv1"] = OneToManyPrediction(
                p, in_channels, stem_width, kernel, stride, bias=False, norm=True, **gates
            )
        else:
            stem_paths = 1 if routing == "cc" else p
            conv, bn = conv_bn(stem_paths, in_channels, stem_width, kernel, stride)
            body.update(to_paths=RepeatPaths(stem_paths), conv1=conv, bn1=bn, relu1=nn.ReLU())
        if stem == "imagenet":
            body["pool"] = PerPath(nn.MaxPool2d(3, stride=2, padding=1))
        if routing == "cc":  # a router with one incoming path: the one-to-many cross-connection
            body["widen"] = CrossConnection(1, p, stem_width, **gates)

        channels, routes = stem_width, 0
        for s, (count, width) in enumerate(zip(layers, widths), start=1):
            if routing == "cp" and s > 1:
                routes += 1
                body[f"route{routes}"] = CrossPrediction(p, p, channels, channels, 3, bias=False, norm=True, **gates)
            for b in range(1, count + 1):
                stride = 2 if s > 1 and b == 1 else 1
                body[f"stack{s}_block{b}"] = block(p, channels, width, stride, **block_kwargs)
                channels = width * block.expansion
            if routing == "cc":
                routes += 1
                body[f"route{routes}"] = CrossConnection(p, p, channels, **gates)
        self.features = nn.Sequential(body)
        self.head = nn.Sequential(
            OrderedDict(
                pool=PathGlobalAvgPool(), classifier=PathLinear(p, channels, num_classes), average=AveragePaths()
            )
        )
        init_conv_bn(self)

    def forward_logits(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
