"""Sparse routing by clustering against soft routing and against a load-balancing loss (issue 7, sec. 5.3).

With the same P paths and the budget of ``routemix bench routing`` (Fashion-MNIST standing in for
CIFAR-10, the first 10,000 training images, 4 epochs, the thesis' SGD recipe scaled), five
networks are trained over seeds:

==================  ==================================  ===============================================
variant             model                               gate regulariser (weight 0.01)
==================  ==================================  ===============================================
``soft``            ``basecnn_{P}cc``                   none (the thesis' soft cross-connections)
``sparse``          ``sparse_basecnn_{P}_top{k}``       none (top-k of softmax, nothing keeps paths used)
``sparse+balance``  ``sparse_basecnn_{P}_top{k}``       ``balance``: the mixture-of-experts load loss
``clustered``       ``clustered_basecnn_{P}_top{k}``    none (top-k of the batch-normalised scores)
``clustered+nmm``   ``clustered_basecnn_{P}_top{k}``    ``local``: the NMM-EM loss on every gate (ours)
==================  ==================================  ===============================================

The sparse networks are built as registered: every path of a layer starts from the same filters
and an assignment that finds its path full goes to the sample's next choice with room. Two
ablations undo one of those each (not run unless asked for with ``--variants``):
``sparse/drop`` (overflow dropped, the sample gets nothing from that path) and
``sparse/independent`` (each path initialised on its own).

Reported: test error (mean ± std over seeds); how evenly the sparse layers use their paths on the
test images (each router's share of the k-per-image assignments per path: the busiest path's share
times P, 1 when even and P when one path takes all, and the number of paths that get at least 1%);
the measured step time of each network (forward, backward and SGD step on a batch of 128,
interleaved round-robin so the machine's noise hits all alike, median) and its convolution FLOPs
per image in one training-mode forward pass (capacity limit on), counted by
:class:`torch.utils.flop_counter.FlopCounterMode`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

VARIANTS = {  # name: (model, gate regulariser, builder options)
    "soft": ("basecnn_{P}cc", "none", {}),
    "sparse": ("sparse_basecnn_{P}_top{k}", "none", {}),
    "sparse+balance": ("sparse_basecnn_{P}_top{k}", "balance", {}),
    "clustered": ("clustered_basecnn_{P}_top{k}", "none", {}),
    "clustered+nmm": ("clustered_basecnn_{P}_top{k}", "local", {}),
    "sparse/drop": ("sparse_basecnn_{P}_top{k}", "none", {"overflow": "drop"}),
    "sparse/independent": ("sparse_basecnn_{P}_top{k}", "none", {"path_init": "independent"}),
}
DEFAULT_VARIANTS = ("soft", "sparse", "sparse+balance", "clustered", "clustered+nmm")
# what the registered sparse networks are; results of other forms (an earlier release's) are not mixed in
SPARSE_FORM = "shared+reroute"
USAGE_IMAGES = 2000  # test images over which path usage is counted


def model_for(variant: str, paths: int, k: int) -> str:
    return VARIANTS[variant][0].format(P=paths, k=k)


def run(
    *,
    data_dir: str | None,
    paths: int = 4,
    k: int = 1,
    seeds=(0, 1),
    variants=DEFAULT_VARIANTS,
    epochs: int = 4,
    train_images: int = 10_000,
    test_images: int | None = None,
    weight: float = 0.01,
    out: str | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train every (variant, seed) not yet in ``out`` (a rerun continues); returns the matching results."""
    from tqdm.auto import tqdm

    from routemix.bench.routing import train_one
    from routemix.metrics import path_usage
    from routemix.storage import write_json

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"bench sparse compares {', '.join(VARIANTS)}; not {', '.join(unknown)}.")
    from routemix.models import model_spec

    for variant in variants:  # before any training: an impossible P or k is a refusal, not a failure at the first job
        model_spec(model_for(variant, paths, k))
    setting = {
        "paths": paths,
        "k": k,
        "epochs": epochs,
        "train_images": train_images,
        "gate_weight": weight,
        "sparse_form": SPARSE_FORM,
    }
    path = Path(out) if out else None
    done = json.loads(path.read_text()) if path is not None and path.is_file() else []
    same = [r for r in done if all(r.get(key) == value for key, value in setting.items())]
    have = {(r["variant"], r["seed"]) for r in same}
    jobs = [(v, s) for s in seeds for v in variants if (v, s) not in have]
    for variant, seed in tqdm(jobs, desc="sparse", disable=not progress):
        model_name, (_, gate_reg, options) = model_for(variant, paths, k), VARIANTS[variant]
        row = train_one(
            model_name,
            seed,
            data_dir=data_dir,
            epochs=epochs,
            train_images=train_images,
            test_images=test_images,
            gate_reg=gate_reg,
            gate_weight=weight,
            gate_samples=USAGE_IMAGES,
            model_options=options,
        )
        samples = row.pop("gate_samples")
        row.pop("gates", None)  # mean gates per router: the usage below says more
        sparse = model_spec(model_name).family == "sparse-basecnn"
        usage = path_usage(
            {name: torch.tensor(g) for name, g in samples.items()}, {name: k for name in samples} if sparse else None
        )
        row.update(setting, variant=variant, usage=usage)
        done.append(row)
        same.append(row)
        if path is not None:
            write_json(path, done)
    return [r for r in same if r["variant"] in variants and r["seed"] in seeds]


