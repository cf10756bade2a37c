import pickle

import numpy as np
import pytest
import torch

from routemix.data import load_dataset
from routemix.data.registry import _images, _load_cifar100_20
from routemix.data.tabular import load_tabular_file
from routemix.data.transforms import FeatureResample, SobelInput, image_augmentation
from routemix.errors import RoutemixError


def test_digits_is_embedded():
    ds = load_dataset("digits")
    assert ds.data.shape == (1797, 64) and ds.data.dtype == torch.float32
    assert ds.num_classes == 10 and len(ds.labels) == 1797


@pytest.mark.parametrize("name, classes", [("blobs", 10), ("moons", 2), ("rings", 2)])
def test_synthetic_2d_sets(name, classes):
    ds = load_dataset(name, n_samples=300, random_state=1)
    assert ds.data.shape == (300, 2)
    assert len(np.unique(ds.labels)) == classes


def test_mnist_from_shared_root(shared_data):
    ds = load_dataset("mnist", data_dir=shared_data)
    assert ds.data.shape == (70000, 1, 28, 28) and ds.data.dtype == torch.uint8
    assert np.bincount(ds.labels[60000:]).tolist()[:3] == [980, 1135, 1032]  # test-split counts (shared/data README)
    test = load_dataset("fashion_mnist", data_dir=shared_data, split="test")
    assert len(test) == 10000 and np.all(np.bincount(test.labels) == 1000)


def test_data_root_from_environment(shared_data, monkeypatch):
    monkeypatch.setenv("ROUTEMIX_DATA", str(shared_data))
    assert len(load_dataset("mnist", split="test")) == 10000


def test_missing_dataset_names_folder_and_files(tmp_path):
    with pytest.raises(RoutemixError) as error:
        load_dataset("cifar10", data_dir=tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message and "cifar-10-batches-py/data_batch_1" in message and "--download" in message


def test_unknown_dataset_suggests_names():
    with pytest.raises(RoutemixError, match="Did you mean mnist"):
        load_dataset("mnsit")


def test_image_storage_variants_normalise_to_nchw():
    hwc = np.zeros((4, 32, 32, 3), dtype=np.uint8)  # CIFAR layout
    chw = np.zeros((4, 3, 96, 96), dtype=np.uint8)  # STL-10 layout
    gray = torch.zeros(4, 28, 28, dtype=torch.uint8)  # MNIST layout
    assert _images("c", hwc, [0] * 4, 10).data.shape == (4, 3, 32, 32)
    assert _images("s", chw, [0] * 4, 10).data.shape == (4, 3, 96, 96)
    assert _images("m", gray, [0] * 4, 10).data.shape == (4, 1, 28, 28)


def test_cifar100_superclasses_come_from_the_batch_files(tmp_path, monkeypatch):
    """The real loader on synthetic files of CIFAR-100's layout (integrity check bypassed)."""
    from torchvision.datasets import CIFAR100, cifar

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 4)):
        entry = {
            "data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
            "fine_labels": list(range(n)),
            "coarse_labels": [19 - i for i in range(n)],
        }
        (folder / split).write_bytes(pickle.dumps(entry))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}))
    monkeypatch.setattr(CIFAR100, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: True)
    ds = _load_cifar100_20(tmp_path, download=False, split="all")
    assert ds.data.shape == (10, 3, 32, 32) and ds.num_classes == 20
    assert ds.labels.tolist() == [19, 18, 17, 16, 15, 14, 19, 18, 17, 16]


def test_sobel_input_is_two_edge_planes():
    image = torch.zeros(1, 1, 8, 8)
    image[..., :, 4:] = 1.0  # a vertical edge: horizontal gradient only
    edges = SobelInput()(image)
    assert edges.shape == (1, 2, 8, 8)
    assert edges[0, 0].abs().sum() > 0 and edges[0, 1].abs().sum() == 0
    rgb = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    assert SobelInput()(rgb).shape == (2, 2, 32, 32)


def test_augmentation_is_drawn_per_image():
    torch.manual_seed(0)
    batch = torch.rand(1, 3, 32, 32).repeat(8, 1, 1, 1)
    out = image_augmentation(3, (32, 32))(batch)
    assert out.shape == batch.shape
    assert not torch.allclose(out[0], out[1])  # same image, different random transforms


def test_feature_resample_keeps_marginals():
    torch.manual_seed(0)
    x = torch.arange(40.0).reshape(10, 4)
    out = FeatureResample(0.5)(x)
    for column in range(4):
        assert set(out[:, column].tolist()) <= set(x[:, column].tolist())
    assert not torch.equal(out, x)


def test_csv_with_header_and_label_column(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("x,y,kind\n0,1,a\n2,3,b\n4,5,a\n")
    ds = load_tabular_file(path, label_column="kind")
    assert ds.data.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert ds.labels.tolist() == ["a", "b", "a"] and ds.num_classes == 2


def test_csv_non_numeric_column_names_it(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("x,colour\n0,red\n1,blue\n")
    with pytest.raises(RoutemixError, match="column 'colour' holds 'red'"):
        load_tabular_file(path)


def test_npy_file_and_wrong_dimensions(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.arange(12.0).reshape(4, 3))
    ds = load_tabular_file(good, label_column=2)
    assert ds.data.shape == (4, 2) and ds.labels.tolist() == [2.0, 5.0, 8.0, 11.0]
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 2, 2)))
    with pytest.raises(RoutemixError, match="expected 2-D"):
        load_tabular_file(bad)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(RoutemixError, match="empty"):
        load_tabular_file(empty)
    with pytest.raises(RoutemixError, match="no file"):
        load_tabular_file(tmp_path / "nope.csv")
