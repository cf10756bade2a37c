"""Figures of trained multi-path classifiers (thesis sec. 3.5, Figs. 3.7-3.10).

Each reads a classifier checkpoint of ``routemix train`` (:func:`routemix.train.evaluate.load_classifier`)
and, except the weight histograms, test images of the dataset it was trained on:

- ``routing-diagram`` (Fig. 3.7, :func:`routing_diagram`): one image's route through every router.
- ``gate-max`` (Fig. 3.8, :func:`gate_max`): the test images with the highest and lowest value of
  one gate, and an input synthesised to maximise it.
- ``gate-hist`` (Fig. 3.9, :func:`gate_hist`): class-wise histograms of one gate over the test set.
- ``weight-hist`` (Fig. 3.10, :func:`weight_hist`): weight histograms of the parallel paths.

Numbering. Routers are numbered by the order they run, from 1, counting one-to-many routers, and
paths from 1, so the gate "incoming path i to outgoing path j of router l" is the thesis' ``g^l_ij``
(VGG13-2-CC's ``g^2_21`` is ``--router layers.route1.gate --incoming 2 --outgoing 1``; its router 1
is the one-to-many cross-connection at the input). Path layers (``--layers``) are numbered from 1 in
the order they are declared, which for VGG13-2-CC gives the thesis' "layer 4, 6, 8, 11" (layer 11 is
the first dense layer). Test images and class labels keep the dataset's 0-based numbers.

Choices the thesis leaves open:

- Relative activation (Fig. 3.7) of a path tensor is its mean absolute activation over channels and
  positions divided by the sum of that value over the parallel tensors of the same layer. For the
  post-ReLU tensors that routers mostly read this is the thesis' "average activation"; the absolute
  value keeps it meaningful for signed tensors (the normalised image). A tensor without a path axis
  (the input of a one-to-many router) is the only tensor of its layer, so it is 1.
- Gate maximisation (Fig. 3.8) follows Simonyan et al. (2013, the thesis' [87]): gradient ascent on
  the gate's relevance score ``A_ij`` before the softmax (eq. 3.4), the network frozen in eval mode.
  The ascent and its regularisation are those of every synthesised image in routemix
  (:func:`routemix.viz.common.synthesize_inputs`: noise around mid-grey, Adam, an L2 pull towards
  grey (``--l2``), one-pixel jitter, a Gaussian blur of ``--blur`` pixels every 4 steps, pixels
  clipped to [0, 1]). Raising ``A_ij``
  can raise the other scores of its row too, so the gate itself may end lower than the best test
  images' (seen on a briefly trained BaseCNN-2-CC); ``--objective gate`` ascends ``log g_ij``
  instead, the score less the log-sum-exp of its row.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routemix.commands.options import add_option
from routemix.errors import RoutemixError
from routemix.viz.common import FORMATS, Figure, new_figure, save_figure, synthesize_inputs

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

OBJECTIVES = ("score", "gate")
GATE_LIMIT = 2000  # test images the gate figures read by default
EVAL_BATCH = 256
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ROUTER_KINDS = {
    "CrossConnection": "cross-connection",
    "OneToManyConnection": "one-to-many CC",
    "CrossPrediction": "cross-prediction",
    "LinearCrossPrediction": "dense cross-prediction",
    "OneToManyPrediction": "one-to-many CP",
}


# --- checkpoint and test images ----------------------------------------------------------------


@dataclass
class LoadedClassifier:
    """A trained classifier on its device and, for the figures that need them, test images."""

    path: Path
    network: Any  # a routemix.models.base.Classifier in eval mode
    state: dict
    device: Any
    datamodule: Any = None
    images: Any = None  # uint8 (N, C, H, W) as stored, for display
    labels: Any = None  # int64 (N,)
    class_names: list[str] | None = None

    @property
    def model(self) -> str:
        return self.state["model"]

    def prepare(self, images: "Tensor") -> "Tensor":
        """uint8 images -> the normalised float batch the network reads, on its device."""
        return self.datamodule.prepare(images.to(self.device), train=False)

    def class_name(self, label: int) -> str:
        return self.class_names[label] if self.class_names else f"class {label}"

    def source(self) -> str:
        """Which checkpoint and data a figure was drawn from, for its caption."""
        text = f"{self.model} from {self.path}"
        if self.datamodule is not None:
            n = len(self.images)
            text += f", {self.datamodule.dataset_name} test split (first {n} image{'s' if n != 1 else ''})"
        return text


def _checkpoint_file(checkpoint: str | Path) -> Path:
    path = Path(checkpoint)
    return path / "model.pt" if path.is_dir() else path


def load_for_figures(
    checkpoint: str | Path,
    *,
    data: bool = True,
    dataset: str | None = None,
    data_dir: str | None = None,
    limit: int | None = GATE_LIMIT,
    device: str = "auto",
    routed: bool = False,
) -> LoadedClassifier:
    """The classifier of ``checkpoint`` and (``data=True``) the first ``limit`` images of the test
    split it is drawn with: by default the dataset, data root, class subset and image size it was
    trained with, read and normalised as ``routemix eval`` does. ``routed=True``: a model without
    routers is an error (before any data is read)."""
    from routemix.train.common import torch_device
    from routemix.train.evaluate import load_classifier, test_datamodule

    path = _checkpoint_file(checkpoint)
    network, state = load_classifier(path)
    device = torch_device(device)
    loaded = LoadedClassifier(path, network.to(device), state, device)
    if routed:
        check_routed(network, state["model"])
    if not data:
        return loaded
    datamodule = test_datamodule(
        state,
        network,
        where=f"checkpoint {path}",
        dataset=dataset,
        data_dir=data_dir,
        batch_size=EVAL_BATCH,
        limit=limit,
    )
    import torch

    batches = list(datamodule.eval_dataloader())
    loaded.datamodule = datamodule
    loaded.images = torch.cat([images for images, _ in batches])
    loaded.labels = torch.cat([torch.as_tensor(labels) for _, labels in batches])
    loaded.class_names = dataset_class_names(datamodule)
    return loaded


def dataset_class_names(datamodule) -> list[str] | None:
    """Class names of a classification dataset, where it has them (ImageFolder names, Fashion-MNIST,
    MNIST, CIFAR-10); ``None`` otherwise."""
    folders = getattr(datamodule, "_class_names", None)  # an ImageFolder's, once set up
    if folders:
        return list(folders)
    name = datamodule.dataset_name
    if name == "cifar10":
        return list(CIFAR10_CLASSES)
    if name in ("mnist", "fashion_mnist"):
        from torchvision import datasets

        return list((datasets.MNIST if name == "mnist" else datasets.FashionMNIST).classes)
    return None


def display_image(image: "Tensor") -> tuple["np.ndarray", str | None]:
    """A uint8 (C, H, W) image or a float one in [0, 1] -> array and colormap for ``imshow``."""
    array = image.detach().cpu().float()
    if not image.dtype.is_floating_point:
        array = array / 255.0
    array = array.clamp(0, 1).permute(1, 2, 0).numpy()
    if array.shape[-1] == 1:
        return array[..., 0], "gray"
    return array, None


# --- gates -------------------------------------------------------------------------------------


def check_routed(network, model: str) -> None:
    """A clear error for a model without routers: it has no gates to draw."""
    from routemix.nn.gates import GateNetwork

    if not any(isinstance(m, GateNetwork) for m in network.modules()):
        raise RoutemixError(
            f"model {model} has no routers, so it has no gates to draw: the gate figures need a routed "
            "model such as basecnn_2cc, basecnn_2cp or vgg13_2cc."
        )


def gate_order(loaded: LoadedClassifier) -> list[str]:
    """The gate networks' names (``GateTrace`` keys) in the order they run."""
    import torch

    from routemix.nn.gates import GateTrace

    check_routed(loaded.network, loaded.model)
    with torch.no_grad(), GateTrace(loaded.network) as trace:
        loaded.network(loaded.prepare(loaded.images[:1]))
    return list(trace.gates)


