"""A user's own images: every image file in a folder and its subfolders, as one unlabelled set.

The rules, so that the same folder gives the same tensor on every machine:

- **Which files.** Files whose extension is one of :data:`IMAGE_EXTENSIONS` (any case), found
  recursively; names starting with ``"."`` (hidden files and folders) are left out, and so are
  files with other extensions, silently. Symbolic links to folders are not followed. Samples are
  ordered by their path relative to the folder, POSIX style (``"sub/a.png"``), and
  :attr:`LoadedDataset.files` lists those paths in sample order.
- **Unreadable files.** A file with an image extension that Pillow cannot open or decode (empty,
  truncated, not an image at all) is left out and listed in :attr:`LoadedDataset.skipped` with a
  short reason; only a folder where no image can be read is an error.
- **Frames and orientation.** The first frame of an animated or multi-page file is used. A JPEG's
  EXIF orientation is applied, so that phone photos stand upright.
- **Colour.** If every image is greyscale (Pillow modes ``1``, ``L``, ``LA``, ``I``, ``I;16*``,
  ``F``) the set has one channel; otherwise it has three, and the greyscale images are repeated
  into R, G and B. Everything else (palette, RGBA, CMYK, ...) is converted to RGB by Pillow;
  alpha is dropped, not composited. 16-bit, 32-bit integer and float greyscale images are scaled
  by their own maximum to 0..255 (negative values clipped to 0), because their range varies from
  camera to camera (a 12-bit sensor saved as 16-bit would otherwise be nearly black).
- **Size.** With ``image_size=S`` every image is resized so that its shorter side is S (bilinear,
  antialiased when shrinking) and centre-cropped to S x S. Without it all images must already
  share one square size of at least 16 x 16, checked from the file headers before anything is
  decoded, so that a folder of large photos fails at once instead of filling memory.

Images are kept whole in memory as uint8 (N, C, S, S), like the registered image sets.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from routemix.data.registry import LoadedDataset
from routemix.errors import RoutemixError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MIN_IMAGE_SIZE = 16  # the clustering networks take images of at least 16x16

_GREY_MODES = ("1", "L", "LA", "La", "I", "F")  # plus every "I;16..." variant
_EXTENSION_LIST = " ".join(IMAGE_EXTENSIONS)


def find_image_files(folder: str | os.PathLike) -> list[str]:
    """Relative POSIX paths of the image files under ``folder``, sorted, hidden names left out."""
    folder = Path(folder)
    found = []
    for directory, subdirectories, filenames in os.walk(folder):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        relative = Path(directory).relative_to(folder)
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append((relative / name).as_posix())
    return sorted(found)


def load_image_folder(
    path: str | os.PathLike, *, image_size: int | None = None, progress: bool = False
) -> LoadedDataset:
    """Load every image under ``path`` as an unlabelled uint8 (N, C, S, S) image set.

    ``image_size=S`` resizes each image's shorter side to S and centre-crops it to S x S; without
    it the images must already share one square size. ``progress`` shows a bar on stderr while
    decoding. See the module docstring for the rules on files, colour and size.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise RoutemixError(f"{folder} is not a folder: pass the path of a folder that holds image files.")
    _check_image_size(image_size)
    files = find_image_files(folder)
    if not files:
        raise RoutemixError(
            f"no image files in {folder} or its subfolders "
            f"(searched for {_EXTENSION_LIST}, any case; hidden files are left out)."
        )

    sizes, skipped = _read_sizes(folder, files)
    if not sizes:
        raise _nothing_readable(folder, skipped)
    if image_size is None:
        _check_common_size(folder, sizes)

    arrays, kept = [], []
    for relative in _progress(list(sizes), progress):
        try:
            arrays.append(_read_image(folder / relative, image_size))
        except Exception as error:  # Pillow's decoders raise many types on corrupt files
            skipped.append((relative, _reason(folder / relative, error)))
        else:
            kept.append(relative)
    if not arrays:
        raise _nothing_readable(folder, skipped)

    name = folder.resolve().name or str(folder)
    return LoadedDataset(name, "image", _stack(arrays), None, None, files=kept, skipped=sorted(skipped))


# --- checks ----------------------------------------------------------------------------------


def _check_image_size(image_size: int | None) -> None:
    if image_size is None:
        return
    if not isinstance(image_size, (int, np.integer)) or image_size < MIN_IMAGE_SIZE:  # True counts as 1
        raise RoutemixError(
            f"image size must be a whole number of at least {MIN_IMAGE_SIZE} "
            f"(the clustering networks take images of at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}), got {image_size!r}."
        )


