"""Evaluation of trained classifiers: top-1/top-5 error and the mean gates, and their checkpoints.

A classifier checkpoint (``run_dir/model.pt``, written atomically, read with ``weights_only=True``)
holds ``{"model", "num_classes", "in_channels", "input_size", "state_dict", "config"}``: the
registry name and the shape arguments rebuild the network, the state dict fills it.

The same per-batch code (:func:`classify`, :func:`batch_metrics`) serves Lightning's validation
during training and :func:`evaluate_model` afterwards, so the learning curves and the final table
measure the same thing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from routemix.errors import RoutemixError
from routemix.metrics import SKEW_THRESHOLD, USED_SHARE, gate_statistics, path_usage, summarize_gate_statistics
from routemix.nn.sparse import sparse_top_k

CHECKPOINT_KEYS = ("model", "num_classes", "in_channels", "input_size", "state_dict")


def check_classifier_name(name: str) -> None:
    """Fail early, before any data is read, for an unknown name (with the closest names) or a
    registered model that is not an image classifier (``clusternet_mnist``, ``cluster_mlp``)."""
    from routemix.models import list_models, model_spec

    if model_spec(name).task != "classifier":
        classifiers = list_models(task="classifier")
        raise RoutemixError(
            f"model {name!r} is a clustering network, not an image classifier; "
            f"`routemix models` lists the {len(classifiers)} classifiers ({', '.join(classifiers[:3])}, ...)."
        )


def build_classifier(name: str, *, num_classes: int, in_channels: int, input_size: int, **options) -> nn.Module:
    """A registered image classifier (a :class:`routemix.models.base.Classifier`) for this data;
    an unknown name suggests the closest ones, a model that is not an image classifier says so.
    ``options`` go to the model's builder (for example ``overflow="drop"`` for a sparse network)."""
    from routemix.models import create_model

    check_classifier_name(name)
    return create_model(name, num_classes=num_classes, in_channels=in_channels, input_size=input_size, **options)


