"""``routemix bench``: the reproductions of the thesis' studies, one sub-command each.

``nmm2d``, ``nmm-digits`` and ``nmm-priors`` study NMM-EM (ch. 4); ``routing``, ``gates`` and
``sparse`` train the BaseCNN family on Fashion-MNIST (ch. 3 and 5). The method comparisons
(``clustering``, ``nclusters``) and the timings (``speed``, ``pipeline``) add theirs from
:mod:`routemix.commands.bench_compare` and :mod:`routemix.commands.bench_speed`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from routemix.commands import bench_compare, bench_speed
from routemix.commands.options import add_option, known_names, parse_seeds

FASHION_MNIST = "root holding FashionMNIST (default: $ROUTEMIX_DATA or the user cache)"


def add_parser(commands) -> None:
    bench = commands.add_parser("bench", help="reproductions and benchmarks")
    benches = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")

    nmm2d = benches.add_parser("nmm2d", help="thesis sec. 4.5.1: Table 4.1 and the contours of Fig. 4.5")
    add_option(
        nmm2d, "data_dir", help="root holding MNIST (default: $ROUTEMIX_DATA or the user cache); blobs without it"
    )
    add_option(nmm2d, "epochs", default=10, help="clustering epochs (thesis: 10)")
    nmm2d.add_argument("--cnn-epochs", type=int, default=2, help="epochs of the supervised bottleneck CNN")
    add_option(nmm2d, "seed", default=0)
    add_option(nmm2d, "out", default="runs/bench-nmm2d", help="output folder for the figure and table")
    add_option(nmm2d, "progress")
    nmm2d.set_defaults(handler=run_nmm2d)

    digits = benches.add_parser("nmm-digits", help="NMMClustering on digits: defaults vs the alternatives, over seeds")
    add_option(digits, "variants", help="comma-separated subset of the variants (default: all)")
    priors = benches.add_parser("nmm-priors", help="cluster priors on uneven clusters (digits, blobs)")
    for parser, handler in ((digits, run_nmm_digits), (priors, run_nmm_priors)):
        add_option(parser, "seeds", default="0-2")
        add_option(parser, "out", help="write the rows as JSON here")
        add_option(parser, "progress")
        parser.set_defaults(handler=handler)

    routing = benches.add_parser(
        "routing", help="Table 3.2 on Fashion-MNIST: the BaseCNN family over seeds, short budget"
    )
    add_option(routing, "models", help="comma-separated subset (default: all eight)")
    _add_fashion_mnist_runs(
        routing, out="runs/bench-routing.json", out_help="results, appended run by run; a rerun continues"
    )
    routing.set_defaults(handler=run_routing)

    gates = benches.add_parser(
        "gates", help="thesis ch. 5.1: gates trained with no, local and global NMM-EM regularisation"
    )
    add_option(gates, "variants", help="comma-separated subset of none,local,global (default: all)")
    add_option(
        gates,
        "model",
        default="basecnn_2cc",
        help="a routed model of the zoo (default basecnn_2cc, two paths as in Fig. 5.1)",
    )
    add_option(gates, "weight", default=0.01, help="weight of the gate loss (default 0.01, ch. 5.1)")
    _add_fashion_mnist_runs(
        gates,
        out="runs/bench-gates.json",
        out_help="results, appended run by run (a rerun continues); the figure goes beside it",
    )
    gates.set_defaults(handler=run_gates)

    sparse = benches.add_parser(
        "sparse", help="sec. 5.3: sparse top-k routing by clustering vs soft routing vs a load-balancing loss"
    )
    add_option(sparse, "paths", type=int, default=4, help="paths per layer, 2 or more (default 4)")
    sparse.add_argument(
        "--k", type=int, default=1, help="paths per sample in the sparse layers, at most --paths (default 1)"
    )
    add_option(
        sparse,
        "variants",
        help="comma-separated subset of soft,sparse,sparse+balance,clustered,clustered+nmm "
        "and the ablations sparse/drop,sparse/independent (default: the first five)",
    )
    add_option(sparse, "weight", default=0.01, help="weight of the gate loss, NMM-EM or load balancing (default 0.01)")
    sparse.add_argument("--no-timing", action="store_true", help="skip the side-by-side step-time measurement")
    _add_fashion_mnist_runs(
        sparse, seeds="0-1", out="runs/bench-sparse.json", out_help="results, appended run by run (a rerun continues)"
    )
    sparse.set_defaults(handler=run_sparse)

    bench_compare.add_parser(benches)
    bench_speed.add_parser(benches)


def _add_fashion_mnist_runs(parser: argparse.ArgumentParser, *, out: str, out_help: str, seeds: str = "0-2") -> None:
    """The options of a bench that trains classifiers on a fixed Fashion-MNIST subset over seeds
    (read back by :func:`_fashion_mnist_runs`)."""
    add_option(parser, "data_dir", help=FASHION_MNIST)
    add_option(parser, "seeds", default=seeds)
    add_option(parser, "epochs", default=4, help="epochs per run (default 4)")
    add_option(parser, "train_images")
    add_option(parser, "test_images")
    add_option(parser, "out", default=out, help=out_help)
    add_option(parser, "progress")


def _fashion_mnist_runs(args: argparse.Namespace) -> dict:
    return dict(
        data_dir=args.data_dir,
        seeds=tuple(parse_seeds(args.seeds)),
        epochs=args.epochs,
        train_images=args.train_images,
        test_images=args.test_images,
        out=args.out,
        progress=args.progress,
    )


def run_nmm2d(args: argparse.Namespace) -> int:
    from routemix.bench.nmm2d import format_table, plot_contours, run_study
    from routemix.storage import write_json

    result = run_study(
        args.data_dir, seed=args.seed, epochs=args.epochs, cnn_epochs=args.cnn_epochs, progress=args.progress
    )
    print(format_table(result))
    out = Path(args.out)
    figure = plot_contours(result, out / "fig4_5_contours.png")
    summary = {
        "source": result.source,
        "runs": {
            name: {
                "scores": run["scores"],
                "clusters_used": run["clusters_used"],
                "density_means": run["density_means"].tolist(),
                "seconds": run["seconds"],
            }
            for name, run in result.runs.items()
        },
    }
    write_json(out / "table4_1.json", summary)
    print(f"\nfigure: {figure}\ntable: {out / 'table4_1.json'}")
    return 0


def run_nmm_digits(args: argparse.Namespace) -> int:
    from routemix.bench.nmm_digits import VARIANTS, format_table, run
    from routemix.storage import write_json

    variants = (
        list(known_names(args.variants, VARIANTS, "variant", f"Known: {', '.join(VARIANTS)}."))
        if args.variants
        else None
    )
    rows = run(parse_seeds(args.seeds), variants, progress=args.progress)
    print(format_table(rows))
    if args.out:
        write_json(args.out, rows)
    return 0


def run_nmm_priors(args: argparse.Namespace) -> int:
    from routemix.bench.nmm_priors import format_table, run
    from routemix.storage import write_json

    rows = run(parse_seeds(args.seeds), progress=args.progress)
    print(format_table(rows))
    if args.out:
        write_json(args.out, rows)
    return 0


def run_routing(args: argparse.Namespace) -> int:
    from routemix.bench.routing import MODELS, format_table, run, summarize

    models = (
        known_names(args.models, MODELS, "model", f"bench routing trains {', '.join(MODELS)}.")
        if args.models
        else MODELS
    )
    results = run(models=models, **_fashion_mnist_runs(args))
    print(format_table(summarize(results, models)))
    return 0


def run_gates(args: argparse.Namespace) -> int:
    from routemix.bench.gates import VARIANTS, format_table, plot_gate_response, run, summarize

    variants = (
        known_names(args.variants, VARIANTS, "variant", f"bench gates compares {', '.join(VARIANTS)}.")
        if args.variants
        else VARIANTS
    )
    results = run(variants=variants, model=args.model, weight=args.weight, **_fashion_mnist_runs(args))
    print(format_table(summarize(results, variants)))
    if results:
        for path in plot_gate_response(results, Path(args.out).with_suffix("")):
            print(f"figure: {path}")
    return 0


def run_sparse(args: argparse.Namespace) -> int:
    from routemix.bench.sparse import DEFAULT_VARIANTS, VARIANTS, format_table, model_for, run, summarize, time_steps

    variants = (
        known_names(args.variants, VARIANTS, "variant", f"bench sparse compares {', '.join(VARIANTS)}.")
        if args.variants
        else DEFAULT_VARIANTS
    )
    results = run(paths=args.paths, k=args.k, variants=variants, weight=args.weight, **_fashion_mnist_runs(args))
    timings = None if args.no_timing else time_steps(sorted({model_for(v, args.paths, args.k) for v in variants}))
    print(format_table(summarize(results, timings), args.paths))
    return 0
