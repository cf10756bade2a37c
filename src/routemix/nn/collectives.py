"""Collectives over the processes of a data-parallel run, and the layers built on them: plain
``torch.distributed`` calls that are no-ops in a single process, so the losses and networks that
use them run unchanged on one process, under Lightning's DDP launchers or ``torchrun``.

* :func:`global_batch_mean` / :func:`global_batch_moments`: statistics over the global batch,
  differentiable (NMM-EM's eq. 4.11 and 4.18 in :mod:`routemix.losses.nmm`, :class:`GlobalBatchNorm`);
* :func:`gather_from_processes` / :func:`sum_over_processes`: every sample once, for metrics;
* :class:`GlobalBatchNorm` and :func:`swap_batchnorm`: batch norm over the global batch on any
  device and backend (the Lightning plugin that applies it is
  :class:`routemix.train.distributed.GlobalBatchNormSync`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# --- the global batch of a data-parallel run ---------------------------------------------------
#
# EM on each process's share of a batch would be a different algorithm (eq. 4.11 over n/W
# samples, eq. 4.18 priors from n/W posteriors). When torch.distributed is initialised with more
# than one process, the statistics below are those of the global batch.
#
# Why an autograd all-reduce and not SyncBatchNorm: torch.nn.SyncBatchNorm refuses CPU tensors, so
# it could neither run with the gloo backend nor be tested on CPU, and it is a layer with affine
# parameters and its own buffers, where eq. 4.11 needs plain statistics (for (B, M*K) scores, the
# prior of eq. 4.18 and the "running" variant). A differentiable all-reduce (``all_reduce_sum``)
# works on every backend, and its backward all-reduces the incoming gradients: each process's
# scores get the gradient of the *sum* of all processes' losses through the shared mean and
# variance, and DDP's average of the parameter gradients is then exactly the gradient of the
# single-process loss over the global batch (SyncBatchNorm's backward does the same).


def data_parallel_world_size() -> int:
    """Processes of the initialised default torch.distributed group; 1 without one."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over all processes, differentiable (backward: the sum of the gradients).
    Functional collectives where they carry autograd (torch >= 2.14, which deprecates the older
    ``torch.distributed.nn`` function), that function before."""
    import torch.distributed as dist
    import torch.distributed._functional_collectives as collectives

    if hasattr(collectives, "all_reduce_backward"):
        return collectives.wait_tensor(collectives.all_reduce(tensor, "sum", dist.group.WORLD))
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(tensor)


def global_sum(values: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum over dim 0 of every process's rows (differentiable) and the global row count."""
    if data_parallel_world_size() == 1:
        return values.sum(dim=0), values.shape[0]
    count = values.new_full((1, *values.shape[1:]), float(values.shape[0]))
    total, counts = all_reduce_sum(torch.cat([values.sum(dim=0, keepdim=True), count])).unbind(0)
    return total, int(counts.flatten()[0].item())


def global_batch_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over dim 0 of the global batch: all processes' rows when data-parallel (shares of
    unequal size weighted by their row counts), the local rows otherwise. Differentiable."""
    total, count = global_sum(values)
    return total / count


def global_batch_moments(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean, 1/n variance (eq. 4.11) and row count n over dim 0 of the global batch, in two
    passes (mean first, then the mean squared deviation: no cancellation). Differentiable."""
    total, count = global_sum(values)
    mean = total / count
    squared, _ = global_sum((values - mean).square())
    return mean, squared / count, count


def process_rank_and_count() -> tuple[int, int]:
    """(rank, number of processes) of the initialised default process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_from_processes(tensor: Tensor) -> Tensor:
    """Every process's ``tensor`` concatenated along dim 0 in rank order (shares may differ in
    length); ``tensor`` itself in a single process. For metrics that need all samples at once."""
    import torch.distributed as dist

    _, count = process_rank_and_count()
    if count == 1:
        return tensor
    parts: list = [None] * count
    dist.all_gather_object(parts, tensor.detach().cpu())
    return torch.cat(parts)


def sum_over_processes(tensor: Tensor) -> Tensor:
    """``tensor`` summed over all processes (a new tensor; ``tensor`` itself in a single process)."""
    import torch.distributed as dist

    if process_rank_and_count()[1] == 1:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the global batch of a data-parallel run, on any device and backend.

    In training mode with several processes, the per-channel mean and 1/n variance are those of all
    processes' samples (:func:`global_batch_moments`, differentiable), and the
    running statistics are updated as ``nn.BatchNorm`` updates them (unbiased variance), identically
    on every process. Otherwise it is the batch norm it replaced. Made by
    :class:`routemix.train.distributed.GlobalBatchNormSync`.
    """

    original_class: type = nn.BatchNorm2d

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (batch, channels, ...), got {input.dim()}-D.")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and data_parallel_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        rows = input.movedim(1, -1).reshape(-1, self.num_features)  # every position of every sample
        mean, var, count = global_batch_moments(rows)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * count / max(count - 1, 1), factor)
        shape = (1, self.num_features) + (1,) * (input.dim() - 2)
        output = (input - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        return output


def swap_batchnorm(module: nn.Module, to_global: bool) -> nn.Module:
    """``module`` with each batch norm replaced by a :class:`GlobalBatchNorm` (``to_global``) or
    back to its original class, sharing parameters and buffers (like SyncBatchNorm's converter)."""
    converted = module
    is_global = isinstance(module, GlobalBatchNorm)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and to_global != is_global:
        cls = GlobalBatchNorm if to_global else module.original_class
        converted = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if to_global:
            converted.original_class = type(module)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, swap_batchnorm(child, to_global))
    return converted
