"""The model registry: what each model of the zoo is, and how to build it.

``create_model("basecnn_2cc", num_classes=10)`` builds a model; ``model_spec("basecnn_2cc")``
says what it is without building it (:class:`ModelSpec`: family, paths, routing, input, default
shape, training recipe, the published parameter count). Everything that needs to know what a
model is reads its spec: the trainer's recipe, evaluation, ``routemix models``, the clustering
networks by image side, the tests.

Each family module registers its models with :func:`register_model`, one call per name, each with a
one-line summary. A name may hold the path count as ``{P}`` (and the sparse networks' paths per
sample as ``{k}``): ``basecnn_{P}cc`` builds BaseCNN-P-CC for any P of 2 or more. Such a
template is listed for the values the papers use (``listed``), and every other value is built on
request: ``create_model("basecnn_8cc")``.

Builders take ``num_classes`` and, for images, ``in_channels`` and (where the network is built for
one size) ``input_size``, or, for vectors, ``in_features``; :func:`create_model` fills in what
the caller leaves out from the spec, so the defaults are written once, at registration.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Callable

from torch import nn

from routemix.errors import RoutemixError, unknown_name

ModelBuilder = Callable[..., nn.Module]

TASKS = ("classifier", "clustering")
INPUTS = ("image", "vector")
RECIPES = ("cnn", "resnet")  # routemix.train.supervised.apply_recipe: thesis sec. 3.4.1 and 3.4.2
PLACEHOLDERS = ("P", "k")  # a template's paths, and its paths per sample (the builder's ``top_k``)
SMALLEST = {"P": 2, "k": 1}  # the least value of each placeholder


@dataclass(frozen=True)
class Published:
    """A model's parameter count as printed, in millions, for ``num_classes`` outputs."""

    parameters_m: float
    num_classes: int
    source: str  # the table of routemix.published, e.g. "table3_2"


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model is.

    ``task``: ``"classifier"``, an image classifier (:class:`routemix.models.base.Classifier`) that
    ``routemix train`` and ``eval`` take; ``"clustering"``, a network of a clustering method.
    ``input``: ``"image"`` (``in_channels`` x ``input_size`` x ``input_size`` by default;
    ``fixed_input_size``: the builder sizes dense layers for one input size, so other sizes need
    ``input_size=`` at build time) or ``"vector"`` (``in_features`` set by the data).
    ``recipe``: the thesis' training recipe for the CIFAR-scale data (``"cnn"``, sec. 3.4.1, or
    ``"resnet"``, sec. 3.4.2; ImageNet has its own whatever the model); ``None`` for networks
    ``routemix train`` does not take. The builder of a model of more than one path takes
    ``num_paths``; ``options`` are other builder keywords its name fixes (``top_k``).
    """

    name: str
    family: str
    summary: str
    build: ModelBuilder = field(repr=False, compare=False)
    task: str = "classifier"
    input: str = "image"
    in_channels: int | None = 3
    input_size: int | None = 32
    fixed_input_size: bool = True
    num_classes: int = 10
    paths: int = 1
    routing: str | None = None
    recipe: str | None = "cnn"
    options: dict = field(default_factory=dict, compare=False)

    @property
    def published(self) -> Published | None:
        """The parameter count the papers print for this model (Tables 3.2-3.4), if any."""
        return _published_counts().get(self.name)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """One sample's default shape, ``(C, H, W)``; ``None`` for vector models."""
        return (self.in_channels, self.input_size, self.input_size) if self.input == "image" else None


@dataclass(frozen=True)
class _Template:
    spec: ModelSpec  # its name holds the placeholders
    pattern: re.Pattern
    placeholders: tuple[str, ...]


_SPECS: dict[str, ModelSpec] = {}
_TEMPLATES: list[_Template] = []