def resolve_gate(name: str | None, order: list[str]) -> str:
    """``--router``: a gate network's name, its router's name, or a unique dotted suffix of either
    (``route1`` for ``layers.route1.gate``); ``None`` is the first router."""
    if name is None:
        return order[0]
    matches = [
        g
        for g in order
        if name in (g, g.removesuffix(".gate"))
        or _dotted_suffix(g, name)
        or _dotted_suffix(g.removesuffix(".gate"), name)
    ]
    if len(matches) != 1:
        why = "matches several" if matches else "is none of the"
        raise RoutemixError(f"--router {name!r} {why} gate networks of this model: {', '.join(order)}.")
    return matches[0]


def _dotted_suffix(name: str, suffix: str) -> bool:
    return name.endswith("." + suffix)


def check_gate_index(loaded: LoadedClassifier, gate: str, incoming: int, outgoing: int) -> tuple[int, int]:
    """1-based ``--incoming``/``--outgoing`` -> 0-based indices into the router's gates."""
    module = dict(loaded.network.named_modules())[gate]
    for option, value, size in (("--incoming", incoming, module.num_in), ("--outgoing", outgoing, module.num_out)):
        if not 1 <= value <= size:
            raise RoutemixError(
                f"{option} {value}: router {gate} has {size} {option[2:]} path{'s' if size > 1 else ''} "
                "(numbered from 1)."
            )
    return incoming - 1, outgoing - 1


def gate_label(order: list[str], gate: str, i: int, j: int) -> str:
    """The thesis' name of gate (i, j) (0-based) of ``gate``: ``$g^{l}_{ij}$`` as mathtext."""
    return (
        f"$g^{{{order.index(gate) + 1}}}_{{{i + 1}{j + 1}}}$"
        if max(i, j) < 9
        else f"$g^{{{order.index(gate) + 1}}}_{{{i + 1},{j + 1}}}$"
    )


def score_test_images(loaded: LoadedClassifier, gate: str) -> "Tensor":
    """Relevance scores ``A`` (eq. 3.4, before the softmax) of ``gate`` for every test image, (N, P_in, P_out)."""
    from routemix.nn.gates import GateTrace
    from routemix.train.common import batched_inference

    def scores(chunk):
        with GateTrace(loaded.network) as trace:
            loaded.network(loaded.datamodule.prepare(chunk, train=False))
        return trace.scores[gate].float()

    return batched_inference(loaded.network, scores, loaded.images, batch_size=EVAL_BATCH)


def chosen_gate_values(loaded: LoadedClassifier, router: str | None, incoming: int, outgoing: int):
    """The gate a figure draws, as ``(order, gate, i, j, values)``: the gate networks in the order they
    run, the chosen one's name, its 0-based (i, j), and that gate's value on every test image (N,)."""
    order = gate_order(loaded)
    gate = resolve_gate(router, order)
    i, j = check_gate_index(loaded, gate, incoming, outgoing)
    return order, gate, i, j, score_test_images(loaded, gate).softmax(-1)[:, i, j]


