"""The one file format of a fitted clustering: what ``est.save(path)`` and ``routemix cluster``'s
``model.pt`` hold, and what :func:`load_clusterer`, ``routemix predict`` and ``routemix viz`` read.

A saved clustering is a dict that ``torch.load(..., weights_only=True)`` reads, with

* ``format`` (:data:`FORMAT`) and ``version`` (:data:`VERSION`);
* ``method``: the name in :mod:`routemix.cluster.registry`, which gives the estimator class;
* ``params``: the estimator's ``get_params()`` (the builder's arguments; a ``RandomState``
  object is stored as ``None``, as it only seeded the fit);
* ``fitted``: every fitted attribute (``labels_``, ``cluster_order_`` — clusters are always
  numbered by size —, the input scaling ``scaler_`` or ``pixel_range_``, ...), numpy arrays as
  tensors and scikit-learn scalers as their parameters and fitted arrays;
* ``modules``: the state dict of each trained network (``module_``, or a list for several);
* ``config``: for a ``routemix cluster`` run, its settings (``config.json``), else ``None``.

Loading builds an unfitted estimator from ``params``, restores ``fitted``, has the estimator
build untrained networks of the fitted shapes (its ``_empty_modules``) and loads the state dicts
into them: nothing is rebuilt from weight shapes and no code is unpickled.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from routemix.errors import RoutemixError

FORMAT = "routemix-clustering"
VERSION = 1

# scikit-learn objects a fitted clustering may hold, stored as parameters + fitted arrays
_SKLEARN_CLASSES = {
    "StandardScaler": "sklearn.preprocessing",
    "MinMaxScaler": "sklearn.preprocessing",
}


@dataclass
class SavedClustering:
    """What :func:`load_clusterer` returns: the fitted estimator and the run's settings, if any."""

    estimator: Any
    method: str
    config: dict | None
    path: Path


def method_of(estimator) -> str:
    """The registry name of a routemix estimator's class."""
    from routemix.cluster.registry import METHODS

    cls = type(estimator)
    for spec in METHODS.values():
        if spec.target == f"{cls.__module__}:{cls.__qualname__}":
            return spec.name
    raise TypeError(f"{cls.__qualname__} is not a registered routemix clustering estimator.")


# --- values <-> weights-only storable values -------------------------------------------------


def _storable(value, name: str):
    """``value`` as tensors, numbers, strings, lists and dicts, tagged so :func:`_restored` inverts it."""
    if isinstance(value, np.generic):  # before float: numpy.float64 is a float
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return {"tensor": value.detach().cpu().clone()}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return {"strings": [str(v) for v in value.tolist()]}
        return {"ndarray": torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, (list, tuple)):
        return {"list" if isinstance(value, list) else "tuple": [_storable(v, name) for v in value]}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {"dict": {key: _storable(v, f"{name}[{key!r}]") for key, v in value.items()}}
    cls = type(value).__name__
    if cls in _SKLEARN_CLASSES and type(value).__module__.startswith(_SKLEARN_CLASSES[cls]):
        fitted = {key: v for key, v in vars(value).items() if key.endswith("_") and not key.startswith("_")}
        return {
            "sklearn": {"class": cls, "params": _storable(value.get_params(), name), "fitted": _storable(fitted, name)}
        }
    raise TypeError(f"{name} holds a {type(value).__module__}.{cls}, which a weights-only file cannot store.")


def _restored(value):
    if not isinstance(value, dict):
        return value
    ((tag, inner),) = value.items()  # every stored container is a one-key dict naming its type
    if tag == "tensor":
        return inner
    if tag == "ndarray":
        return inner.numpy()
    if tag == "strings":
        return np.asarray(inner, dtype=object)
    if tag in ("list", "tuple"):
        items = [_restored(v) for v in inner]
        return items if tag == "list" else tuple(items)
    if tag == "dict":
        return {key: _restored(v) for key, v in inner.items()}
    if tag == "sklearn":
        cls = getattr(importlib.import_module(_SKLEARN_CLASSES[inner["class"]]), inner["class"])
        obj = cls(**_restored(inner["params"]))
        for key, v in _restored(inner["fitted"]).items():
            setattr(obj, key, v)
        return obj
    raise ValueError(f"unknown tag {tag!r}")


# --- save / load ----------------------------------------------------------------------------


