"""scikit-learn style clustering estimators built on ``losses`` and ``models``.

Every method by name, with the scikit-learn baselines: :mod:`routemix.cluster.registry`.
"""

from routemix.cluster.ddc import DDCClustering
from routemix.cluster.edgam import EDGaMClustering
from routemix.cluster.iic import IICClustering
from routemix.cluster.moe import MoEClustering
from routemix.cluster.n2d import N2DClustering
from routemix.cluster.nmm import NMMClustering

__all__ = ["DDCClustering", "EDGaMClustering", "IICClustering", "MoEClustering", "N2DClustering", "NMMClustering"]
