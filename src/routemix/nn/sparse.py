"""Sparse multi-path routing: each sample goes to its top-k paths only (thesis sec. 5.3).

The thesis closes with "divide to paths, compute, and accumulate layer-wise": a router sends an
incoming tensor to one or a few of the P parallel paths of the next layer, the paths compute, and
their outputs are summed into one tensor again. :class:`SparseRouting` is that layer, computed
sparsely: a path runs only on the samples routed to it, so the cost per sample grows with k and
not with P.

How one forward pass works, without a Python loop over paths:

1. **Route.** A :class:`~routemix.nn.gates.GateNetwork` with one incoming path gives gate
   probabilities ``g`` (B, P) (eq. 3.3-3.5); each sample picks its k most probable paths.
2. **Divide.** Every path has ``capacity`` slots. The k * B (sample, path) assignments fill the
   slots of their path in priority order: everybody's first choice before anybody's second, and
   within one choice rank, batch order (GShard's rule). The result is one multi-path tensor
   ``(capacity, P, C, H, W)``: slot s of path j holds the s-th sample routed to j, and unused
   slots are zeros. This is the library's multi-path convention with the slot axis as batch, so
   any stack of path layers (:class:`~routemix.nn.paths.PathConv2d`, ...) computes all paths at
   once, as one grouped convolution.
3. **Compute** the paths on the slots.
4. **Accumulate.** Sample b's output is ``sum_j g_bj * path_j(x_b)`` over the paths that took it
   (eq. 3.7 restricted to the chosen paths), scattered back to ``(B, C', H', W')``.

Capacity and overflow. In training, ``capacity = ceil(capacity_factor * k * B / P)``: compute is
``P * capacity ~ capacity_factor * k * B`` samples' worth whatever P is. An assignment that finds
its path full is, by default (``overflow="drop"``), dropped: that path does not compute on the
sample and contributes nothing to its output (the other chosen paths still do); a sample all of
whose choices overflow gets zeros from this layer. With ``overflow="reroute"`` it goes instead to
the sample's next most probable path that still has room, weighted by that path's gate, so with
``capacity_factor >= 1`` no sample loses a path and compute stays bounded.
``capacity_factor=None`` sizes the slots to the busiest path of the batch, so nothing is
dropped. In evaluation mode nothing is ever dropped (slots sized to the busiest path), so a
prediction does not depend on which other samples share its batch.

Combine weights. The accumulated output uses the gate probabilities of the chosen paths as they
are, not renormalised over the k chosen (Switch Transformer's choice): renormalised, a top-1
router's weight would be exactly 1 and the gate network would get no gradient from the task.

Allocation. ``allocation="softmax"`` routes by ``softmax(A)`` of the raw relevance scores, as
sparsely-gated mixtures of experts do. ``allocation="cluster"`` is the clustering-based router of
sec. 5.3: the scores are first normalised over the batch per path without affine parameters
(eq. 4.11, running statistics at inference), so a sample goes to the path whose cluster it falls
under, ``softmax(a*)`` being the NMM-EM posterior (eq. 4.20). Normalised scores keep a constant
offset from sending every sample to one path, which is the failure the NMM-EM loss cannot see on
raw scores (see :mod:`routemix.losses.gates`).

Batch norm inside the paths would see the zero slots as samples: normalise after accumulation
(as :mod:`routemix.models.sparse_cnn` does), where the tensor is an ordinary batch again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from routemix.nn.gates import GateNetwork
from routemix.nn.paths import check_num_paths

ALLOCATIONS = ("softmax", "cluster")
OVERFLOWS = ("drop", "reroute")


@dataclass
class DispatchPlan:
    """Where each (sample, path) assignment of a batch goes. Assignments are listed in the order
    they were tried: everybody's first choice, then everybody's second choice, ... (only the
    samples still needing a path take part in a later round); ``kept`` marks those that found a
    free slot. Indices are into the flattened ``(capacity * P)`` slot axis."""

    sample: Tensor  # (A,) sample of each assignment tried
    path: Tensor  # (A,) path it was routed to
    weight: Tensor  # (A,) its combine weight, the gate probability g_bj
    slot: Tensor  # (A,) flattened slot index position * P + path (meaningful where kept)
    kept: Tensor  # (A,) bool: False where the path was full (overflow)
    rank: Tensor  # (A,) which of the sample's choices this is (0: its most probable path)
    capacity: int
    num_paths: int
    k: int  # assignments each sample asked for

    @property
    def load(self) -> Tensor:
        """(P,) number of assignments routed to each path by the samples' top-k choices, before capacity."""
        return torch.bincount(self.path[self.rank < self.k], minlength=self.num_paths)

    @property
    def dropped(self) -> int:
        """Number of the k * B requested assignments that found no slot."""
        return int((self.rank < self.k).sum()) - int(self.kept.sum())

    @property
    def rerouted(self) -> int:
        """Number of assignments served by a path beyond the sample's top k (``overflow="reroute"``)."""
        return int((self.kept & (self.rank >= self.k)).sum())