def synthesize_gate_input(
    loaded: LoadedClassifier,
    gate: str,
    incoming: int,
    outgoing: int,
    *,
    steps: int = 300,
    l2: float = 1e-3,
    blur: float = 0.5,
    seed: int = 0,
    objective: str = "score",
) -> tuple["Tensor", float, float]:
    """An input that maximises gate (``incoming``, ``outgoing``) (0-based) of ``gate`` (Fig. 3.8, after
    Simonyan et al. 2013): gradient ascent (:func:`routemix.viz.common.synthesize_inputs`) with the
    network frozen on its score ``A_ij`` before the softmax (``objective="score"``, the thesis') or
    on ``log g_ij`` (``"gate"``, the score minus the log-sum-exp of its row, which cannot rise by
    raising every score of the row). Returns the image (C, H, W) in [0, 1], its score and its gate
    value."""
    import torch

    from routemix.nn.gates import GateTrace

    if objective not in OBJECTIVES:
        raise RoutemixError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}.")
    network = loaded.network.eval()

    def gate_of(pixels):  # pixels in [0, 1] -> (score, log gate, gate) of the chosen gate
        with GateTrace(network) as trace:
            network(loaded.prepare(pixels))
        scores = trace.scores[gate][:, incoming]
        return scores[:, outgoing], torch.log_softmax(scores, -1)[:, outgoing], trace.gates[gate][:, incoming, outgoing]

    target = 0 if objective == "score" else 1
    image = synthesize_inputs(
        lambda x: gate_of(x)[target],
        (1, *loaded.images.shape[1:]),
        network=network,
        steps=steps,
        l2=l2,
        blur_sigma=blur,
        seed=seed,
        device=loaded.device,
    )
    with torch.no_grad():
        score, _, value = gate_of(image.to(loaded.device))
    return image[0], float(score), float(value)


# --- routing diagram (Fig. 3.7) ------------------------------------------------------------------


@dataclass
class RouterTrace:
    """One router as images went through it: gates (K, P_in, P_out), relative activations of its
    incoming (K, P_in) and outgoing (K, P_out) tensors, and the ordinary layers run before it."""

    name: str
    gate: str
    kind: str
    gates: Any
    incoming: Any
    outgoing: Any
    layers_before: list[str] = field(default_factory=list)


def relative_activation(t: "Tensor") -> "Tensor":
    """(B, P, ...) -> (B, P): each path tensor's mean absolute activation over the sum across paths;
    a tensor without a path axis ((B, C, H, W) or (B, C)) is the one tensor of its layer: 1."""
    import torch

    if t.dim() not in (3, 5):
        return torch.ones(t.shape[0], 1)
    strength = t.detach().float().abs().flatten(2).mean(-1)
    return (strength / strength.sum(1, keepdim=True).clamp_min(1e-12)).cpu()


def _layer_label(module) -> str | None:
    """What an ordinary layer is called in a diagram's stack box (BN and ReLU go with their conv)."""
    from torch import nn

    from routemix.nn import (
        AveragePaths,
        CrossStitch,
        PathConv2d,
        PathGlobalAvgPool,
        PathLinear,
        PathSqueezeExcitation,
        PerPath,
    )

    if isinstance(module, (PathConv2d, nn.Conv2d)):
        return "conv"
    if isinstance(module, (PathLinear, nn.Linear)):
        return "dense"
    if isinstance(module, PerPath):
        return _layer_label(module.module)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return "pool"
    if isinstance(module, (PathGlobalAvgPool, nn.AdaptiveAvgPool2d)):
        return "global pool"
    if isinstance(module, PathSqueezeExcitation):
        return "SE"
    if isinstance(module, CrossStitch):
        return "cross-stitch"
    if isinstance(module, AveragePaths):
        return "average"
    return None


def trace_routes(network, x: "Tensor") -> tuple[list[RouterTrace], list[str], "Tensor"]:
    """Run ``x`` (K normalised images) through ``network`` and record every router in the order it
    runs (:class:`RouterTrace`), the ordinary layers after the last one, and the logits (K, classes)."""
    import torch

    from routemix.nn.gates import GateNetwork, GateTrace

    modules = dict(network.named_modules())
    routers = {
        name.rpartition(".")[0]: name for name, m in modules.items() if isinstance(m, GateNetwork) and "." in name
    }
    events: list = []
    handles = []
    claimed: list[str] = []  # routers and labelled layers: their submodules are theirs
    for name, module in modules.items():
        if not name or any(name.startswith(c + ".") for c in claimed):
            continue
        if name in routers:
            claimed.append(name)
            handles.append(
                module.register_forward_hook(
                    lambda m, inputs, output, name=name: events.append(
                        ("router", name, relative_activation(inputs[0]), relative_activation(output))
                    )
                )
            )
        elif (label := _layer_label(module)) is not None:
            claimed.append(name)
            handles.append(
                module.register_forward_hook(lambda m, inputs, output, label=label: events.append(("layer", label)))
            )
    try:
        with torch.no_grad(), GateTrace(network) as trace:
            logits = network(x)
    finally:
        for handle in handles:
            handle.remove()
    traced, pending = [], []
    for event in events:
        if event[0] == "layer":
            pending.append(event[1])
            continue
        _, name, incoming, outgoing = event
        gate = routers[name]
        kind = ROUTER_KINDS.get(type(modules[name]).__name__, type(modules[name]).__name__)
        traced.append(
            RouterTrace(
                name, gate, kind, trace.gates[gate].float().cpu().numpy(), incoming.numpy(), outgoing.numpy(), pending
            )
        )
        pending = []
    return traced, pending, logits.float().cpu()


def _compress(labels: list[str]) -> str:
    """['conv', 'conv', 'pool'] -> 'conv x2\\npool'."""
    runs: list[list] = []
    for label in labels:
        if runs and runs[-1][0] == label:
            runs[-1][1] += 1
        else:
            runs.append([label, 1])
    return "\n".join(f"{label} \u00d7{n}" if n > 1 else label for label, n in runs)


BOX_W, BOX_H = 0.5, 0.6  # a path tensor's box
SPAN = 1.9  # from a router's incoming boxes to its outgoing boxes
GAP = 0.75  # between boxes of consecutive elements


def _path_y(p: int, paths: int) -> float:
    return (paths - 1) / 2 - p  # path 1 on top


