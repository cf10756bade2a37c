"""Step time of multi-path networks: batched paths and routers against a naive looped version.

For a base network (``basecnn`` or ``resnet20``) and each P, one run times a training step
(forward, backward, SGD update) of four networks on the same random batch:

- ``single``: the base network, one path;
- ``paths``: P paths without routing (BaseCNN-P, or the ResNet with P paths);
- ``routed``: P paths with cross-connections (BaseCNN-P-CC, ResNet20-P-CC), the zoo's model;
- ``naive``: the same routed network written the naive way, P separate single-path networks
  and P gate networks in Python loops over paths, with activations held as lists of P tensors.
  :class:`NaiveRouted` builds it from ``single``-path copies of the zoo's layers, so it has the
  same layers and parameter count as ``routed``.

Timing interleaves the networks (round-robin over repeats, median per network), so a slow
spell of a noisy machine hits all of them. Peak memory: on CUDA the allocator's peak for one
step; on CPU the growth of the resident set (VmHWM) of a fresh process that runs only that
network, since a process shares one heap between networks.
"""

from __future__ import annotations

import copy
import multiprocessing
import statistics
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from routemix.errors import RoutemixError
from routemix.models import count_parameters, create_model
from routemix.models.basecnn import BASECNN, MultiPathCNN
from routemix.models.resnet_cifar import cifar_resnet
from routemix.nn import AveragePaths, CrossConnection, RepeatPaths

BASES = {"basecnn": 128, "resnet20": 64}  # the thesis' batch sizes (sec. 3.4.1, 3.4.2)
VARIANTS = ("single", "paths", "routed", "naive")


def build_variant(base: str, variant: str, num_paths: int, num_classes: int = 10) -> nn.Module:
    """One of the four networks of the benchmark."""
    if base not in BASES:
        raise ValueError(f"base must be one of {sorted(BASES)}, got {base!r}")
    if variant == "single":
        return create_model(base, num_classes=num_classes)
    if variant == "paths":
        if base == "basecnn":
            return MultiPathCNN(BASECNN, num_paths=num_paths, num_classes=num_classes)
        return cifar_resnet(20, num_paths=num_paths, num_classes=num_classes)
    routed = create_model(f"{base}_{num_paths}cc", num_classes=num_classes)
    if variant == "routed":
        return routed
    if variant == "naive":
        return NaiveRouted(routed, create_model(base, num_classes=num_classes))
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


class NaiveGates(nn.Module):
    """P_in separate gate networks (eq. 3.3-3.5), each an nn.Linear pair, called one by one."""

    def __init__(self, router: CrossConnection) -> None:
        super().__init__()
        gate = router.gate
        hidden, channels = gate.squeeze.weight.shape[1:]
        self.nets = nn.ModuleList(
            nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, gate.num_out)) for _ in range(gate.num_in)
        )
        self.num_out = gate.num_out

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        gates = []
        for net, x in zip(self.nets, xs):  # x: (B, 1, C, H, W) or (B, 1, D)
            z = (x.mean(dim=(-2, -1)) if x.dim() == 5 else x).squeeze(1)  # eq. 3.3
            gates.append(torch.softmax(net(z), dim=-1))  # eq. 3.4-3.5
        outputs = []
        for j in range(self.num_out):
            total = 0
            for g, x in zip(gates, xs):
                total = total + g[:, j].view(-1, *[1] * (x.dim() - 1)) * x
            outputs.append(total)
        return outputs


class NaiveRouted(nn.Module):
    """``routed`` rewritten as lists of P single-path layers and looped routers.

    ``single`` is the base network with one path; its layers line up with ``routed``'s once the
    routers are taken out (the zoo builds both from one layout), so every non-router layer of
    ``routed`` is replaced by P deep copies of the matching single-path layer.
    """

    def __init__(self, routed: nn.Module, single: nn.Module) -> None:
        super().__init__()
        routed_layers = _layers(routed)
        single_layers = [m for m in _layers(single) if not isinstance(m, (RepeatPaths, AveragePaths))]
        self.num_paths = routed.num_paths
        self.steps = nn.ModuleList()
        self.kinds: list[str] = []
        width, k = 1, 0
        for layer in routed_layers:
            if isinstance(layer, RepeatPaths):
                continue
            if isinstance(layer, AveragePaths):
                self.kinds.append("average")
                self.steps.append(nn.Identity())
            elif isinstance(layer, CrossConnection):
                self.kinds.append("route")
                self.steps.append(NaiveGates(layer))
                width = layer.gate.num_out
            else:
                self.kinds.append("layer")
                self.steps.append(nn.ModuleList(copy.deepcopy(single_layers[k]) for _ in range(width)))
                k += 1
        if k != len(single_layers):
            raise ValueError("the routed and single-path networks do not line up layer for layer")
        for module in self.modules():  # fresh weights: the copies must not start identical
            if hasattr(module, "reset_parameters") and module is not self:
                module.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        xs = [x.unsqueeze(1)]
        for kind, step in zip(self.kinds, self.steps):
            if kind == "layer":
                xs = [layer(h) for layer, h in zip(step, xs)]
            elif kind == "route":
                xs = step(xs)
            else:
                xs = torch.stack(xs).mean(0)
        return xs.squeeze(1)


