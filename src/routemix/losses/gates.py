"""Regularise the routers' gates with the NMM-EM loss (thesis ch. 5.1) and a global variant (ch. 5.2).

A gating vector ``G_i = softmax(A_i)`` (eq. 3.5) is a soft assignment of the tensor on incoming
path i to the P_out outgoing paths: a clustering of that path's inputs into P_out clusters. Trained
with the task loss alone, some gating vectors send nearly everything to one path whatever the
input (ch. 5.1). The thesis adds the NMM-EM objective (eq. 4.22) on the relevance scores ``A_i``
(before the softmax) of every gate network, weighted 0.01 against the task loss, with cluster
priors "since the gate clustering shall be treated as an uneven clustering task".

Two scopes, both an :class:`~routemix.losses.nmm.NMMLoss` per router:

``local`` (ch. 5.1, the thesis' regulariser)
    Every gating vector is its own mixture: the P_in gate networks of a router are P_in mixtures
    of P_out clusters, each (i, j) score normalised over the batch on its own (eq. 4.11), each i
    with its own priors. The loss of a router is the sum over its P_in vectors of eq. 4.22.

``global`` (ch. 5.2, our design)
    One mixture per router: its outgoing paths are the clusters, and the data points are all
    (sample, incoming path) pairs that reach the layer. The scores ``(B, P_in, P_out)`` become a
    batch of ``B * P_in`` assignments; each outgoing path's scores are normalised over that
    whole batch, with one set of priors for the layer. Why: the local loss asks every incoming
    path to spread its own inputs over all outgoing paths, which fights the specialisation
    routing is for (an incoming path that rightly sends its tensors to one successor, while
    another path feeds the other successor, is penalised). What a layer needs is that each of
    its outgoing paths receives a share of what arrives, and that an outgoing path stands for
    one kind of input whichever path it came from. With shared statistics the offset between
    gate networks survives the normalisation, so gates may specialise, while the layer's
    clusters (its outgoing paths) must all be used. The thesis asks for a regulariser that
    "considers the entire layer with parallel paths and multiple gating functions"; this is one.
    Applied to every router, it is the network-wide version: outgoing paths of different layers
    are different clusters, so each router keeps its own mixture and the losses add.

What neither can see: eq. 4.11 removes a constant offset and scale of each cluster's scores, so a
bias that makes a gate favour one path for every sample is invisible to the loss; it acts on
how the scores vary with the input, and the gate's balance follows only through training with
the task loss. ``routemix bench gates`` measures whether that is enough.

Gate networks with one outgoing path are skipped (a softmax over one path is constant 1).
The thesis lowers the weight as the number of paths grows: each mixture's loss grows with P.

For comparison, :class:`LoadBalancingLoss` is the auxiliary loss that sparsely-gated mixtures of
experts use instead (``balance``); :func:`gate_regularizer` builds any of the three by name.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

from torch import Tensor, nn
from torch.nn.functional import one_hot

from routemix.losses.nmm import NMMLoss
from routemix.nn.gates import GateNetwork

SCOPES = ("local", "global")
REGULARIZERS = ("none", *SCOPES, "balance")
DEFAULT_WEIGHT = 0.01  # ch. 5.1: "a weighting coefficient ... of 0.01 for our experiments"


def gate_networks(model: nn.Module, routers: Sequence[str] | None = None) -> dict[str, tuple[int, int]]:
    """``{module name: (P_in, P_out)}`` of the gate networks in ``model`` with more than one outgoing
    path, in module order; ``routers`` keeps only names matching one of these shell patterns."""
    found = {
        name: (m.num_in, m.num_out) for name, m in model.named_modules() if isinstance(m, GateNetwork) and m.num_out > 1
    }
    if routers is None:
        return found
    chosen = {name: shape for name, shape in found.items() if any(fnmatch.fnmatchcase(name, p) for p in routers)}
    unmatched = [p for p in routers if not any(fnmatch.fnmatchcase(name, p) for name in found)]
    if unmatched:
        listed = ", ".join(found) or "none"
        raise ValueError(
            f"no gate network matches {', '.join(map(repr, unmatched))}; "
            f"the model's gate networks with more than one outgoing path: {listed}."
        )
    return chosen


def _check_scores(names: Sequence[str], scores: Mapping[str, Tensor]) -> None:
    missing = [name for name in names if name not in scores]
    if missing:
        raise ValueError(
            f"no relevance scores for gate network(s) {', '.join(missing)}; pass what GateTrace collected."
        )


class GateClusteringLoss(nn.Module):
    """Sum over routers of the NMM-EM loss on their relevance scores (see the module docstring).

    Args:
        gates: ``{gate network name: (P_in, P_out)}``, as :func:`gate_networks` gives it.
        scope: ``"local"`` (one mixture per gating vector, ch. 5.1) or ``"global"`` (one per router).
        gamma: eq. 4.12's temperature; 5 as for batches of 128 (the supervised batch size).
        priors: learn cluster priors (eq. 4.18), as ch. 5.1 recommends for gates.

    ``forward(scores)`` takes ``{name: A}`` with ``A`` of shape ``(B, P_in, P_out)`` (what
    :class:`~routemix.nn.gates.GateTrace` collects as ``trace.scores``) and returns the scalar
    loss, unweighted.
    """

    def __init__(
        self, gates: Mapping[str, tuple[int, int]], *, scope: str = "local", gamma: float = 5.0, priors: bool = True
    ) -> None:
        super().__init__()
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}.")
        if not gates:
            raise ValueError("no gate network to regularise: the model has no router with more than one outgoing path.")
        self.scope = scope
        self.names = list(gates)
        self.losses = nn.ModuleList(
            NMMLoss(p_out, gamma, priors=priors, num_mixtures=p_in if scope == "local" else 1)
            for p_in, p_out in gates.values()
        )

    @classmethod
    def for_model(cls, model: nn.Module, routers: Sequence[str] | None = None, **kwargs) -> "GateClusteringLoss":
        """The regulariser for every gate network of ``model`` (or those matching ``routers``)."""
        return cls(gate_networks(model, routers), **kwargs)

    def extra_repr(self) -> str:
        return f"scope={self.scope!r}, routers={len(self.names)}"

    def forward(self, scores: Mapping[str, Tensor]) -> Tensor:
        _check_scores(self.names, scores)
        total = 0.0
        for name, loss in zip(self.names, self.losses):
            a = scores[name]
            if loss.num_mixtures == 1:  # global scope, or one incoming path: (B * P_in, P_out)
                a = a.flatten(0, 1)
            total = total + loss(a).loss
        return total


class LoadBalancingLoss(nn.Module):
    """The load-balancing loss of sparsely-gated mixtures of experts (Switch Transformer, Fedus et
    al. 2022, eq. 4-6), for every gating vector of the given gate networks.

    For a gating vector with P outgoing paths over a batch: ``f_j``, the share of samples whose
    most probable path is j, and ``m_j``, the mean gate probability of j; the loss is
    ``P * sum_j f_j m_j``, 1 when both are uniform, P when one path takes everything. ``f`` is not
    differentiable; the gradient reaches the gates through ``m``, pushing probability away from
    the busiest paths. Summed over routers, averaged over a router's incoming paths. The gates are
    ``softmax(A)`` of the raw scores (eq. 3.5), i.e. those of softmax-allocated routers.

    ``forward(scores)`` takes ``{name: A}`` as :class:`GateClusteringLoss` does.
    """

    def __init__(self, gates: Mapping[str, tuple[int, int]]) -> None:
        super().__init__()
        if not gates:
            raise ValueError("no gate network to balance: the model has no router with more than one outgoing path.")
        self.names = list(gates)

    @classmethod
    def for_model(cls, model: nn.Module, routers: Sequence[str] | None = None) -> "LoadBalancingLoss":
        return cls(gate_networks(model, routers))

    def extra_repr(self) -> str:
        return f"routers={len(self.names)}"

    def forward(self, scores: Mapping[str, Tensor]) -> Tensor:
        _check_scores(self.names, scores)
        total = 0.0
        for name in self.names:
            gates = scores[name].softmax(dim=-1)  # (B, P_in, P_out)
            num_out = gates.shape[-1]
            first_choice = one_hot(gates.argmax(dim=-1), num_out).to(gates.dtype).mean(dim=0)  # f: (P_in, P_out)
            mean_gate = gates.mean(dim=0)  # m
            total = total + num_out * (first_choice * mean_gate).sum(dim=-1).mean()
        return total


def gate_regularizer(
    model: nn.Module, kind: str, *, routers: Sequence[str] | None = None, priors: bool = True
) -> nn.Module | None:
    """The regulariser called ``kind`` (one of :data:`REGULARIZERS`) for ``model``'s gate networks
    (those matching the shell patterns ``routers``, default all); ``None`` for ``"none"``.
    ``priors`` applies to the NMM-EM ones."""
    if kind not in REGULARIZERS:
        raise ValueError(f"gate regulariser must be one of {REGULARIZERS}, got {kind!r}.")
    if kind == "none":
        return None
    if kind == "balance":
        return LoadBalancingLoss.for_model(model, routers)
    return GateClusteringLoss.for_model(model, routers, scope=kind, priors=priors)
