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
spell of a noisy machine hits all of them. On CPU the figures depend on the C library's allocator
(:mod:`routemix.allocator`: the ``routemix`` command keeps freed memory for reuse, and says so
under its table; the memory-measuring child processes inherit the setting). Peak memory of
building a network and two training steps: on CUDA the allocator's peak above what was allocated
before; on CPU the growth of the resident set (VmHWM) of a fresh process that runs only that
network, since a process shares one heap between networks.

Throughput mode (:func:`run_throughput`, ``routemix bench speed --throughput``), over any
registered image models (default :data:`THESIS_NETWORKS`: the BaseCNN family of Table 3.2,
ResNet20 and ResNet20-3-CC), each trained on synthetic in-memory uint8 images of its input shape
with 10 classes. One iteration is the library's own training path, timed in three parts:

- *loading*: waiting for the next batch from a real DataLoader over the in-memory set (the
  library's batch-indexing sampler, with ``workers`` worker processes if asked);
- *input*: the batch to the device, uint8 to float, the in-memory augmentation (random shift and
  flip) and normalisation, by :meth:`ClassificationDataModule.prepare`;
- *step*: forward, cross-entropy, backward and an SGD step.

Each model runs ``repeats`` blocks of ``steps`` iterations (one fresh epoch each, after one untimed
iteration). Reported per model: training images/s = batch / step time and end-to-end images/s =
batch / iteration time (all three parts), each time the median over blocks of the block's mean;
the loading share = loading time / total time and the input share likewise, summed over all
blocks (both in [0, 1]); peak memory as above; and the arithmetic utilisation.

FLOP convention: :func:`routemix.models.info.model_info` counts **multiply-adds** (MACs) of one
forward pass of one image (convolutions, linear layers and the routers' einsums, through
``torch.utils.flop_counter``; batch norm, activations and pooling are not counted). One MAC is
2 FLOPs, and a training step costs about 3 forward passes (the backward computes the gradients
of both the inputs and the weights of every layer, each as costly as the forward; ``torch``'s
counter agrees within 4% on single-path networks, the first layer needing no input gradient, but
counts a grouped convolution's weight gradient ``groups`` times over, so its own backward count
is not used for P-path networks), so

    training FLOPs per image = 3 x 2 x MACs per image,
    utilisation = training FLOPs per image x training images/s / matmul peak FLOP/s,

where the peak is measured in the same run on the same device with the same threads: the best of
three float32 matmuls of two n x n matrices (n = 4096 by default), at 2 n^3 FLOPs each, measured
once per repeat between the models' blocks (so that it shares their slow and fast spells on a
shared machine), median over the repeats (on CUDA in TF32 where cuDNN's convolutions are, see
:func:`matmul_peak_flops`). On CUDA every phase boundary synchronises the device, so the parts
add up (and loading does not overlap the step, as it would in an unsynchronised training loop).
"""

from __future__ import annotations

import copy
import functools
import gc
import multiprocessing
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from routemix.bench.routing import MODELS as TABLE_3_2
from routemix.errors import RoutemixError
from routemix.models import count_parameters, create_model
from routemix.models.basecnn import BASECNN, MultiPathCNN
from routemix.models.resnet_cifar import cifar_resnet
from routemix.nn import AveragePaths, CrossConnection, RepeatPaths

BASES = {"basecnn": 128, "resnet20": 64}  # the thesis' batch sizes (sec. 3.4.1, 3.4.2)
VARIANTS = ("single", "paths", "routed", "naive")
# The throughput mode's default networks: Table 3.2's BaseCNN family, ResNet20 and ResNet20-3-CC.
THESIS_NETWORKS = (*TABLE_3_2, "resnet20", "resnet20_3cc")


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
            nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, gate.num_out))
            for _ in range(gate.num_in)
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


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _sgd_step(model: nn.Module, device: torch.device) -> Callable[[Tensor, Tensor], None]:
    """A training step of ``model`` on ``device``: forward, cross-entropy, backward, SGD update."""
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(x: Tensor, y: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def fixed_batch_step(model: nn.Module, batch: int, device: torch.device, shape: tuple[int, ...] = (3, 32, 32)):
    """A training step on one fixed random batch, finished on the device when it returns."""
    train = _sgd_step(model, device)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        train(x, y)
        _synchronize(device)

    return step


def time_variants(
    base: str, num_paths: int, *, steps: int = 5, repeats: int = 3, device: str = "cpu", batch: int | None = None
) -> list[Timing]:
    """Median step time of the four variants, interleaved round-robin."""
    torch.manual_seed(0)
    dev = torch.device(device)
    batch = batch or BASES[base]
    models = {v: build_variant(base, v, num_paths) for v in VARIANTS}
    seconds = interleaved_median_seconds(
        {v: fixed_batch_step(m, batch, dev) for v, m in models.items()}, steps=steps, repeats=repeats
    )
    return [
        Timing(base, num_paths, v, batch, count_parameters(models[v]), seconds[v], batch / seconds[v]) for v in VARIANTS
    ]


def interleaved_median_seconds(
    steps_of: dict[str, Callable[[], None]], *, steps: int, repeats: int
) -> dict[str, float]:
    """Median seconds per call of each function: one warm-up call each (allocator, kernels, lazy
    init), then ``repeats`` rounds that time ``steps`` calls of every function in turn, so that a
    slow spell of a noisy machine hits all of them alike."""
    for fn in steps_of.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in steps_of}
    for _ in range(repeats):
        for name, fn in steps_of.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            samples[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(values) for name, values in samples.items()}


def _rss_growth_mb(build: Callable[[], nn.Module], batch: int, shape: tuple[int, ...] = (3, 32, 32)) -> float:
    """Child process: resident-set growth (MB) over building the network and two training steps."""
    torch.set_num_threads(1)

    def status(key: str) -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return float(line.split()[1]) / 1024
        raise RuntimeError(f"{key} not in /proc/self/status")

    start = status("VmRSS")
    step = fixed_batch_step(build(), batch, torch.device("cpu"), shape)
    step(), step()
    return status("VmHWM") - start


def training_peak_mb(
    build: Callable[[], nn.Module], batch: int, *, shape: tuple[int, ...] = (3, 32, 32), device: str = "cpu"
) -> float | None:
    """Peak memory (MB) of building ``build()`` and training it for two steps; None where unmeasurable.

    CUDA: the allocator's peak above what was allocated before. CPU: the resident-set growth of a
    fresh process (``build`` must then be picklable, e.g. a ``functools.partial`` of a builder).
    """
    if device.startswith("cuda"):
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step = fixed_batch_step(build(), batch, torch.device(device), shape)
        step(), step()
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    try:
        open("/proc/self/status").close()
    except OSError:
        return None
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_rss_growth_mb, (build, batch, shape))


def peak_memory_mb(
    base: str, variant: str, num_paths: int, *, device: str = "cpu", batch: int | None = None
) -> float | None:
    """Peak memory of one training step of one variant (see the module docstring); None where unmeasurable."""
    return training_peak_mb(
        functools.partial(build_variant, base, variant, num_paths), batch or BASES[base], device=device
    )


def run(
    bases=("basecnn", "resnet20"),
    paths=(2, 3, 4),
    *,
    steps: int = 5,
    repeats: int = 3,
    batch: int | None = None,
    device: str = "cpu",
    memory: bool = True,
    progress: bool = True,
) -> list[Timing]:
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
        "| base | P | batch | single ms | paths ms | routed ms | naive ms | routed/naive | router overhead | "
        "routed img/s | peak MB single/paths/routed/naive |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, int], dict[str, Timing]] = {}
    for t in rows:
        groups.setdefault((t.base, t.num_paths), {})[t.variant] = t
    for (base, p), g in groups.items():
        overhead = (g["routed"].seconds - g["paths"].seconds) / g["routed"].seconds
        mem = "/".join("-" if g[v].peak_mb is None else f"{g[v].peak_mb:.0f}" for v in VARIANTS)
        lines.append(
            f"| {base} | {p} | {g['single'].batch} | {1e3 * g['single'].seconds:.1f} | "
            f"{1e3 * g['paths'].seconds:.1f} | "
            f"{1e3 * g['routed'].seconds:.1f} | {1e3 * g['naive'].seconds:.1f} | "
            f"{g['routed'].seconds / g['naive'].seconds:.2f} | {100 * overhead:+.1f}% | "
            f"{g['routed'].images_per_second:.0f} | {mem} |"
        )
    return "\n".join(lines)


# --- throughput mode: training images/s, data loading, arithmetic utilisation ------------------


def forward_flops(multiply_adds: int) -> int:
    """FLOPs of a forward pass with ``multiply_adds`` MACs: one multiply-add is 2 FLOPs."""
    return 2 * multiply_adds


def training_flops(multiply_adds: int) -> int:
    """FLOPs of a training step (forward + backward) per image: about 3 forward passes."""
    return 3 * forward_flops(multiply_adds)


def arithmetic_utilisation(multiply_adds: int, images_per_second: float, peak_flops: float) -> float:
    """Training FLOP/s over the device's matmul peak FLOP/s (module docstring), as a fraction."""
    if peak_flops <= 0:
        raise ValueError(f"peak_flops must be positive, got {peak_flops}.")
    return training_flops(multiply_adds) * images_per_second / peak_flops


