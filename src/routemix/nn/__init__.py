"""Building blocks of multi-path networks: plain ``torch.nn`` modules, no training logic.

A routed activation is one tensor ``(B, P, C, H, W)`` (or ``(B, P, D)``); see ``paths`` for the
lifted layers, ``gates`` for gate networks and :class:`GateTrace`, ``routers`` for the routers of
thesis ch. 3 and ``blocks`` for residual, SE and cross-stitch blocks.
"""

from routemix.nn.blocks import CrossStitch, PathBasicBlock, PathBottleneck, PathSqueezeExcitation
from routemix.nn.gates import GateNetwork, GateTrace, default_gate_hidden
from routemix.nn.paths import (
    AveragePaths,
    PathBatchNorm1d,
    PathBatchNorm2d,
    PathConv2d,
    PathFlatten,
    PathGlobalAvgPool,
    PathLinear,
    PerPath,
    RepeatPaths,
)
from routemix.nn.routers import (
    CrossConnection,
    CrossPrediction,
    LinearCrossPrediction,
    OneToManyConnection,
    OneToManyPrediction,
    mix_paths,
)

__all__ = [
    "AveragePaths",
    "CrossConnection",
    "CrossPrediction",
    "CrossStitch",
    "GateNetwork",
    "GateTrace",
    "LinearCrossPrediction",
    "OneToManyConnection",
    "OneToManyPrediction",
    "PathBasicBlock",
    "PathBatchNorm1d",
    "PathBatchNorm2d",
    "PathBottleneck",
    "PathConv2d",
    "PathFlatten",
    "PathGlobalAvgPool",
    "PathLinear",
    "PathSqueezeExcitation",
    "PerPath",
    "RepeatPaths",
    "default_gate_hidden",
    "mix_paths",
]
