"""VGG13 with two paths and cross-connections: the network of the visualisations (thesis sec. 3.5).

"A VGG13 network with 256 nodes per dense layer and half as many convolutional filters (32, 64,
128, 256, 256) in each layer ... we connect two of these networks using cross-connections, adding
the routing layers after each pooling operation and the first dense layer", trained on the
100-class ImageNet subset at 224x224. VGG13's layout: two 3x3 convolutions per stage, five stages,
a 2x2 max-pool after each. Built by :class:`~routemix.models.basecnn.MultiPathCNN` like BaseCNN-X-CC
(conv-BN-ReLU, a one-to-many cross-connection at the input). ``vgg13_half`` is one path of it.
"""

from __future__ import annotations

from routemix.models.basecnn import CNNLayout, MultiPathCNN
from routemix.models.registry import register_model

VGG13_HALF = CNNLayout(((32, 32), (64, 64), (128, 128), (256, 256), (256, 256)), dense=(256, 256), pool_last=True)


def _vgg(**defaults):
    def build(*, num_classes: int, in_channels: int, input_size: int, **kwargs) -> MultiPathCNN:
        return MultiPathCNN(
            VGG13_HALF,
            num_classes=num_classes,
            in_channels=in_channels,
            input_size=input_size,
            **{**defaults, **kwargs},
        )

    return build


# The 100-class ImageNet subset at 224x224 (sec. 3.5).
_VGG = {"family": "vgg13", "recipe": "cnn", "input_size": 224, "num_classes": 100}
register_model("vgg13_half", _vgg(), summary="VGG13 with half the filters and 256-unit dense layers (sec. 3.5)", **_VGG)
register_model(
    "vgg13_2cc",
    _vgg(routing="cc"),
    summary="two half VGG13s joined by cross-connections, the network of the sec. 3.5 figures",
    paths=2,
    routing="cc",
    **_VGG,
)
