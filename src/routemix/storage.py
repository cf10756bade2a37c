"""The files of a run: written atomically (a reader sees the old file or the new one, never half
of one), and checkpoints read with ``weights_only=True``, with a clear error when corrupt."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from routemix.errors import RoutemixError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write) -> None:
    """``write(file)`` into a temporary file beside ``path``, then rename it over ``path``: a
    reader sees the old file or the new one, never half of one. The file gets the permissions
    any new file gets (0644 under the usual umask), not the temporary file's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Save ``state`` (tensors, numbers, strings, lists, dicts) so a crash never leaves half a file."""
    _atomic_write(Path(path), lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing or corrupt file is a RoutemixError."""
    path = Path(path)
    if not path.is_file():
        raise RoutemixError(f"no checkpoint at {path}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated, empty or foreign files
        detail = next(iter(str(error).splitlines()), "")[:200]
        reason = "the file is empty" if path.stat().st_size == 0 else f"{type(error).__name__}: {detail}"
        raise RoutemixError(
            f"{path} is not a readable checkpoint ({reason}). "
            "It may be truncated or from another program: re-run training to write a new one."
        ) from None
    if not isinstance(state, dict):
        raise RoutemixError(f"{path} holds a {type(state).__name__}, not a routemix checkpoint.")
    return state


def write_json(path: str | os.PathLike, data: Any) -> None:
    _atomic_write(Path(path), lambda f: f.write((json.dumps(data, indent=2, default=str) + "\n").encode()))


def write_arrays(path: str | os.PathLike, **arrays) -> None:
    """``numpy.savez`` of ``arrays`` to ``path`` (an ``.npz``), written whole or not at all."""
    import numpy as np

    _atomic_write(Path(path), lambda f: np.savez(f, **arrays))


def write_text(path: str | os.PathLike, text: str) -> None:
    _atomic_write(Path(path), lambda f: f.write(text.encode()))
