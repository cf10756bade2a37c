"""Wall and CPU time of deep clustering fits on small tables, beside k-means on the same data.

One process, one PyTorch intra-op thread (``--threads``), fits interleaved repeat after repeat so
that drifts of the machine fall on all of them alike; prints a Markdown table of medians and the
ratio to k-means (scikit-learn's ``KMeans`` with its defaults on the standardised data the
network sees). The first fit of a process (imports, first calls) is reported apart and not counted.

    OMP_NUM_THREADS=1 python scripts/small_data_timing.py --repeats 5
    OMP_NUM_THREADS=1 python scripts/small_data_timing.py --fits iris,digits,ddc-digits --digits-epochs 20

Two versions of the code side by side (e.g. a ``git worktree add /tmp/before HEAD`` checkout):
``--sources`` runs this script once per source and round, alternating, each in its own process
with ``PYTHONPATH`` set to that source, and prints every source's medians and its ratio to the
first one's::

    OMP_NUM_THREADS=1 python scripts/small_data_timing.py --sources before=/tmp/before/src after=src \\
        --rounds 4 --repeats 3

The fits: ``iris`` (150 x 4, NMMClustering(3), 200 epochs of one batch), ``digits`` (1797 x 64,
NMMClustering(10), ``--digits-epochs`` epochs of 14 batches), ``ddc-digits`` (DDCClustering(10) on
digits, its 100 epochs); ``--progress`` fits with ``verbose=True``, as the ``routemix`` command does.
The load average is printed before and after: on a shared machine, read the numbers with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def fits(names: list[str], digits_epochs: int, iris_epochs: int, verbose: bool = False) -> dict:
    """``name: (make_estimator, X, n_clusters, description)`` for every fit asked for."""
    from sklearn.datasets import load_digits, load_iris

    from routemix.cluster import DDCClustering, NMMClustering

    iris, digits = load_iris().data, load_digits().data
    table = {
        "iris": (
            lambda: NMMClustering(3, max_iter=iris_epochs, random_state=0, verbose=verbose),
            iris,
            3,
            f"NMMClustering(3), {iris_epochs} epochs",
        ),
        "digits": (
            lambda: NMMClustering(10, max_iter=digits_epochs, random_state=0, verbose=verbose),
            digits,
            10,
            f"NMMClustering(10), {digits_epochs} epochs",
        ),
        "ddc-digits": (
            lambda: DDCClustering(10, random_state=0, verbose=verbose),
            digits,
            10,
            "DDCClustering(10), 100 epochs",
        ),
    }
    unknown = set(names) - set(table)
    if unknown:
        raise SystemExit(f"unknown fits {sorted(unknown)}; choose from {', '.join(table)}")
    return {name: table[name] for name in names}


def measure(args) -> dict:
    """Times of every fit and of k-means on its data, in this process."""
    import torch
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    import routemix

    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = fits(args.fits.split(","), args.digits_epochs, args.iris_epochs, verbose=args.progress)
    if args.progress:  # the bars go to stderr (routemix.train.common.stderr_progress_bar); drawn, then dropped
        sys.stderr = open(os.devnull, "w")
    result = {
        "routemix": os.path.dirname(routemix.__file__),
        "threads": torch.get_num_threads(),
        "load_before": load_average(),
        "first_fit": {},
        "times": {},
        "cpu": {},
        "kmeans": {},
        "what": {},
    }
    for name, (make, X, k, what) in chosen.items():  # first fits: imports and first calls, not counted
        start = time.perf_counter()
        make().fit(X)
        result["first_fit"][name] = time.perf_counter() - start
        result["what"][name] = what
        result["times"][name], result["cpu"][name], result["kmeans"][name] = [], [], []
    for _ in range(args.repeats):
        for name, (make, X, k, _) in chosen.items():
            start, cpu = time.perf_counter(), time.process_time()
            make().fit(X)
            result["times"][name].append(time.perf_counter() - start)
            result["cpu"][name].append(time.process_time() - cpu)
            scaled = StandardScaler().fit_transform(X)
            start = time.perf_counter()
            KMeans(k, random_state=0).fit(scaled)
            result["kmeans"][name].append(time.perf_counter() - start)
    result["load_after"] = load_average()
    return result


def print_table(result: dict) -> None:
    print(
        f"routemix from {result['routemix']}, {result['threads']} intra-op thread(s), "
        f"load average {result['load_before']} before, {result['load_after']} after\n"
    )
    print(
        "| fit | median s | min-max s | median CPU s | first fit in process s | k-means median s | ratio to k-means |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, times in result["times"].items():
        median, kmeans = statistics.median(times), statistics.median(result["kmeans"][name])
        print(
            f"| {name}: {result['what'][name]} | {median:.3f} | {min(times):.3f}-{max(times):.3f} "
            f"| {statistics.median(result['cpu'][name]):.3f} | {result['first_fit'][name]:.3f} "
            f"| {kmeans:.4f} | {median / kmeans:.0f} |"
        )


def compare(args) -> None:
    """Run this script per source and round, alternating; one table of medians over all runs."""
    sources = [s.split("=", 1) for s in args.sources]
    passed = [
        "--repeats",
        str(args.repeats),
        "--fits",
        args.fits,
        "--digits-epochs",
        str(args.digits_epochs),
        "--iris-epochs",
        str(args.iris_epochs),
        "--threads",
        str(args.threads),
        "--json",
    ] + (["--progress"] if args.progress else [])
    collected = {label: {} for label, _ in sources}
    print(f"load average {load_average()} at the start")
    for round_ in range(args.rounds):
        for label, path in sources:
            env = {**os.environ, "PYTHONPATH": os.path.abspath(path)}
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), *passed],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            run = json.loads(out.strip().splitlines()[-1])
            print(
                f"round {round_ + 1}, {label} ({run['routemix']}): "
                + ", ".join(f"{name} {statistics.median(t):.3f} s" for name, t in run["times"].items())
                + f"; load {run['load_before']} -> {run['load_after']}",
                flush=True,
            )
            for name, times in run["times"].items():
                entry = collected[label].setdefault(
                    name, {"times": [], "cpu": [], "kmeans": [], "what": run["what"][name]}
                )
                entry["times"] += times
                entry["cpu"] += run["cpu"][name]
                entry["kmeans"] += run["kmeans"][name]
    first = sources[0][0]
    print(
        f"\nload average {load_average()} at the end; {args.rounds} rounds x {args.repeats} repeats per source; "
        "wall and CPU seconds, medians over all runs\n"
    )
    labels = [label for label, _ in sources]
    print(
        "| fit | "
        + " | ".join(f"{label} s | {label} CPU s" for label in labels)
        + " | "
        + " | ".join(f"{label} / {first} (wall, CPU)" for label in labels[1:])
        + " | k-means s | "
        + " | ".join(f"{label} / k-means" for label in labels)
        + " |"
    )
    print("|---|" + "---:|" * (2 * len(labels) + len(labels) - 1 + 1 + len(labels)))
    for name in collected[first]:
        wall = [statistics.median(collected[label][name]["times"]) for label in labels]
        cpu = [statistics.median(collected[label][name]["cpu"]) for label in labels]
        kmeans = statistics.median([t for label in labels for t in collected[label][name]["kmeans"]])
        print(
            f"| {name}: {collected[first][name]['what']} | "
            + " | ".join(f"{w:.3f} | {c:.3f}" for w, c in zip(wall, cpu))
            + " | "
            + " | ".join(f"{w / wall[0]:.2f}, {c / cpu[0]:.2f}" for w, c in zip(wall[1:], cpu[1:]))
            + f" | {kmeans:.4f} | "
            + " | ".join(f"{w / kmeans:.0f}" for w in wall)
            + " |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed fits of each kind per process (default 5)")
    parser.add_argument(
        "--fits", default="iris,digits", help="comma-separated: iris, digits, ddc-digits (default iris,digits)"
    )
    parser.add_argument("--digits-epochs", type=int, default=200, help="epochs of the NMM digits fit (default 200)")
    parser.add_argument(
        "--iris-epochs", type=int, default=200, help="epochs of the iris fit (default 200, the estimator's default)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="PyTorch intra-op threads (default 1; 0: PyTorch's default)"
    )
    parser.add_argument(
        "--progress",
        action="store_true",
        help="fit with verbose=True: the progress bar the routemix command shows (drawn to os.devnull)",
    )
    parser.add_argument(
        "--sources", nargs="+", metavar="LABEL=PATH", help="compare source trees (see the module docstring)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --sources: alternating rounds (default 3)")
    parser.add_argument("--json", action="store_true", help="print the raw times as one JSON line")
    args = parser.parse_args()
    if args.sources:
        compare(args)
        return
    result = measure(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
