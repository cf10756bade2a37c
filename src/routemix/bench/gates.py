"""Does the clustering loss keep gates from collapsing? Thesis ch. 5.1 and Fig. 5.1, at this scale.

A two-path network (BaseCNN-2-CC by default; Fig. 5.1 is of "a two-path network") is trained
three ways with the same budget and seeds: the task loss alone (``none``), plus the NMM-EM loss on
every gating vector (``local``, ch. 5.1), plus the per-router variant (``global``, ch. 5.2; see
:mod:`routemix.losses.gates`), each weighted 0.01 as in the thesis. The budget is that of
``routemix bench routing`` (Fashion-MNIST standing in for CIFAR-10, the first 10,000 training
images, 4 epochs, the thesis' SGD recipe scaled), so the ``none`` rows of the two benchmarks are
the same runs. Reported side by side: test error and the gate statistics of
:func:`routemix.metrics.gate_statistics` over the 10,000 test images (share of skewed gating
vectors, entropy of the mean gating vector, spread of a gate over the data, and how high each
vector's least-used gate reaches). The figure draws, like Fig. 5.1, one chosen gate's response
over test images for each variant.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from routemix.bench.routing import train_one

VARIANTS = ("none", "local", "global")
SAMPLED_IMAGES = 200  # test images whose per-image gates are kept for the figure


def run(
    *,
    data_dir: str | None,
    seeds=(0, 1, 2),
    variants=VARIANTS,
    model: str = "basecnn_2cc",
    epochs: int = 4,
    train_images: int = 10_000,
    test_images: int | None = None,
    weight: float = 0.01,
    out: str | None = None,
    progress: bool = True,
) -> list[dict]:
    """Every (variant, seed) not yet in ``out`` (a rerun continues); returns all matching results."""
    from tqdm.auto import tqdm

    from routemix.storage import write_json

    setting = {"model": model, "epochs": epochs, "train_images": train_images, "gate_weight": weight}
    path = Path(out) if out else None
    done = json.loads(path.read_text()) if path is not None and path.is_file() else []
    same = [r for r in done if all(r.get(k) == v for k, v in setting.items())]
    have = {(r["gate_reg"], r["seed"]) for r in same}
    jobs = [(v, s) for s in seeds for v in variants if (v, s) not in have]
    for variant, seed in tqdm(jobs, desc="gates", disable=not progress):
        row = train_one(
            model,
            seed,
            data_dir=data_dir,
            epochs=epochs,
            train_images=train_images,
            test_images=test_images,
            gate_reg=variant,
            gate_weight=weight,
            gate_samples=SAMPLED_IMAGES,
        )
        done.append(row)
        same.append(row)
        if path is not None:
            write_json(path, done)
    return [r for r in same if r["gate_reg"] in variants and r["seed"] in seeds]


def summarize(results: list[dict], variants=VARIANTS) -> list[dict]:
    """One row per variant: mean and spread over seeds of the error and of each gate statistic."""
    from routemix.metrics import summarize_gate_statistics

    rows = []
    for variant in variants:
        runs = [r for r in results if r["gate_reg"] == variant]
        if not runs:
            continue
        summaries = [summarize_gate_statistics(r["gate_stats"]) for r in runs]
        row = {
            "variant": variant,
            "seeds": len(runs),
            "error": float(np.mean([r["error"] for r in runs])),
            "error_std": float(np.std([r["error"] for r in runs])),
            "errors": [r["error"] for r in runs],
            "seconds": float(np.mean([r["seconds"] for r in runs])),
        }
        for key in summaries[0]:
            row[key] = float(np.mean([s[key] for s in summaries]))
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        "| gate regulariser | test error % (mean ± std) | per seed | skewed vectors | entropy of mean gates | "
        "gate spread (std) | least-used gate, 95th pct | s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['error']:.2f} ± {r['error_std']:.2f} | "
            f"{', '.join(f'{e:.2f}' for e in r['errors'])} | "
            f"{100 * r['skewed_share']:.0f}% | {r['entropy']:.3f} | {r['spread']:.3f} | "
            f"{r['minority_high']:.3f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def chosen_gate(results: list[dict]) -> tuple[str, int, int]:
    """Fig. 5.1's gate: (router, incoming i, outgoing j) of the least-used gate of the most skewed
    gating vector in the unregularised run of the lowest seed (or the first run if there is none)."""
    runs = sorted(results, key=lambda r: (r["gate_reg"] != "none", r["seed"]))
    stats = runs[0]["gate_stats"]
    worst = min(stats, key=lambda s: min(s["mean"]))
    return worst["router"], worst["incoming"], int(np.argmin(worst["mean"]))


def plot_gate_response(results: list[dict], path: str | Path, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Fig. 5.1: the chosen gate's value on each sampled test image, one panel per variant (lowest seed)."""
    from routemix.viz.common import new_figure, save_figure

    router, i, j = chosen_gate(results)
    variants = [v for v in VARIANTS if any(r["gate_reg"] == v for r in results)]
    fig, axes = new_figure(len(variants), 1, figsize=(8, 1.9 * len(variants) + 0.6), sharex=True, squeeze=False)
    for ax, variant in zip(axes[:, 0], variants):
        run = min((r for r in results if r["gate_reg"] == variant), key=lambda r: r["seed"])
        values = np.asarray(run["gate_samples"][router])[:, i, j]
        ax.bar(np.arange(len(values)), values, width=1.0, color="tab:blue")
        ax.axhline(0.5, color="0.4", lw=0.8, ls="--")
        ax.set_ylim(0, 1)
        ax.set_ylabel("gate value")
        ax.set_title(
            f"{variant}: gate {router}[{i}->{j}], seed {run['seed']}, test error {run['error']:.2f}%", fontsize=9
        )
    axes[-1, 0].set_xlabel(f"test image (the first {len(values)})")
    model, epochs = results[0]["model"], results[0]["epochs"]
    caption = (
        f"{model}, Fashion-MNIST, {epochs} epoch{'s' if epochs != 1 else ''}; "
        "the least-used gate of the most skewed gating vector without "
        "regularisation, under no, local and global NMM-EM gate regularisation (routemix bench gates)"
    )
    return save_figure(fig, path, caption, formats)
