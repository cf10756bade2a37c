"""The dataset registry: ``load_dataset("mnist", data_dir=...)`` -> :class:`LoadedDataset`.

``name`` may also be a user's own data: a ``.csv`` / ``.npy`` file (:mod:`routemix.data.tabular`)
or a folder of images (:mod:`routemix.data.folder`).

Image sets load through torchvision from a root directory in torchvision's own layout, resolved
as ``data_dir``, else ``$ROUTEMIX_DATA``, else a per-user cache directory; ``download=True`` lets
torchvision fetch them where there is internet. Images are kept whole in memory as uint8
(N, C, H, W) tensors: the largest set the thesis clusters (MNIST, 70,000 images) is 55 MB, and
batched augmentation then runs on the training device instead of per image in workers.
Clustering uses every labelled image the set has (train and test together, thesis sec. 4.5.2)
unless a split is asked for.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from routemix.errors import RoutemixError, unknown_name

SPLITS = ("all", "train", "test")


@dataclass
class LoadedDataset:
    """Samples and (optional) labels of one dataset.

    ``data`` is float32 (N, D) for tabular sets and uint8 (N, C, H, W) for image sets.
    For a folder of images, ``files`` holds each sample's path relative to the folder, POSIX
    style (``"sub/a.png"``), in sample order, and ``skipped`` the ``(relative path, reason)`` of
    every file that looked like an image but could not be read; other sets leave ``files`` None
    and ``skipped`` empty.
    """

    name: str
    kind: str  # "tabular" or "image"
    data: torch.Tensor
    labels: np.ndarray | None
    num_classes: int | None
    files: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str
    description: str
    num_classes: int | None
    loader: Callable[..., LoadedDataset]
    default_model: str | None = None
    expected_files: tuple[str, ...] = field(default_factory=tuple)


_REGISTRY: dict[str, DatasetSpec] = {}


def _register(spec: DatasetSpec) -> None:
    _REGISTRY[spec.name] = spec


def list_datasets() -> list[DatasetSpec]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = f"Known: {', '.join(sorted(_REGISTRY))}, a path to a .csv/.npy file, or a folder of images."
        raise unknown_name("dataset", name, _REGISTRY, known) from None


def default_data_root() -> Path:
    """``$ROUTEMIX_DATA`` if set, else the per-user cache directory."""
    env = os.environ.get("ROUTEMIX_DATA")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("routemix")) / "data"


def resolve_data_root(data_dir: str | os.PathLike | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_root()


def is_tabular_path(name: str) -> bool:
    return name.lower().endswith((".csv", ".npy"))


def is_image_folder(name: str | os.PathLike) -> bool:
    """True when ``name`` is an existing directory, loaded as a folder of the user's images.

    A registered name wins over a folder of the same name in the working directory (a data root
    often holds an ``mnist`` folder, and macOS matches ``MNIST`` to it too): write such a folder
    as a path, ``./mnist``.
    """
    return str(name) not in _REGISTRY and Path(name).expanduser().is_dir()


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    split: str = "all",
    label_column: str | int | None = None,
    n_samples: int | None = None,
    random_state: int | None = 0,
    image_size: int | None = None,
) -> LoadedDataset:
    """Load a registered dataset, a user's ``.csv`` / ``.npy`` file, or a folder of images.

    ``n_samples`` and ``random_state`` apply to the synthetic 2-D sets; ``label_column`` to files;
    ``image_size`` (resize the shorter side, then centre-crop to a square) to image folders only.
    """
    if split not in SPLITS:
        raise RoutemixError(f"split must be one of {SPLITS}, got {split!r}.")
    if is_image_folder(name):
        from routemix.data.folder import load_image_folder

        return load_image_folder(name, image_size=image_size)
    if image_size is not None:
        raise RoutemixError(f"--image-size applies to folders of images only, not to {name!r}; leave it out.")
    if is_tabular_path(name):
        from routemix.data.tabular import load_tabular_file

        return load_tabular_file(name, label_column=label_column)
    spec = get_dataset_spec(name)
    if spec.kind == "synthetic":
        return spec.loader(n_samples=n_samples, random_state=random_state)
    if spec.kind == "tabular":
        return spec.loader()
    root = resolve_data_root(data_dir)
    try:
        return spec.loader(root=root, download=download, split=split)
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted. ..."
        if "not found" not in str(error).lower() and "corrupted" not in str(error).lower():
            raise
        files = ", ".join(spec.expected_files)
        raise RoutemixError(
            f"dataset {name!r} not found under {root}: expected {files} there (torchvision's layout). "
            "Pass --data-dir or set ROUTEMIX_DATA to the folder that holds it, or add --download "
            "where there is internet."
        ) from None


# --- embedded and synthetic sets -------------------------------------------------------------


def _tabular(name: str, x: np.ndarray, y: np.ndarray | None) -> LoadedDataset:
    labels = None if y is None else np.asarray(y)
    num_classes = None if labels is None else int(len(np.unique(labels)))
    return LoadedDataset(name, "tabular", torch.as_tensor(np.asarray(x, dtype=np.float32)), labels, num_classes)


def _load_digits() -> LoadedDataset:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return _tabular("digits", x, y)


def _synthetic(name: str, make: Callable[[int, int | None], tuple[np.ndarray, np.ndarray]], default_n: int):
    def load(n_samples: int | None = None, random_state: int | None = 0) -> LoadedDataset:
        x, y = make(n_samples or default_n, random_state)
        return _tabular(name, x, y)

    return load


def _blobs(n: int, seed: int | None):
    from sklearn.datasets import make_blobs

    return make_blobs(n_samples=n, centers=10, cluster_std=1.0, center_box=(-15, 15), random_state=seed)


def _moons(n: int, seed: int | None):
    from sklearn.datasets import make_moons

    return make_moons(n_samples=n, noise=0.06, random_state=seed)


def _rings(n: int, seed: int | None):
    from sklearn.datasets import make_circles

    return make_circles(n_samples=n, noise=0.04, factor=0.5, random_state=seed)


_register(
    DatasetSpec(
        "digits", "tabular", "scikit-learn's bundled 8x8 digits (1797 x 64), embedded", 10, _load_digits, "cluster_mlp"
    )
)
_register(
    DatasetSpec(
        "blobs",
        "synthetic",
        "2-D Gaussian blobs, 10 centres (make_blobs)",
        10,
        _synthetic("blobs", _blobs, 5000),
        "cluster_mlp",
    )
)
_register(
    DatasetSpec("moons", "synthetic", "2-D two moons (make_moons)", 2, _synthetic("moons", _moons, 2000), "cluster_mlp")
)
_register(
    DatasetSpec(
        "rings", "synthetic", "2-D concentric rings (make_circles)", 2, _synthetic("rings", _rings, 2000), "cluster_mlp"
    )
)


# --- image sets through torchvision ----------------------------------------------------------


def _images(name: str, images, labels, num_classes: int) -> LoadedDataset:
    """Normalise torchvision's storage variants to uint8 (N, C, H, W) plus int labels."""
    data = torch.as_tensor(np.asarray(images))
    if data.dtype != torch.uint8:
        raise RoutemixError(f"dataset {name!r}: expected uint8 images, got {data.dtype}.")
    if data.dim() == 3:  # (N, H, W) grayscale
        data = data.unsqueeze(1)
    elif data.dim() == 4 and data.shape[-1] in (1, 3) and data.shape[1] not in (1, 3):  # (N, H, W, C)
        data = data.permute(0, 3, 1, 2)
    return LoadedDataset(name, "image", data.contiguous(), np.asarray(labels, dtype=np.int64), num_classes)


