"""Batched, per-sample transforms that run on the training device.

* :class:`SobelInput` — the thesis' image preprocessing (sec. 4.5.2): grayscale, then horizontal
  and vertical Sobel filters, giving a 2 x H x W input.
* :func:`image_augmentation` — the transformation T of sec. 4.4.3 (random crop, shift, rotation,
  scale, brightness/contrast/saturation/hue), drawn independently for every image and applied
  once per batch: each image gets one augmented copy per step (the thesis' "once per batch",
  as opposed to IIC's five copies).
* :func:`per_image_augmentation` — the same T for one image at a time (torchvision transforms v2,
  uint8 tensor or PIL image in, float tensor out), for DataLoader workers; ``routemix bench
  pipeline`` measures it against the batched one.
* :class:`FeatureResample` and :class:`GaussianNoise` — augmentations for vector data, where the
  thesis defines none (see :func:`tabular_augmentation`).
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from kornia.color import rgb_to_grayscale
from kornia.filters import spatial_gradient
from torch import nn


class SobelInput(nn.Module):
    """uint8 or float images (B, C, H, W) -> (B, 2, H, W) horizontal and vertical Sobel edges."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = to_float_images(images)
        if images.shape[1] == 3:
            images = rgb_to_grayscale(images)
        elif images.shape[1] != 1:
            raise ValueError(f"SobelInput expects 1 or 3 channels, got {images.shape[1]}.")
        edges = spatial_gradient(images, mode="sobel")  # (B, 1, 2, H, W): d/dx, d/dy
        return edges.flatten(1, 2)


def to_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1]; float input passes through."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images


# The ranges of T (see :func:`image_augmentation`), shared by the batched and per-image versions.
CROP = {"scale": (0.6, 1.0), "ratio": (0.8, 1.25)}
AFFINE = {"degrees": 20.0, "translate": (0.1, 0.1), "scale": (0.9, 1.1)}
AFFINE_P = 0.5  # kornia's default for RandomAffine: half the images are rotated/shifted/scaled
JITTER_P = 0.8


def _jitter_ranges(channels: int) -> dict[str, float]:
    if channels == 3:
        return {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}
    return {"brightness": 0.4, "contrast": 0.4}  # saturation and hue need colour


class ImageAugmentation(nn.Module):
    """T of sec. 4.4.3 on a batch of images, new random parameters for every image."""

    def __init__(self, channels: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.transform = K.AugmentationSequential(
            K.RandomResizedCrop(size, **CROP),
            K.RandomAffine(**AFFINE, p=AFFINE_P),
            K.ColorJitter(**_jitter_ranges(channels), p=JITTER_P),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.transform(to_float_images(images))


def image_augmentation(channels: int, size: tuple[int, int]) -> ImageAugmentation:
    """The augmentation T for images of ``channels`` channels and spatial ``size``.

    The thesis names the kinds of transformation, not their ranges; ours are the usual ones for
    clustering at these resolutions (crops keeping 60-100% of the area, +-20 degrees, +-10%
    shift and scale, colour jitter 0.4 and hue 0.1 on 80% of the images).
    """
    return ImageAugmentation(channels, size)


def per_image_augmentation(channels: int, size: tuple[int, int]):
    """T for one image (C, H, W) as torchvision transforms v2, for per-image work in DataLoader
    workers: a uint8 tensor or a PIL image in, a float tensor in [0, 1] out.

    Same transformations, ranges and probabilities as :func:`image_augmentation`; the
    implementations differ in detail (torchvision antialiases the resized crop, and draws the
    order of the jitters per image where kornia draws it per batch), so the two draw from near,
    not identical, distributions.
    """
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomResizedCrop(size, **CROP, antialias=True),
            v2.RandomApply([v2.RandomAffine(**AFFINE)], p=AFFINE_P),
            v2.RandomApply([v2.ColorJitter(**_jitter_ranges(channels))], p=JITTER_P),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


class FeatureResample(nn.Module):
    """Replace each feature, with probability ``rate``, by the same feature of a random other
    sample in the batch: a corruption that stays inside each feature's marginal distribution."""

    def __init__(self, rate: float = 0.2) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {rate}.")
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        replace = torch.rand(x.shape, device=x.device) < self.rate
        donors = torch.randint(0, x.shape[0], x.shape, device=x.device)
        return torch.where(replace, torch.gather(x, 0, donors), x)


class GaussianNoise(nn.Module):
    """Add N(0, std^2) noise to standardised features."""

    def __init__(self, std: float = 0.5) -> None:
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.std * torch.randn_like(x)


TABULAR_AUGMENTATIONS = ("auto", "resample", "noise", "none")
# Each augmentation's strength when none is given: resample's share of features, noise's std. For
# noise, 0.05 beat 0.1 on moons and blobs (NMM-EM, K given, 50 epochs, mean ACC of seeds 0-5: 0.91
# and 0.93 against 0.84 and 0.87) but lost on the uneven blobs of bench nmm-priors (0.66 against
# 0.88 without priors, 0.81 against 0.92 with them), so 0.1 stays (docs/RESULTS.md).
DEFAULT_STRENGTH = {"resample": 0.2, "noise": 0.1}
# "auto" resamples features from this many on and adds noise below. Resampling one of two features
# moves a point anywhere in the plane, and the consistency step then pulls its posterior towards a
# random place: NMM-EM (K given, 50 epochs, seed 0) reached ACC 0.73 / 0.76 / 0.69 on moons / rings /
# blobs with resampling, 1.00 / 0.51 / 0.86 with noise of std 0.1; from 4 features on resampling won
# (iris 0.92 against 0.78, wine 0.94 / 0.79, breast cancer 0.83 / 0.74, digits 0.88 / 0.71);
# scripts/vector_augmentation.py measures them.
RESAMPLE_MIN_FEATURES = 4


def tabular_augmentation(kind: str, strength: float | None, n_features: int | None = None) -> nn.Module | None:
    """Augmentation for standardised vector data: ``resample`` (rate = strength), ``noise`` (std =
    strength), ``none``, or ``auto``: resample for ``n_features`` of at least
    :data:`RESAMPLE_MIN_FEATURES`, noise below. ``strength=None``: :data:`DEFAULT_STRENGTH`."""
    if kind == "auto":
        if n_features is None:
            raise ValueError("augmentation='auto' picks by the number of features: pass n_features.")
        kind = "resample" if n_features >= RESAMPLE_MIN_FEATURES else "noise"
    if strength is None and kind in DEFAULT_STRENGTH:
        strength = DEFAULT_STRENGTH[kind]
    if kind == "resample":
        return FeatureResample(strength)
    if kind == "noise":
        return GaussianNoise(strength)
    if kind == "none":
        return None
    raise ValueError(f"augmentation must be one of {TABULAR_AUGMENTATIONS}, got {kind!r}.")
