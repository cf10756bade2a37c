"""The options several commands share, and the helpers that add them and read their values.

Every option that more than one command (or ``viz`` figure) takes is spelled and read once, in
:data:`OPTIONS`; a command adds it with :func:`add_option`, saying what it means there (its help)
and its default.
:func:`add_config_options` makes the options of ``train`` and ``cluster`` from the fields of
their settings dataclasses (:mod:`routemix.fields`) and :func:`config_values` reads them back.
:func:`parse_seeds` and :func:`known_names` read ``--seeds`` and comma-separated lists of names.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

from routemix.errors import RoutemixError, unknown_name
from routemix.fields import field_types

DEVICES = ("auto", "cpu", "cuda")


class Option:
    """An option's flags and the ``add_argument`` keywords every command that takes it agrees on."""

    def __init__(self, *flags: str, **how) -> None:
        self.flags, self.how = flags, how


# By destination: the name a command's handler reads it as (args.data_dir), which is also the
# name of the settings field it sets.
OPTIONS = {
    "batch": Option("--batch", type=int),
    "batch_size": Option("--batch-size", type=int),
    "budget": Option("--budget", default="cpu"),
    "checkpoint_every": Option("--checkpoint-every", type=int, metavar="N"),
    "classes": Option("--classes", type=int),
    "clusters": Option("--clusters", type=int),
    "data_dir": Option("--data-dir", help="root of the image datasets (default: $ROUTEMIX_DATA or the user cache)"),
    "dataset": Option("--dataset"),
    "datasets": Option("--datasets"),
    "device": Option("--device", choices=DEVICES, default="auto"),
    "devices": Option("--devices", type=int),
    "download": Option("--download", action="store_true", help="let torchvision download the dataset"),
    "epochs": Option("--epochs", type=int),
    "gamma": Option("--gamma", type=float),
    "image_size": Option("--image-size", type=int),
    "label_column": Option("--label-column"),
    "limit": Option("--limit", type=int),
    "max_clusters": Option("--max-clusters", type=int),
    "methods": Option("--methods"),
    "model": Option("--model"),
    "models": Option("--models"),
    "num_nodes": Option("--num-nodes", type=int),
    "out": Option("--out"),
    "overwrite": Option(
        "--overwrite", action="store_true", help="replace the run already in --run-dir (its files are removed first)"
    ),
    "paths": Option("--paths"),
    "progress": Option("--no-progress", action="store_false", default=True, help="no progress bar"),
    "repeats": Option("--repeats", type=int),
    "resume": Option("--resume", action="store_true"),
    "run_dir": Option("--run-dir"),
    "seed": Option("--seed", type=int),
    "seeds": Option(
        "--seeds", help="seed count (3: seeds 0, 1, 2), range (0-2) or list (0,1,2); default %(default)s"
    ),  # read by parse_seeds
    "split": Option(
        "--split", choices=("all", "train", "test"), default="all", help="image sets: which split (default: all)"
    ),
    "steps": Option("--steps", type=int),
    "strategy": Option("--strategy", help="auto (ddp when more than one process), ddp or ddp_spawn"),
    "ten_crop": Option("--ten-crop", action="store_true"),
    "test_images": Option("--test-images", type=int, help="test on the first N test images (default: all 10000)"),
    "train_images": Option("--train-images", type=int, default=10_000, help="fixed training subset (default 10000)"),
    "variants": Option("--variants"),
    "weight": Option("--weight", type=float),
    "workers": Option("--workers", type=int),
}


def add_option(parser: argparse.ArgumentParser, name: str, *aliases: str, **changes) -> None:
    """Add the shared option ``name`` to ``parser``; ``aliases``: more flags for it in this command
    (cluster's ``-k`` for ``--clusters``); ``changes``: what differs in this command
    (``add_argument``'s keywords: its help and default, rarely another type)."""
    option = OPTIONS[name]
    parser.add_argument(*option.flags, *aliases, dest=name, **{**option.how, **changes})


def add_config_options(parser: argparse.ArgumentParser, config, *, defaults: bool = True) -> None:
    """An option for each field of the settings dataclass ``config`` but ``command`` (the command
    line itself), read into the field's name: a shared option as :data:`OPTIONS` spells it (and
    the field's ``aliases``), any
    other ``--field-name`` of the field's type, both as the field's metadata says
    (:func:`routemix.fields.flag`). ``defaults=False``: every option defaults to None, meaning
    not given (``train``, where a YAML config fills in what the flags leave open)."""
    kinds = field_types(config)
    for field in fields(config):
        if field.name == "command":
            continue
        meta = field.metadata
        if meta.get("positional"):
            parser.add_argument(field.name, help=meta["help"])
            continue
        default = field.default if defaults and field.default is not MISSING else None
        said = {key: meta[key] for key in ("help", "choices", "metavar") if meta.get(key) is not None}
        if field.name in OPTIONS:
            parse = {"type": meta["parse"]} if "parse" in meta else {}
            add_option(parser, field.name, *meta.get("aliases", ()), default=default, **said, **parse)
            continue
        if kinds[field.name] is object and "parse" not in meta:
            raise TypeError(f"{config.__name__}.{field.name}: a field of several types needs a parse in its flag")
        if kinds[field.name] is bool:
            reading = (
                {"action": argparse.BooleanOptionalAction}
                if meta.get("negatable")
                else {"action": "store_const", "const": meta.get("sets", True)}
            )
        else:
            reading = {"type": meta.get("parse", kinds[field.name])}
        flags = meta.get("flags", ("--" + field.name.replace("_", "-"),))
        parser.add_argument(*flags, dest=field.name, default=default, **reading, **said)


def config_values(args: argparse.Namespace, config) -> dict:
    """The settings of the dataclass ``config`` that the parsed ``args`` hold: every field but ``command``."""
    return {field.name: getattr(args, field.name) for field in fields(config) if field.name != "command"}


def parse_seeds(text: str) -> list[int]:
    """'3' -> [0, 1, 2] (a count), '0-5' -> a range, '0,1,2' -> a list."""
    usage = f"--seeds takes a count like 3, a range like 0-2 (one seed: 4-4) or a list like 0,1,2, got {text!r}."
    try:
        if "-" in text:
            low, high = (int(part) for part in text.split("-"))
            seeds = list(range(low, high + 1))
        elif "," in text:
            seeds = [int(s) for s in text.split(",")]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise RoutemixError(usage) from None
    if not seeds:
        raise RoutemixError(usage + (" A range runs from low to high." if "-" in text else ""))
    return seeds


def known_name(name: str, known, kind: str, where: str) -> str:
    """``name`` if it is one of ``known``; else the error of :func:`routemix.errors.unknown_name`
    (the closest known names, then ``where``, which says what is known)."""
    if name not in known:
        raise unknown_name(kind, name, known, where)
    return name


def known_names(text: str, known, kind: str, where: str) -> tuple[str, ...]:
    """The comma-separated names of ``text``, each checked by :func:`known_name`."""
    return tuple(known_name(name.strip(), known, kind, where) for name in text.split(","))
