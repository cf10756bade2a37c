"""Settings dataclasses whose fields are also command-line options (``TrainConfig``, ``ClusterConfig``).

A field says what its flag means in its ``metadata``, written with :func:`flag`; the command line
turns every field into an option from that and the field's type
(:func:`routemix.commands.options.add_config_options`), so a setting is declared once. Kept free of
PyTorch: ``routemix --help`` reads these fields.
"""

from __future__ import annotations

import types
import typing
from dataclasses import fields


def flag(help: str, **how) -> dict:
    """A field's metadata: its flag's ``help``, and where the field's name and type do not say it:

    ``flags``: the flags, when not ``--field-name`` (``("--no-kmeans",)``); ``positional=True``: an
    argument rather than a flag; ``sets``: the value a flag of a ``bool`` field stores (default
    True; ``--no-kmeans`` sets False); ``negatable=True``: ``--x`` and ``--no-x``; ``parse``: the
    function that reads the flag's text; ``choices``, ``metavar``: as in argparse. A field named
    like a shared option (:data:`routemix.commands.options.OPTIONS`, such as ``data_dir``) is
    spelled and read as that option, and without metadata takes its help too; ``aliases``: the
    further flags it has in this command (``clusters``: ``("-k",)``).
    The command line's own record, a field named ``command``, is no option."""
    return {"help": help, **how}


def field_types(config) -> dict[str, type]:
    """The plain type of each field of the dataclass ``config``: ``int | None`` -> int,
    ``list[int] | None`` -> list; ``object`` for a union of several (``int | str``), whose flag
    needs a ``parse``."""

    def plain(hint) -> type:
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)] if union else [hint]
        if len(kinds) != 1:
            return object
        return typing.get_origin(kinds[0]) or kinds[0]

    hints = typing.get_type_hints(config)
    return {f.name: plain(hints[f.name]) for f in fields(config)}
