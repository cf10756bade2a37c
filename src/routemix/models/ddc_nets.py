"""The two DDC networks (Kampffmeyer et al. 2019, sec. 3.3), each giving the hidden
representation the DDC kernel is computed on and the k output scores.

* Images, LeNet-style: conv 5x5 with 32 filters, 2x2 max-pool, ReLU; conv 5x5 with 64 filters,
  2x2 max-pool, ReLU; fully connected 100, ReLU, batch norm; fully connected k (softmax in the
  loss). The paper gives no padding; we use none ("valid" convolutions, as in LeNet and
  Theano's default), so a 28x28 image leaves 64 x 4 x 4 features before the 100-unit layer.
* Vectors: fully connected 200 - 200 - 500 - k, ReLU after each hidden layer, batch norm in the
  500-unit layer only (as the paper says) before its ReLU, linear output.

Where the batch norm sits. The paper says only that it "is applied in the fully connected layer"
(sec. 3.3) and that the bandwidth rule "benefited considerably from activation rescaling through
batch-normalization" (sec. 4.6); the kernel is computed on the last hidden layer's output. Two
readings, chosen per network by what we measured (docs/RESULTS.md):

* Image network: after the ReLU, so the kernel sees (and the output layer takes) the
  batch-normalised activation, as the clustering module of the co-author's public PyTorch code
  does (Linear, ReLU, BatchNorm1d; DanielTrosten/mvc, ``src/models/clustering_module.py``). With
  it before the ReLU, as routemix first had it, half the hidden units are exactly 0 for each
  sample and the kernel sees a sparse code: on all of MNIST every run then settled within two
  epochs at 0.68-0.74; after it, the lowest-loss run of five scores 0.875 (the paper's Table 1:
  0.866 of 20). On Fashion-MNIST, which the paper does not report, it loses (single runs 0.55
  against 0.63).
* Vector network: before the ReLU. After it, digits fell from 0.70 / 0.68 / 0.72 to
  0.56 / 0.59 / 0.62 (seeds 0-2, 100 epochs, Adam 1e-3); the paper's vector results (Reuters)
  cannot be checked here.

Weights are initialised as He et al. (2015) (sec. 4.6): Kaiming normal for ReLU, zero biases.

``forward_features`` returns the hidden representation, ``forward_head`` the scores from it,
``forward`` the scores.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from routemix.models.registry import register_model


def _init_he(module: nn.Module) -> None:
    """He et al. (2015) initialisation for every convolution and linear layer."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def lenet_output_side(side: int) -> int:
    """Spatial side after conv5 - pool2 - conv5 - pool2 with no padding."""
    return ((side - 4) // 2 - 4) // 2


class DDCLeNet(nn.Module):
    """Sec. 3.3 image network: C32(5x5) M C64(5x5) M FC100-ReLU-BN FCk."""

    def __init__(
        self, *, num_classes: int, in_channels: int = 1, input_size: tuple[int, int] = (28, 28), hidden: int = 100
    ) -> None:
        super().__init__()
        height, width = input_size
        out_h, out_w = lenet_output_side(height), lenet_output_side(width)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"DDCLeNet needs images of at least 16x16 pixels, got {height}x{width}.")
        self.in_channels = in_channels
        self.input_size = (height, width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 5),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(64 * out_h * out_w, hidden),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(hidden),
        )
        self.head = nn.Linear(hidden, num_classes)
        _init_he(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden representation (B, 100) the DDC kernel is computed on (after the batch norm)."""
        expected = (self.in_channels, *self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"DDCLeNet expects input (batch, {', '.join(map(str, expected))}), got {tuple(x.shape)}.")
        return self.features(x)

    def forward_head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class DDCMLP(nn.Module):
    """Sec. 3.3 vector network: FC200 FC200 FC500(BN) FCk."""

    def __init__(self, *, num_classes: int, in_features: int, hidden_sizes: Sequence[int] = (200, 200, 500)) -> None:
        super().__init__()
        if len(hidden_sizes) < 1:
            raise ValueError("DDCMLP needs at least one hidden layer (the DDC kernel is computed on the last).")
        layers: list[nn.Module] = []
        width = in_features
        for position, size in enumerate(hidden_sizes):
            layers.append(nn.Linear(width, size))
            if position == len(hidden_sizes) - 1:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.ReLU(inplace=True))
            width = size
        self.in_features = in_features
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)
        _init_he(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden representation (B, 500) the DDC kernel is computed on."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"DDCMLP expects input (batch, {self.in_features}), got {tuple(x.shape)}.")
        return self.features(x)

    def forward_head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _ddc_lenet(*, num_classes: int, in_channels: int, input_size: int | tuple[int, int]) -> DDCLeNet:
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    return DDCLeNet(num_classes=num_classes, in_channels=in_channels, input_size=size)


def _ddc_mlp(*, num_classes: int, in_features: int, hidden_sizes: Sequence[int] = (200, 200, 500)) -> DDCMLP:
    return DDCMLP(num_classes=num_classes, in_features=in_features, hidden_sizes=tuple(hidden_sizes))


_DDC = {"family": "ddc", "task": "clustering", "recipe": None}
register_model(
    "ddc_lenet",
    _ddc_lenet,
    summary="DDC image network (sec. 3.3): C32 M C64 M FC100-BN FCk, 5x5 kernels, no padding",
    in_channels=1,
    input_size=28,
    **_DDC,
)
register_model(
    "ddc_mlp",
    _ddc_mlp,
    summary="DDC vector network (sec. 3.3): FC200 FC200 FC500-BN FCk",
    input="vector",
    in_channels=None,
    input_size=None,
    **_DDC,
)