def _connect(ax, starts: list[tuple[float, float]], ends: list[tuple[float, float]]) -> None:
    """Plain arrows carrying paths from one element to the next (fanning out or in when the counts differ)."""
    pairs = list(zip(starts, ends)) if len(starts) == len(ends) else [(s, e) for s in starts for e in ends]
    for (x0, y0), (x1, y1) in pairs:
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={"arrowstyle": "-|>", "color": "0.45", "lw": 0.9, "shrinkA": 0, "shrinkB": 0},
        )


def _stack(ax, x: float, paths: int, labels: list[str], top: float) -> tuple[list, list]:
    """Plain boxes for the stacks of ordinary per-path layers between routers; their ends."""
    from matplotlib.patches import FancyBboxPatch

    height = BOX_H * 1.3
    for p in range(paths):
        y = _path_y(p, paths)
        ax.add_patch(
            FancyBboxPatch(
                (x - BOX_W / 2, y - height / 2),
                BOX_W,
                height,
                boxstyle="round,pad=0.02",
                facecolor="0.88",
                edgecolor="0.55",
                lw=0.8,
            )
        )
    ax.text(x, top, _compress(labels), ha="center", va="bottom", fontsize=6.5, color="0.3", linespacing=1.1)
    ys = [_path_y(p, paths) for p in range(paths)]
    return [(x - BOX_W / 2, y) for y in ys], [(x + BOX_W / 2, y) for y in ys]


def _tensor_boxes(ax, x: float, strengths, cmap) -> list[float]:
    """Boxes of one layer's parallel tensors, red by relative activation, the value written inside."""
    from matplotlib.patches import Rectangle

    paths = len(strengths)
    ys = []
    for p, value in enumerate(strengths):
        y = _path_y(p, paths)
        ax.add_patch(
            Rectangle(
                (x - BOX_W / 2, y - BOX_H / 2),
                BOX_W,
                BOX_H,
                facecolor=cmap(float(value)),
                edgecolor="0.25",
                lw=0.8,
                zorder=3,
            )
        )
        ax.text(
            x,
            y,
            f"{value:.2f}",
            ha="center",
            va="center",
            fontsize=6.5,
            zorder=4,
            color="white" if value > 0.6 else "black",
        )
        ys.append(y)
    return ys


def _common_prefix(names: list[str]) -> str:
    """The dotted prefix all ``names`` share (``layers.`` of ``layers.route1``, ``layers.route2``)."""
    parts = [name.split(".")[:-1] for name in names]
    common = []
    for column in zip(*parts):
        if len(set(column)) > 1:
            break
        common.append(column[0])
    return "".join(f"{part}." for part in common)


