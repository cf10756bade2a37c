"""What every figure shares: a headless figure, a caption line, and saving to PNG and SVG."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the command line's help reads FORMATS and Figure without PyTorch
    import torch
    from torch import nn

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


def synthesize_inputs(
    objective: Callable[[torch.Tensor], torch.Tensor],
    shape: tuple[int, ...],
    *,
    network: nn.Module | None = None,
    steps: int = 200,
    lr: float = 0.05,
    l2: float = 1e-3,
    jitter: int = 1,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Inputs (N, C, H, W) in [0, 1] that maximise ``objective(x)`` (N values, one per input): the
    synthesised images of the thesis' Figs. 3.8, 4.8 and 4.9.

    Gradient ascent from a random grey image with ``network`` frozen (thesis [87], Simonyan et al.
    2014), Adam with step ``lr``. Regularisation, for readable images: the L2 penalty of [87]
    (``l2 * ||x - 0.5||²``, pulling towards mid-grey), pixels clipped to [0, 1] after each step,
    a random shift of up to ``jitter`` pixels before each step and a Gaussian blur
    (``blur_sigma``, 0 for none) every ``blur_every`` steps (both as Yosinski et al. 2015), which
    suppress the high-frequency patterns gradient ascent otherwise amplifies.
    """
    import torch
    from kornia.filters import gaussian_blur2d

    generator = torch.Generator().manual_seed(seed)
    x = (0.5 + 0.1 * torch.randn(shape, generator=generator)).clamp(0, 1).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)
    parameters = list(network.parameters()) if network is not None else []
    trainable = [p.requires_grad for p in parameters]
    try:
        for p in parameters:
            p.requires_grad_(False)
        with torch.enable_grad():
            for step in range(steps):
                optimizer.zero_grad()
                shift = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist() if jitter else [0, 0]
                value = objective(torch.roll(x, shifts=tuple(shift), dims=(-2, -1)))
                loss = -value.sum() + l2 * (x - 0.5).pow(2).sum()
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    if blur_sigma > 0 and blur_every and (step + 1) % blur_every == 0 and step + 1 < steps:
                        x.copy_(gaussian_blur2d(x, (3, 3), (blur_sigma, blur_sigma)))
                    x.clamp_(0, 1)
    finally:
        for p, flag in zip(parameters, trainable):
            p.requires_grad_(flag)
    return x.detach().cpu()