def top_k_paths(gates: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k most probable paths of every sample and their gate probabilities, best first: two
    ``(B, k)`` tensors from gates ``(B, P)``."""
    weights, paths = gates.topk(k, dim=1)
    return paths, weights


def plan_dispatch(
    paths: Tensor, weights: Tensor, num_paths: int, capacity: int | None, *, k: int | None = None
) -> DispatchPlan:
    """Assign samples to slots of ``capacity`` per path, from their ranked choices ``paths`` (B, R)
    and the gate probabilities ``weights`` (B, R) of those choices.

    ``k=None`` (overflow ``"drop"``): each of the R choices is one assignment; one that finds its
    path full is dropped. ``k < R`` (overflow ``"reroute"``): each sample takes the first k of its
    R choices that have room, so an assignment that finds its path full falls back to the sample's
    next choice. Either way the choices are tried in rounds, every sample's r-th choice in batch
    order before anybody's (r+1)-th (GShard's priority). ``capacity=None`` sizes the slots to the
    busiest path of the top-k choices, so nothing overflows.
    """
    batch, ranks = paths.shape
    k = ranks if k is None else k
    if not 1 <= k <= ranks:
        raise ValueError(f"k must be between 1 and the number of choices ({ranks}), got {k}.")
    if capacity is None:
        capacity = max(int(torch.bincount(paths[:, :k].reshape(-1), minlength=num_paths).max()), 1)
    load = paths.new_zeros(num_paths)
    needed = paths.new_full((batch,), k)  # assignments each sample still needs
    tried = []
    for rank in range(ranks):  # rounds over choice ranks (at most P), not over paths
        sample = (needed > 0).nonzero().squeeze(1)
        if sample.numel() == 0:
            break
        path = paths[sample, rank]
        one_hot = nn.functional.one_hot(path, num_paths)
        position = load[path] + (one_hot.cumsum(0) * one_hot).sum(1) - 1  # rank of the assignment within its path
        kept = position < capacity
        load = load + torch.bincount(path[kept], minlength=num_paths)
        needed[sample[kept]] -= 1  # a sample appears once per round
        tried.append(
            (sample, path, weights[sample, rank], position * num_paths + path, kept, torch.full_like(sample, rank))
        )
    sample, path, weight, slot, kept, rank = (torch.cat(column) for column in zip(*tried))
    return DispatchPlan(sample, path, weight, slot, kept, rank, capacity, num_paths, k)


def dispatch(x: Tensor, plan: DispatchPlan) -> Tensor:
    """``x`` (B, ...) -> slots ``(capacity, P, ...)``: slot (s, j) holds the s-th sample routed to
    path j, zeros where no sample is. Gradients flow back to ``x``."""
    slots = x.new_zeros(plan.capacity * plan.num_paths, *x.shape[1:])
    slots = slots.index_copy(0, plan.slot[plan.kept], x[plan.sample[plan.kept]])
    return slots.view(plan.capacity, plan.num_paths, *x.shape[1:])


def combine(y: Tensor, plan: DispatchPlan, batch_size: int) -> Tensor:
    """Path outputs on the slots ``(capacity, P, ...)`` -> ``(B, ...)``: each sample's output is the
    gate-weighted sum of the outputs of the paths that took it."""
    flat = y.reshape(plan.capacity * plan.num_paths, *y.shape[2:])
    kept = plan.kept
    weight = plan.weight[kept].to(flat.dtype).view(-1, *([1] * (flat.dim() - 1)))  # gates stay float32 under autocast
    contributions = flat[plan.slot[kept]] * weight
    out = flat.new_zeros(batch_size, *flat.shape[1:])
    return out.index_add(0, plan.sample[kept], contributions)


class SparseRouting(nn.Module):
    """Divide a batch among P paths (top-k per sample), compute only there, accumulate.

    Args:
        paths: a multi-path module taking ``(S, P, C, ...)`` to ``(S, P, C', ...)`` with S arbitrary
            (for example :class:`~routemix.nn.paths.PathConv2d`). It must map a zero input to zero
            only if you rely on the zero slots being cheap to ignore: their outputs are never read.
        num_paths: P.
        channels: C, the channels (or features) the gate network reads after global average pooling.
        k: paths per sample (1 <= k <= P).
        allocation: ``"softmax"`` (route by raw scores) or ``"cluster"`` (by the batch-normalised
            scores of eq. 4.11); see the module docstring.
        capacity_factor: slots per path in training are ``ceil(capacity_factor * k * B / P)``;
            ``None`` never drops. Evaluation never drops.
        overflow: what happens to an assignment whose path is full in training: ``"drop"`` (the
            path skips the sample) or ``"reroute"`` (it goes to the sample's next most probable
            path with room; with ``capacity_factor >= 1`` every sample then gets k paths).
        gate_hidden: hidden width of the gate network (default as for the routers).

    Input ``(B, C, H, W)`` or ``(B, C)``; output ``(B, C', ...)``, the accumulated path outputs.
    The gate network is ``.gate``, so :class:`~routemix.nn.gates.GateTrace`, the gate statistics
    and the gate regularisers see it like any router's (as a router with one incoming path).
    """

    def __init__(
        self,
        paths: nn.Module,
        num_paths: int,
        channels: int,
        k: int = 1,
        *,
        allocation: str = "softmax",
        capacity_factor: float | None = 1.25,
        overflow: str = "drop",
        gate_hidden: int | None = None,
    ) -> None:
        super().__init__()
        check_num_paths(num_paths)
        if not 1 <= k <= num_paths:
            raise ValueError(f"k must be between 1 and the number of paths ({num_paths}), got {k}.")
        if allocation not in ALLOCATIONS:
            raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}.")
        if capacity_factor is not None and not capacity_factor > 0:
            raise ValueError(f"capacity_factor must be positive or None, got {capacity_factor}.")
        if overflow not in OVERFLOWS:
            raise ValueError(f"overflow must be one of {OVERFLOWS}, got {overflow!r}.")
        self.num_paths, self.k, self.allocation = num_paths, k, allocation
        self.capacity_factor, self.overflow = capacity_factor, overflow
        self.gate = GateNetwork(1, num_paths, channels, gate_hidden, normalize_scores=allocation == "cluster")
        self.paths = paths

    def extra_repr(self) -> str:
        return (
            f"num_paths={self.num_paths}, k={self.k}, allocation={self.allocation!r}, "
            f"capacity_factor={self.capacity_factor}, overflow={self.overflow!r}"
        )

    def capacity(self, batch_size: int) -> int | None:
        """Slots per path for a batch of ``batch_size`` (None: as many as the busiest path needs)."""
        if not self.training or self.capacity_factor is None:
            return None
        return max(math.ceil(self.capacity_factor * self.k * batch_size / self.num_paths), 1)

    def plan(self, x: Tensor) -> DispatchPlan:
        """Route ``x``: gate probabilities, ranked paths, slots."""
        gates = self.gate(x.unsqueeze(1)).squeeze(1)  # (B, P)
        capacity = self.capacity(x.shape[0])
        rerouting = self.overflow == "reroute" and capacity is not None
        paths, weights = top_k_paths(gates, self.num_paths if rerouting else self.k)  # every path ranked, as fallbacks
        return plan_dispatch(paths, weights, self.num_paths, capacity, k=self.k)

    def forward(self, x: Tensor) -> Tensor:
        plan = self.plan(x)
        return combine(self.paths(dispatch(x, plan)), plan, x.shape[0])


def sparse_top_k(model: nn.Module) -> dict[str, int]:
    """``{gate network name: k}`` for every :class:`SparseRouting` layer of ``model``: the routers
    whose gates pick k paths per sample (for :func:`routemix.metrics.path_usage`)."""
    return {
        f"{name}.gate" if name else "gate": m.k for name, m in model.named_modules() if isinstance(m, SparseRouting)
    }
