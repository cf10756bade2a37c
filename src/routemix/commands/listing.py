"""``routemix datasets`` and ``routemix models``: what the registries hold."""

from __future__ import annotations

import argparse

from routemix.errors import RoutemixError


def add_parser(commands) -> None:
    datasets = commands.add_parser("datasets", help="list the datasets routemix can load")
    datasets.set_defaults(handler=run_datasets)

    models = commands.add_parser("models", help="list the registered models with parameter counts and multiply-adds")
    models.add_argument("patterns", nargs="*", help="only names matching these shell patterns, e.g. 'resnet20*'")
    models.add_argument(
        "--num-classes",
        type=int,
        help="outputs to count parameters and multiply-adds for (default: the class count of "
        "the model's published figure, else its own)",
    )
    models.set_defaults(handler=run_models)


def run_datasets(args: argparse.Namespace) -> int:
    from routemix.data import default_data_root, list_datasets
    from routemix.data.classification import IMAGENET_LAYOUT, classification_datasets

    print(f"{'name':<14}{'kind':<11}{'classes':>8}  description")
    for spec in list_datasets():
        classes = spec.num_classes if spec.num_classes is not None else "-"
        print(f"{spec.name:<14}{spec.kind:<11}{classes:>8}  {spec.description}")
    print(f"\nImage sets are read from --data-dir, else $ROUTEMIX_DATA, else {default_data_root()}.")
    print("Any .csv or .npy path also works as a dataset (numeric columns, --label-column for scoring).")
    print(f"\n`routemix train` and `eval` take: {', '.join(classification_datasets())}.")
    print(f"imagenet is any ImageFolder root: {IMAGENET_LAYOUT}.")
    return 0


def run_models(args: argparse.Namespace) -> int:
    from routemix.models import list_models
    from routemix.models.info import format_models

    names = list_models(*(args.patterns or []))
    if not names:
        raise RoutemixError(f"no model matches {' '.join(args.patterns)}; `routemix models` lists all of them.")
    print(format_models(names, args.num_classes))
    return 0
