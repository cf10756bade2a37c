"""Gate networks (thesis eq. 3.3-3.5) and :class:`GateTrace`, which shows their outputs to callers.

Every incoming path i of a router has its own gate network: global average pooling (eq. 3.3), a
dense layer, ReLU, a dense layer giving n relevance scores ``A_i`` (eq. 3.4), and softmax over
the n outgoing paths (eq. 3.5). The P_in gate networks of a router run as one batched computation
(:class:`~routemix.nn.paths.PathLinear`), so a router's gates are one tensor ``(B, P_in, P_out)``.

Hidden width. The thesis gives the form (two dense layers with ReLU, "channel-wise attention" after
SENets) but not the width. We use SENet's reduction ratio, ``hidden = channels // 16``, with a floor of
8 so that narrow inputs (the 3-channel image, a 16-channel ResNet stem) still get a useful hidden
layer. The parameter counts the thesis prints rule out much wider gates: with ``channels // 4``,
ResNet50-2-CC would have about 2.8M gate parameters, 50.2M in all against the printed 47.5M, while
``channels // 16`` gives 48.1M; in the small networks (BaseCNN, CIFAR ResNets) the gates are under
1% of the count either way.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from routemix.nn.paths import PathLinear, check_num_paths

GATE_REDUCTION = 16
MIN_GATE_HIDDEN = 8


def default_gate_hidden(channels: int) -> int:
    """Hidden width of a gate network reading ``channels`` features (see the module docstring)."""
    return max(channels // GATE_REDUCTION, MIN_GATE_HIDDEN)


class GateNetwork(nn.Module):
    """P_in gate networks in one module: ``(B, P_in, C, H, W)`` or ``(B, P_in, C) -> (B, P_in, P_out)``.

    Row ``[b, i]`` of the output is the gate vector ``G_i`` of eq. 3.5 for sample ``b``: the soft
    probabilities of routing incoming path i to each outgoing path. :meth:`scores` gives the
    relevance scores ``A_i`` before the softmax (eq. 3.4), the input of the clustering regulariser.

    ``normalize_scores=True`` makes the gates NMM-EM posteriors: each score ``A_ij`` is normalised
    over the batch without affine parameters (eq. 4.11, running statistics at inference) before the
    softmax, ``G_i = softmax(A_i*)`` (eq. 4.20). The clustering-based sparse router uses it
    (:mod:`routemix.nn.sparse`). :meth:`scores` still returns the raw ``A``.
    """

    def __init__(
        self, num_in: int, num_out: int, channels: int, hidden: int | None = None, *, normalize_scores: bool = False
    ) -> None:
        super().__init__()
        self.num_in, self.num_out = check_num_paths(num_in), check_num_paths(num_out)
        hidden = default_gate_hidden(channels) if hidden is None else hidden
        self.squeeze = PathLinear(num_in, channels, hidden)  # W_1 of eq. 3.4, one per incoming path
        self.excite = PathLinear(num_in, hidden, num_out)  # W_2 of eq. 3.4
        self.score_norm = nn.BatchNorm1d(num_in * num_out, affine=False) if normalize_scores else None

    def scores(self, x: Tensor) -> Tensor:
        """Relevance scores A (eq. 3.3-3.4), shape ``(B, P_in, P_out)``."""
        z = x.mean(dim=(-2, -1)) if x.dim() == 5 else x  # eq. 3.3: channel descriptor Z_i
        return self.excite(torch.relu(self.squeeze(z)))

    def forward(self, x: Tensor) -> Tensor:
        scores = self.scores(x)
        if self.score_norm is not None:  # eq. 4.11 over the batch, each (i, j) on its own
            scores = self.score_norm(scores.flatten(1)).view_as(scores)
        return torch.softmax(scores, dim=-1)  # eq. 3.5 (eq. 4.20 with normalised scores)


class GateTrace:
    """Collect the gates (and relevance scores) of every gate network that runs inside the block.

    >>> with GateTrace(model) as trace:
    ...     logits = model(images)
    >>> trace.gates["router2.gate"].shape   # (B, P_in, P_out), still part of the autograd graph

    Keys are the gate networks' qualified module names, in the order they ran. A gate network that
    runs twice in one forward pass keeps its last output. Nothing is stored on the model, so traces
    can nest and models stay free of global state.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.gates: OrderedDict[str, Tensor] = OrderedDict()
        self.scores: OrderedDict[str, Tensor] = OrderedDict()
        self._handles: list = []

    def __enter__(self) -> "GateTrace":
        for name, module in self.model.named_modules():
            if isinstance(module, GateNetwork):
                self._handles.append(module.excite.register_forward_hook(self._record(self.scores, name)))
                self._handles.append(module.register_forward_hook(self._record(self.gates, name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @staticmethod
    def _record(store: dict, name: str):
        def hook(module, inputs, output):
            store.pop(name, None)  # re-insert so the order is the order of the last run
            store[name] = output

        return hook