def matmul_peak_flops(device: str = "cpu", *, size: int = 4096, repeats: int = 3) -> float:
    """Measured FLOP/s of a float32 ``size`` x ``size`` matmul on ``device``: the best of ``repeats``
    timings after one warm-up, counting 2 size^3 FLOPs per product.

    On CUDA the matmul may use TF32 exactly when cuDNN's convolutions may
    (``torch.backends.cudnn.allow_tf32``, on by default), so the peak is that of the arithmetic the
    convolutions of the training step run in.
    """
    dev = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dev)
    b = torch.randn(size, size, generator=generator).to(dev)
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 if dev.type == "cuda" else matmul_tf32
    try:
        torch.mm(a, b)
        _synchronize(dev)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            _synchronize(dev)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
    return 2 * size**3 / best


@dataclass
class Throughput:
    model: str
    device: str
    batch: int
    workers: int
    parameters: int
    input_shape: tuple[int, ...]
    multiply_adds: int  # forward MACs per image
    training_flops: int  # per image: 3 x 2 x multiply_adds
    step_seconds: float  # median over blocks of the mean step time (forward, backward, SGD)
    images_per_second: float  # batch / step_seconds
    end_to_end_images_per_second: float  # loading + input + step
    loading_share: float  # loading time / total time, in [0, 1]
    input_share: float  # time to device, augmentation, normalisation / total time, in [0, 1]
    peak_flops: float  # matmul peak of the device, this run
    utilisation: float  # training FLOP/s / peak_flops
    peak_mb: float | None = None


