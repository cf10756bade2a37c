"""scikit-learn style clustering estimators built on ``losses`` and ``models``.

Every method by name, with the scikit-learn baselines: :mod:`routemix.cluster.registry`. The
estimators are imported on first use (``from routemix.cluster import NMMClustering``), so that
what only needs the registry, such as the command line's help, does not import PyTorch.
"""

import importlib

_ESTIMATORS = {
    "DDCClustering": "routemix.cluster.ddc",
    "EDGaMClustering": "routemix.cluster.edgam",
    "IICClustering": "routemix.cluster.iic",
    "MoEClustering": "routemix.cluster.moe",
    "N2DClustering": "routemix.cluster.n2d",
    "NMMClustering": "routemix.cluster.nmm",
}

__all__ = list(_ESTIMATORS)


def __getattr__(name: str):
    if name in _ESTIMATORS:
        return getattr(importlib.import_module(_ESTIMATORS[name]), name)
    raise AttributeError(f"module 'routemix.cluster' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
