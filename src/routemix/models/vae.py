"""Networks of the mixture of VAE experts (MoE thesis, ch. 3): VAE experts, the pre-training
autoencoder (the same VAE with a large latent) and the manager, dense for vectors and
convolutional for images.

**Convolutional architecture (sec. 3.4).** Images are zero-padded to a square of side ``D``, the
next power of two (the thesis pads MNIST from 28 to 32). The encoder has

* eq. 3.7  ``N_blocks = log2(D) - 1`` blocks, each halving the resolution, so the last one is
  ``2 x 2 x F``;
* eq. 3.8  ``N_general = ceil(N_blocks / 2)`` *general* blocks first, then
* eq. 3.9  ``N_specific = N_blocks - N_general`` *specific* blocks.

Figure 3.6 (the blocks) did not survive the text extraction; from sec. 3.4.1 we take a general
block to be two 3x3 convolutions (the receptive field of one 5x5), the second with stride 2, and a
specific block one 3x3 convolution with stride 2; each convolution is followed by batch norm and
then the activation (sec. 3.4.1), Mish (sec. 3.4.3). "The number of filters is given by
multiplying D by two for each block" is garbled; we double the filters every block starting from
``base_width`` (default 32, which is D for the padded MNIST images). The decoder mirrors the
encoder with stride-2 transposed convolutions and crops the output back to the input size.

**Dense architecture (vector data).** The thesis is about images only. For ``n`` features we
apply eq. 3.7 to the side ``sqrt(n)`` of the equivalent square image (digits: 64 features ->
side 8 -> 2 blocks) and use that many Linear-BN-Mish blocks whose widths halve from
``base_width`` (default 256), mirrored in the decoder.

**Manager.** Its architecture is not given in the text (only in figures); we use the encoder of
the same family followed by a linear layer to the K expert scores (logits).

These networks are not in the model registry: the registry's builders take ``num_classes`` and
make classifiers, which a VAE is not; :func:`build_vae` and :func:`build_manager` build them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from routemix.losses.entropy import RECONSTRUCTIONS

DEFAULT_IMAGE_WIDTH = 32
DEFAULT_VECTOR_WIDTH = 256


@dataclass(frozen=True)
class Depth:
    """Encoder depth of sec. 3.4.2 for an input of (padded) side ``side``."""

    side: int  # padded side D, a power of two
    n_blocks: int  # eq. 3.7
    n_general: int  # eq. 3.8
    n_specific: int  # eq. 3.9


def encoder_depth(side: int) -> Depth:
    """Eqs. 3.7-3.9 for a ``side x side`` input, padded up to the next power of two (>= 4)."""
    if side < 1:
        raise ValueError(f"the input side must be positive, got {side}.")
    padded = max(4, 1 << (int(side) - 1).bit_length())
    n_blocks = int(math.log2(padded)) - 1
    n_general = math.ceil(n_blocks / 2)
    return Depth(padded, n_blocks, n_general, n_blocks - n_general)


def dense_depth(n_features: int) -> int:
    """Number of dense blocks: eq. 3.7 for the side ``sqrt(n_features)`` of the equivalent image."""
    return encoder_depth(math.ceil(math.sqrt(n_features))).n_blocks


def _conv_bn_mish(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.Mish(),
    ]


def _up_bn_mish(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.Mish(),
    ]


def _linear_bn_mish(in_features: int, out_features: int) -> list[nn.Module]:
    return [nn.Linear(in_features, out_features, bias=False), nn.BatchNorm1d(out_features), nn.Mish()]


def _filters(depth: Depth, base_width: int) -> list[int]:
    return [base_width * 2**i for i in range(depth.n_blocks)]


class ConvEncoder(nn.Module):
    """Pad to ``D x D``, general blocks then specific blocks (sec. 3.4), flatten the 2x2xF map."""

    def __init__(self, image_shape: Sequence[int], base_width: int = DEFAULT_IMAGE_WIDTH) -> None:
        super().__init__()
        channels, height, width = (int(s) for s in image_shape)
        self.image_shape = (channels, height, width)
        self.depth = encoder_depth(max(height, width))
        layers: list[nn.Module] = []
        in_channels = channels
        for i, filters in enumerate(_filters(self.depth, base_width)):
            if i < self.depth.n_general:
                layers += _conv_bn_mish(in_channels, filters) + _conv_bn_mish(filters, filters, stride=2)
            else:
                layers += _conv_bn_mish(in_channels, filters, stride=2)
            in_channels = filters
        self.blocks = nn.Sequential(*layers)
        self.out_channels = in_channels
        self.out_features = in_channels * 4

    def padding(self) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) zero padding from the input to ``D x D``."""
        _, height, width = self.image_shape
        side = self.depth.side
        return (
            (side - width) // 2,
            side - width - (side - width) // 2,
            (side - height) // 2,
            side - height - (side - height) // 2,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"expected images (batch, {', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}.")
        return self.blocks(F.pad(x, self.padding())).flatten(1)


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: latent -> 2x2xF -> upsampling blocks -> crop to the input."""

    def __init__(self, latent_dim: int, image_shape: Sequence[int], base_width: int = DEFAULT_IMAGE_WIDTH) -> None:
        super().__init__()
        channels, height, width = (int(s) for s in image_shape)
        self.image_shape = (channels, height, width)
        self.depth = encoder_depth(max(height, width))
        filters = _filters(self.depth, base_width)[::-1]
        self.top_channels = filters[0]
        self.project = nn.Sequential(*_linear_bn_mish(latent_dim, filters[0] * 4))
        layers: list[nn.Module] = []
        outputs = filters[1:] + [filters[-1]]
        for i, (in_channels, out_channels) in enumerate(zip(filters, outputs)):
            layers += _up_bn_mish(in_channels, out_channels)
            if i >= self.depth.n_specific:  # general blocks, mirrored: a second 3x3 convolution
                layers += _conv_bn_mish(out_channels, out_channels)
        layers.append(nn.Conv2d(outputs[-1], channels, 3, padding=1))
        self.blocks = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.project(z).view(-1, self.top_channels, 2, 2))
        _, height, width = self.image_shape
        top, left = (self.depth.side - height) // 2, (self.depth.side - width) // 2
        return out[:, :, top : top + height, left : left + width]


class DenseEncoder(nn.Module):
    """Linear-BN-Mish blocks whose widths halve from ``base_width`` (see the module docstring)."""

    def __init__(self, n_features: int, base_width: int = DEFAULT_VECTOR_WIDTH) -> None:
        super().__init__()
        self.n_features = int(n_features)
        widths = [max(1, base_width // 2**i) for i in range(dense_depth(n_features))]
        layers: list[nn.Module] = []
        width = self.n_features
        for out in widths:
            layers += _linear_bn_mish(width, out)
            width = out
        self.blocks = nn.Sequential(*layers)
        self.widths = widths
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected vectors (batch, {self.n_features}), got {tuple(x.shape)}.")
        return self.blocks(x)


class DenseDecoder(nn.Module):
    """Mirror of :class:`DenseEncoder` with a linear output layer."""

    def __init__(self, latent_dim: int, n_features: int, base_width: int = DEFAULT_VECTOR_WIDTH) -> None:
        super().__init__()
        widths = [max(1, base_width // 2**i) for i in range(dense_depth(n_features))][::-1]
        layers: list[nn.Module] = []
        width = latent_dim
        for out in widths:
            layers += _linear_bn_mish(width, out)
            width = out
        layers.append(nn.Linear(width, n_features))
        self.blocks = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.blocks(z)


@dataclass
class VAEOutput:
    """Decoder output (logits for ``"bce"``, values for ``"mse"``) and the posterior parameters."""

    output: torch.Tensor
    mean: torch.Tensor
    log_var: torch.Tensor


class VAE(nn.Module):
    """Variational autoencoder: encoder -> (mean, log-variance) -> sample -> decoder.

    In training mode the latent code is sampled with the reparameterisation trick, in eval mode
    the mean is decoded. ``reconstruction`` is ``"bce"`` (sigmoid output, near-binary images) or
    ``"mse"`` (linear output), sec. 4.3.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int, reconstruction: str) -> None:
        super().__init__()
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {reconstruction!r}.")
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = int(latent_dim)
        self.reconstruction = reconstruction
        self.to_mean = nn.Linear(encoder.out_features, latent_dim)
        self.to_log_var = nn.Linear(encoder.out_features, latent_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance (B, latent_dim)."""
        features = self.encoder(x)
        return self.to_mean(features), self.to_log_var(features)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        mean, log_var = self.encode(x)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if self.training else mean
        return VAEOutput(self.decoder(z), mean, log_var)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Data-space values of latent codes: the sigmoid of the logits for ``"bce"``."""
        out = self.decoder(z)
        return torch.sigmoid(out) if self.reconstruction == "bce" else out

    @torch.no_grad()
    def generate(self, n_samples: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n_samples`` codes drawn from the prior N(0, I) (sec. 4.5.3)."""
        device = next(self.parameters()).device
        z = torch.randn(n_samples, self.latent_dim, generator=generator).to(device)
        return self.decode(z)


class Manager(nn.Module):
    """The gating network: an encoder and a linear layer to one score (logit) per expert."""

    def __init__(self, encoder: nn.Module, n_experts: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_features, n_experts)
        self.n_experts = int(n_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _is_image(input_shape: Sequence[int]) -> bool:
    if len(input_shape) not in (1, 3):
        raise ValueError(f"input_shape must be (n_features,) or (channels, height, width), got {tuple(input_shape)}.")
    return len(input_shape) == 3


def make_encoder(input_shape: Sequence[int], base_width: int | None = None) -> nn.Module:
    """Convolutional encoder for (C, H, W), dense encoder for (n_features,)."""
    if _is_image(input_shape):
        return ConvEncoder(input_shape, base_width or DEFAULT_IMAGE_WIDTH)
    return DenseEncoder(input_shape[0], base_width or DEFAULT_VECTOR_WIDTH)


def build_vae(
    input_shape: Sequence[int], latent_dim: int, *, reconstruction: str, base_width: int | None = None
) -> VAE:
    """A VAE expert, or the pre-training autoencoder with a large ``latent_dim`` (sec. 3.3)."""
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be at least 1, got {latent_dim}.")
    if _is_image(input_shape):
        decoder = ConvDecoder(latent_dim, input_shape, base_width or DEFAULT_IMAGE_WIDTH)
    else:
        decoder = DenseDecoder(latent_dim, input_shape[0], base_width or DEFAULT_VECTOR_WIDTH)
    return VAE(make_encoder(input_shape, base_width), decoder, latent_dim, reconstruction)


def build_manager(input_shape: Sequence[int], n_experts: int, *, base_width: int | None = None) -> Manager:
    """The manager for ``n_experts`` experts (module docstring)."""
    if n_experts < 1:
        raise ValueError(f"n_experts must be at least 1, got {n_experts}.")
    return Manager(make_encoder(input_shape, base_width), n_experts)
