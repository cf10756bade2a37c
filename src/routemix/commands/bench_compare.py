"""``routemix bench clustering`` and ``routemix bench nclusters``: every clustering method on the
same data beside the papers' numbers, and how well methods find the number of clusters."""

from __future__ import annotations

import argparse
from pathlib import Path

from routemix.cluster.config import DEFAULT_MAX_CLUSTERS
from routemix.cluster.registry import METHODS as CLUSTERING_METHODS
from routemix.commands.options import add_option, known_name, known_names, parse_seeds
from routemix.errors import RoutemixError

MNISTS = "root holding MNIST/FashionMNIST (default: $ROUTEMIX_DATA or the user cache)"


def add_parser(benches) -> None:
    clustering = benches.add_parser(
        "clustering", help="every clustering method on the same data, beside the papers' numbers"
    )
    add_option(
        clustering,
        "datasets",
        default="digits,mnist,fashion_mnist",
        help="comma-separated (default: digits,mnist,fashion_mnist)",
    )
    add_option(
        clustering,
        "methods",
        default=",".join(CLUSTERING_METHODS),
        help=f"comma-separated (default: {','.join(CLUSTERING_METHODS)})",
    )
    add_option(
        clustering,
        "budget",
        help="cpu (all images, every deep method about 30 min of one thread, the MoE about 40), "
        "cpu-long (about 2 h each) or paper (each paper's recipe, for a GPU); default cpu",
    )
    _add_common(
        clustering,
        out="runs/bench-clustering",
        out_help="folder for results.json (a rerun continues), table.md, table.csv",
    )
    clustering.set_defaults(handler=run_clustering)

    nclusters = benches.add_parser(
        "nclusters", help="how many clusters: NMM-EM's estimates vs UMAP + HDBSCAN and X-means, G-means, Dip-means"
    )
    add_option(
        nclusters,
        "datasets",
        default="digits,blobs,moons,rings,mnist,fashion_mnist",
        help="comma-separated, each with known classes (default: digits,blobs,moons,rings,mnist,fashion_mnist)",
    )
    add_option(
        nclusters,
        "methods",
        default="nmm-auto,nmm-true,nmm,hdbscan",
        help="comma-separated subset of nmm-auto,nmm-true,nmm,hdbscan,xmeans,gmeans,dipmeans "
        "(default: the first four; the last three need routemix[baselines])",
    )
    nclusters.add_argument(
        "--bound-factor", type=float, default=2.0, help="NMM-EM starts with this times the true K clusters (default 2)"
    )
    nclusters.add_argument(
        "--drop-factor",
        type=float,
        default=0.8,
        help="NMM-EM drops a cluster whose running share of won samples falls below this / its start K (default 0.8)",
    )
    add_option(nclusters, "max_clusters", help=f"the largest K nmm-auto considers (default {DEFAULT_MAX_CLUSTERS})")
    add_option(
        nclusters,
        "budget",
        help="cpu (image sets: first 10000 images, every method on their UMAP embedding; 2-D sets: 50 epochs), "
        "cpu-all (cpu with all 70000 images, 3 epochs) or full (all samples, the estimator's default epochs)",
    )
    _add_common(
        nclusters, out="runs/bench-nclusters", out_help="folder for results.json (a rerun continues) and table.md"
    )
    nclusters.set_defaults(handler=run_nclusters)


def _add_common(parser: argparse.ArgumentParser, *, out: str, out_help: str) -> None:
    add_option(parser, "seeds", default="3")
    add_option(parser, "data_dir", help=MNISTS)
    add_option(parser, "device", default="cpu")
    add_option(parser, "out", default=out, help=out_help)
    add_option(parser, "progress")


def run_clustering(args: argparse.Namespace) -> int:
    from routemix.bench.clustering import BUDGETS, format_markdown, plot_time_to_accuracy, run, summarize, write_tables
    from routemix.data import get_dataset_spec

    datasets = tuple(args.datasets.split(","))
    for name in datasets:
        get_dataset_spec(name)  # unknown names fail here, with suggestions
    methods = known_names(args.methods, CLUSTERING_METHODS, "method", f"Available: {', '.join(CLUSTERING_METHODS)}.")
    budget = known_name(args.budget, BUDGETS, "budget", f"Available: {', '.join(BUDGETS)}.")
    results = run(
        datasets,
        methods,
        tuple(parse_seeds(args.seeds)),
        budget=budget,
        data_dir=args.data_dir,
        device=args.device,
        out=args.out,
        progress=args.progress,
    )
    rows = summarize(results)
    print(format_markdown(rows))
    markdown, table = write_tables(rows, args.out)
    figures = [
        str(plot_time_to_accuracy(results, args.out, dataset)[0])
        for dataset in dict.fromkeys(r["dataset"] for r in results)
    ]
    print(f"\nwritten: {markdown}, {table}, {', '.join(figures)} (raw results: {Path(args.out) / 'results.json'})")
    return 0


def run_nclusters(args: argparse.Namespace) -> int:
    from routemix.bench.nclusters import BUDGETS, METHODS, Settings, draw_scores, format_markdown, run, summarize
    from routemix.data import get_dataset_spec
    from routemix.storage import write_text

    datasets = tuple(args.datasets.split(","))
    for name in datasets:
        if get_dataset_spec(name).num_classes is None:  # unknown names fail here, with suggestions
            raise RoutemixError(f"dataset {name!r} has no known number of classes to compare with.")
    methods = known_names(args.methods, METHODS, "method", f"Available: {', '.join(METHODS)}.")
    budget = known_name(args.budget, BUDGETS, "budget", f"Available: {', '.join(BUDGETS)}.")
    try:
        given = {} if args.max_clusters is None else {"max_clusters": args.max_clusters}
        settings = Settings(bound_factor=args.bound_factor, drop_factor=args.drop_factor, **given)
    except ValueError as error:
        raise RoutemixError(str(error)) from None
    results = run(
        datasets,
        methods,
        tuple(parse_seeds(args.seeds)),
        budget=budget,
        settings=settings,
        data_dir=args.data_dir,
        device=args.device,
        out=args.out,
        progress=args.progress,
    )
    table = format_markdown(summarize(results))
    print(table)
    write_text(Path(args.out) / "table.md", table + "\n")
    figures = draw_scores(results, Path(args.out) / "modularity")
    shown = f", the modularity of every K: {figures[0]}" if figures else ""
    print(f"\nwritten: {Path(args.out) / 'table.md'}{shown} (raw results: {Path(args.out) / 'results.json'})")
    return 0
