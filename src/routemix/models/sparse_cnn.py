"""BaseCNN with sparse routing: every convolution divided among P paths, top-k per sample (sec. 5.3).

The thesis' open direction "divide to paths, compute, and accumulate layer-wise", built on
BaseCNN (Table 3.1) so that it compares with BaseCNN-X-CC of the same P. Each of BaseCNN's six
convolutions becomes a :class:`~routemix.nn.sparse.SparseRouting` layer: a gate network reads
the incoming feature map, the sample goes to its k most probable of P parallel 3x3 convolutions
(each as wide as BaseCNN's), and the chosen paths' outputs, weighted by their gates, are summed.
Batch norm and ReLU follow the accumulation (batch norm inside a path would count the empty
slots of the sparse computation as samples), then BaseCNN's pooling and its dense head, shared by
all samples.

Registered names (P in 2, 4, 8; k in 1, 2):

- ``sparse_basecnn_{P}_top{k}``: the router of sparsely-gated mixtures of experts, top-k of
  ``softmax(A)``; train it with a load-balancing loss (``--gate-reg balance``) as such models are.
- ``clustered_basecnn_{P}_top{k}``: the clustering-based router of sec. 5.3, top-k of the NMM-EM
  posterior ``softmax(A*)`` of batch-normalised scores (eq. 4.11, 4.20); train it with the NMM-EM
  loss on its gates (``--gate-reg local``).

Per sample, a top-k layer computes k convolutions, so the multiply-adds of the convolutions
match BaseCNN-k (not BaseCNN-P) while the parameters grow with P: P=4, k=1 holds 1.41M
parameters and computes like BaseCNN.

By default every layer's paths start from the same filters (``path_init="shared"``) and an
assignment that finds its path full goes to the sample's next choice with room
(``overflow="reroute"``): with independently started paths and dropped overflow, the first form,
the clustering router's network barely trained (85-89% test error on Fashion-MNIST), because
overflowing samples got zeros and the paths wrote unrelated channels into one tensor.

Experimental: measured on Fashion-MNIST (``routemix bench sparse``, docs/RESULTS.md), these
networks still train worse than BaseCNN-4-CC at the benchmark's short budget (about 26-33% test
error with the softmax router, 43-52% with the clustering router, against 14%).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from routemix.errors import RoutemixError
from routemix.models.base import Classifier
from routemix.models.basecnn import BASECNN, CNNLayout
from routemix.models.registry import register_model
from routemix.nn.blocks import init_conv_bn
from routemix.nn.paths import PathConv2d
from routemix.nn.sparse import ALLOCATIONS, SparseRouting

PATH_INITS = ("independent", "shared")


class SparseCNN(Classifier):
    """A CNN of :class:`~routemix.models.basecnn.CNNLayout` whose convolutions are sparse P-path layers.

    ``top_k`` paths per sample, ``allocation``, ``capacity_factor`` and ``overflow`` as in
    :class:`~routemix.nn.sparse.SparseRouting`. ``path_init="shared"`` starts the P paths of every
    layer from the same filters (as sparse upcycling starts its experts from one dense layer), so
    that whichever path a sample takes, the next layer first reads the same channels;
    ``"independent"`` initialises each path on its own.
    """

    def __init__(
        self,
        layout: CNNLayout = BASECNN,
        *,
        num_paths: int = 4,
        top_k: int = 1,
        allocation: str = "softmax",
        capacity_factor: float | None = 1.25,
        overflow: str = "reroute",
        path_init: str = "shared",
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        gate_hidden: int | None = None,
    ) -> None:
        if allocation not in ALLOCATIONS:
            raise RoutemixError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}.")
        if path_init not in PATH_INITS:
            raise RoutemixError(f"path_init must be one of {PATH_INITS}, got {path_init!r}.")
        if input_size % layout.downsample:
            raise RoutemixError(
                f"input_size must be a multiple of {layout.downsample} for this network, got {input_size}."
            )
        super().__init__(num_classes=num_classes, in_channels=in_channels, num_paths=num_paths, input_size=input_size)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels, k = in_channels, 0
        for s, stage in enumerate(layout.stages):
            for width in stage:
                k += 1
                layers[f"conv{k}"] = SparseRouting(
                    PathConv2d(num_paths, channels, width, 3, bias=False),
                    num_paths,
                    channels,
                    top_k,
                    allocation=allocation,
                    capacity_factor=capacity_factor,
                    overflow=overflow,
                    gate_hidden=gate_hidden,
                )
                layers[f"bn{k}"] = nn.BatchNorm2d(width)
                layers[f"relu{k}"] = nn.ReLU()
                channels = width
            if s < len(layout.stages) - 1 or layout.pool_last:
                layers[f"pool{s + 1}"] = nn.MaxPool2d(2)
        layers["flatten"] = nn.Flatten()
        features = channels * (input_size // layout.downsample) ** 2
        for d, width in enumerate(layout.dense, start=1):
            layers[f"fc{d}"] = nn.Linear(features, width, bias=False)
            layers[f"bn_fc{d}"] = nn.BatchNorm1d(width)
            layers[f"relu_fc{d}"] = nn.ReLU()
            features = width
        layers["classifier"] = nn.Linear(features, num_classes)
        # gates read as "layers.conv3.gate"
        self.layers = nn.Sequential(layers)
        init_conv_bn(self)
        if path_init == "shared":
            for module in self.modules():
                if isinstance(module, SparseRouting):
                    _start_paths_alike(module.paths)

    def forward_logits(self, x: Tensor) -> Tensor:
        return self.layers(x)


def _start_paths_alike(paths: PathConv2d) -> None:
    """Copy path 0's filters (and bias) to every other path of ``paths``."""
    with torch.no_grad():
        for tensor in (paths.conv.weight, paths.conv.bias):
            if tensor is not None:
                per_path = tensor.view(paths.num_paths, -1)
                per_path.copy_(per_path[:1].expand_as(per_path))


def _sparse_cnn(**defaults):
    def build(*, num_classes: int, in_channels: int, input_size: int, **kwargs) -> SparseCNN:
        return SparseCNN(
            BASECNN, num_classes=num_classes, in_channels=in_channels, input_size=input_size, **{**defaults, **kwargs}
        )

    return build


_SPARSE = {"family": "sparse-basecnn", "recipe": "cnn", "listed": {"P": (2, 4, 8), "k": (1, 2)}}
register_model(
    "sparse_basecnn_{P}_top{k}",
    _sparse_cnn(allocation="softmax"),
    summary="BaseCNN whose convolutions are {P} paths, top-{k} of softmax gates per sample (sec. 5.3)",
    routing="sparse-softmax",
    **_SPARSE,
)
register_model(
    "clustered_basecnn_{P}_top{k}",
    _sparse_cnn(allocation="cluster"),
    summary="BaseCNN whose convolutions are {P} paths, top-{k} of the NMM-EM posterior per sample (sec. 5.3)",
    routing="sparse-cluster",
    **_SPARSE,
)
