"""A folder of the user's own images as a dataset (routemix.data.folder)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from routemix.data import load_dataset
from routemix.data.folder import load_image_folder
from routemix.errors import RoutemixError


def _digit(index: int, size: int = 16) -> np.ndarray:
    """scikit-learn digit ``index`` as uint8 0..255, enlarged from 8x8 to ``size`` by repetition."""
    image = load_digits().images[index]  # 8x8, values 0..16
    image = np.rint(image * 255 / 16).astype(np.uint8)
    return np.kron(image, np.ones((size // 8, size // 8), dtype=np.uint8))


def _save(folder: Path, relative: str, array: np.ndarray, **kwargs) -> np.ndarray:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return array


def _colour(size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def test_nested_grey_folder_loads_in_sorted_order(tmp_path):
    written = {
        "z.png": _save(tmp_path, "z.png", _digit(0)),
        "a/x.png": _save(tmp_path, "a/x.png", _digit(1)),
        "a/b/y.png": _save(tmp_path, "a/b/y.png", _digit(2)),
        "m.PNG": _save(tmp_path, "m.PNG", _digit(3)),
    }
    dataset = load_image_folder(tmp_path)
    assert dataset.files == ["a/b/y.png", "a/x.png", "m.PNG", "z.png"]
    assert dataset.data.shape == (4, 1, 16, 16)
    assert dataset.data.dtype == torch.uint8 and dataset.data.is_contiguous()
    assert dataset.kind == "image" and dataset.labels is None and dataset.num_classes is None
    assert dataset.name == tmp_path.name and dataset.skipped == [] and len(dataset) == 4
    for index, relative in enumerate(dataset.files):
        np.testing.assert_array_equal(dataset.data[index, 0].numpy(), written[relative])


def test_mixed_sizes_need_an_image_size(tmp_path):
    _save(tmp_path, "a.png", _digit(0, 16))
    _save(tmp_path, "b.png", _digit(1, 24))
    _save(tmp_path, "c.png", _digit(2, 32))
    with pytest.raises(
        RoutemixError, match=r"3 different sizes \(e.g. a.png is 16x16, b.png is 24x24\).*--image-size S"
    ):
        load_image_folder(tmp_path)
    dataset = load_image_folder(tmp_path, image_size=16)
    assert dataset.data.shape == (3, 1, 16, 16)
    np.testing.assert_array_equal(dataset.data[0, 0].numpy(), _digit(0, 16))  # already 16x16: untouched


def test_one_non_square_or_small_size_is_refused(tmp_path):
    wide = tmp_path / "wide"
    _save(wide, "a.png", np.zeros((16, 32), dtype=np.uint8))
    with pytest.raises(RoutemixError, match="are 32x16 .*not square"):
        load_image_folder(wide)
    small = tmp_path / "small"
    _save(small, "a.png", np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(RoutemixError, match="smaller than the 16x16.*--image-size 16"):
        load_image_folder(small)
    assert load_image_folder(small, image_size=16).data.shape == (1, 1, 16, 16)


def test_image_size_crops_the_centre(tmp_path):
    wide = np.zeros((16, 48), dtype=np.uint8)  # left third 0, middle third 200, right third 50
    wide[:, 16:32], wide[:, 32:] = 200, 50
    tall = np.zeros((64, 32), dtype=np.uint8)  # top and bottom quarter 0, middle half 150
    tall[16:48] = 150
    _save(tmp_path, "wide.png", wide)
    _save(tmp_path, "tall.png", tall)
    dataset = load_image_folder(tmp_path, image_size=16)
    assert dataset.files == ["tall.png", "wide.png"]
    assert dataset.data.shape == (2, 1, 16, 16)
    assert (dataset.data[1] == 200).all()  # shorter side already 16: only the middle third is kept
    tall_out = dataset.data[0, 0].numpy().astype(int)  # halved to 32x16, then rows 8..24 kept
    assert np.abs(tall_out[1:-1] - 150).max() <= 1
    assert tall_out[0].mean() > 100 and tall_out[-1].mean() > 100  # edges at most lightly blended


def test_shrinking_is_antialiased(tmp_path):
    checkers = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)  # 1-pixel checkerboard
    _save(tmp_path, "checkers.png", checkers)
    shrunk = load_image_folder(tmp_path, image_size=16).data[0, 0].numpy().astype(int)
    assert np.abs(shrunk - 128).max() <= 4  # averaged to grey, not sampled to black and white


def test_grey_and_colour_give_three_channels(tmp_path):
    grey = _save(tmp_path, "grey.png", _digit(4))
    colour = _save(tmp_path, "colour.png", _colour())
    dataset = load_image_folder(tmp_path)
    assert dataset.files == ["colour.png", "grey.png"]
    assert dataset.data.shape == (2, 3, 16, 16)
    np.testing.assert_array_equal(dataset.data[0].permute(1, 2, 0).numpy(), colour)
    for channel in range(3):
        np.testing.assert_array_equal(dataset.data[1, channel].numpy(), grey)


def test_alpha_and_palette_become_rgb(tmp_path):
    rgba = np.dstack([_colour(seed=1), np.full((16, 16), 7, dtype=np.uint8)])
    _save(tmp_path, "a.png", rgba)
    _save(tmp_path, "b.gif", _colour(seed=2))  # saved as a palette image
    dataset = load_image_folder(tmp_path)
    assert dataset.data.shape == (2, 3, 16, 16)
    np.testing.assert_array_equal(dataset.data[0].permute(1, 2, 0).numpy(), rgba[..., :3])


def test_sixteen_bit_grey_is_scaled_by_its_maximum(tmp_path):
    wide = np.zeros((16, 16), dtype=np.uint16)
    wide[:8], wide[8:] = 500, 1000
    Image.fromarray(wide).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    dataset = load_image_folder(tmp_path)
    assert dataset.data.shape == (1, 1, 16, 16)
    assert (dataset.data[0, 0, :8] == 128).all() and (dataset.data[0, 0, 8:] == 255).all()


def test_animated_gif_uses_its_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((16, 16), value, dtype=np.uint8)) for value in (40, 220)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert Image.open(tmp_path / "anim.gif").n_frames == 2
    dataset = load_image_folder(tmp_path)
    assert int(dataset.data.float().mean().round()) == 40


def test_unreadable_files_are_skipped_and_reported(tmp_path):
    good = _save(tmp_path, "good.png", _digit(5))
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "fake.jpg").write_text("not really a picture\n")
    (tmp_path / "notes.txt").write_text("ignored\n")
    _save(tmp_path, "a/cut.png", _digit(6))
    whole = (tmp_path / "a/cut.png").read_bytes()
    (tmp_path / "a/cut.png").write_bytes(whole[: len(whole) // 2])  # header fine, pixels missing
    dataset = load_image_folder(tmp_path)
    assert dataset.files == ["good.png"]
    np.testing.assert_array_equal(dataset.data[0, 0].numpy(), good)
    reasons = dict(dataset.skipped)
    assert [name for name, _ in dataset.skipped] == ["a/cut.png", "empty.png", "fake.jpg"]  # sorted
    assert reasons["empty.png"] == "empty file"
    assert reasons["fake.jpg"] == "not an image Pillow can read"
    assert "truncated" in reasons["a/cut.png"] and str(tmp_path) not in reasons["a/cut.png"]


def test_hidden_files_and_folders_are_ignored(tmp_path):
    folder = tmp_path / ".cache" / "pictures"  # a hidden folder above the dataset is fine
    _save(folder, "seen.png", _digit(7))
    _save(folder, ".hidden.png", _digit(8, 24))
    _save(folder, ".thumbs/t.png", _digit(9, 32))
    dataset = load_image_folder(folder)
    assert dataset.files == ["seen.png"] and dataset.data.shape == (1, 1, 16, 16)


def test_jpeg_loads(tmp_path):
    smooth = np.zeros((32, 32, 3), dtype=np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 32, dtype=np.uint8)[None, :]
    smooth[..., 1] = 128
    smooth[..., 2] = np.linspace(255, 0, 32, dtype=np.uint8)[:, None]
    _save(tmp_path, "photo.JPEG", smooth, quality=95)
    _save(tmp_path, "grey.jpg", _digit(0, 32), quality=95)
    dataset = load_image_folder(tmp_path)
    assert dataset.files == ["grey.jpg", "photo.JPEG"]
    assert dataset.data.shape == (2, 3, 32, 32)
    photo = dataset.data[1].permute(1, 2, 0).numpy().astype(int)
    assert np.abs(photo - smooth).mean() < 4
    assert torch.equal(dataset.data[0, 0], dataset.data[0, 2])  # greyscale JPEG repeated to RGB

    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "grey.jpg").write_bytes((tmp_path / "grey.jpg").read_bytes())
    assert load_image_folder(alone).data.shape == (1, 1, 32, 32)  # greyscale JPEG alone: one channel


def test_folder_errors_say_what_to_do(tmp_path):
    with pytest.raises(RoutemixError, match=r"no image files in .*\.png .*\.webp"):
        load_image_folder(tmp_path)
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.jpg").write_text("text")
    with pytest.raises(RoutemixError, match=r"none of the 2 image files .*a.png \(empty file\); b.jpg \(not an image"):
        load_image_folder(tmp_path)
    with pytest.raises(RoutemixError, match="is not a folder"):
        load_image_folder(tmp_path / "a.png")
    with pytest.raises(RoutemixError, match="is not a folder"):
        load_image_folder(tmp_path / "missing")


@pytest.mark.parametrize("size", [8, 15, 0, -16, 16.0, True])
def test_bad_image_size_is_refused(tmp_path, size):
    _save(tmp_path, "a.png", _digit(0))
    with pytest.raises(RoutemixError, match="at least 16.*16x16"):
        load_image_folder(tmp_path, image_size=size)


def test_progress_bar_on_stderr(tmp_path, capsys):
    _save(tmp_path, "a.png", _digit(0))
    load_image_folder(tmp_path, progress=True)
    assert "reading images" in capsys.readouterr().err
    load_image_folder(tmp_path)
    assert capsys.readouterr().err == ""


def test_load_dataset_takes_a_folder(tmp_path):
    _save(tmp_path, "a.png", _digit(0, 24))
    _save(tmp_path, "b.png", _digit(1, 16))
    dataset = load_dataset(str(tmp_path), image_size=16)
    assert dataset.files == ["a.png", "b.png"] and dataset.data.shape == (2, 1, 16, 16)
    with pytest.raises(RoutemixError, match="different sizes"):
        load_dataset(str(tmp_path))
    with pytest.raises(RoutemixError, match="folders of images only"):
        load_dataset("digits", image_size=16)
    with pytest.raises(RoutemixError, match="or a folder of images"):
        load_dataset("no_such_dataset_here")


def test_registered_name_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    _save(tmp_path / "digits", "a.png", _digit(0))
    monkeypatch.chdir(tmp_path)
    assert load_dataset("digits").kind == "tabular"
    assert load_dataset("./digits").files == ["a.png"]


def test_other_datasets_keep_empty_folder_fields():
    dataset = load_dataset("digits")
    assert dataset.files is None and dataset.skipped == []