def _checkpoint_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def load_classifier(path: str | os.PathLike, *, model: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The classifier saved at ``path`` (a ``model.pt`` or the run directory holding it), in eval
    mode, and the checkpoint dict. ``model`` asserts the registry name it was saved as."""
    from routemix.storage import load_checkpoint

    path = _checkpoint_path(path)
    state = load_checkpoint(path)
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise RoutemixError(
            f"{path} is not a classifier checkpoint of `routemix train` (it has no {', '.join(missing)})."
        )
    if model is not None and model != state["model"]:
        raise RoutemixError(f"checkpoint {path} is for model {state['model']}, not {model}.")
    network = build_classifier(
        state["model"],
        num_classes=state["num_classes"],
        in_channels=state["in_channels"],
        input_size=state["input_size"],
    )
    try:
        network.load_state_dict(state["state_dict"])
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        detail = str(error).splitlines()[1].strip()[:200] if len(str(error).splitlines()) > 1 else ""
        raise RoutemixError(
            f"checkpoint {path}: its weights do not fit model {state['model']} ({first} {detail})."
        ) from None
    return network.eval(), state


def save_classifier(
    path: str | os.PathLike, model: nn.Module, name: str, *, input_size: int, config: dict[str, Any] | None = None
) -> None:
    """Write ``model``, built by :func:`build_classifier` as ``name`` for ``input_size`` images,
    as a classifier checkpoint."""
    from routemix.storage import save_checkpoint

    state = {
        "model": name,
        "num_classes": int(model.num_classes),
        "in_channels": int(model.in_channels),
        "input_size": int(input_size),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config or {},
    }
    save_checkpoint(path, state)


def classify(model: nn.Module, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Log class probabilities (B, K) and the gates of every gate network (B, P_in, P_out).

    ``images`` (B, n, C, H, W) are n crops of each image (ten-crop): their softmax probabilities,
    and their gates, are averaged per image.
    """
    crops = images.dim() == 5
    batch = images.shape[0]
    logits, gates = model(images.flatten(0, 1) if crops else images, return_gates=True)
    if not crops:
        return torch.log_softmax(logits, dim=-1), gates
    probs = torch.softmax(logits, dim=-1).view(batch, -1, logits.shape[-1]).mean(1)
    gates = {name: g.view(batch, -1, *g.shape[1:]).mean(1) for name, g in gates.items()}
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log(), gates


def batch_metrics(log_probs: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Batch means of the cross-entropy, top-1 error and (for K >= 5) top-5 error."""
    metrics = {"loss": F.nll_loss(log_probs, labels), "top1_error": (log_probs.argmax(-1) != labels).float().mean()}
    if log_probs.shape[-1] >= 5:
        top5 = log_probs.topk(5, dim=-1).indices
        metrics["top5_error"] = 1.0 - (top5 == labels[:, None]).any(-1).float().mean()
    return metrics


def gate_log_keys(gates: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """``{prefix}/gate/{name}/{i}_{j}`` -> batch mean of gate (i -> j), for loggers that take scalars."""
    out = {}
    for name, g in gates.items():
        mean = g.detach().float().mean(0)
        for i in range(mean.shape[0]):
            for j in range(mean.shape[1]):
                out[f"{prefix}/gate/{name}/{i}_{j}"] = mean[i, j]
    return out


@dataclass
class EvalResult:
    """Error rates in [0, 1] over ``n`` images, the mean gates (name -> (P_in, P_out) lists) and the
    statistics of every gating vector (:func:`routemix.metrics.gate_statistics`)."""

    n: int
    loss: float
    top1_error: float
    top5_error: float | None
    gates: dict[str, list[list[float]]] = field(default_factory=dict)
    ten_crop: bool = False
    gate_stats: list[dict] = field(default_factory=list)
    path_usage: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "loss": self.loss,
            "top1_error": self.top1_error,
            "top5_error": self.top5_error,
            "ten_crop": self.ten_crop,
            "gates": self.gates,
            "gate_stats": self.gate_stats,
            "gate_summary": summarize_gate_statistics(self.gate_stats),
            "path_usage": self.path_usage,
        }


@torch.no_grad()
def evaluate_model(
    model: nn.Module, datamodule, *, ten_crop: bool = False, device: str | torch.device = "cpu", progress: bool = False
) -> EvalResult:
    """Error rates, mean gates and gate statistics of ``model`` (eval mode) on ``datamodule``'s test split."""
    device = torch.device(device)
    model = model.to(device).eval()
    loader = datamodule.eval_dataloader(ten_crop=ten_crop)
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="evaluating", leave=False)
    sums: dict[str, float] = {}
    gate_values: dict[str, list[Tensor]] = {}
    n = 0
    for images, labels in loader:
        images = datamodule.prepare(images.to(device, non_blocking=True), train=False)
        labels = labels.to(device)
        log_probs, gates = classify(model, images)
        b = len(labels)
        for key, value in batch_metrics(log_probs, labels).items():
            sums[key] = sums.get(key, 0.0) + value.item() * b
        for name, g in gates.items():
            gate_values.setdefault(name, []).append(g.float().cpu())
        n += b
    if n == 0:
        raise RoutemixError(f"the test split of {datamodule.dataset_name} is empty.")
    gates = {name: torch.cat(parts) for name, parts in gate_values.items()}
    return EvalResult(
        n=n,
        loss=sums["loss"] / n,
        top1_error=sums["top1_error"] / n,
        top5_error=sums["top5_error"] / n if "top5_error" in sums else None,
        gates={name: g.double().mean(0).tolist() for name, g in gates.items()},
        ten_crop=ten_crop,
        gate_stats=gate_statistics(gates),
        path_usage=path_usage(gates, sparse_top_k(model)),
    )


def check_data_fits(state: dict[str, Any], network: nn.Module, datamodule, where: str) -> None:
    """A clear error when the checkpoint's model cannot read this dataset (channels, size, classes)."""
    name = state["model"]
    if state["in_channels"] != datamodule.in_channels:
        raise RoutemixError(
            f"{where}: model {name} was trained on {state['in_channels']}-channel images, "
            f"but {datamodule.dataset_name} has "
            f"{datamodule.in_channels} channels; evaluate it on the dataset it was trained on."
        )
    size = network.input_size  # None: the model takes any size (global average pooling)
    if size is not None and datamodule.input_size != size:
        raise RoutemixError(
            f"{where}: model {name} takes {size}x{size} images, "
            f"{datamodule.dataset_name} gives {datamodule.input_size}x{datamodule.input_size} "
            f"(use --image-size {size})."
        )
    if state["num_classes"] != datamodule.num_classes:
        raise RoutemixError(
            f"{where}: model {name} has {state['num_classes']} classes, "
            f"{datamodule.dataset_name} has {datamodule.num_classes}."
        )


def test_datamodule(
    state: dict[str, Any],
    network: nn.Module,
    *,
    where: str,
    dataset: str | None = None,
    data_dir: str | None = None,
    download: bool = False,
    batch_size: int = 256,
    limit: int | None = None,
    classes: int | None = None,
    image_size: int | None = None,
    ten_crop: bool = False,
    workers: int | None = None,
):
    """The test split a classifier checkpoint is evaluated (or drawn) on, set up and checked to fit
    the network. The dataset, data root, class subset and image size default to those it was
    trained with; ``where`` names the checkpoint in errors."""
    from routemix.data.classification import ClassificationDataModule

    config = state.get("config") or {}
    dataset = dataset or config.get("dataset")
    if dataset is None:
        raise RoutemixError(f"{where} does not say which dataset it was trained on: pass --dataset.")
    same = dataset == config.get("dataset")
    datamodule = ClassificationDataModule(
        dataset,
        data_dir=data_dir or (config.get("data_dir") if same else None),
        download=download,
        batch_size=batch_size,
        eval_batch_size=batch_size,
        limit_test=limit,
        classes=classes if classes is not None else (config.get("classes") if same else None),
        image_size=image_size or state["input_size"] or config.get("image_size") or 224,
        ten_crop=ten_crop,
        num_workers=workers,
    )
    if state["in_channels"] != datamodule.in_channels:  # before loading anything
        check_data_fits(state, network, datamodule, where)
    datamodule.setup("test")
    check_data_fits(state, network, datamodule, where)
    return datamodule


def evaluate_checkpoint(
    path: str | os.PathLike,
    *,
    dataset: str | None = None,
    model: str | None = None,
    data_dir: str | None = None,
    download: bool = False,
    ten_crop: bool = False,
    batch_size: int = 256,
    limit: int | None = None,
    classes: int | None = None,
    image_size: int | None = None,
    workers: int | None = None,
    device: str = "auto",
    progress: bool = False,
) -> tuple[EvalResult, dict[str, Any]]:
    """Evaluate a ``model.pt`` (or run directory) on a dataset's test split; the dataset, data root,
    class subset and image size default to those the model was trained with."""
    from routemix.train.common import torch_device

    network, state = load_classifier(path, model=model)
    datamodule = test_datamodule(
        state,
        network,
        where=f"checkpoint {_checkpoint_path(path)}",
        dataset=dataset,
        data_dir=data_dir,
        download=download,
        batch_size=batch_size,
        limit=limit,
        classes=classes,
        image_size=image_size,
        ten_crop=ten_crop,
        workers=workers,
    )
    result = evaluate_model(network, datamodule, ten_crop=ten_crop, device=torch_device(device), progress=progress)
    return result, state


def format_result(result: EvalResult, title: str) -> str:
    """The error table and, for routed models, one P_in x P_out matrix of mean gates per router."""
    crop = "10-crop" if result.ten_crop else "single crop"
    lines = [f"{title} ({result.n} test images, {crop})", f"{'top-1 error':<14}{100 * result.top1_error:>8.2f}%"]
    if result.top5_error is not None:
        lines.append(f"{'top-5 error':<14}{100 * result.top5_error:>8.2f}%")
    lines.append(f"{'loss':<14}{result.loss:>9.4f}")
    if result.gates:
        lines.append("\nmean gates (row: incoming path, column: outgoing path; rows sum to 1)")
        for name, matrix in result.gates.items():
            lines.append(f"  {name}")
            for i, row in enumerate(matrix):
                lines.append(f"    path {i}: " + " ".join(f"{v:6.3f}" for v in row))
    if result.gate_stats:
        lines.append(
            f"\ngate statistics over the test images (skewed: one gate above {SKEW_THRESHOLD} on average; "
            "entropy of the mean gating vector, 1 = paths used evenly; 5-95% range of each gate)"
        )
        for s in result.gate_stats:
            ranges = " ".join(f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(s["low"], s["high"]))
            lines.append(
                f"  {s['router']} path {s['incoming']}: entropy {s['entropy']:.3f}"
                f"{'  SKEWED' if s['skewed'] else ''}  range {ranges}"
            )
        summary = summarize_gate_statistics(result.gate_stats)
        lines.append(
            f"  {100 * summary['skewed_share']:.0f}% of {len(result.gate_stats)} gating vectors skewed, "
            f"mean entropy {summary['entropy']:.3f}"
        )
    if result.path_usage:
        lines.append(
            f"\npaths used (share of each router's traffic: top-k assignments for sparse routers, gate mass for soft "
            f"ones; used: at least {100 * USED_SHARE:.0f}%)"
        )
        for u in result.path_usage:
            shares = " ".join(f"{v:.2f}" for v in u["share"])
            lines.append(f"  {u['router']}: {u['used']} of {len(u['share'])} used  shares {shares}")
    return "\n".join(lines)
