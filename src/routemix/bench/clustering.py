"""Every clustering method on the same data in the same run, beside the papers' own numbers.

``run(datasets, methods, seeds)`` fits each (dataset, method, seed) in a fresh process, so that
its peak memory is its own: ``peak_mb`` is the resident-set peak of that process, and
``fit_mb`` how far the fit raised it above the resident set just before fitting (libraries and
data loaded; torch and its friends alone hold about 800 MB), which is what compares methods. It scores
ACC/NMI/ARI against the labels; ``summarize`` gives mean and spread over seeds, wall time, peak
memory and the published ACC/NMI for the same dataset and method (``reference/clustering.csv``,
with the table each number comes from).

**Budgets.** The papers train for hundreds of epochs on a GPU. So that the whole benchmark runs
on a 2-core CPU (all 24 fits: digits in 8 minutes, MNIST and Fashion-MNIST in about 30 each,
measured), the ``cpu`` budget caps each image set at a fixed subset (the first ``limit`` images,
the same for every method and seed) and each deep method at a few epochs; ``full`` is every
image at each method's default (the papers' settings), for a machine with a GPU. A budget is
part of the result: rows from different budgets are never mixed.

Results are appended to ``out/results.json`` as each fit finishes, so an interrupted run
continues where it stopped when started again with the same ``out``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

DATASETS = ("digits", "mnist", "fashion_mnist")
METHODS = ("nmm", "ddc", "edgam", "moe", "iic", "kmeans", "gmm", "spectral")


@dataclass(frozen=True)
class Budget:
    """How much of a dataset each method sees: ``limit`` samples (``None``: all), epochs per
    deep method (a method not named trains for its estimator's default) and estimator settings
    per method that make it affordable."""

    limit: int | None = None
    epochs: dict[str, int] = field(default_factory=dict)
    params: dict[str, dict] = field(default_factory=dict)

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


# The cpu budget, measured on 2 cores (one fit, 10,000 images): NMM-EM about 100 s per epoch of
# its CNN (EM and consistency steps), IIC about 50 s, DDC's LeNet about 10 s, EDGaM's dense
# auto-encoder about 10 s; MoE's ten VAE experts dominate, so its networks are 8 filters wide
# instead of 32 (5x cheaper) and its 5 epochs go one to each of its five stages. EDGaM trains the
# architecture its paper used for each set (dense for MNIST, convolutional for Fashion-MNIST).
_IMAGE_EPOCHS = {"nmm": 3, "iic": 3, "ddc": 20, "edgam": 20, "moe": 5}
BUDGETS: dict[str, dict[str, Budget]] = {
    "cpu": {
        "digits": Budget(epochs={"edgam": 100}),  # EDGaM's default 1000 epochs take 20 min on digits
        "mnist": Budget(limit=10_000, epochs=_IMAGE_EPOCHS, params={"edgam": {"architecture": "dense"}, "moe": {"base_width": 8}}),
        "fashion_mnist": Budget(limit=10_000, epochs={**_IMAGE_EPOCHS, "edgam": 10},
                                params={"edgam": {"architecture": "conv"}, "moe": {"base_width": 8}}),
    },
    "full": {name: Budget() for name in DATASETS},
}


def budget_for(budget: str, dataset: str) -> Budget:
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; available: {', '.join(BUDGETS)}.")
    return BUDGETS[budget].get(dataset, Budget())


def reference_numbers() -> dict[tuple[str, str], dict]:
    """Published numbers by (dataset, method)."""
    from routemix.bench.published import published_table

    return {(row["dataset"], row["method"]): row for row in published_table("clustering")}


def fit_one(dataset: str, method: str, seed: int, budget: Budget, data_dir: str | None = None, device: str = "cpu") -> dict:
    """Load ``dataset`` under ``budget``, fit ``method`` with ``seed``; scores, seconds, peak memory.

    Runs in the calling process; :func:`run` calls it in a fresh process per fit.
    """
    import resource

    from routemix.cluster.registry import get_method, make_estimator
    from routemix.data import load_dataset
    from routemix.metrics import clustering_scores

    data = load_dataset(dataset, data_dir=data_dir)
    x, labels = data.data, data.labels
    if budget.limit is not None:
        x, labels = x[: budget.limit], labels[: budget.limit]
    image_shape = tuple(x.shape[1:]) if data.kind == "image" else None
    rows = x.reshape(len(x), -1).numpy()
    rows = rows.astype(np.float32) / 255.0 if data.kind == "image" else rows.astype(np.float64)
    deep = get_method(method).deep
    estimator = make_estimator(
        method, data.num_classes, n_features=rows.shape[1], image_shape=image_shape,
        max_iter=budget.epochs.get(method), random_state=seed, device=device, **budget.params.get(method, {}),
    )
    start_mb = _resident_mb()
    start = time.perf_counter()
    predicted = estimator.fit_predict(rows)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return {
        "dataset": dataset, "method": method, "seed": seed, "budget": budget.key(), "n_samples": len(rows),
        "epochs": getattr(estimator, "n_iter_", None) if deep else None,
        **clustering_scores(labels, predicted), "seconds": seconds, "peak_mb": peak_mb, "fit_mb": max(peak_mb - start_mb, 0.0),
    }


def _resident_mb() -> float:
    """Resident set of this process now, in MiB (Linux /proc; 0 where it cannot be read)."""
    import os

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _in_fresh_process(*args) -> dict:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fit_one, *args).result()


def run(
    datasets=DATASETS, methods=METHODS, seeds=(0, 1, 2), *, budget: str = "cpu", data_dir: str | None = None,
    device: str = "cpu", out: str | None = None, progress: bool = True,
) -> list[dict]:
    """Every (dataset, method, seed) not yet in ``out/results.json``; returns all matching results."""
    from tqdm.auto import tqdm

    from routemix.train.checkpoint import write_json

    path = Path(out) / "results.json" if out else None
    done: list[dict] = json.loads(path.read_text()) if path is not None and path.is_file() else []
    budgets = {d: budget_for(budget, d) for d in datasets}
    have = {(r["dataset"], r["method"], r["seed"], r["budget"]) for r in done}
    jobs = [(d, m, s) for d in datasets for s in seeds for m in methods if (d, m, s, budgets[d].key()) not in have]
    bar = tqdm(jobs, desc="clustering", disable=not progress)
    for dataset, method, seed in bar:
        bar.set_postfix_str(f"{dataset} {method} seed {seed}")
        done.append(_in_fresh_process(dataset, method, seed, budgets[dataset], data_dir, device))
        if path is not None:
            write_json(path, done)
    return [r for r in done if r["dataset"] in datasets and r["method"] in methods and r["seed"] in seeds
            and r["budget"] == budgets[r["dataset"]].key()]


def summarize(results: list[dict]) -> list[dict]:
    """One row per (dataset, method) in run order: mean and std over seeds, the paper's numbers."""
    from routemix.bench import summarize as mean_and_std

    reference = reference_numbers()
    rows = []
    for dataset, method in dict.fromkeys((r["dataset"], r["method"]) for r in results):
        runs = [r for r in results if r["dataset"] == dataset and r["method"] == method]
        paper = reference.get((dataset, method), {})
        rows.append({
            "dataset": dataset, "method": method, "seeds": len(runs), "n_samples": runs[0]["n_samples"],
            "epochs": runs[0]["epochs"], **mean_and_std(runs), "peak_mb": float(max(r["peak_mb"] for r in runs)),
            "fit_mb": float(max(r["fit_mb"] for r in runs)),
            "paper_acc": paper.get("acc"), "paper_nmi": paper.get("nmi"), "paper_source": paper.get("source"),
        })
    return rows


def format_markdown(rows: list[dict]) -> str:
    """One markdown table per dataset, then the sources of the papers' numbers."""
    parts, sources = [], {}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        table = [r for r in rows if r["dataset"] == dataset]
        parts.append(f"**{dataset}** ({table[0]['n_samples']} samples)\n")
        parts.append("| method | seeds | ACC | NMI | ARI | epochs | s/fit | fit MB | paper ACC | paper NMI |")
        parts.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in table:
            mark = ""
            if r["paper_source"]:
                mark = f" [{sources.setdefault(r['paper_source'], len(sources) + 1)}]"
            parts.append(
                f"| {r['method']} | {r['seeds']} | {r['acc']:.3f} ± {r['acc_std']:.3f} | {r['nmi']:.3f} ± {r['nmi_std']:.3f} | "
                f"{r['ari']:.3f} ± {r['ari_std']:.3f} | {r['epochs'] if r['epochs'] is not None else '-'} | "
                f"{r['seconds']:.1f} | {r['fit_mb']:.0f} | {_cell(r['paper_acc'])}{mark} | {_cell(r['paper_nmi'])} |"
            )
        parts.append("")
    parts.append("fit MB: the most a fit raised its process's resident memory (peak_mb in table.csv is the whole process).")
    if sources:
        parts.append("Papers' numbers: " + "; ".join(f"[{n}] {source}" for source, n in sources.items()) + ".")
    return "\n".join(parts)


def write_tables(rows: list[dict], out: str | Path) -> tuple[Path, Path]:
    """``out/table.md`` and ``out/table.csv`` (one line per dataset and method)."""
    import csv
    import io

    from routemix.train.checkpoint import write_text

    out = Path(out)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "table.csv", buffer.getvalue())
    write_text(out / "table.md", format_markdown(rows) + "\n")
    return out / "table.md", out / "table.csv"


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