def conv_flops_per_image(model: nn.Module, batch: int = 128, image: tuple[int, ...] = (1, 32, 32)) -> float:
    """Convolution FLOPs (2 per multiply-add) per image of one training-mode forward pass."""
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(batch, *image))
    return sum(v for op, v in counter.get_flop_counts()["Global"].items() if "convolution" in str(op)) / batch


def time_steps(model_names: list[str], *, batch: int = 128, steps: int = 3, repeats: int = 5) -> dict[str, dict]:
    """Median training-step time of each model (interleaved round-robin) and its conv FLOPs per image."""
    from routemix.bench.speed import fixed_batch_step, interleaved_median_seconds
    from routemix.models import count_parameters, create_model

    torch.manual_seed(0)
    models = {name: create_model(name, num_classes=10, in_channels=1) for name in model_names}
    info = {
        name: {"parameters": count_parameters(m), "conv_mflops": conv_flops_per_image(m) / 1e6}
        for name, m in models.items()
    }
    cpu = torch.device("cpu")
    seconds = interleaved_median_seconds(
        {name: fixed_batch_step(m, batch, cpu, (1, 32, 32)) for name, m in models.items()}, steps=steps, repeats=repeats
    )
    for name in model_names:
        info[name]["step_ms"] = 1000 * seconds[name]
    return info


def summarize(results: list[dict], timings: dict[str, dict] | None = None) -> list[dict]:
    """One row per variant: error mean ± std over seeds, path usage of the sparse layers, timing."""
    rows = []
    for variant in VARIANTS:
        runs = [r for r in results if r["variant"] == variant]
        if not runs:
            continue
        usage = [u for r in runs for u in r["usage"]]
        sparse = usage[0]["sparse"]
        row = {
            "variant": variant,
            "model": runs[0]["model"],
            "seeds": len(runs),
            "error": float(np.mean([r["error"] for r in runs])),
            "error_std": float(np.std([r["error"] for r in runs])),
            "errors": [r["error"] for r in runs],
            "train_seconds": float(np.mean([r["seconds"] for r in runs])),
            "peak_load": float(np.mean([u["peak"] for u in usage])) if sparse else None,
            "paths_used": float(np.mean([u["used"] for u in usage])) if sparse else None,
        }
        if timings and row["model"] in timings:
            row.update(timings[row["model"]])
        rows.append(row)
    return rows


def format_table(rows: list[dict], paths: int) -> str:
    soft = next((r for r in rows if r["variant"] == "soft" and "step_ms" in r), None)
    lines = [
        "| variant | model | test error % (mean ± std) | per seed | busiest path's share × P | paths used "
        f"(of {paths}) | params | conv MFLOPs/image | step ms (batch 128) | step time / soft | s/run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        usage = (
            (f"{r['peak_load']:.2f}", f"{r['paths_used']:.1f}")
            if r["peak_load"] is not None
            else ("all compute", "all")
        )
        timing = (
            (
                f"{r['parameters'] / 1e6:.2f}M",
                f"{r['conv_mflops']:.1f}",
                f"{r['step_ms']:.0f}",
                f"{r['step_ms'] / soft['step_ms']:.2f}" if soft else "-",
            )
            if "step_ms" in r
            else ("-",) * 4
        )
        lines.append(
            f"| {r['variant']} | {r['model']} | {r['error']:.2f} ± {r['error_std']:.2f} | "
            f"{', '.join(f'{e:.2f}' for e in r['errors'])} | {usage[0]} | {usage[1]} | "
            f"{' | '.join(timing)} | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines)