def _concat(name: str, parts: list[LoadedDataset], num_classes: int) -> LoadedDataset:
    return LoadedDataset(
        name,
        "image",
        torch.cat([p.data for p in parts]),
        np.concatenate([p.labels for p in parts]),
        num_classes,
    )


def _split_flags(split: str) -> list[bool]:
    return {"all": [True, False], "train": [True], "test": [False]}[split]


def _torchvision_loader(name: str, dataset_cls_name: str, num_classes: int):
    def load(root: Path, download: bool, split: str) -> LoadedDataset:
        from torchvision import datasets

        cls = getattr(datasets, dataset_cls_name)
        parts = []
        for train in _split_flags(split):
            ds = cls(root=str(root), train=train, download=download)
            parts.append(_images(name, ds.data, ds.targets, num_classes))
        return _concat(name, parts, num_classes)

    return load


def _load_stl10(root: Path, download: bool, split: str) -> LoadedDataset:
    """STL-10's 13,000 labelled images (5,000 train + 8,000 test); the 100k unlabelled are not used."""
    from torchvision import datasets

    parts = []
    for train in _split_flags(split):
        ds = datasets.STL10(root=str(root), split="train" if train else "test", download=download)
        parts.append(_images("stl10", ds.data, ds.labels, 10))
    return _concat("stl10", parts, 10)


