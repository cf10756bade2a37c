"""Image classification data for supervised training (thesis sec. 3.4): splits, augmentation, loaders.

============== ======== ========================================= ===================================
name           classes  storage                                   augmentation (training only)
============== ======== ========================================= ===================================
mnist          10       in memory, uint8, 28x28 zero-padded to    random shift up to 4 px + flip
fashion_mnist  10       32x32 (the thesis' CIFAR stand-in here)   (the CIFAR recipe)
cifar10        10       in memory, uint8 3x32x32                  random shift up to 4 px + flip
cifar100       100      in memory, uint8 3x32x32 (fine labels)    random shift up to 4 px + flip
imagenet       folders  streamed from an ImageFolder root with    resize 256, random 224 crop, flip
                        ``train/`` and ``val/`` by DataLoader
                        workers; ``classes=N`` keeps the first N
============== ======== ========================================= ===================================

Where each step runs, and why:

* In-memory sets (MNIST-sized to CIFAR-sized, at most 150 MB as uint8) hand uint8 batches to the
  training device, which pads, crops, flips and normalises the whole batch at once
  (:func:`random_shift_flip`, :meth:`ClassificationDataModule.prepare`): no per-image Python work,
  and no worker processes to start.
* ImageNet is decoded and cropped per image in workers (that is where JPEG decoding must happen
  anyway) and still crosses to the device as uint8, four times fewer bytes than float; the device
  converts and normalises.

Randomness depends only on the seed and on *where* training is, never on how far a random
generator has run: the shuffle order on ``(seed, epoch)`` (:mod:`routemix.data.loaders`), the
in-memory augmentation on ``(seed, global step)`` and each ImageNet crop on ``(seed, epoch, image)``.
So a run resumed from a checkpoint, even one written in the middle of an epoch, draws exactly what
the uninterrupted run would have drawn, and the ImageNet crops do not depend on the number of workers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from routemix.data.loaders import EpochLoader, EpochShuffle, derived_seed, tensor_loader
from routemix.errors import RoutemixError, unknown_name


@dataclass(frozen=True)
class ClassificationSpec:
    """What training needs to know about a dataset before loading it."""

    name: str
    description: str
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int | None  # None: counted from the class folders
    streamed: bool = False  # ImageFolder on disk, rather than uint8 tensors in memory


# Per-channel statistics of the training images in [0, 1]. MNIST-like sets use those of the 28x28
# images; the zero padding then normalises to the same value as their black background.
_CLASSIFICATION_SETS = {
    spec.name: spec
    for spec in (
        ClassificationSpec("mnist", "MNIST digits, padded to 1x32x32", 1, (0.1307,), (0.3081,), 10),
        ClassificationSpec("fashion_mnist", "Fashion-MNIST, padded to 1x32x32", 1, (0.2860,), (0.3530,), 10),
        ClassificationSpec("cifar10", "CIFAR-10, 3x32x32", 3, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 10),
        ClassificationSpec(
            "cifar100",
            "CIFAR-100 (100 fine classes), 3x32x32",
            3,
            (0.5071, 0.4865, 0.4409),
            (0.2673, 0.2564, 0.2762),
            100,
        ),
        ClassificationSpec(
            "imagenet",
            "ImageFolder root with train/ and val/ (ILSVRC 2012 or a subset)",
            3,
            (0.485, 0.456, 0.406),
            (0.229, 0.224, 0.225),
            None,
            streamed=True,
        ),
    )
}

IMAGENET_LAYOUT = (
    "ROOT/train/<class>/<image> and ROOT/val/<class>/<image> (torchvision ImageFolder layout, one folder per class)"
)


def classification_datasets() -> list[str]:
    """Names ``routemix train`` and ``routemix eval`` accept."""
    return sorted(_CLASSIFICATION_SETS)


def get_classification_spec(name: str) -> ClassificationSpec:
    try:
        return _CLASSIFICATION_SETS[name]
    except KeyError:
        raise unknown_name(
            "dataset", name, _CLASSIFICATION_SETS, f"Classification datasets: {', '.join(classification_datasets())}."
        ) from None


# --- in-memory sets ----------------------------------------------------------------------------


def load_split(
    name: str, split: str, *, data_dir: str | os.PathLike | None = None, download: bool = False
) -> tuple[Tensor, Tensor]:
    """uint8 images (N, C, 32, 32) and int64 labels of the ``train`` or ``test`` split of an
    in-memory set; 28x28 MNIST-like images are zero-padded by 2 pixels on every side."""
    from routemix.data.registry import load_dataset

    spec = get_classification_spec(name)
    if spec.streamed:
        raise RoutemixError(f"{name} is streamed from folders, not loaded into memory.")
    loaded = load_dataset(name, split=split, data_dir=data_dir, download=download)
    images = loaded.data
    if images.shape[-2:] == (28, 28):
        images = F.pad(images, (2, 2, 2, 2))
    return images.contiguous(), torch.as_tensor(loaded.labels, dtype=torch.long)


def random_shift_flip(images: Tensor, *, max_shift: int = 4, generator: torch.Generator | None = None) -> Tensor:
    """The CIFAR augmentation of sec. 3.4.1 on a batch, drawn per image: a random horizontal flip
    and a shift of up to ``max_shift`` pixels in both directions, i.e. zero-pad by ``max_shift``
    and crop the original size at a random offset. One gather, no loop over images."""
    b, _, h, w = images.shape
    device = images.device
    padded = F.pad(images, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (b, 1), device=device, generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (b, 1), device=device, generator=generator)
    flip = torch.rand(b, 1, device=device, generator=generator) < 0.5
    rows = dy + torch.arange(h, device=device)  # (B, H) rows of the crop in the padded image
    cols = dx + torch.arange(w, device=device)  # (B, W)
    cols = torch.where(flip, cols.flip(1), cols)  # a flipped crop reads its columns backwards
    batch = torch.arange(b, device=device)[:, None, None]
    # Advanced indices around a slice put their broadcast shape first: (B, H, W, C).
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


# --- ImageNet-style folders --------------------------------------------------------------------


def imagenet_root(data_dir: str | os.PathLike | None) -> Path:
    """The ImageFolder root: ``data_dir`` itself when it holds ``train/``, else ``data_dir/imagenet``."""
    from routemix.data.registry import resolve_data_root

    root = resolve_data_root(data_dir)
    if not (root / "train").is_dir() and (root / "imagenet" / "train").is_dir():
        return root / "imagenet"
    return root


def _stack_crops(crops) -> Tensor:
    return torch.stack(list(crops))


def imagenet_transform(train: bool, *, image_size: int = 224, ten_crop: bool = False):
    """Per-image transforms giving uint8 tensors (sec. 3.4.3).

    Training: resize (shorter side 256 for 224 crops), a random ``image_size`` crop and a random
    horizontal flip; no RandomResizedCrop and no colour jitter, as the thesis states. Evaluation:
    the same resize, then the centre crop, or with ``ten_crop`` torchvision's ten crops (corners,
    centre and their mirror images) stacked to (10, C, H, W). "Rescaling to 256" is read as the
    shorter side (aspect kept), the convention of the reference ResNet numbers.
    """
    from torchvision.transforms import v2

    resize = round(image_size * 256 / 224)
    if train:
        steps = [v2.Resize(resize), v2.RandomCrop(image_size), v2.RandomHorizontalFlip(), v2.PILToTensor()]
    elif ten_crop:
        steps = [v2.Resize(resize), v2.PILToTensor(), v2.TenCrop(image_size), _stack_crops]
    else:
        steps = [v2.Resize(resize), v2.CenterCrop(image_size), v2.PILToTensor()]
    return v2.Compose(steps)


class ImageFolderSplit(Dataset):
    """One split of an ImageFolder root, possibly restricted to the first classes and a subset.

    ``dataset[i]`` or ``dataset[(i, seed)]`` -> (uint8 image, label); with a seed the random
    transform draws from ``torch.manual_seed(seed)`` inside a forked generator, so crops depend on
    (seed, epoch, image) only (see :class:`EpochShuffle`).
    """

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], transform) -> None:
        self.samples, self.classes, self.transform = samples, classes, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        path, label = self.samples[index]
        image = _read_image(path)
        if seed is None:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(image), label


def _read_image(path: str):
    from PIL import Image

    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, ValueError) as error:
        raise RoutemixError(f"cannot read image {path} ({type(error).__name__}: {error}).") from None


def scan_image_folder(root: Path, split: str, *, classes: int | None = None) -> tuple[list[tuple[str, int]], list[str]]:
    """Samples (path, label) and class names of ``root/split``, keeping the first ``classes``
    classes in sorted folder order (for ILSVRC 2012 the order of its WordNet ids, which is how the
    thesis' 100-class subset is taken). A missing, empty or unreadable folder is a RoutemixError."""
    from torchvision.datasets import ImageFolder

    folder = root / split
    if not folder.is_dir():
        raise RoutemixError(
            f"no image folder at {folder}: the imagenet dataset expects {IMAGENET_LAYOUT}, "
            "with ROOT given by --data-dir."
        )
    try:
        dataset = ImageFolder(str(folder), allow_empty=False)
    except (FileNotFoundError, PermissionError, OSError) as error:
        raise RoutemixError(
            f"cannot read the image folder {folder} ({str(error).splitlines()[0]}): expected {IMAGENET_LAYOUT}."
        ) from None
    names = list(dataset.classes)
    if classes is not None:
        if classes > len(names):
            raise RoutemixError(f"--classes {classes}: {folder} has only {len(names)} class folders.")
        names = names[:classes]
    samples = [(path, label) for path, label in dataset.samples if label < len(names)]
    if not samples:
        raise RoutemixError(f"{folder} holds no images of the first {len(names)} classes: expected {IMAGENET_LAYOUT}.")
    _read_image(samples[0][0])  # an unreadable set fails here, not inside a worker
    return samples, names


# --- the data module ---------------------------------------------------------------------------


class ClassificationDataModule(L.LightningDataModule):
    """Train and test splits of a classification dataset (see the module docstring).

    The test split doubles as Lightning's validation set: the thesis reports test error, and
    validation here only records learning curves, it selects nothing. ``limit`` / ``limit_test``
    keep the first N images of a split (for ImageFolders N images evenly spread over the sorted
    list, which is ordered by class). Batches reach the model through :meth:`prepare`, which
    Lightning calls on the device (``on_after_batch_transfer``).
    """

    def __init__(
        self,
        dataset: str | ClassificationSpec,
        *,
        data_dir: str | os.PathLike | None = None,
        download: bool = False,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        limit: int | None = None,
        limit_test: int | None = None,
        classes: int | None = None,
        image_size: int = 224,
        ten_crop: bool = False,
        num_workers: int | None = None,
        seed: int = 0,
        augment: bool = True,
    ) -> None:
        super().__init__()
        self.spec = dataset if isinstance(dataset, ClassificationSpec) else get_classification_spec(dataset)
        dataset = self.spec.name
        if classes is not None and not self.spec.streamed:
            raise RoutemixError(
                f"--classes keeps the first N classes of an ImageFolder (imagenet); "
                f"{dataset} always has all {self.spec.num_classes}."
            )
        if ten_crop and not self.spec.streamed:
            raise RoutemixError(f"--ten-crop is the ImageNet evaluation; {dataset} images are evaluated whole.")
        for option, value in (
            ("batch_size", batch_size),
            ("limit", limit),
            ("limit_test", limit_test),
            ("image_size", image_size),
        ):
            if value is not None and value < 1:
                raise RoutemixError(f"{option} must be at least 1, got {value}.")
        if classes is not None and classes < 2:
            raise RoutemixError(f"--classes must be at least 2, got {classes}.")
        self.data_dir, self.download = data_dir, download
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.limit, self.limit_test, self.classes = limit, limit_test, classes
        self.image_size, self.ten_crop, self.seed, self.augment = image_size, ten_crop, seed, augment
        self.num_workers = (
            num_workers if num_workers is not None else (min(8, os.cpu_count() or 1) if self.spec.streamed else 0)
        )
        self.train_data = None  # (images, labels) tensors, or an ImageFolderSplit
        self.test_data = None
        self._class_names: list[str] | None = None

    @classmethod
    def from_tensors(
        cls,
        train: tuple[Tensor, Tensor],
        test: tuple[Tensor, Tensor],
        *,
        num_classes: int,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        name: str = "tensors",
        **kwargs,
    ) -> "ClassificationDataModule":
        """In-memory uint8 (N, C, H, W) images with labels, e.g. a user's own set or test data."""
        channels = train[0].shape[1]
        spec = ClassificationSpec(
            name, "user tensors", channels, mean or (0.5,) * channels, std or (0.25,) * channels, num_classes
        )
        module = cls(spec, **kwargs)
        module.train_data = (train[0], torch.as_tensor(train[1], dtype=torch.long))
        module.test_data = (test[0], torch.as_tensor(test[1], dtype=torch.long))
        return module

    # -- what the model must be built for --

    @property
    def dataset_name(self) -> str:
        return self.spec.name

    @property
    def in_channels(self) -> int:
        return self.spec.channels

    @property
    def input_size(self) -> int:
        if self.spec.streamed:
            return self.image_size
        data = self.train_data if self.train_data is not None else self.test_data
        return int(data[0].shape[-1]) if data is not None else 32

    @property
    def num_classes(self) -> int:
        if self.spec.num_classes is not None:
            return self.spec.num_classes
        if self._class_names is None:
            raise RuntimeError("call setup() first: the number of classes is counted from the folders.")
        return len(self._class_names)

    # -- loading --

    def setup(self, stage: str | None = None) -> None:
        """Load (or scan) the splits ``stage`` needs: both for ``fit``, the test split otherwise.
        Calling it again is free."""
        if stage in ("fit", None) and self.train_data is None:
            self.train_data = self._load("train")
        if self.test_data is None:
            self.test_data = self._load("test")

    def _load(self, split: str):
        if not self.spec.streamed:
            images, labels = load_split(self.dataset_name, split, data_dir=self.data_dir, download=self.download)
            limit = self.limit if split == "train" else self.limit_test
            if limit is not None:
                images, labels = images[:limit], labels[:limit]
            return images, labels
        root = imagenet_root(self.data_dir)
        samples, names = scan_image_folder(root, "train" if split == "train" else "val", classes=self.classes)
        if self._class_names is None:
            self._class_names = names
        elif names != self._class_names:
            raise RoutemixError(
                f"{root}/train and {root}/val hold different class folders: "
                f"both need the same classes ({IMAGENET_LAYOUT})."
            )
        limit = self.limit if split == "train" else self.limit_test
        if limit is not None and limit < len(samples):
            keep = np.linspace(0, len(samples) - 1, limit).round().astype(int)
            samples = [samples[i] for i in keep]
        return samples

    # -- loaders --

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        if not self.spec.streamed:
            images, labels = self.train_data
            return tensor_loader(images, labels, batch_size=self.batch_size, shuffle=True, seed=self.seed)
        dataset = ImageFolderSplit(
            self.train_data, self._class_names, imagenet_transform(True, image_size=self.image_size)
        )
        sampler = EpochShuffle(len(dataset), self.seed, item_seeds=True)
        return self._stream(dataset, sampler, self.batch_size, drop_last=len(dataset) > self.batch_size)

    def eval_dataloader(self, ten_crop: bool = False) -> DataLoader:
        """The test split, in order; ``ten_crop`` batches are (B, 10, C, H, W)."""
        self.setup("test")
        if ten_crop and not self.spec.streamed:
            raise RoutemixError(
                f"--ten-crop is the ImageNet evaluation; {self.dataset_name} images are evaluated whole."
            )
        if not self.spec.streamed:
            images, labels = self.test_data
            return tensor_loader(images, labels, batch_size=self.eval_batch_size, shuffle=False, seed=self.seed)
        dataset = ImageFolderSplit(
            self.test_data, self._class_names, imagenet_transform(False, image_size=self.image_size, ten_crop=ten_crop)
        )
        batch_size = max(self.eval_batch_size // 10, 1) if ten_crop else self.eval_batch_size
        return self._stream(dataset, EpochShuffle(len(dataset), shuffle=False), batch_size, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader(ten_crop=False)

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader(ten_crop=self.ten_crop)

    def _stream(self, dataset: Dataset, sampler: Sampler, batch_size: int, *, drop_last: bool) -> DataLoader:
        return EpochLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    # -- on the device --

    def prepare(self, images: Tensor, *, train: bool, step: int = 0) -> Tensor:
        """uint8 batch on the device -> normalised float batch; training batches of in-memory sets
        are augmented first (:func:`random_shift_flip`, drawn from ``(seed, step)``)."""
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        if train and self.augment and not self.spec.streamed:
            generator = torch.Generator(device=x.device).manual_seed(derived_seed(self.seed, step))
            x = random_shift_flip(x, max_shift=4, generator=generator)
        mean = torch.tensor(self.spec.mean, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.spec.std, device=x.device).view(-1, 1, 1)
        return (x - mean) / std

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        trainer = self.trainer
        training = trainer is not None and trainer.training
        return self.prepare(images, train=training, step=trainer.global_step if training else 0), labels