def _router(
    ax, x: float, router: RouterTrace, k: int, number: int, top: float, reds, blues, prefix: str = ""
) -> tuple[list, list]:
    """One router at ``x`` (its incoming boxes): tensors, gates as edges and circles, its name."""
    from matplotlib.patches import Circle

    gates = router.gates[k]
    p_in, p_out = gates.shape
    ys_in = _tensor_boxes(ax, x, router.incoming[k], reds)
    ys_out = _tensor_boxes(ax, x + SPAN, router.outgoing[k], reds)
    label_values = p_in * p_out <= 9
    for i, y0 in enumerate(ys_in):
        for j, y1 in enumerate(ys_out):
            g = float(gates[i, j])
            x0, x1 = x + BOX_W / 2, x + SPAN - BOX_W / 2
            ax.plot([x0, x1], [y0, y1], color=blues(0.15 + 0.85 * g), lw=0.4 + 5.0 * g, solid_capstyle="butt", zorder=1)
            t = 0.25
            cx, cy = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            ax.add_patch(Circle((cx, cy), 0.075, facecolor=blues(g), edgecolor="navy", lw=0.5, zorder=2))
            if label_values:
                ax.text(
                    cx + 0.09,
                    cy,
                    f"{g:.2f}",
                    fontsize=6,
                    color="navy",
                    va="center",
                    zorder=4,
                    bbox={"boxstyle": "square,pad=0.05", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
                )
    short = router.name.removeprefix(prefix)
    ax.text(
        x + SPAN / 2,
        top,
        f"router {number}: {short}\n{router.kind}",
        ha="center",
        va="bottom",
        fontsize=7,
        fontweight="bold",
    )
    return [(x - BOX_W / 2, y) for y in ys_in], [(x + SPAN + BOX_W / 2, y) for y in ys_out]


def _draw_route_row(
    ax,
    loaded: LoadedClassifier,
    routers: list[RouterTrace],
    after: list[str],
    k: int,
    index: int,
    logits: "Tensor",
    reds,
    blues,
    *,
    last: bool = True,
) -> tuple[float, float]:
    """One image's routing diagram on ``ax``; returns its width and height (data units)."""
    max_paths = max(max(r.gates.shape[1:]) for r in routers)
    top = max_paths / 2 + 0.05
    image, cmap = display_image(loaded.images[index])
    side = min(2.0, max(1.3, 0.9 * max_paths))
    ax.imshow(
        image, cmap=cmap, extent=(0, side, -side / 2, side / 2), interpolation="nearest", zorder=0, vmin=0, vmax=1
    )
    label = int(loaded.labels[index])
    ax.text(
        side / 2, top, f"input (test image {index})\n{loaded.class_name(label)}", ha="center", va="bottom", fontsize=7
    )
    ends = [(side, 0.0)]
    x = side + GAP
    pending = routers[0].layers_before
    prefix = _common_prefix([r.name for r in routers])
    for number, router in enumerate(routers, start=1):
        if pending:
            x += BOX_W / 2
            starts, stack_ends = _stack(ax, x, router.gates.shape[1], pending, top)
            _connect(ax, ends, starts)
            ends, x = stack_ends, x + BOX_W / 2 + GAP
        x += BOX_W / 2
        starts, router_ends = _router(ax, x, router, k, number, top, reds, blues, prefix)
        _connect(ax, ends, starts)
        ends, x = router_ends, x + SPAN + BOX_W / 2 + GAP
        pending = routers[number].layers_before if number < len(routers) else after
    if pending:
        x += BOX_W / 2
        starts, stack_ends = _stack(ax, x, routers[-1].gates.shape[2], pending, top)
        _connect(ax, ends, starts)
        ends, x = stack_ends, x + BOX_W / 2 + GAP
    probs = logits[k].softmax(-1)
    predicted = int(probs.argmax())
    mark = "correct" if predicted == label else f"true: {loaded.class_name(label)}"
    ax.text(
        x,
        0,
        f"predicted\n{loaded.class_name(predicted)}\np = {float(probs[predicted]):.2f}\n({mark})",
        ha="left",
        va="center",
        fontsize=7,
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.4"},
    )
    _connect(ax, ends, [(x, 0.0)])
    width, bottom, ceiling = x + 1.6, -max_paths / 2 - 0.2, top + 0.7
    ax.set_xlim(-0.1, width)
    ax.set_ylim(bottom, ceiling)
    ax.set_aspect("equal")
    ax.set_yticks(
        [_path_y(p, max_paths) for p in range(max_paths)], [f"path {p + 1}" for p in range(max_paths)], fontsize=7
    )
    ax.set_xticks([])
    if last:
        ax.set_xlabel("depth: input \u2192 routers in the order they run \u2192 prediction", fontsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return width + 0.1, ceiling - bottom


def routing_diagram(
    checkpoint: str | Path,
    out: str | Path,
    *,
    indices: tuple[int, ...] = (0,),
    dataset: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    formats: tuple[str, ...] = FORMATS,
) -> list[Path]:
    """Routing diagrams (Fig. 3.7) of test images ``indices``, one row each: every router's incoming
    and outgoing tensors shaded red by relative activation, its gates as edges whose thickness and
    blue intensity are the gate values, plain boxes for the stacks of ordinary layers between."""
    import matplotlib as mpl
    from matplotlib.gridspec import GridSpec

    if not indices or min(indices) < 0:
        raise RoutemixError(f"--index takes test image numbers from 0, got {list(indices)}.")
    loaded = load_for_figures(
        checkpoint, dataset=dataset, data_dir=data_dir, limit=max(indices) + 1, device=device, routed=True
    )
    if max(indices) >= len(loaded.images):
        raise RoutemixError(
            f"--index {max(indices)}: the {loaded.datamodule.dataset_name} test split has {len(loaded.images)} images."
        )
    import torch

    routers, after, logits = trace_routes(loaded.network, loaded.prepare(loaded.images[torch.tensor(indices)]))
    reds, blues = mpl.colormaps["Reds"], mpl.colormaps["Blues"]
    fig, _ = new_figure()
    fig.axes[0].remove()
    grid = GridSpec(len(indices) + 1, 2, figure=fig, height_ratios=[1] * len(indices) + [0.06])
    width, height = zip(
        *[
            _draw_route_row(
                fig.add_subplot(grid[k, :]),
                loaded,
                routers,
                after,
                k,
                index,
                logits,
                reds,
                blues,
                last=k == len(indices) - 1,
            )
            for k, index in enumerate(indices)
        ]
    )
    for column, cmap, label in (
        (0, reds, "relative activation of a path tensor (red boxes)"),
        (1, blues, "gate value $g_{ij}$ (blue edges and circles; edge thickness too)"),
    ):
        bar = fig.colorbar(
            mpl.cm.ScalarMappable(mpl.colors.Normalize(0, 1), cmap),
            cax=fig.add_subplot(grid[-1, column]),
            orientation="horizontal",
        )
        bar.set_label(label, fontsize=8)
        bar.ax.tick_params(labelsize=7)
    fig_w = min(max(9.0, 0.75 * width[0]), 30.0)  # about 0.75 inch per data unit, the boxes' text readable
    fig.set_size_inches(fig_w, len(indices) * (fig_w - 1.0) * height[0] / width[0] + 0.3 * len(indices) + 1.9)
    fig.suptitle(f"Routing diagram of {loaded.model} (thesis Fig. 3.7)", fontsize=11)
    caption = (
        f"Routing diagram of test image{'s' if len(indices) > 1 else ''} {', '.join(map(str, indices))} "
        f"through {loaded.source()}. "
        "Boxes: path tensors at each router's input and output, red by relative activation "
        "(mean |activation| over the sum across parallel tensors); edges and circles: gates; "
        "grey boxes: stacks of per-path layers (conv = conv-BN-ReLU)."
    )
    name = "routing-diagram-" + "_".join(map(str, indices))
    return save_figure(fig, Path(out) / name, caption, formats)


# --- gate maximisation (Fig. 3.8) --------------------------------------------------------------


def gate_max(
    checkpoint: str | Path,
    out: str | Path,
    *,
    router: str | None = None,
    incoming: int = 1,
    outgoing: int = 1,
    count: int = 10,
    steps: int = 300,
    l2: float = 1e-3,
    blur: float = 0.5,
    seed: int = 0,
    objective: str = "score",
    dataset: str | None = None,
    data_dir: str | None = None,
    limit: int | None = GATE_LIMIT,
    device: str = "auto",
    formats: tuple[str, ...] = FORMATS,
) -> list[Path]:
    """Fig. 3.8 for one gate (``incoming``, ``outgoing`` numbered from 1): the ``count`` test images
    with the highest gate value (top row), the ``count`` with the lowest (bottom row), and an input
    synthesised by gradient ascent on the gate's score (:func:`synthesize_gate_input`)."""
    from matplotlib.gridspec import GridSpec

    if count < 1 or steps < 0:
        raise RoutemixError(f"--count must be at least 1 and --steps at least 0, got {count} and {steps}.")
    loaded = load_for_figures(checkpoint, dataset=dataset, data_dir=data_dir, limit=limit, device=device, routed=True)
    order, gate, i, j, values = chosen_gate_values(loaded, router, incoming, outgoing)
    count = min(count, len(values) // 2) or 1
    ranked = values.argsort(descending=True)
    rows = (("highest", ranked[:count]), ("lowest", ranked.flip(0)[:count]))
    synthesized, score, value = synthesize_gate_input(
        loaded, gate, i, j, steps=steps, l2=l2, blur=blur, seed=seed, objective=objective
    )

    label = gate_label(order, gate, i, j)
    fig, _ = new_figure(figsize=(max(8.0, 1.15 * count + 3.5), 4.6))
    fig.axes[0].remove()
    grid = GridSpec(2, count + 3, figure=fig, width_ratios=[1] * count + [0.25, 1.3, 1.3])
    for r, (which, picked) in enumerate(rows):
        for c, index in enumerate(picked.tolist()):
            ax = fig.add_subplot(grid[r, c])
            image, cmap = display_image(loaded.images[index])
            ax.imshow(image, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{float(values[index]):.3f}", fontsize=7)
            ax.set_xlabel(loaded.class_name(int(loaded.labels[index]))[:12], fontsize=6)
            if c == 0:
                ax.set_ylabel(f"{which}\n{label}", fontsize=8)
    ax = fig.add_subplot(grid[:, count + 1 :])
    image, cmap = display_image(synthesized)
    ax.imshow(image, cmap=cmap, vmin=0, vmax=1, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"synthesised input\nscore $A$ = {score:.2f}, gate = {value:.3f}", fontsize=8)
    ax.set_xlabel(f"{steps} Adam steps from noise on {'the score' if objective == 'score' else 'log gate'}", fontsize=7)
    fig.suptitle(
        f"Inputs that maximise gate {label} of {loaded.model}: router {gate}, "
        f"incoming path {i + 1} \u2192 outgoing path {j + 1} (thesis Fig. 3.8)",
        fontsize=10,
    )
    caption = (
        f"Gate maximisation for {gate} ({i + 1}\u2192{j + 1}) of {loaded.source()}: "
        f"the {count} test images with the highest "
        f"and lowest gate value (value above each, class below) and an input synthesised by gradient ascent on the "
        f"{'pre-softmax score' if objective == 'score' else 'log gate value'} "
        f"({steps} Adam steps, L2 {l2:g}, blur {blur:g} px, seed {seed})."
    )
    slug = gate.removesuffix(".gate").replace(".", "_")
    return save_figure(fig, Path(out) / f"gate-max-{slug}-{i + 1}-{j + 1}", caption, formats)


# --- class-wise gate histograms (Fig. 3.9) -------------------------------------------------------


def gate_hist(
    checkpoint: str | Path,
    out: str | Path,
    *,
    router: str | None = None,
    incoming: int = 1,
    outgoing: int = 1,
    classes: tuple[int, ...] | None = None,
    layout: str = "overlay",
    bins: int = 25,
    dataset: str | None = None,
    data_dir: str | None = None,
    limit: int | None = GATE_LIMIT,
    device: str = "auto",
    formats: tuple[str, ...] = FORMATS,
) -> list[Path]:
    """Fig. 3.9: histograms of one gate's value over the test images of each of ``classes`` (default
    the first four), as the fraction of the class's images per bin, overlaid (``layout="overlay"``)
    or as small multiples (``"grid"``); the whole test set's histogram is drawn as a dashed outline."""
    import numpy as np

    if layout not in ("overlay", "grid"):
        raise RoutemixError(f"--layout must be overlay or grid, got {layout!r}.")
    if bins < 1:
        raise RoutemixError(f"--bins must be at least 1, got {bins}.")
    loaded = load_for_figures(checkpoint, dataset=dataset, data_dir=data_dir, limit=limit, device=device, routed=True)
    num_classes = int(loaded.state["num_classes"])
    classes = tuple(range(min(4, num_classes))) if classes is None else tuple(classes)
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad or not classes:
        raise RoutemixError(
            f"--classes {','.join(map(str, classes))}: {loaded.model} has classes 0 to {num_classes - 1}."
        )
    order, gate, i, j, values = chosen_gate_values(loaded, router, incoming, outgoing)
    values = values.numpy()
    labels = loaded.labels.numpy()
    chosen = [values[labels == c] for c in classes]
    if not any(len(v) for v in chosen):
        raise RoutemixError(
            f"none of the first {len(values)} test images belongs to classes {list(classes)}: raise --limit."
        )
    low, high = float(values.min()), float(values.max())
    pad = max(1e-3, 0.02 * (high - low))
    edges = np.linspace(max(0.0, low - pad), min(1.0, high + pad), bins + 1)
    label = gate_label(order, gate, i, j)
    import matplotlib as mpl

    colours = mpl.colormaps["tab10"]
    if layout == "overlay":
        fig, ax = new_figure(figsize=(7.5, 4.6))
        axes, columns = [ax] * len(classes), 1
    else:
        columns = min(4, len(classes))
        rows = math.ceil(len(classes) / columns)
        fig, grid = new_figure(
            rows, columns, figsize=(3.2 * columns + 0.8, 2.6 * rows + 1.0), squeeze=False, sharex=True, sharey=True
        )
        axes = list(grid.flat)
        for ax in axes[len(classes) :]:
            ax.remove()
    everything = np.full(len(values), 1.0 / len(values))
    for n, (c, v, ax) in enumerate(zip(classes, chosen, axes)):
        if layout == "grid" or n == 0:
            ax.hist(
                values,
                bins=edges,
                weights=everything,
                histtype="step",
                lw=1.0,
                ls="--",
                color="0.3",
                label=f"all test images (n={len(values)})",
            )
        colour = colours(n % 10)
        weights = np.full(len(v), 1.0 / max(len(v), 1))
        name = f"{loaded.class_name(c)} (n={len(v)})"
        ax.hist(v, bins=edges, weights=weights, histtype="stepfilled", alpha=0.3, color=colour)
        ax.hist(v, bins=edges, weights=weights, histtype="step", lw=1.6, color=colour, label=name)
        if layout == "grid" or n == 0:
            ax.set_xlabel(f"gate value {label}")
            if layout == "overlay" or n % columns == 0:
                ax.set_ylabel("fraction of the class's images")
            ax.legend(fontsize=7)
        if layout == "grid":
            ax.set_title(loaded.class_name(c), fontsize=9)
            ax.xaxis.set_tick_params(labelbottom=True)  # shared, but a short last row leaves upper plots at the bottom
    if layout == "overlay":
        axes[0].legend(fontsize=8)
    fig.suptitle(
        f"Class-wise histograms of gate {label} of {loaded.model} "
        f"({gate}, path {i + 1} \u2192 {j + 1}; thesis Fig. 3.9)",
        fontsize=10,
    )
    caption = (
        f"Histograms of gate {gate} ({i + 1}\u2192{j + 1}) per class over {loaded.source()}; "
        "bars are fractions of each "
        "class's images, the dashed outline is the whole test set."
    )
    slug = gate.removesuffix(".gate").replace(".", "_")
    return save_figure(fig, Path(out) / f"gate-hist-{slug}-{i + 1}-{j + 1}", caption, formats)


# --- weight histograms of the parallel paths (Fig. 3.10) ---------------------------------------


def path_layers(network) -> list[tuple[str, Any]]:
    """The per-path convolutions and dense layers (:class:`PathConv2d`, :class:`PathLinear`) in the
    order they are declared, without those of gate networks and SE blocks (they are not a path's
    computation). A cross-prediction router's ``predict`` is one: its path p is incoming path p."""
    from routemix.nn import GateNetwork, PathConv2d, PathLinear, PathSqueezeExcitation

    skip = [name for name, m in network.named_modules() if isinstance(m, (GateNetwork, PathSqueezeExcitation))]
    return [
        (name, m)
        for name, m in network.named_modules()
        if isinstance(m, (PathConv2d, PathLinear)) and not any(name.startswith(s + ".") for s in skip)
    ]


def path_weights(module) -> "Tensor":
    """A path layer's weights as (P, n): row p holds path p's filters (or dense weights)."""
    from routemix.nn import PathConv2d

    weight = module.conv.weight if isinstance(module, PathConv2d) else module.weight
    return weight.detach().float().reshape(module.num_paths, -1).cpu()


def select_layers(layers: list[tuple[str, Any]], spec: str | None) -> list[int]:
    """``--layers``: comma-separated numbers (from 1, among the path layers) or module names (or a
    unique dotted part of one, ``conv4``); ``None`` picks four spread over depth, as Fig. 3.10 does."""
    n = len(layers)
    if spec is None:
        if n <= 4:
            return list(range(n))
        picks = [round(1 + t * (n - 1) / 5) for t in range(1, 5)]  # the inner four of six evenly spaced
        return sorted({p - 1 for p in picks})
    chosen = []
    names = [name for name, _ in layers]
    for token in (t.strip() for t in spec.split(",") if t.strip()):
        if token.isdigit():
            if not 1 <= int(token) <= n:
                raise RoutemixError(f"--layers {token}: this model has path layers 1 to {n}: {', '.join(names)}.")
            chosen.append(int(token) - 1)
            continue
        matches = [k for k, name in enumerate(names) if name == token or f".{token}." in f".{name}."]
        if len(matches) != 1:
            why = "matches several" if matches else "is none"
            raise RoutemixError(f"--layers {token!r} {why} of the path layers: {', '.join(names)}.")
        chosen.append(matches[0])
    if not chosen:
        raise RoutemixError("--layers names no layer.")
    return list(dict.fromkeys(chosen))


def weight_hist(
    checkpoint: str | Path,
    out: str | Path,
    *,
    layers: str | None = None,
    bins: int = 60,
    formats: tuple[str, ...] = FORMATS,
) -> list[Path]:
    """Fig. 3.10: for each chosen path layer, one histogram of each parallel path's weights, overlaid,
    to see whether the paths learned different things. Needs no data."""
    import matplotlib as mpl
    import numpy as np

    if bins < 1:
        raise RoutemixError(f"--bins must be at least 1, got {bins}.")
    loaded = load_for_figures(checkpoint, data=False, device="cpu")
    candidates = [(name, m) for name, m in path_layers(loaded.network) if m.num_paths > 1]
    if not candidates:
        raise RoutemixError(
            f"model {loaded.model} has no parallel paths, so there are no path weights to compare: "
            "use a multi-path model such as basecnn_2cc."
        )
    picked = select_layers(candidates, layers)
    columns = min(4, len(picked))
    rows = math.ceil(len(picked) / columns)
    fig, grid = new_figure(rows, columns, figsize=(3.6 * columns + 0.6, 3.0 * rows + 1.0), squeeze=False)
    for ax in list(grid.flat)[len(picked) :]:
        ax.remove()
    colours = mpl.colormaps["tab10"]
    for ax, k in zip(grid.flat, picked):
        name, module = candidates[k]
        weights = path_weights(module).numpy()
        edges = np.linspace(float(weights.min()), float(weights.max()), bins + 1)
        for p, w in enumerate(weights):
            colour = colours(p % 10)
            ax.hist(w, bins=edges, histtype="stepfilled", alpha=0.25, color=colour)
            ax.hist(w, bins=edges, histtype="step", lw=1.3, color=colour, label=f"path {p + 1} (std {w.std():.3g})")
        kind = "conv" if module.__class__.__name__ == "PathConv2d" else "dense"
        ax.set_title(
            f"layer {k + 1}: {name.removeprefix('layers.')} ({kind}, {weights.shape[1]:,} weights/path)", fontsize=8
        )
        ax.set_xlabel("weight value", fontsize=8)
        ax.set_ylabel("number of weights", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle(f"Weight histograms of the parallel paths of {loaded.model} (thesis Fig. 3.10)", fontsize=10)
    caption = (
        f"Weights of each parallel path at path layers {', '.join(str(k + 1) for k in picked)} of {loaded.source()} "
        "(layers numbered from 1 among the per-path convolutions and dense layers, gate networks excluded)."
    )
    return save_figure(fig, Path(out) / "weight-hist", caption, formats)


# --- command line ------------------------------------------------------------------------------


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in re.split(r"[,\s]+", text.strip()) if t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes whole numbers like 0,3,5, got {text!r}") from None


def _data_arguments(parser: argparse.ArgumentParser, *, limit: bool = True) -> None:
    add_option(parser, "dataset", help="test data (default: the dataset the model was trained on)")
    add_option(parser, "data_dir", help="root of the datasets (default: the training run's, else $ROUTEMIX_DATA)")
    if limit:
        add_option(parser, "limit", default=GATE_LIMIT, help=f"test images used (default {GATE_LIMIT})")
    add_option(parser, "device")


def _bins_argument(parser: argparse.ArgumentParser, default: int) -> None:
    """``--bins``, which both histogram figures take, each with its own ``default``."""
    parser.add_argument("--bins", type=int, default=default, help=f"histogram bins (default {default})")


def _gate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--router",
        help="gate network (GateTrace key such as layers.route1.gate, its router, or a unique part: route1); "
        "default: the first router",
    )
    parser.add_argument("--incoming", type=int, default=1, help="incoming path i of gate g_ij, from 1 (default 1)")
    parser.add_argument("--outgoing", type=int, default=1, help="outgoing path j of gate g_ij, from 1 (default 1)")


def _diagram_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index",
        type=_int_list,
        default=(0,),
        help="test image(s), from 0, comma-separated: one diagram each (default 0)",
    )
    _data_arguments(parser, limit=False)


def _gate_max_arguments(parser: argparse.ArgumentParser) -> None:
    _gate_arguments(parser)
    parser.add_argument("--count", type=int, default=10, help="images in each row (default 10)")
    add_option(parser, "steps", default=300, help="Adam steps of the synthesised input (default 300)")
    parser.add_argument(
        "--l2",
        type=float,
        default=1e-3,
        help="L2 penalty on the synthesised input's distance from grey (default 0.001)",
    )
    parser.add_argument(
        "--blur", type=float, default=0.5, help="Gaussian blur in pixels every 4 steps, 0 for none (default 0.5)"
    )
    add_option(parser, "seed", default=0, help="seed of the synthesised input's noise (default 0)")
    parser.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="score",
        help="what the synthesis raises: the pre-softmax score A_ij (the thesis', default) or log g_ij",
    )
    _data_arguments(parser)


def _gate_hist_arguments(parser: argparse.ArgumentParser) -> None:
    _gate_arguments(parser)
    add_option(
        parser,
        "classes",
        type=_int_list,
        default=None,
        help="class labels, from 0, comma-separated (default: the first four)",
    )
    parser.add_argument(
        "--layout", choices=("overlay", "grid"), default="overlay", help="one plot or one per class (default overlay)"
    )
    _bins_argument(parser, 25)
    _data_arguments(parser)


def _weight_hist_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--layers",
        help="path layers by number (from 1) or module name, comma-separated (default: four spread over depth)",
    )
    _bins_argument(parser, 60)


def _data_options(args: argparse.Namespace) -> dict:
    return {"dataset": args.dataset, "data_dir": args.data_dir, "device": args.device}


def _draw_diagram(args: argparse.Namespace) -> list[Path]:
    return routing_diagram(args.checkpoint, args.out, indices=args.index, formats=args.formats, **_data_options(args))


def _draw_gate_max(args: argparse.Namespace) -> list[Path]:
    return gate_max(
        args.checkpoint,
        args.out,
        router=args.router,
        incoming=args.incoming,
        outgoing=args.outgoing,
        count=args.count,
        steps=args.steps,
        l2=args.l2,
        blur=args.blur,
        seed=args.seed,
        objective=args.objective,
        limit=args.limit,
        formats=args.formats,
        **_data_options(args),
    )


def _draw_gate_hist(args: argparse.Namespace) -> list[Path]:
    return gate_hist(
        args.checkpoint,
        args.out,
        router=args.router,
        incoming=args.incoming,
        outgoing=args.outgoing,
        classes=args.classes,
        layout=args.layout,
        bins=args.bins,
        limit=args.limit,
        formats=args.formats,
        **_data_options(args),
    )


def _draw_weight_hist(args: argparse.Namespace) -> list[Path]:
    return weight_hist(args.checkpoint, args.out, layers=args.layers, bins=args.bins, formats=args.formats)


FIGURES: list[Figure] = [
    Figure(
        "routing-diagram",
        "one test image's route through every router (thesis Fig. 3.7)",
        _diagram_arguments,
        _draw_diagram,
    ),
    Figure(
        "gate-max",
        "test images with the highest/lowest value of one gate, and an input synthesised to maximise it (Fig. 3.8)",
        _gate_max_arguments,
        _draw_gate_max,
    ),
    Figure(
        "gate-hist",
        "class-wise histograms of one gate over the test set (Fig. 3.9)",
        _gate_hist_arguments,
        _draw_gate_hist,
    ),
    Figure(
        "weight-hist",
        "weight histograms of the parallel paths at chosen layers (Fig. 3.10)",
        _weight_hist_arguments,
        _draw_weight_hist,
    ),
]