def register_model(
    name: str,
    build: ModelBuilder,
    *,
    family: str,
    summary: str,
    listed: dict[str, tuple[int, ...]] | None = None,
    **metadata,
) -> None:
    """Register ``build`` as ``name`` with the metadata of :class:`ModelSpec`.

    ``name`` may hold ``{P}`` (paths, at least 2) and ``{k}`` (paths per sample, at least 1):
    ``listed`` gives the values whose names ``list_models`` shows, e.g. ``{"P": (2, 3, 4)}``;
    ``summary`` may hold them too ("BaseCNN-{P}-CC")."""
    spec = ModelSpec(name=name, family=family, summary=summary, build=build, **metadata)
    if spec.task not in TASKS or spec.input not in INPUTS or spec.recipe not in (*RECIPES, None):
        raise ValueError(f"model {name!r}: task, input or recipe not one of {TASKS}, {INPUTS}, {RECIPES}")
    placeholders = tuple(re.findall(r"\{(\w+)\}", name))
    if not placeholders:
        _add(spec)
        return
    if not set(placeholders) <= set(PLACEHOLDERS) or set(listed or {}) != set(placeholders):
        raise ValueError(f"model template {name!r}: placeholders must be of {PLACEHOLDERS}, each with listed values")
    regex = re.escape(name)
    for placeholder in placeholders:
        regex = regex.replace(re.escape("{" + placeholder + "}"), f"(?P<{placeholder}>[1-9][0-9]*)")
    template = _Template(spec, re.compile(regex + r"\Z"), placeholders)
    _TEMPLATES.append(template)
    for values in itertools.product(*(listed[p] for p in placeholders)):
        _add(_instance(template, dict(zip(placeholders, values))))


def _add(spec: ModelSpec) -> None:
    if spec.name in _SPECS:
        raise RuntimeError(f"model {spec.name!r} is registered twice")
    _SPECS[spec.name] = spec


def _instance(template: _Template, values: dict[str, int]) -> ModelSpec:
    """The spec of one name of ``template``, e.g. ``basecnn_8cc`` of ``basecnn_{P}cc``."""
    for placeholder, value in values.items():
        if value < SMALLEST[placeholder]:
            raise RoutemixError(
                f"{template.spec.name}: {placeholder} must be at least {SMALLEST[placeholder]}, got {value}."
            )
    if values.get("k", 1) > values.get("P", template.spec.paths):
        raise RoutemixError(
            f"{template.spec.name}: k (paths per sample) must not exceed P (paths), "
            f"got P={values['P']}, k={values['k']}."
        )
    options = {**template.spec.options, **({"top_k": values["k"]} if "k" in values else {})}
    return replace(
        template.spec,
        name=template.spec.name.format(**values),
        summary=template.spec.summary.format(**values),
        paths=values.get("P", template.spec.paths),
        options=options,
    )


def model_spec(name: str) -> ModelSpec:
    """The spec of ``name``: a listed model or any value of a template (``basecnn_8cc``); an
    unknown name suggests the closest ones."""
    if name in _SPECS:
        return _SPECS[name]
    for template in _TEMPLATES:
        match = template.pattern.match(name)
        if match:
            return _instance(template, {p: int(match[p]) for p in template.placeholders})
    raise unknown_name("model", name, _SPECS, f"`routemix models` lists all {len(_SPECS)} models.")


def list_models(*patterns: str, task: str | None = None, family: str | None = None) -> list[str]:
    """Names of the listed models, sorted: every one, or those matching any of the shell-style
    ``patterns`` (``list_models("resnet20*", "*_3cc")``, :func:`fnmatch.fnmatch`), of one ``task``
    or ``family``. A pattern without wildcards that a template builds (``basecnn_8cc``) is
    included although it is not listed."""
    from fnmatch import fnmatch

    names = {name for name in _SPECS if not patterns or any(fnmatch(name, pattern) for pattern in patterns)}
    for pattern in patterns:
        if not any(c in pattern for c in "*?[") and any(t.pattern.match(pattern) for t in _TEMPLATES):
            names.add(pattern)
    specs = [model_spec(name) for name in names]
    return sorted(s.name for s in specs if (task is None or s.task == task) and (family is None or s.family == family))


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered model; what is left as ``None`` comes from its spec. ``input_size`` of a
    model that takes any size (global pooling) is not needed and is ignored."""
    spec = model_spec(name)
    num_classes = spec.num_classes if num_classes is None else num_classes
    if num_classes < 1:
        raise RoutemixError(f"num_classes must be at least 1, got {num_classes}.")
    if spec.input == "image":
        kwargs["in_channels"] = spec.in_channels if in_channels is None else in_channels
        if spec.fixed_input_size:
            kwargs["input_size"] = spec.input_size if input_size is None else input_size
    elif in_channels is not None or input_size is not None:
        raise RoutemixError(f"model {name!r} takes vectors (in_features=...), not images.")
    if spec.paths > 1:
        kwargs["num_paths"] = spec.paths
    return spec.build(num_classes=num_classes, **spec.options, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@cache
def _published_counts() -> dict[str, Published]:
    from routemix.published import published_table

    counts = {}
    for table in ("table3_2", "table3_3", "table3_4"):
        for row in published_table(table):
            if row["model"]:
                counts[row["model"]] = Published(row["params_m"], int(row.get("num_classes") or 10), table)
    return counts