class _TrainingLoop:
    """One model's training loop over a DataLoader of synthetic in-memory images, timed by part."""

    def __init__(
        self, name: str, shape: tuple[int, ...], batch: int, steps: int, workers: int, device: torch.device
    ) -> None:
        from routemix.data.classification import ClassificationDataModule

        self.device = device
        images = torch.randint(0, 256, (batch * (steps + 1), *shape), dtype=torch.uint8)
        labels = torch.randint(0, 10, (len(images),))
        self.data = ClassificationDataModule.from_tensors(
            (images, labels), (images[:batch], labels[:batch]), num_classes=10, batch_size=batch
        )
        loader = self.data.train_dataloader()  # the library's loader: whole batches indexed at once
        if workers:
            loader = DataLoader(
                loader.dataset,
                sampler=loader.sampler,
                batch_size=None,
                num_workers=workers,
                pin_memory=device.type == "cuda",
            )
        self.loader = loader
        self.model = create_model(name, num_classes=10)  # built for its default input, ``shape``
        self.train = _sgd_step(self.model, device)
        self.global_step = 0

    def _iteration(self, iterator) -> tuple[float, float, float]:
        start = time.perf_counter()
        images, labels = next(iterator)
        loaded = time.perf_counter()
        x = self.data.prepare(images.to(self.device, non_blocking=True), train=True, step=self.global_step)
        y = labels.to(self.device, non_blocking=True)
        _synchronize(self.device)
        prepared = time.perf_counter()
        self.train(x, y)
        _synchronize(self.device)
        self.global_step += 1
        return loaded - start, prepared - loaded, time.perf_counter() - prepared

    def block(self, steps: int) -> list[tuple[float, float, float]]:
        """(loading, input, step) seconds of ``steps`` iterations of a fresh epoch, after one untimed."""
        iterator = iter(self.loader)
        self._iteration(iterator)  # worker start-up and warm-up
        times = [self._iteration(iterator) for _ in range(steps)]
        del iterator  # shuts its workers down before the next model runs
        return times


