"""What every figure shares: a headless figure, a caption line, and saving to PNG and SVG."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("png", "svg")
DPI = 120


@dataclass(frozen=True)
class Figure:
    """One ``routemix viz`` figure: its sub-command name, a one-line help, the options it adds to
    its sub-parser, and ``draw(args) -> list[Path]`` that writes the files and returns their paths.
    ``args`` always has ``checkpoint`` (path), ``out`` (folder) and ``formats`` (tuple of suffixes)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    draw: Callable[[argparse.Namespace], list[Path]]


def new_figure(*args, **kwargs):
    """``plt.subplots`` on the Agg backend, so figures draw on machines without a display."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig, path: str | Path, caption: str, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write ``fig`` with ``caption`` as a line under it to ``path`` with each suffix of ``formats``
    (``path``'s own suffix is replaced); close it; return the written paths."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=8, color="0.3", wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    written = []
    for suffix in formats:
        target = path.with_suffix(f".{suffix}")
        fig.savefig(target, dpi=DPI)
        written.append(target)
    plt.close(fig)
    return written
