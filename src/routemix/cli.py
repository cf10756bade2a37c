"""The ``routemix`` command (also ``python -m routemix``).

Subcommands: ``cluster`` (NMM-EM clustering of a dataset), ``datasets`` and ``models`` (what the
registries hold). Each subcommand is one ``_cmd_<name>`` function registered in
:func:`build_parser`; ``train``, ``eval``, ``viz`` and ``bench`` slot in the same way.
A user's mistake (:class:`RoutemixError` or a ``ValueError`` from input validation) prints one
line and exits with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from routemix.errors import RoutemixError


def _cmd_cluster(args: argparse.Namespace) -> int:
    from routemix.cluster.job import ClusterConfig, run_cluster_job

    cfg = ClusterConfig(
        dataset=args.dataset, method=args.method, clusters=args.clusters, epochs=args.epochs,
        batch_size=args.batch_size, gamma=args.gamma, em_lr=args.em_lr, consistency_lr=args.consistency_lr,
        two_fold=not args.em_only, normalization=args.normalization, priors=args.priors, seed=args.seed,
        split=args.split, data_dir=args.data_dir, download=args.download, label_column=args.label_column,
        n_samples=args.n_samples, limit=args.limit, device=args.device, progress=not args.no_progress,
        resume=args.resume, run_dir=args.run_dir, kmeans=not args.no_kmeans,
    )
    result = run_cluster_job(cfg)
    print(f"\n{cfg.dataset}: {len(result.labels)} samples, {cfg.clusters} clusters")
    print(f"{'method':<10}{'ACC':>8}{'NMI':>8}{'ARI':>8}{'seconds':>10}")
    for row in result.rows:
        cells = "".join(f"{row[k]:>8.4f}" if row[k] is not None else f"{'-':>8}" for k in ("acc", "nmi", "ari"))
        print(f"{row['method']:<10}{cells}{row['seconds']:>10.1f}")
    print(f"run directory: {result.run_dir}")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from routemix.data import default_data_root, list_datasets

    print(f"{'name':<14}{'kind':<11}{'classes':>8}  description")
    for spec in list_datasets():
        classes = spec.num_classes if spec.num_classes is not None else "-"
        print(f"{spec.name:<14}{spec.kind:<11}{classes:>8}  {spec.description}")
    print(f"\nImage sets are read from --data-dir, else $ROUTEMIX_DATA, else {default_data_root()}.")
    print("Any .csv or .npy path also works as a dataset (numeric columns, --label-column for scoring).")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from routemix.models import count_parameters, create_model, list_models

    print(f"{'name':<22}{'parameters':>12}")
    for name in list_models():
        kwargs = {"in_features": 64} if name == "cluster_mlp" else {}
        model = create_model(name, num_classes=args.num_classes, **kwargs)
        print(f"{name:<22}{count_parameters(model) / 1e6:>11.3f}M")
    return 0


def _cmd_bench_nmm2d(args: argparse.Namespace) -> int:
    from routemix.bench.nmm2d import format_table, plot_contours, run_study
    from routemix.train.checkpoint import write_json

    result = run_study(args.data_dir, seed=args.seed, epochs=args.epochs, cnn_epochs=args.cnn_epochs, progress=not args.no_progress)
    table = format_table(result)
    print(table)
    out = Path(args.out)
    figure = plot_contours(result, out / "fig4_5_contours.png")
    summary = {
        "source": result.source,
        "runs": {
            name: {"scores": run["scores"], "clusters_used": run["clusters_used"], "density_means": run["density_means"].tolist(), "seconds": run["seconds"]}
            for name, run in result.runs.items()
        },
    }
    write_json(out / "table4_1.json", summary)
    print(f"\nfigure: {figure}\ntable: {out / 'table4_1.json'}")
    return 0


def _parse_seeds(text: str) -> list[int]:
    """'0-5' or '0,1,2' -> list of ints."""
    try:
        if "-" in text:
            low, high = text.split("-")
            return list(range(int(low), int(high) + 1))
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise RoutemixError(f"--seeds takes a range like 0-2 or a list like 0,1,2, got {text!r}.") from None


def _cmd_bench_nmm_digits(args: argparse.Namespace) -> int:
    from routemix.bench.nmm_digits import VARIANTS, format_table, run
    from routemix.train.checkpoint import write_json

    variants = args.variants.split(",") if args.variants else None
    unknown = [v for v in variants or [] if v not in VARIANTS]
    if unknown:
        raise RoutemixError(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}.")
    rows = run(_parse_seeds(args.seeds), variants, progress=not args.no_progress)
    print(format_table(rows))
    if args.out:
        write_json(args.out, rows)
    return 0


def _cmd_bench_nmm_priors(args: argparse.Namespace) -> int:
    from routemix.bench.nmm_priors import format_table, run
    from routemix.train.checkpoint import write_json

    rows = run(_parse_seeds(args.seeds), progress=not args.no_progress)
    print(format_table(rows))
    if args.out:
        write_json(args.out, rows)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routemix", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cluster = commands.add_parser("cluster", help="cluster a dataset with NMM-EM and compare with k-means")
    cluster.add_argument("dataset", help="registered name (see `routemix datasets`) or a .csv/.npy file")
    cluster.add_argument("--method", default="nmm", help="clustering method (default: nmm)")
    cluster.add_argument("--clusters", "-k", type=int, help="number of clusters (default: the number of classes)")
    cluster.add_argument("--epochs", type=int, help="training epochs (default: 200 vector data, 250 images)")
    cluster.add_argument("--batch-size", type=int, default=128)
    cluster.add_argument("--gamma", type=float, default=5.0, help="temperature of eq. 4.12 (default 5, for batch 128)")
    cluster.add_argument("--em-lr", type=float, help="Adam LR of the EM step (default 1e-3 vectors, 5e-5 images)")
    cluster.add_argument("--consistency-lr", type=float, help="Adam LR of the consistency step (default 2e-3 / 1e-4)")
    cluster.add_argument("--em-only", action="store_true", help="EM optimisation only (eq. 4.23), no consistency step")
    cluster.add_argument("--normalization", choices=("batch", "running", "none"), default="batch")
    cluster.add_argument("--priors", action="store_true", help="estimate cluster priors (uneven clusters)")
    cluster.add_argument("--seed", type=int, default=0)
    cluster.add_argument("--split", choices=("all", "train", "test"), default="all", help="image sets: which split (default: all)")
    cluster.add_argument("--data-dir", help="root of the image datasets (default: $ROUTEMIX_DATA or the user cache)")
    cluster.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    cluster.add_argument("--label-column", help="files: the column holding labels (name or 0-based index)")
    cluster.add_argument("--n-samples", type=int, help="synthetic 2-D sets: number of samples")
    cluster.add_argument("--limit", type=int, help="use only the first N samples (quick runs)")
    cluster.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    cluster.add_argument("--run-dir", help="output directory (default: runs/cluster-DATASET-METHOD-TIME)")
    cluster.add_argument("--resume", action="store_true", help="images: continue from RUN_DIR/checkpoints/last.ckpt")
    cluster.add_argument("--no-kmeans", action="store_true", help="skip the k-means comparison")
    cluster.add_argument("--no-progress", action="store_true", help="no progress bar")
    cluster.set_defaults(handler=_cmd_cluster)

    datasets = commands.add_parser("datasets", help="list the datasets routemix can load")
    datasets.set_defaults(handler=_cmd_datasets)

    bench = commands.add_parser("bench", help="reproductions and benchmarks")
    benches = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    nmm2d = benches.add_parser("nmm2d", help="thesis sec. 4.5.1: Table 4.1 and the contours of Fig. 4.5")
    nmm2d.add_argument("--data-dir", help="root holding MNIST (default: $ROUTEMIX_DATA or the user cache); blobs without it")
    nmm2d.add_argument("--epochs", type=int, default=10, help="clustering epochs (thesis: 10)")
    nmm2d.add_argument("--cnn-epochs", type=int, default=2, help="epochs of the supervised bottleneck CNN")
    nmm2d.add_argument("--seed", type=int, default=0)
    nmm2d.add_argument("--out", default="runs/bench-nmm2d", help="output folder for the figure and table")
    nmm2d.add_argument("--no-progress", action="store_true")
    nmm2d.set_defaults(handler=_cmd_bench_nmm2d)

    for name, help_text, handler in (
        ("nmm-digits", "NMMClustering on digits: defaults vs the alternatives, over seeds", _cmd_bench_nmm_digits),
        ("nmm-priors", "cluster priors on uneven clusters (digits, blobs)", _cmd_bench_nmm_priors),
    ):
        seeded = benches.add_parser(name, help=help_text)
        seeded.add_argument("--seeds", default="0-2", help="seed range or list (default 0-2)")
        seeded.add_argument("--out", help="write the rows as JSON here")
        seeded.add_argument("--no-progress", action="store_true")
        seeded.set_defaults(handler=handler)
        if name == "nmm-digits":
            seeded.add_argument("--variants", help="comma-separated subset of the variants (default: all)")

    models = commands.add_parser("models", help="list the registered models with parameter counts")
    models.add_argument("--num-classes", type=int, default=10)
    models.set_defaults(handler=_cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (RoutemixError, ValueError) as error:
        if args.debug:
            raise
        print(f"routemix: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("routemix: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
