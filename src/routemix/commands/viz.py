"""``routemix viz FIGURE CHECKPOINT [options]``: one sub-command per figure.

The figures come from :mod:`routemix.viz.routing` (trained classifiers) and
:mod:`routemix.viz.clusters` (clustering runs); each module lists its own in ``FIGURES``, and each
figure adds its own options (the shared ones from :mod:`routemix.commands.options`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from routemix.commands.options import add_option
from routemix.viz.common import FORMATS, Figure


def all_figures() -> dict[str, Figure]:
    from routemix.viz import clusters, routing

    figures = [*routing.FIGURES, *clusters.FIGURES]
    return {figure.name: figure for figure in figures}


def add_parser(commands, *, figures: bool = True) -> None:
    """Add ``viz`` and its sub-commands to the ``routemix`` sub-parsers ``commands``.

    ``figures=False`` adds ``viz`` alone, for a command line that is not a ``viz`` one: the
    figure modules import PyTorch and matplotlib, which ``routemix --help`` should not wait for."""
    viz = commands.add_parser("viz", help="draw the figures of thesis sec. 3.5 and 4.5.3 from a checkpoint")
    if not figures:
        return
    figures = viz.add_subparsers(dest="figure", required=True, metavar="FIGURE")
    for figure in all_figures().values():
        sub = figures.add_parser(figure.name, help=figure.help)
        sub.add_argument("checkpoint", help="a model.pt or the run directory holding it")
        add_option(
            sub, "out", default=None, help="folder for the figures (default: CHECKPOINT's run directory / figures)"
        )
        sub.add_argument(
            "--formats", default=",".join(FORMATS), help=f"comma-separated file types (default: {','.join(FORMATS)})"
        )
        figure.add_arguments(sub)
        sub.set_defaults(handler=run_viz)


def run_viz(args: argparse.Namespace) -> int:
    checkpoint = Path(args.checkpoint)
    run_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent
    args.out = Path(args.out) if args.out else run_dir / "figures"
    args.formats = tuple(s.strip().lstrip(".") for s in args.formats.split(",") if s.strip())
    for path in all_figures()[args.figure].draw(args):
        print(path)
    return 0
