"""Every clustering method on the same data in the same run, beside the papers' own numbers.

``run(datasets, methods, seeds)`` fits each (dataset, method, seed) in a fresh process, so that
its peak memory is its own: ``peak_mb`` is the resident-set peak of that process, and
``fit_mb`` how far the fit raised it above the resident set just before fitting (libraries and
data loaded; torch and its friends alone hold about 800 MB), which is what compares methods. It scores
ACC/NMI/ARI against the labels; ``summarize`` gives mean and spread over seeds, wall time, peak
memory and the published ACC/NMI for the same dataset, method and protocol
(``routemix/published/clustering.csv``, with the table each number comes from).

**Protocols.** Papers report different things: the mean of single runs (the thesis, the MoE
thesis), or the run of lowest unsupervised loss out of 20 and a vote of the best three (DDC
Table 1). Every row says which it is (``protocol``): ``single run`` rows are averaged over seeds
(and over DDC's runs); a DDC fit with ``n_init`` = N also gives the ``lowest loss`` of its N runs
and the ``vote`` of the best three (DDC-VOTE), from the same N trainings.

**Budgets** (:data:`BUDGETS`, the one place that says how long each method trains):

* ``paper``: all data, each paper's own recipe (epochs, pre-training, restarts), for a GPU.
* ``cpu`` and ``cpu-long``: all data too, and every deep method gets about the same training
  time on one thread of this CPU (:data:`CPU_SECONDS` per fit: 30 minutes, 2 hours), as epochs
  calibrated from measured seconds per epoch: epochs rather than a clock, so a result does not
  depend on how busy the machine was. On digits each method trains at its estimator's defaults.

A budget is part of the result: rows from different budgets are never mixed (a row records
what its method's fit depended on, so changing one method's budget reruns only that method). With ``out``, the
deep methods' learning curves (ACC against training seconds, :mod:`routemix.train.curves`) go to
``out/curves/`` and :func:`plot_time_to_accuracy` draws them, baselines as points, in one figure
per dataset. Results are appended to ``out/results.json`` as each fit finishes, so an interrupted
run continues where it stopped when started again with the same ``out``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from routemix.cluster.registry import METHODS as CLUSTERING_METHODS

DATASETS = ("digits", "mnist", "fashion_mnist")
METHODS = tuple(CLUSTERING_METHODS)  # every method of the registry, in its order
SINGLE_RUN, LOWEST_LOSS, VOTE = "single run", "lowest loss", "vote"


@dataclass(frozen=True)
class Budget:
    """How much each method trains on a dataset: ``limit`` samples (``None``: all), epochs per
    deep method (a method not named trains for its estimator's default), estimator settings per
    method, and the epochs between learning-curve points per method (none: no curve)."""

    limit: int | None = None
    epochs: dict[str, int] = field(default_factory=dict)
    params: dict[str, dict] = field(default_factory=dict)
    curve_every: dict[str, int] = field(default_factory=dict)

    def key(self, method: str) -> str:
        """What a result of ``method`` depends on: the limit, its own epochs and settings (not the
        other methods', nor the curve interval, which changes no result)."""
        return json.dumps(
            {"limit": self.limit, "epochs": self.epochs.get(method), "params": self.params.get(method, {})},
            sort_keys=True,
        )


# Measured seconds per epoch on all 70,000 MNIST images on one thread, two fits side by side
# (scripts/calibrate_cpu_budget.py, 2026-12-06; Fashion-MNIST's images cost the same). The cpu
# budgets give each deep method ``seconds`` over these epochs, so that each trains about as long.
CPU_SECONDS_PER_EPOCH = {"nmm": 628, "iic": 320, "ddc": 33, "edgam": 101, "n2d": 21}
CPU_EDGAM_PRETRAIN_SECONDS_PER_EPOCH = 61  # the auto-encoder alone
# N2D's UMAP and Gaussian mixture after its auto-encoder, on all 70,000 embeddings: 80-130 s in
# the cpu runs (docs/RESULTS.md, "N2D"); 150 planned.
CPU_N2D_FIXED_SECONDS = 150
# DDC's N in the cpu budgets: its time is shared among N runs (lowest loss of N, vote of the best 3).
CPU_DDC_RUNS = 5
CPU_SECONDS = {"cpu": 1800, "cpu-long": 7200}  # per deep fit on all images
# The MoE's stages on one thread: its joint clustering stage runs every sample through all ten
# experts, 1,630 s per epoch, so with one epoch of each other stage it cannot train in 30 minutes.
# It gets one epoch of each stage and the rest of its time for the retrained VAE whose codes its
# labels come from (about 2,400 s with one retrain epoch, UMAP and GMM; 210 s per further one).
CPU_MOE_FIXED_SECONDS, CPU_MOE_RETRAIN_SECONDS_PER_EPOCH = 2400, 210  # fixed: with one retrain epoch


def cpu_image_budget(seconds: float, curve_every: dict[str, int], edgam_settings: dict) -> Budget:
    """All images, every deep method about ``seconds`` of training on this CPU (see above);
    EDGaM with its paper's settings for the dataset (``edgam_settings``)."""
    epochs = {m: max(1, round(seconds / s)) for m, s in CPU_SECONDS_PER_EPOCH.items()}
    epochs["ddc"] = max(1, epochs["ddc"] // CPU_DDC_RUNS)
    epochs["edgam"] = max(1, round(seconds / 2 / CPU_SECONDS_PER_EPOCH["edgam"]))  # half pre-training, half joint
    pretrain = max(1, round(seconds / 2 / CPU_EDGAM_PRETRAIN_SECONDS_PER_EPOCH))
    epochs["n2d"] = max(1, round((seconds - CPU_N2D_FIXED_SECONDS) / CPU_SECONDS_PER_EPOCH["n2d"]))
    retrain = max(1, round((seconds - CPU_MOE_FIXED_SECONDS) / CPU_MOE_RETRAIN_SECONDS_PER_EPOCH))
    moe_stages = {"autoencoder": 1, "retrain": retrain, "manager": 1, "cluster": 1, "specialise": 1}
    epochs["moe"] = sum(moe_stages.values())
    return Budget(
        epochs=epochs,
        params={
            "ddc": {"n_init": CPU_DDC_RUNS},
            "edgam": {"pretrain_epochs": pretrain, **edgam_settings},
            "moe": {"stage_split": moe_stages, "base_width": 16},
        },
        curve_every=curve_every,
    )


# The papers' recipes on all data: NMM-EM 250 epochs (thesis sec. 4.5.2), IIC the same setting,
# DDC 100 epochs = 70,000 iterations of 100 and 20 runs (sec. 4.6), EDGaM 1000 epochs after
# IDEC's 200 of pre-training (sec. 5; the pre-training is routemix's, see EDGaMClustering),
# MoE the thesis' 1000/1000/1000/100/100 epochs per stage (3,200 in all) at its width 32, N2D
# 1000 auto-encoder epochs (its authors' run.sh).
def paper_image_budget(edgam_settings: dict) -> Budget:
    return Budget(
        epochs={"nmm": 250, "iic": 250, "ddc": 100, "edgam": 1000, "moe": 3200, "n2d": 1000},
        params={
            "ddc": {"n_init": 20},
            "edgam": {"pretrain_epochs": 200, **edgam_settings},
            "moe": {"stage_split": "paper"},
        },
        curve_every={"nmm": 5, "iic": 5, "ddc": 5, "edgam": 20, "moe": 20, "n2d": 50},
    )


# EDGaM per dataset as its paper ran it: Table 5's dense auto-encoder for MNIST and convolutional
# one for Fashion-MNIST, and Table 6's loss weights (eta1, eta2, eta3 of eq. 9; the estimator's
# defaults are the MNIST row, so only Fashion-MNIST's differ: eta1 5e-2, eta2 1e-3).
_EDGAM = {
    "mnist": {"architecture": "dense"},
    "fashion_mnist": {"architecture": "conv", "cluster_weight": 5e-2, "correction_weight": 1e-3},
}
# Digits: each estimator's defaults, but EDGaM gets 100 joint epochs of its 1000 (20 minutes
# here) and sees the pixels as its paper's MNIST does, scaled to [0, 1] for Table 5's sigmoid
# decoder (standardised: ACC 0.72 against 0.80, seeds 0-2, eq. 7 through the responsibilities).
_DIGITS = Budget(
    epochs={"edgam": 100},
    params={"edgam": {"input_scaling": "minmax"}},
    curve_every={"nmm": 10, "iic": 10, "ddc": 10, "edgam": 10, "moe": 5, "n2d": 50},
)


def planned_seconds(budget: Budget, method: str) -> float:
    """Training seconds a cpu budget plans for ``method`` on all images (the calibration above)."""
    params = budget.params.get(method, {})
    if method == "moe":
        return CPU_MOE_FIXED_SECONDS + (params["stage_split"]["retrain"] - 1) * CPU_MOE_RETRAIN_SECONDS_PER_EPOCH
    if method == "n2d":
        return CPU_N2D_FIXED_SECONDS + budget.epochs[method] * CPU_SECONDS_PER_EPOCH[method]
    seconds = budget.epochs[method] * params.get("n_init", 1) * CPU_SECONDS_PER_EPOCH[method]  # restarts: DDC's runs
    return seconds + params.get("pretrain_epochs", 0) * CPU_EDGAM_PRETRAIN_SECONDS_PER_EPOCH


_CPU_CURVES = {
    "cpu": {"nmm": 1, "iic": 1, "ddc": 2, "edgam": 2, "moe": 1, "n2d": 5},
    "cpu-long": {"nmm": 1, "iic": 2, "ddc": 5, "edgam": 5, "moe": 2, "n2d": 20},
}
BUDGETS: dict[str, dict[str, Budget]] = {
    **{
        name: {
            "digits": _DIGITS,
            **{d: cpu_image_budget(seconds, _CPU_CURVES[name], _EDGAM[d]) for d in ("mnist", "fashion_mnist")},
        }
        for name, seconds in CPU_SECONDS.items()
    },
    "paper": {"digits": _DIGITS, **{d: paper_image_budget(_EDGAM[d]) for d in ("mnist", "fashion_mnist")}},
}


def budget_for(budget: str, dataset: str) -> Budget:
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; available: {', '.join(BUDGETS)}.")
    return BUDGETS[budget].get(dataset, Budget())


def reference_numbers() -> dict[tuple[str, str, str], dict]:
    """Published numbers by (dataset, method, protocol)."""
    from routemix.published import published_table

    return {(row["dataset"], row["method"], row["protocol"]): row for row in published_table("clustering")}


def curve_path(out: str | Path, dataset: str, method: str, seed: int) -> Path:
    """Where a fit's learning curve goes (JSON lines, :class:`routemix.train.curves.LearningCurve`)."""
    return Path(out) / "curves" / f"{dataset}-{method}-seed{seed}.jsonl"


def fit_one(
    dataset: str,
    method: str,
    seed: int,
    budget: Budget,
    data_dir: str | None = None,
    device: str = "cpu",
    curve: str | None = None,
) -> list[dict]:
    """Load ``dataset`` under ``budget``, fit ``method`` with ``seed``: result rows with scores,
    seconds and peak memory (one row, or one per DDC protocol). With ``curve`` (a path) and a
    curve interval in the budget, the learning curve is written there (replacing an old one).

    Runs in the calling process; :func:`run` calls it in a fresh process per fit.
    """
    import contextlib
    import resource

    import torch

    from routemix.cluster.registry import get_method, make_estimator
    from routemix.data import load_dataset
    from routemix.metrics import clustering_scores
    from routemix.train.curves import LearningCurve

    data = load_dataset(dataset, data_dir=data_dir)
    x, labels = data.data, data.labels
    if budget.limit is not None:
        x, labels = x[: budget.limit], labels[: budget.limit]
    labels = np.asarray(labels)
    image_shape = tuple(x.shape[1:]) if data.kind == "image" else None
    rows = x.reshape(len(x), -1).numpy()
    rows = rows.astype(np.float32) / 255.0 if data.kind == "image" else rows.astype(np.float64)
    deep = get_method(method).deep
    estimator = make_estimator(
        method,
        data.num_classes,
        n_features=rows.shape[1],
        image_shape=image_shape,
        max_iter=budget.epochs.get(method),
        random_state=seed,
        device=device,
        **budget.params.get(method, {}),
    )
    recording = contextlib.nullcontext()
    if curve is not None and deep and method in budget.curve_every:
        Path(curve).unlink(missing_ok=True)
        recording = LearningCurve(labels, every_n_epochs=budget.curve_every[method], path=curve)
    start_mb = _resident_mb()
    start = time.perf_counter()
    with recording:
        predicted = estimator.fit_predict(rows)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    common = {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "budget": budget.key(method),
        "n_samples": len(rows),
        "epochs": getattr(estimator, "n_iter_", None) if deep else None,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "peak_mb": peak_mb,
        "fit_mb": max(peak_mb - start_mb, 0.0),
    }
    if method == "ddc" and estimator.n_init > 1:
        return ddc_protocol_rows(common, labels, estimator)
    return [{**common, "protocol": SINGLE_RUN, **clustering_scores(labels, predicted)}]


def ddc_protocol_rows(common: dict, labels: np.ndarray, estimator) -> list[dict]:
    """DDC's three protocols from one fit of N runs (sec. 4.6): every run alone (``single run``,
    seconds shared equally), the run of lowest loss (``lowest loss``) and DDC-VOTE (``vote``)."""
    from routemix.metrics import clustering_scores

    runs = len(estimator.run_labels_)
    rows = [
        {
            **common,
            "protocol": SINGLE_RUN,
            "run": r,
            "seconds": common["seconds"] / runs,
            **clustering_scores(labels, run_labels),
        }
        for r, run_labels in enumerate(estimator.run_labels_)
    ]
    best = int(np.argmin(estimator.run_losses_))
    rows.append(
        {**common, "protocol": LOWEST_LOSS, "runs": runs, **clustering_scores(labels, estimator.run_labels_[best])}
    )
    rows.append({**common, "protocol": VOTE, "runs": runs, **clustering_scores(labels, estimator.labels_)})
    return rows


def _resident_mb() -> float:
    """Resident set of this process now, in MiB (Linux /proc; 0 where it cannot be read)."""
    import os

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _die_with_parent() -> None:
    """Linux: have the kernel send this process SIGTERM when its parent dies, so a bench killed
    with SIGKILL leaves no fit running on (elsewhere: nothing; a stopped bench still ends its fit)."""
    import signal
    import sys

    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _in_fresh_process(*args, **kwargs) -> list[dict]:
    """``fit_one`` in a new process (its peak memory its own, nothing left from the last fit).
    However the bench stops (Ctrl-C, SIGTERM, an error), leaving the ``with`` terminates the fit."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1, initializer=_die_with_parent) as pool:
        return pool.apply(fit_one, args, kwargs)


def run(
    datasets=DATASETS,
    methods=METHODS,
    seeds=(0, 1, 2),
    *,
    budget: str = "cpu",
    data_dir: str | None = None,
    device: str = "cpu",
    out: str | None = None,
    progress: bool = True,
) -> list[dict]:
    """Every (dataset, method, seed) not yet in ``out/results.json``; returns all matching results."""
    from tqdm.auto import tqdm

    from routemix.storage import write_json

    path = Path(out) / "results.json" if out else None
    done: list[dict] = json.loads(path.read_text()) if path is not None and path.is_file() else []
    budgets = {d: budget_for(budget, d) for d in datasets}
    have = {(r["dataset"], r["method"], r["seed"], r["budget"]) for r in done}
    jobs = [(d, m, s) for d in datasets for s in seeds for m in methods if (d, m, s, budgets[d].key(m)) not in have]
    bar = tqdm(jobs, desc="clustering", disable=not progress)
    for dataset, method, seed in bar:
        bar.set_postfix_str(f"{dataset} {method} seed {seed}")
        curve = str(curve_path(out, dataset, method, seed)) if out else None
        done.extend(_in_fresh_process(dataset, method, seed, budgets[dataset], data_dir, device, curve=curve))
        if path is not None:
            write_json(path, done)
    return [
        r
        for r in done
        if r["dataset"] in datasets
        and r["method"] in methods
        and r["seed"] in seeds
        and r["budget"] == budgets[r["dataset"]].key(r["method"])
    ]


def summarize(results: list[dict]) -> list[dict]:
    """One row per (dataset, method, protocol) in run order: mean and std over seeds (and runs),
    the paper's numbers for the same protocol."""
    from routemix.bench import summarize as mean_and_std

    reference = reference_numbers()
    rows = []
    for key in dict.fromkeys((r["dataset"], r["method"], r.get("protocol", SINGLE_RUN)) for r in results):
        dataset, method, protocol = key
        runs = [r for r in results if (r["dataset"], r["method"], r.get("protocol", SINGLE_RUN)) == key]
        paper = reference.get(key, {})
        rows.append(
            {
                "dataset": dataset,
                "method": method,
                "protocol": protocol,
                "seeds": len({r["seed"] for r in runs}),
                "fits": len(runs),
                "n_samples": runs[0]["n_samples"],
                "epochs": runs[0]["epochs"],
                **mean_and_std(runs),
                "peak_mb": float(max(r["peak_mb"] for r in runs)),
                "fit_mb": float(max(r["fit_mb"] for r in runs)),
                "paper_acc": paper.get("acc"),
                "paper_nmi": paper.get("nmi"),
                "paper_source": paper.get("source"),
            }
        )
    return rows


def format_markdown(rows: list[dict]) -> str:
    """One markdown table per dataset, then the sources of the papers' numbers."""
    parts, sources = [], {}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        table = [r for r in rows if r["dataset"] == dataset]
        parts.append(f"**{dataset}** ({table[0]['n_samples']} samples)\n")
        parts.append(
            "| method | protocol | seeds | ACC | NMI | ARI | epochs | s/fit | fit MB | paper ACC | paper NMI |"
        )
        parts.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in table:
            mark = ""
            if r["paper_source"]:
                mark = f" [{sources.setdefault(r['paper_source'], len(sources) + 1)}]"
            seeds = str(r["seeds"]) if r["fits"] == r["seeds"] else f"{r['seeds']} ({r['fits']} runs)"
            parts.append(
                f"| {r['method']} | {r['protocol']} | {seeds} | {r['acc']:.3f} ± {r['acc_std']:.3f} | "
                f"{r['nmi']:.3f} ± {r['nmi_std']:.3f} | {r['ari']:.3f} ± {r['ari_std']:.3f} | "
                f"{r['epochs'] if r['epochs'] is not None else '-'} | {r['seconds']:.1f} | {r['fit_mb']:.0f} | "
                f"{_cell(r['paper_acc'])}{mark} | {_cell(r['paper_nmi'])} |"
            )
        parts.append("")
    parts.append(
        "fit MB: the most a fit raised its process's resident memory (peak_mb in table.csv is the whole process); "
        "s/fit of a DDC single run is its share of the N-run fit."
    )
    if sources:
        parts.append("Papers' numbers: " + "; ".join(f"[{n}] {source}" for source, n in sources.items()) + ".")
    return "\n".join(parts)


def write_tables(rows: list[dict], out: str | Path) -> tuple[Path, Path]:
    """``out/table.md`` and ``out/table.csv`` (one line per dataset, method and protocol)."""
    import csv
    import io

    from routemix.storage import write_text

    out = Path(out)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "table.csv", buffer.getvalue())
    write_text(out / "table.md", format_markdown(rows) + "\n")
    return out / "table.md", out / "table.csv"


def read_curve(path: str | Path) -> list[dict]:
    """The points of a learning curve file (JSON lines); scored points only."""
    path = Path(path)
    if not path.is_file():
        return []
    points = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [p for p in points if "acc" in p]


def plot_time_to_accuracy(
    results: list[dict], out: str | Path, dataset: str, formats: tuple[str, ...] = ("png", "svg")
) -> list[Path]:
    """ACC against training seconds for every method on ``dataset``: a line per deep method and
    seed from its learning curve, a point per baseline fit, a short dash at the paper's ACC."""
    from routemix.viz.common import new_figure, save_figure

    rows = [r for r in results if r["dataset"] == dataset and r.get("protocol", SINGLE_RUN) == SINGLE_RUN]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    reference = reference_numbers()
    fig, ax = new_figure(figsize=(8, 5))
    colours = {m: f"C{i}" for i, m in enumerate(methods)}
    for method in methods:
        fits = {r["seed"]: r for r in rows if r["method"] == method}
        labelled = False
        for seed, fit in sorted(fits.items()):
            points = read_curve(curve_path(out, dataset, method, seed))
            label = None if labelled else method
            if points:
                ax.plot(
                    [p["seconds"] for p in points],
                    [p["acc"] for p in points],
                    color=colours[method],
                    lw=1.2,
                    alpha=0.9,
                    marker=".",
                    ms=3,
                    label=label,
                )
            else:
                ax.plot([fit["seconds"]], [fit["acc"]], color=colours[method], marker="o", ls="none", label=label)
            labelled = True
        paper = reference.get((dataset, method, SINGLE_RUN)) or reference.get((dataset, method, LOWEST_LOSS))
        if paper and paper.get("acc"):
            ax.axhline(paper["acc"], color=colours[method], ls=":", lw=0.9, alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("training seconds (this machine; scoring excluded)")
    ax.set_ylabel("ACC")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    n = rows[0]["n_samples"] if rows else 0
    caption = (
        f"{dataset}, {n} samples: clustering accuracy against training time, one line per seed (routemix bench "
        "clustering); dotted: the paper's ACC for the same method"
    )
    return save_figure(fig, Path(out) / f"time_to_accuracy-{dataset}", caption, formats)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
