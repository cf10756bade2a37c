"""scikit-learn style clustering estimators built on ``losses`` and ``models``."""

from routemix.cluster.nmm import NMMClustering

__all__ = ["NMMClustering"]
