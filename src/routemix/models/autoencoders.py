"""Auto-encoders for deep clustering: the dense d-500-500-2000-c net and EDGaM's convolutional one.

Weights are Glorot-uniform with zero biases (EDGaM appendix E.1). Both expose ``encode(x) -> z``
(B, c) and ``decode(h) -> x_hat`` with ``h`` of size c, so a clustering method can put its own
module between the two (EDGaM decodes a fusion of ``z`` and its mixture reconstruction, eq. 8).

* :class:`DenseAutoencoder` — DEC's architecture (Xie et al. 2016), used by EDGaM for MNIST,
  USPS and Reuters (sec. 5, Table 5): optional input dropout (p = 0.25 in Table 5), Linear-ReLU
  layers d-500-500-2000 and a linear embedding layer to c; the decoder mirrors it and ends with a
  sigmoid for data in [0, 1] (Table 5) or a plain linear layer for standardised data.
* :class:`ConvAutoencoder` — Table 5's YTF/Fashion network: four 3x3 Conv-BN-ReLU layers
  (16, 32 stride 2, 32, 16 stride 2), Linear(inner, 256)-ReLU-Linear(256, c); the decoder is
  Linear(c, 256)-ReLU-Linear(256, inner) and transposed convolutions mirroring the encoder. Table 5
  prints the transposed convolutions without output padding and the last one without padding,
  which would give 27x27 from 28x28; we choose the output padding that returns exactly the
  encoder's sizes (28 -> 14 -> 7 -> 14 -> 28) and padding 1 on the last layer. Table 5 lists no
  final activation for this decoder; we end with a sigmoid like the dense one, since images are
  in [0, 1].

These are not registered with :func:`~routemix.models.register_model`: the registry holds
classifiers (``num_classes`` logits), which an auto-encoder is not.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

DEC_HIDDEN_SIZES = (500, 500, 2000)


def glorot_init_(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for every linear and (transposed) convolution
    layer, as EDGaM initialises all its weights (appendix E.1)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _mlp(sizes: Sequence[int]) -> list[nn.Module]:
    """Linear-ReLU layers through ``sizes`` (no activation is added after the last)."""
    layers: list[nn.Module] = []
    for i, (width_in, width_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return layers


class DenseAutoencoder(nn.Module):
    """Fully connected auto-encoder d-500-500-2000-c with a mirrored decoder (Table 5).

    Args:
        in_features: d.
        embedding_dim: c (10 in the paper for every dataset).
        hidden_sizes: the encoder's hidden widths; the decoder uses them reversed.
        input_dropout: dropout on the input (0.25 in Table 5).
        output_activation: ``"sigmoid"`` for data in [0, 1], ``"linear"`` for standardised data.
    """

    def __init__(
        self,
        in_features: int,
        embedding_dim: int = 10,
        *,
        hidden_sizes: Sequence[int] = DEC_HIDDEN_SIZES,
        input_dropout: float = 0.25,
        output_activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        if output_activation not in ("sigmoid", "linear"):
            raise ValueError(f"output_activation must be 'sigmoid' or 'linear', got {output_activation!r}.")
        sizes = (int(in_features), *(int(h) for h in hidden_sizes), int(embedding_dim))
        self.in_features = sizes[0]
        self.embedding_dim = sizes[-1]
        self.encoder = nn.Sequential(nn.Dropout(input_dropout), *_mlp(sizes))
        decoder = _mlp(sizes[::-1])
        if output_activation == "sigmoid":
            decoder.append(nn.Sigmoid())
        self.decoder = nn.Sequential(*decoder)
        glorot_init_(self)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"DenseAutoencoder expects input (batch, {self.in_features}), got {tuple(x.shape)}.")
        return self.encoder(x)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def _conv_out(size: int, stride: int) -> int:
    """Spatial size after a 3x3 convolution with padding 1."""
    return (size + 2 - 3) // stride + 1


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _deconv_bn_relu(
    c_in: int, c_out: int, stride: int, size_in: tuple[int, int], size_out: tuple[int, int]
) -> list[nn.Module]:
    """Transposed 3x3 convolution (padding 1) whose output padding lands exactly on ``size_out`` (H, W)."""
    output_padding = tuple(out - ((inp - 1) * stride - 2 + 3) for inp, out in zip(size_in, size_out))
    return [
        nn.ConvTranspose2d(c_in, c_out, 3, stride=stride, padding=1, output_padding=output_padding),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class ConvAutoencoder(nn.Module):
    """EDGaM's convolutional auto-encoder for images (Table 5, YTF/Fashion column).

    Args:
        image_shape: (C, H, W) of the input; H and W of at least 4.
        embedding_dim: c (10 in the paper).
        hidden_features: width of the dense layer between the convolutions and the embedding (256).
    """

    def __init__(self, image_shape: Sequence[int], embedding_dim: int = 10, *, hidden_features: int = 256) -> None:
        super().__init__()
        channels, height, width = (int(s) for s in image_shape)
        if min(height, width) < 4:
            raise ValueError(
                f"ConvAutoencoder needs images of at least 4x4 (two stride-2 layers), got {height}x{width}."
            )
        self.image_shape = (channels, height, width)
        self.embedding_dim = int(embedding_dim)
        h1, w1 = _conv_out(height, 2), _conv_out(width, 2)
        h2, w2 = _conv_out(h1, 2), _conv_out(w1, 2)
        self._inner_shape = (16, h2, w2)
        inner = 16 * h2 * w2
        self.encoder = nn.Sequential(
            *_conv_bn_relu(channels, 16, 1),
            *_conv_bn_relu(16, 32, 2),
            *_conv_bn_relu(32, 32, 1),
            *_conv_bn_relu(32, 16, 2),
            nn.Flatten(),
            nn.Linear(inner, hidden_features),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_features, embedding_dim),
        )
        self.decoder_head = nn.Sequential(
            nn.Linear(embedding_dim, hidden_features),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_features, inner),
        )
        self.decoder = nn.Sequential(
            *_deconv_bn_relu(16, 32, 2, (h2, w2), (h1, w1)),
            *_deconv_bn_relu(32, 32, 1, (h1, w1), (h1, w1)),
            *_deconv_bn_relu(32, 16, 2, (h1, w1), (height, width)),
            nn.ConvTranspose2d(16, channels, 3, stride=1, padding=1),
            nn.Sigmoid(),
        )
        glorot_init_(self)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"ConvAutoencoder expects input (batch, {', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}."
            )
        return self.encoder(x)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.decoder_head(h).view(-1, *self._inner_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