def _read_sizes(folder: Path, files: list[str]) -> tuple[dict[str, tuple[int, int]], list[tuple[str, str]]]:
    """(width, height) of each file Pillow can open, from its header alone; the rest as skipped."""
    sizes, skipped = {}, []
    for relative in files:
        try:
            with Image.open(folder / relative) as image:
                sizes[relative] = image.size
        except Exception as error:  # see load_image_folder
            skipped.append((relative, _reason(folder / relative, error)))
    return sizes, skipped


def _check_common_size(folder: Path, sizes: dict[str, tuple[int, int]]) -> None:
    """Without an image size, every image must have one square size the networks can take."""
    first_by_size: dict[tuple[int, int], str] = {}
    for relative, size in sizes.items():
        first_by_size.setdefault(size, relative)
    advice = "pass --image-size S (image_size=S) to resize each image's shorter side to S and centre-crop it to S x S"
    if len(first_by_size) > 1:
        (size_a, file_a), (size_b, file_b) = list(first_by_size.items())[:2]
        raise RoutemixError(
            f"the images in {folder} come in {len(first_by_size)} different sizes "
            f"(e.g. {file_a} is {_wxh(size_a)}, {file_b} is {_wxh(size_b)}): {advice}."
        )
    (width, height), example = next(iter(first_by_size.items()))
    if width != height:
        raise RoutemixError(f"the images in {folder} are {width}x{height} (e.g. {example}), not square: {advice}.")
    if width < MIN_IMAGE_SIZE:
        raise RoutemixError(
            f"the images in {folder} are {width}x{height}, smaller than the {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} "
            f"the clustering networks take: pass --image-size {MIN_IMAGE_SIZE} (or more) to enlarge them."
        )


def _nothing_readable(folder: Path, skipped: list[tuple[str, str]]) -> RoutemixError:
    examples = "; ".join(f"{relative} ({reason})" for relative, reason in sorted(skipped)[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return RoutemixError(
        f"none of the {len(skipped)} image files in {folder} could be read: {examples}{more}. "
        "Check that they are valid image files."
    )


def _reason(path: Path, error: Exception) -> str:
    """A short, path-free reason why ``path`` could not be read."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
    except OSError:
        pass
    if isinstance(error, UnidentifiedImageError):
        return "not an image Pillow can read"
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return message.replace(str(path), path.name)[:120]


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


# --- decoding --------------------------------------------------------------------------------


def _read_image(path: Path, image_size: int | None) -> np.ndarray:
    """The first frame of ``path`` as uint8 (1, S, S) if greyscale, else (3, S, S)."""
    with Image.open(path) as opened:
        if image_size is not None:
            opened.draft(None, (image_size, image_size))  # JPEG: decode at a reduced scale, still >= S
        opened.load()
        image = _to_8bit(ImageOps.exif_transpose(opened))  # a copy, still valid once the file is closed
    if image_size is not None:
        image = _resize_and_crop(image, image_size)
    array = np.asarray(image)
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


def _to_8bit(image: Image.Image) -> Image.Image:
    """``image`` as mode "L" if greyscale, else "RGB"; wide greyscale scaled by its own maximum."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode in ("1", "LA", "La"):
        return image.convert("L")
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        values = np.clip(np.asarray(image, dtype=np.float64), 0, None)
        peak = values.max()
        if peak > 0:
            values *= 255.0 / peak
        return Image.fromarray(np.rint(values).astype(np.uint8))
    return image.convert("RGB")


def _resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size``, then cut the central ``size`` x ``size`` square."""
    width, height = image.size
    if (width, height) == (size, size):
        return image
    scale = size / min(width, height)
    new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
    left, top = (new_width - size) // 2, (new_height - size) // 2
    return image.crop((left, top, left + size, top + size))


def _stack(arrays: list[np.ndarray]) -> torch.Tensor:
    """One uint8 (N, C, S, S) tensor; greyscale images repeated to RGB when any image has colour."""
    if any(array.shape[0] == 3 for array in arrays):
        arrays = [np.repeat(array, 3, axis=0) if array.shape[0] == 1 else array for array in arrays]
    return torch.from_numpy(np.stack(arrays))


def _progress(items: list[str], show: bool):
    if not show:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="reading images", unit="image", file=sys.stderr)