def _layers(model: nn.Module) -> list[nn.Module]:
    """The flat layer sequence of a zoo model (MultiPathCNN: ``layers``; PathResNet: ``features`` + ``head``)."""
    if hasattr(model, "layers"):
        return list(model.layers)
    return [*model.features, *model.head]


@dataclass
class Timing:
    base: str
    num_paths: int
    variant: str
    batch: int
    parameters: int
    seconds: float  # median step time
    images_per_second: float
    peak_mb: float | None = None


def _step_fn(model: nn.Module, batch: int, device: torch.device):
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def time_variants(base: str, num_paths: int, *, steps: int = 5, repeats: int = 3, device: str = "cpu",
                  batch: int | None = None) -> list[Timing]:
    """Median step time of the four variants, interleaved round-robin."""
    torch.manual_seed(0)
    dev = torch.device(device)
    batch = batch or BASES[base]
    models = {v: build_variant(base, v, num_paths) for v in VARIANTS}
    fns = {v: _step_fn(m, batch, dev) for v, m in models.items()}
    for fn in fns.values():  # warm-up: allocator, kernels, lazy init
        fn()
    samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(repeats):
        for v, fn in fns.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            samples[v].append((time.perf_counter() - start) / steps)
    out = []
    for v in VARIANTS:
        seconds = statistics.median(samples[v])
        out.append(Timing(base, num_paths, v, batch, count_parameters(models[v]), seconds, batch / seconds))
    return out


def _rss_growth_mb(base: str, variant: str, num_paths: int, batch: int) -> float:
    """Child process: resident-set growth (MB) over building the network and two training steps."""
    torch.set_num_threads(1)

    def status(key: str) -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return float(line.split()[1]) / 1024
        raise RuntimeError(f"{key} not in /proc/self/status")

    start = status("VmRSS")
    step = _step_fn(build_variant(base, variant, num_paths), batch, torch.device("cpu"))
    step(), step()
    return status("VmHWM") - start


def peak_memory_mb(base: str, variant: str, num_paths: int, *, device: str = "cpu", batch: int | None = None) -> float | None:
    """Peak memory of one training step of one variant (see the module docstring); None where unmeasurable."""
    batch = batch or BASES[base]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        _step_fn(build_variant(base, variant, num_paths), batch, torch.device(device))()
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        open("/proc/self/status").close()
    except OSError:
        return None
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_rss_growth_mb, (base, variant, num_paths, batch))


def run(bases=("basecnn", "resnet20"), paths=(2, 3, 4), *, steps: int = 5, repeats: int = 3, batch: int | None = None,
        device: str = "cpu", memory: bool = True, progress: bool = True) -> list[Timing]:
    from tqdm.auto import tqdm

    unknown = [b for b in bases if b not in BASES]
    if unknown:
        raise RoutemixError(f"bench speed times {', '.join(BASES)}; not {', '.join(unknown)}.")
    jobs = [(b, p) for b in bases for p in paths]
    rows: list[Timing] = []
    for base, p in tqdm(jobs, desc="speed", disable=not progress):
        timings = time_variants(base, p, steps=steps, repeats=repeats, device=device, batch=batch)
        if memory:
            for t in timings:
                t.peak_mb = peak_memory_mb(base, t.variant, p, device=device, batch=batch)
        rows += timings
    return rows


def format_table(rows: list[Timing]) -> str:
    """Markdown: one line per (base, P) with step times, ratios and memory."""
    lines = [
        "| base | P | batch | single ms | paths ms | routed ms | naive ms | routed/naive | router overhead | routed img/s | peak MB single/paths/routed/naive |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, int], dict[str, Timing]] = {}
    for t in rows:
        groups.setdefault((t.base, t.num_paths), {})[t.variant] = t
    for (base, p), g in groups.items():
        overhead = (g["routed"].seconds - g["paths"].seconds) / g["routed"].seconds
        mem = "/".join("-" if g[v].peak_mb is None else f"{g[v].peak_mb:.0f}" for v in VARIANTS)
        lines.append(
            f"| {base} | {p} | {g['single'].batch} | {1e3 * g['single'].seconds:.1f} | {1e3 * g['paths'].seconds:.1f} | "
            f"{1e3 * g['routed'].seconds:.1f} | {1e3 * g['naive'].seconds:.1f} | "
            f"{g['routed'].seconds / g['naive'].seconds:.2f} | {100 * overhead:+.1f}% | "
            f"{g['routed'].images_per_second:.0f} | {mem} |"
        )
    return "\n".join(lines)