def _image_model_info(name: str):
    from routemix.models.info import model_info

    info = model_info(name, num_classes=10)  # as the timed loop builds it
    if info.spec.input_shape is None:
        raise RoutemixError(f"bench speed --throughput times image models; {name} takes vectors.")
    return info


def run_throughput(
    models=THESIS_NETWORKS,
    *,
    batch: int = 128,
    steps: int = 5,
    repeats: int = 3,
    workers: int = 0,
    device: str = "cpu",
    peak_size: int = 4096,
    memory: bool = True,
    progress: bool = True,
) -> list[Throughput]:
    """Throughput, data-loading share, peak memory and arithmetic utilisation of each model (module docstring).

    The models' timing blocks and the matmul peak are interleaved round-robin over ``repeats``.
    """
    from tqdm.auto import tqdm

    for option, value in (("batch", batch), ("steps", steps), ("repeats", repeats), ("peak-size", peak_size)):
        if value < 1:
            raise RoutemixError(f"--{option} must be at least 1, got {value}.")
    if workers < 0:
        raise RoutemixError(f"--workers must be 0 or more, got {workers}.")
    infos = {name: _image_model_info(name) for name in models}  # every name checked before anything runs
    dev = torch.device(device)
    torch.manual_seed(0)
    loops = {
        name: _TrainingLoop(name, info.spec.input_shape, batch, steps, workers, dev) for name, info in infos.items()
    }
    samples: dict[str, list[list[tuple[float, float, float]]]] = {name: [] for name in loops}
    peaks = []
    with tqdm(total=repeats * len(loops), desc="throughput", disable=not progress) as bar:
        for _ in range(repeats):
            peaks.append(matmul_peak_flops(device, size=peak_size))
            for name, loop in loops.items():
                samples[name].append(loop.block(steps))
                bar.update()
    peak = statistics.median(peaks)
    rows = []
    for name, blocks in samples.items():
        info, loop = infos[name], loops.pop(name)
        step_seconds = statistics.median(sum(t[2] for t in block) / len(block) for block in blocks)
        iteration_seconds = statistics.median(sum(map(sum, block)) / len(block) for block in blocks)  # >= step_seconds
        loading, inputs, stepping = (sum(t[k] for block in blocks for t in block) for k in range(3))
        total = loading + inputs + stepping
        images_per_second = batch / step_seconds
        row = Throughput(
            name,
            str(dev),
            batch,
            workers,
            count_parameters(loop.model),
            info.spec.input_shape,
            info.multiply_adds,
            training_flops(info.multiply_adds),
            step_seconds,
            images_per_second,
            batch / iteration_seconds,
            loading / total,
            inputs / total,
            peak,
            arithmetic_utilisation(info.multiply_adds, images_per_second, peak),
        )
        del loop
        if memory:
            build = functools.partial(create_model, name, num_classes=10)
            row.peak_mb = training_peak_mb(build, batch, shape=info.spec.input_shape, device=device)
        rows.append(row)
    return rows


def format_throughput_table(rows: list[Throughput]) -> str:
    """Markdown: one line per model, after a line giving the device's measured matmul peak."""
    if not rows:
        return ""
    first = rows[0]
    lines = [
        f"matmul peak on {first.device}: {first.peak_flops / 1e9:.1f} GFLOP/s "
        f"(float32, {torch.get_num_threads()} threads); "
        f"batch {first.batch}, {first.workers} loader workers",
        "",
        "| model | params M | input | fwd GMACs/img | train GFLOP/img | step ms | train img/s | end-to-end img/s | "
        "loading % | input % | peak MB | train GFLOP/s | utilisation % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        memory = "-" if r.peak_mb is None else f"{r.peak_mb:.0f}"
        lines.append(
            f"| {r.model} | {r.parameters / 1e6:.3f} | {'x'.join(map(str, r.input_shape))} | "
            f"{r.multiply_adds / 1e9:.3f} | "
            f"{r.training_flops / 1e9:.3f} | {1e3 * r.step_seconds:.1f} | {r.images_per_second:.0f} | "
            f"{r.end_to_end_images_per_second:.0f} | {100 * r.loading_share:.1f} | "
            f"{100 * r.input_share:.1f} | {memory} | "
            f"{r.training_flops * r.images_per_second / 1e9:.1f} | {100 * r.utilisation:.1f} |"
        )
    return "\n".join(lines)
