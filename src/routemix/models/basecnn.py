"""The convolutional networks of thesis sec. 3.4.1 (Table 3.1, Figs. 3.2 and 3.4) and their baselines.

=================  ==============================================================  =========
BaseCNN            C32 C32 M C64 C64 M C128 C128 F32 F32 F10                        0.55M
WideCNN            C64 C64 M C128 C128 M C256 C256 F32 F32 F10                      1.67M
DeepCNN            C32 C32 M C64 C64 M C128 C128 C128 M C256 C256 C256 M F32 F32 F10  2.0M
=================  ==============================================================  =========

(Cn: 3x3 conv with n filters, M: 2x2 max-pool, Fn: dense layer.) The table gives the layers but
not the pooling; the parameter counts fix it. BaseCNN's 0.55M needs the first dense layer to read
a 128 x 8 x 8 map, so 32x32 inputs are pooled twice, after the second and fourth convolutions
(0.551M). DeepCNN pools after every stage, the last included (2 x 2 x 256 into F32: 1.95M, 2.7%
under the printed 2.0M). Pooling only between stages (4 x 4 x 256: 2.04M) fits DeepCNN and All
Ensemble too, but then no single SE reduction ratio brings both SENets within 3% (see below);
with the final pooling, ratio 4 does. Every convolution and the two hidden dense layers are
followed by batch norm and ReLU (the text omits normalisation; the published errors with lr 0.1
are not reached without it), so convolutions carry no bias. Counts for 10 classes and 3x32x32
inputs are tested against Table 3.2.

Multi-path variants, X parallel BaseCNNs whose outputs are averaged:

- ``basecnn_X``: no routing; every path sees the input.
- ``basecnn_Xcc`` (Fig. 3.4): a one-to-many cross-connection widens the input; cross-connections
  after the 2nd, 4th and 6th convolutions and after the first dense layer. Where a pooling follows
  the convolution, the cross-connection comes after it (the figure does not draw pooling; mixing
  the pooled map costs a quarter and changes no parameter count).
- ``basecnn_Xcp`` (Fig. 3.2): cross-prediction routers *replace* the 1st (one-to-many), 3rd and
  5th convolutions and the second dense layer, so the depth stays that of BaseCNN.
- ``crossstitch_basecnn_2`` (Cr-Stitch2): cross-stitch units where BaseCNN-2-CC has its
  cross-connections; the input goes to both paths unchanged.
- ``sebasecnn`` / ``sedeepcnn``: squeeze-excitation after every convolution with reduction 4
  (0.573M and 2.075M against the printed 0.58M and 2.06M; SENet's usual 16 gives SEBaseCNN 4% too
  few, and 8 leaves it 3.0% short).
- ``basecnn_ensemble`` (three BaseCNNs, 1.65M) and ``all_ensemble`` (BaseCNN, WideCNN, DeepCNN,
  4.17M against 4.27M): see :class:`Ensemble`.

One printed count is not reached: BaseCNN-3 is 1.65M here, 1.5M in Table 3.2. Three BaseCNNs
cannot be 1.5M when one is 0.55M, and the same table's BaseCNN Ensemble (1.66M) and BaseCNN-3-CC
(1.67M, BaseCNN-3 plus gates) agree with 1.65M, so we take 1.5M for a misprint.

Every network here is built by :class:`MultiPathCNN`; the single-path ones are its ``num_paths=1``
case, whose computation is that of the plain CNN (tested against an ``nn.Sequential`` reference).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from routemix.errors import RoutemixError
from routemix.models.base import Classifier
from routemix.models.registry import create_model, register_model
from routemix.nn import (
    AveragePaths,
    CrossConnection,
    CrossPrediction,
    CrossStitch,
    LinearCrossPrediction,
    OneToManyConnection,
    OneToManyPrediction,
    PathBatchNorm1d,
    PathBatchNorm2d,
    PathConv2d,
    PathFlatten,
    PathLinear,
    PathSqueezeExcitation,
    PerPath,
    RepeatPaths,
)
from routemix.nn.blocks import init_conv_bn
from routemix.nn.paths import check_num_paths

ROUTINGS = (None, "cc", "cp", "stitch")


@dataclass(frozen=True)
class CNNLayout:
    """Convolution widths grouped in stages (a 2x2 max-pool between stages) and hidden dense widths."""

    stages: tuple[tuple[int, ...], ...]
    dense: tuple[int, ...] = (32, 32)
    pool_last: bool = False  # one more max-pool after the last stage, before the dense layers

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.stages) - 1 + self.pool_last)


BASECNN = CNNLayout(((32, 32), (64, 64), (128, 128)))
WIDECNN = CNNLayout(((64, 64), (128, 128), (256, 256)))
DEEPCNN = CNNLayout(((32, 32), (64, 64), (128, 128, 128), (256, 256, 256)), pool_last=True)


class MultiPathCNN(Classifier):
    """A plain CNN (Table 3.1) with ``num_paths`` parallel paths and optional routing between them.

    ``routing``: ``None`` (independent paths), ``"cc"`` (cross-connections, Fig. 3.4), ``"cp"``
    (cross-prediction, Fig. 3.2) or ``"stitch"`` (cross-stitch units at the cross-connections'
    places). ``se_reduction`` adds squeeze-excitation after every convolution.
    """

    def __init__(
        self,
        layout: CNNLayout = BASECNN,
        *,
        num_paths: int = 1,
        routing: str | None = None,
        se_reduction: int | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        gate_hidden: int | None = None,
    ) -> None:
        check_num_paths(num_paths)
        if routing not in ROUTINGS:
            raise RoutemixError(f"routing must be one of {ROUTINGS}, got {routing!r}.")
        downsample = layout.downsample
        if input_size % downsample:
            raise RoutemixError(f"input_size must be a multiple of {downsample} for this network, got {input_size}.")
        super().__init__(num_classes=num_classes, in_channels=in_channels, num_paths=num_paths, input_size=input_size)
        self.routing = routing
        p = num_paths
        gates = {"gate_hidden": gate_hidden}

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        routes = 0

        def add_mixer(channels: int) -> None:  # what sits where BaseCNN-X-CC has a cross-connection
            nonlocal routes
            if routing in ("cc", "stitch"):
                routes += 1
                layers[f"route{routes}"] = (
                    CrossConnection(p, p, channels, **gates) if routing == "cc" else CrossStitch(p)
                )

        if routing == "cc":
            layers["widen"] = OneToManyConnection(p, in_channels, **gates)
        elif routing != "cp":
            layers["widen"] = RepeatPaths(p)
        channels, k = in_channels, 0
        for s, stage in enumerate(layout.stages):
            for c, width in enumerate(stage):
                k += 1
                if routing == "cp" and c == 0:  # Fig. 3.2: CP routers replace the first conv of each stage
                    router = (
                        OneToManyPrediction(p, channels, width, bias=False, norm=True, **gates)
                        if s == 0
                        else CrossPrediction(p, p, channels, width, bias=False, norm=True, **gates)
                    )
                    layers[f"conv{k}"] = router
                else:
                    layers[f"conv{k}"] = PathConv2d(p, channels, width, 3, bias=False)
                    layers[f"bn{k}"] = PathBatchNorm2d(p, width)
                    layers[f"relu{k}"] = nn.ReLU()
                if se_reduction:
                    layers[f"se{k}"] = PathSqueezeExcitation(p, width, se_reduction)
                channels = width
            if s < len(layout.stages) - 1 or layout.pool_last:
                layers[f"pool{s + 1}"] = PerPath(nn.MaxPool2d(2))
            add_mixer(channels)  # after the pooling, where mixing costs a quarter
        layers["flatten"] = PathFlatten()
        features = channels * (input_size // downsample) ** 2
        for d, width in enumerate(layout.dense, start=1):
            if routing == "cp" and d == 2:  # Fig. 3.2: CP-F32 replaces the second dense layer
                layers[f"fc{d}"] = LinearCrossPrediction(p, p, features, width, bias=False, norm=True, **gates)
            else:
                layers[f"fc{d}"] = PathLinear(p, features, width, bias=False)
                layers[f"bn_fc{d}"] = PathBatchNorm1d(p, width)
                layers[f"relu_fc{d}"] = nn.ReLU()
            if d == 1:
                add_mixer(width)
            features = width
        layers["classifier"] = PathLinear(p, features, num_classes)
        layers["average"] = AveragePaths()
        # Named layers: gates read as "layers.route2.gate", "layers.conv3.gate" (a CP router), ...
        self.layers = nn.Sequential(layers)
        init_conv_bn(self)

    def forward_logits(self, x: Tensor) -> Tensor:
        return self.layers(x)


class Ensemble(Classifier):
    """Independently trained networks whose predictions are averaged (Base / All Ensemble, Table 3.1).

    In training mode the output is ``(B, M, num_classes)``, the M members' logits, and the trainer
    gives every member its own cross-entropy, so the members train exactly as M separate networks
    (their parameters are disjoint). In eval mode the output is the log of the members' mean
    softmax probability, logits whose softmax is the ensemble's averaged prediction.
    """

    def __init__(self, members: list[Classifier]) -> None:
        first = members[0]
        super().__init__(num_classes=first.num_classes, in_channels=first.in_channels, input_size=first.input_size)
        self.members = nn.ModuleList(members)

    def forward_logits(self, x: Tensor) -> Tensor:
        logits = torch.stack([member(x) for member in self.members], dim=1)
        return logits if self.training else ensemble_log_probs(logits)


def ensemble_log_probs(logits: Tensor) -> Tensor:
    """Members' logits ``(B, M, K)`` -> log of their mean softmax ``(B, K)``, the ensemble's prediction."""
    return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=1) - math.log(logits.shape[1])


def _cnn(layout: CNNLayout, **defaults):
    def build(*, num_classes: int, in_channels: int, input_size: int, **kwargs) -> MultiPathCNN:
        return MultiPathCNN(
            layout, num_classes=num_classes, in_channels=in_channels, input_size=input_size, **{**defaults, **kwargs}
        )

    return build


_BASECNN = {"family": "basecnn", "recipe": "cnn"}
register_model(
    "basecnn", _cnn(BASECNN), summary="BaseCNN (Table 3.1): C32 C32 M C64 C64 M C128 C128 F32 F32", **_BASECNN
)
register_model("widecnn", _cnn(WIDECNN), summary="WideCNN (Table 3.1): BaseCNN with twice the filters", **_BASECNN)
register_model(
    "deepcnn", _cnn(DEEPCNN), summary="DeepCNN (Table 3.1): BaseCNN with a fourth stage of three C256", **_BASECNN
)
register_model(
    "sebasecnn",
    _cnn(BASECNN, se_reduction=4),
    summary="SEBaseCNN (Table 3.2): squeeze-excitation after every convolution",
    **_BASECNN,
)
register_model(
    "sedeepcnn",
    _cnn(DEEPCNN, se_reduction=4),
    summary="SEDeepCNN (Table 3.2): squeeze-excitation after every convolution",
    **_BASECNN,
)
register_model(
    "crossstitch_basecnn_2",
    _cnn(BASECNN, routing="stitch"),
    summary="Cr-Stitch2 (Table 3.2): two BaseCNNs joined by cross-stitch units",
    paths=2,
    routing="stitch",
    **_BASECNN,
)
register_model(
    "basecnn_{P}",
    _cnn(BASECNN),
    summary="BaseCNN-{P} (Table 3.2): {P} independent BaseCNNs, outputs averaged",
    listed={"P": (2, 3, 4)},
    **_BASECNN,
)
register_model(
    "basecnn_{P}cc",
    _cnn(BASECNN, routing="cc"),
    summary="BaseCNN-{P}-CC (Fig. 3.4): {P} BaseCNNs mixed by cross-connections",
    listed={"P": (2, 3, 4)},
    routing="cc",
    **_BASECNN,
)
register_model(
    "basecnn_{P}cp",
    _cnn(BASECNN, routing="cp"),
    summary="BaseCNN-{P}-CP (Fig. 3.2): cross-prediction routers replace every other convolution",
    listed={"P": (2, 3, 4)},
    routing="cp",
    **_BASECNN,
)


def _ensemble(names: tuple[str, ...]):
    def build(*, num_classes: int, in_channels: int, input_size: int) -> Ensemble:
        kwargs = {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size}
        return Ensemble([create_model(name, **kwargs) for name in names])

    return build


register_model(
    "basecnn_ensemble",
    _ensemble(("basecnn",) * 3),
    summary="BaseCNN Ensemble (Table 3.2): three BaseCNNs trained apart, predictions averaged",
    routing="ensemble",
    **_BASECNN,
)
register_model(
    "all_ensemble",
    _ensemble(("basecnn", "widecnn", "deepcnn")),
    summary="All Ensemble (Table 3.2): BaseCNN, WideCNN and DeepCNN, predictions averaged",
    routing="ensemble",
    **_BASECNN,
)
