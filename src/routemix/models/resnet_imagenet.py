"""ImageNet ResNets (sec. 3.4.3, Table 3.4): torchvision's baselines and their multi-path versions.

Baselines come from ``torchvision.models`` unchanged (``weights=None``): ``resnet{18,34,50,101}``,
``wide_resnet50_2`` and ``resnext50_2x64d`` (ResNeXt-50 with cardinality 2 and 64 channels per
group, the thesis' "ResNeXt50-2-64": torchvision's ResNet with ``groups=2, width_per_group=64``).
They are wrapped so they check their input and answer ``return_gates`` like every zoo model.

``resnet{18,34,50,101}_{X}cc``: :class:`~routemix.models.resnet.PathResNet` with torchvision's
block layout, a single-path stem (7x7 conv, max-pool), a one-to-many cross-connection, a
cross-connection after each of the four stacks, X parallel heads averaged. With one path and no
routing the same class computes exactly torchvision's network (tested by loading torchvision's
weights into it). Counts: ResNet18-2-CC 23.4M (1000 classes), ResNet50-2-CC 47.5M (100 classes),
as printed.

The printed counts of WideResNet50-2 (62.0M) and ResNeXt50-2-64 (47.5M) for 100 classes are not
those of the networks the cited papers define (torchvision's: 67.0M and 44.4M); the thesis marks
them as reproduced and does not define them, so we keep the published architectures.
"""

from __future__ import annotations

import torchvision
from torch import Tensor, nn

from routemix.models.base import Classifier
from routemix.models.registry import register_model
from routemix.models.resnet import PathResNet
from routemix.nn import PathBasicBlock, PathBottleneck

IMAGENET_LAYERS = {
    18: (PathBasicBlock, (2, 2, 2, 2)),
    34: (PathBasicBlock, (3, 4, 6, 3)),
    50: (PathBottleneck, (3, 4, 6, 3)),
    101: (PathBottleneck, (3, 4, 23, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)


class TorchvisionClassifier(Classifier):
    """A torchvision classification network behind the zoo's interface."""

    def __init__(self, network: nn.Module, *, num_classes: int, in_channels: int) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, min_input_size=32, default_input_size=224)
        self.network = network

    def forward_logits(self, x: Tensor) -> Tensor:
        return self.network(x)


def _torchvision(factory, **options):
    def build(*, num_classes: int, in_channels: int) -> TorchvisionClassifier:
        network = factory(weights=None, num_classes=num_classes, **options)
        if in_channels != 3:
            network.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            nn.init.kaiming_normal_(network.conv1.weight, mode="fan_out", nonlinearity="relu")
        return TorchvisionClassifier(network, num_classes=num_classes, in_channels=in_channels)

    return build


def imagenet_resnet(
    depth: int,
    *,
    num_paths: int = 1,
    routing: str | None = None,
    num_classes: int = 1000,
    in_channels: int = 3,
    **kwargs,
) -> PathResNet:
    """An ImageNet ResNet of ``depth`` in {18, 34, 50, 101}, optionally with paths and routing."""
    if depth not in IMAGENET_LAYERS:
        raise ValueError(f"ImageNet ResNet depth must be one of {sorted(IMAGENET_LAYERS)}, got {depth}")
    block, layers = IMAGENET_LAYERS[depth]
    return PathResNet(
        block,
        layers,
        IMAGENET_WIDTHS,
        stem="imagenet",
        num_paths=num_paths,
        routing=routing,
        num_classes=num_classes,
        in_channels=in_channels,
        shortcut="B",
        **kwargs,
    )


def _path_builder(depth: int, **defaults):
    def build(*, num_classes: int, in_channels: int, **kwargs) -> PathResNet:
        return imagenet_resnet(depth, num_classes=num_classes, in_channels=in_channels, **{**defaults, **kwargs})

    return build


# Any input of at least 32x32, meant for 224x224 crops; trained on CIFAR-scale data with the ResNet recipe.
_IMAGENET = {
    "family": "imagenet-resnet",
    "recipe": "resnet",
    "fixed_input_size": False,
    "input_size": 224,
    "num_classes": 1000,
}
_PATHS = {"P": (2, 3, 4)}
register_model(
    "resnet18",
    _torchvision(torchvision.models.resnet18),
    summary="torchvision's ResNet-18 (Table 3.4 baseline)",
    **_IMAGENET,
)
register_model(
    "resnet18_{P}cc",
    _path_builder(18, routing="cc"),
    summary="ResNet18-{P}-CC (Table 3.4): {P} paths, cross-connection after each stack",
    listed=_PATHS,
    routing="cc",
    **_IMAGENET,
)
register_model(
    "resnet34",
    _torchvision(torchvision.models.resnet34),
    summary="torchvision's ResNet-34 (Table 3.4 baseline)",
    **_IMAGENET,
)
register_model(
    "resnet34_{P}cc",
    _path_builder(34, routing="cc"),
    summary="ResNet34-{P}-CC",
    listed=_PATHS,
    routing="cc",
    **_IMAGENET,
)
register_model(
    "resnet50",
    _torchvision(torchvision.models.resnet50),
    summary="torchvision's ResNet-50 (Table 3.4 baseline)",
    **_IMAGENET,
)
register_model(
    "resnet50_{P}cc",
    _path_builder(50, routing="cc"),
    summary="ResNet50-{P}-CC (Table 3.4): bottleneck blocks, {P} paths",
    listed=_PATHS,
    routing="cc",
    **_IMAGENET,
)
register_model(
    "resnet101",
    _torchvision(torchvision.models.resnet101),
    summary="torchvision's ResNet-101 (Table 3.4 baseline)",
    **_IMAGENET,
)
register_model(
    "resnet101_{P}cc",
    _path_builder(101, routing="cc"),
    summary="ResNet101-{P}-CC",
    listed=_PATHS,
    routing="cc",
    **_IMAGENET,
)
register_model(
    "wide_resnet50_2",
    _torchvision(torchvision.models.wide_resnet50_2),
    summary="torchvision's Wide ResNet-50-2 (Table 3.4 baseline)",
    **_IMAGENET,
)
register_model(
    "resnext50_2x64d",
    _torchvision(torchvision.models.resnet50, groups=2, width_per_group=64),
    summary="ResNeXt-50 2x64d, the thesis' ResNeXt50-2-64 (Table 3.4 baseline)",
    **_IMAGENET,
)