def _load_cifar100_20(root: Path, download: bool, split: str) -> LoadedDataset:
    """CIFAR-100 labelled by its 20 superclasses (thesis sec. 4.5.2).

    torchvision keeps only the fine labels, so the coarse ones are read from the same verified
    batch files (``coarse_labels`` in each pickle).
    """
    from torchvision import datasets

    parts = []
    for train in _split_flags(split):
        ds = datasets.CIFAR100(root=str(root), train=train, download=download)
        batch_file = Path(ds.root) / ds.base_folder / (ds.train_list if train else ds.test_list)[0][0]
        with open(batch_file, "rb") as f:
            coarse = pickle.load(f, encoding="latin1")["coarse_labels"]
        parts.append(_images("cifar100_20", ds.data, coarse, 20))
    return _concat("cifar100_20", parts, 20)


_MNIST_FILES = (
    "raw/train-images-idx3-ubyte",
    "raw/train-labels-idx1-ubyte",
    "raw/t10k-images-idx3-ubyte",
    "raw/t10k-labels-idx1-ubyte",
)
_CIFAR100_FILES = ("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta")
_CIFAR10_FILES = tuple(
    f"cifar-10-batches-py/{f}" for f in ("data_batch_1", "...", "data_batch_5", "test_batch", "batches.meta")
)

_register(
    DatasetSpec(
        "mnist",
        "image",
        "MNIST, 70,000 28x28 digits",
        10,
        _torchvision_loader("mnist", "MNIST", 10),
        "clusternet_mnist",
        tuple(f"MNIST/{f}" for f in _MNIST_FILES),
    )
)
_register(
    DatasetSpec(
        "fashion_mnist",
        "image",
        "Fashion-MNIST, 70,000 28x28 clothing images",
        10,
        _torchvision_loader("fashion_mnist", "FashionMNIST", 10),
        "clusternet_mnist",
        tuple(f"FashionMNIST/{f}" for f in _MNIST_FILES),
    )
)
_register(
    DatasetSpec(
        "usps",
        "image",
        "USPS, 9,298 16x16 digits",
        10,
        _torchvision_loader("usps", "USPS", 10),
        None,
        ("usps.bz2", "usps.t.bz2"),
    )
)
_register(
    DatasetSpec(
        "cifar10",
        "image",
        "CIFAR-10, 60,000 32x32 colour images",
        10,
        _torchvision_loader("cifar10", "CIFAR10", 10),
        "clusternet_cifar",
        _CIFAR10_FILES,
    )
)
_register(
    DatasetSpec(
        "cifar100",
        "image",
        "CIFAR-100 in its 100 fine classes, 60,000 32x32 images",
        100,
        _torchvision_loader("cifar100", "CIFAR100", 100),
        "clusternet_cifar",
        _CIFAR100_FILES,
    )
)
_register(
    DatasetSpec(
        "cifar100_20",
        "image",
        "CIFAR-100 in its 20 superclasses, 60,000 32x32 images",
        20,
        _load_cifar100_20,
        "clusternet_cifar",
        _CIFAR100_FILES,
    )
)
_register(
    DatasetSpec(
        "stl10",
        "image",
        "STL-10 labelled set, 13,000 96x96 colour images",
        10,
        _load_stl10,
        "clusternet_stl10",
        ("stl10_binary/train_X.bin", "stl10_binary/train_y.bin", "stl10_binary/test_X.bin", "stl10_binary/test_y.bin"),
    )
)
