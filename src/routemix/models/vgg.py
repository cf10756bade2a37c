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
    def build(*, num_classes: int = 100, in_channels: int = 3, input_size: int = 224, **kwargs) -> MultiPathCNN:
        return MultiPathCNN(VGG13_HALF, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                            **{**defaults, **kwargs})

    return build


register_model(_vgg(), "vgg13_half")
register_model(_vgg(num_paths=2, routing="cc"), "vgg13_2cc")