def clustering_state(estimator, *, config: dict | None = None) -> dict:
    """The dict :func:`save_clusterer` writes (see the module docstring)."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    reason = getattr(estimator, "_not_storable", None)
    if reason:
        raise TypeError(f"{type(estimator).__name__} cannot be saved: {reason}")
    params = estimator.get_params(deep=False)
    if not isinstance(params.get("random_state"), (int, type(None))):
        params["random_state"] = None
    module_names = set(estimator._module_attributes) | set(estimator._derived_attributes)
    fitted = {
        name: value
        for name, value in vars(estimator).items()
        if (name.endswith("_") and not name.startswith("_") or name in estimator._saved_private)
        and name not in module_names
    }
    modules = {}
    for name in estimator._module_attributes:
        value = getattr(estimator, name)
        modules[name] = [m.state_dict() for m in value] if isinstance(value, (list, tuple)) else value.state_dict()
    return {
        "format": FORMAT,
        "version": VERSION,
        "method": method_of(estimator),
        "params": _storable(params, "params"),
        "fitted": {k: _storable(v, k) for k, v in fitted.items()},
        "modules": modules,
        "config": config,
    }


def save_clusterer(estimator, path: str | os.PathLike, *, config: dict | None = None) -> None:
    """Write a fitted routemix clustering estimator to ``path`` (atomically; see the module docstring)."""
    from routemix.storage import save_checkpoint

    save_checkpoint(path, clustering_state(estimator, config=config))


def _why_no_model(run_dir: Path) -> str:
    """Why a run directory has no model.pt, from its config.json where it has one."""
    from routemix.cluster.registry import METHODS, estimator_class
    from routemix.rundir import run_config_if_any

    method = run_config_if_any(run_dir).get("method")
    if method in METHODS and not METHODS[method].deep:
        return (
            f"it is a {method} run, which keeps its labels.csv only; cluster with a neural method to predict new data."
        )
    if method in METHODS and getattr(estimator_class(method), "_not_storable", None):
        return (
            f"{method} runs are not saved ({estimator_class(method)._not_storable.rstrip('.')}); "
            "cluster with another method to predict new data."
        )
    return "pass the run directory of a `routemix cluster` run of a neural method."


def load_clusterer(path: str | os.PathLike) -> SavedClustering:
    """Read what :func:`save_clusterer` wrote: ``path`` is the file or a run directory holding ``model.pt``."""
    from routemix.cluster.registry import METHODS, estimator_class
    from routemix.storage import load_checkpoint

    path = Path(path)
    if not path.exists():
        raise RoutemixError(f"no run directory or model.pt at {path}.")
    if path.is_dir():
        path = path / "model.pt"
        if not path.is_file():
            raise RoutemixError(f"{path.parent} holds no model.pt: {_why_no_model(path.parent)}")
    state = load_checkpoint(path)
    if "kind" in state and "network" in state:  # routemix cluster's model.pt before this format
        raise RoutemixError(
            f"{path} was written by an older routemix, before runs saved the whole estimator: "
            "run the clustering again to predict with it or draw it."
        )
    if state.get("format") != FORMAT:
        what = (
            f"a classifier checkpoint (model {state['model']})" if "model" in state else "not a clustering checkpoint"
        )
        raise RoutemixError(
            f"{path} is {what}: expected a model.pt written by `routemix cluster` or an estimator's save()."
        )
    if state.get("version") != VERSION:
        raise RoutemixError(
            f"{path} is version {state.get('version')} of the clustering format; this routemix reads version {VERSION}."
        )
    method = state.get("method")
    if method not in METHODS or not METHODS[method].deep:
        raise RoutemixError(f"{path} names the method {method!r}, which this routemix does not have.")
    estimator = estimator_class(method)(**_restored(state["params"]))
    for name, value in state["fitted"].items():
        setattr(estimator, name, _restored(value))
    empty = estimator._empty_modules()
    for name, weights in state["modules"].items():
        module = empty[name]
        try:
            if isinstance(module, list):
                for m, w in zip(module, weights, strict=True):
                    m.load_state_dict(w)
            else:
                module.load_state_dict(weights)
        except (RuntimeError, ValueError) as error:
            raise RoutemixError(
                f"{path}: the saved weights do not fit the {method} network its settings describe "
                f"({str(error).splitlines()[0]})."
            ) from None
        setattr(estimator, name, [m.eval() for m in module] if isinstance(module, list) else module.eval())
    estimator._after_load()
    return SavedClustering(estimator, method, state.get("config"), path)
