"""The ``routemix`` command (also ``python -m routemix``).

Subcommands: ``cluster`` (clustering of a dataset by NMM-EM or a peer method), ``predict`` (a clustering run's
clusters of new data), ``train`` and ``eval`` (supervised
classifiers of the model zoo), ``datasets`` and ``models`` (what the registries hold). Each subcommand is one ``_cmd_<name>`` function registered in
:func:`build_parser`; ``train``, ``eval``, ``viz`` and ``bench`` slot in the same way.
A user's mistake (:class:`RoutemixError` or a ``ValueError`` from input validation) prints one
line and exits with status 2; ``--debug`` shows the traceback instead. SIGINT and SIGTERM end a
command with one line and status 130 or 143; a model in training saves its state first
(:mod:`routemix.train.resumable`), and the line says how to resume.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from routemix.allocator import is_keeping_freed_memory, keep_freed_memory_unless_opted_out
from routemix.errors import Interrupted, RoutemixError
from routemix.threads import prefer_passive_waiting
from routemix.train import CHECKPOINT_EVERY


def _cmd_cluster(args: argparse.Namespace) -> int:
    from routemix.cluster.job import ClusterConfig, run_cluster_job

    cfg = ClusterConfig(
        dataset=args.dataset, method=args.method, clusters=args.clusters, epochs=args.epochs,
        batch_size=args.batch_size, gamma=args.gamma, em_lr=args.em_lr, consistency_lr=args.consistency_lr,
        two_fold=False if args.em_only else None, normalization=args.normalization, priors=args.priors or None,
        seed=args.seed, split=args.split, data_dir=args.data_dir, download=args.download, label_column=args.label_column,
        n_samples=args.n_samples, image_size=args.image_size, limit=args.limit, device=args.device, progress=not args.no_progress,
        resume=args.resume, overwrite=args.overwrite, run_dir=args.run_dir, kmeans=not args.no_kmeans,
        devices=args.devices, num_nodes=args.num_nodes, strategy=args.strategy, checkpoint_every=args.checkpoint_every,
    )
    result = run_cluster_job(cfg)
    if result is None:  # a data-parallel process other than global rank 0: rank 0 reports
        return 0
    print(f"\n{cfg.dataset}: {len(result.labels)} samples, {cfg.clusters} clusters")
    print(f"{'method':<10}{'ACC':>8}{'NMI':>8}{'ARI':>8}{'seconds':>10}")
    for row in result.rows:
        cells = "".join(f"{row[k]:>8.4f}" if row[k] is not None else f"{'-':>8}" for k in ("acc", "nmi", "ari"))
        print(f"{row['method']:<10}{cells}{row['seconds']:>10.1f}")
    print(f"run directory: {result.run_dir}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from routemix.cluster.predict import predict_run
    from routemix.storage import write_text

    prediction = predict_run(args.run, args.input, data_dir=args.data_dir, split=args.split, label_column=args.label_column)
    if args.out is None:
        sys.stdout.write(prediction.csv)
        return 0
    write_text(args.out, prediction.csv)
    sizes = np.bincount(prediction.labels)
    print(f"{len(prediction.labels)} samples of {args.input} in {np.count_nonzero(sizes)} clusters (sizes {', '.join(map(str, sizes))}): {args.out}")
    return 0


def _parse_milestones(text: str) -> list[int]:
    """'80,150' -> [80, 150]; 'none' or '' -> [] (no decay)."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes epochs like 80,150, got {text!r}") from None


_TRAIN_OPTIONS = (
    "model", "dataset", "epochs", "batch_size", "lr", "momentum", "weight_decay", "milestones", "gamma", "seed",
    "classes", "image_size", "ten_crop", "data_dir", "download", "limit", "limit_test", "workers", "device",
    "run_dir", "resume", "gate_reg", "gate_reg_weight", "gate_reg_priors", "gate_reg_routers",
    "devices", "num_nodes", "strategy", "precision", "channels_last", "compile", "checkpoint_every", "overwrite",
)


def _cmd_train(args: argparse.Namespace) -> int:
    from routemix.train.evaluate import format_result
    from routemix.train.supervised import resolve_config, run_training

    overrides = {name: getattr(args, name) for name in _TRAIN_OPTIONS}
    overrides["progress"] = False if args.no_progress else None
    cfg = resolve_config(overrides, args.config)
    out = run_training(cfg)
    if out is None:  # a data-parallel process other than global rank 0: rank 0 reports
        return 0
    epochs = f"{cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}"
    title = f"\n{cfg.model} on {cfg.dataset}: {epochs}, {out.parameters / 1e6:.3f}M parameters, {out.seconds:.1f} s of training"
    print(format_result(out.result, title))
    print(f"run directory: {out.run_dir}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from routemix.storage import write_json
    from routemix.train.evaluate import evaluate_checkpoint, format_result

    result, state = evaluate_checkpoint(
        args.checkpoint, dataset=args.dataset, model=args.model, data_dir=args.data_dir, download=args.download,
        ten_crop=args.ten_crop, batch_size=args.batch_size, limit=args.limit, classes=args.classes,
        image_size=args.image_size, workers=args.workers, device=args.device, progress=not args.no_progress,
    )
    dataset = args.dataset or state["config"].get("dataset")
    print(format_result(result, f"{state['model']} on {dataset}"))
    if args.out:
        write_json(args.out, {"checkpoint": str(args.checkpoint), "model": state["model"], "dataset": dataset, **result.as_dict()})
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from routemix.data import default_data_root, list_datasets

    print(f"{'name':<14}{'kind':<11}{'classes':>8}  description")
    for spec in list_datasets():
        classes = spec.num_classes if spec.num_classes is not None else "-"
        print(f"{spec.name:<14}{spec.kind:<11}{classes:>8}  {spec.description}")
    print(f"\nImage sets are read from --data-dir, else $ROUTEMIX_DATA, else {default_data_root()}.")
    print("Any .csv or .npy path also works as a dataset (numeric columns, --label-column for scoring).")
    from routemix.data.classification import IMAGENET_LAYOUT, classification_datasets

    print(f"\n`routemix train` and `eval` take: {', '.join(classification_datasets())}.")
    print(f"imagenet is any ImageFolder root: {IMAGENET_LAYOUT}.")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from routemix.models import list_models
    from routemix.models.info import format_models

    names = list_models(*(args.patterns or []))
    if not names:
        raise RoutemixError(f"no model matches {' '.join(args.patterns)}; `routemix models` lists all of them.")
    print(format_models(names, args.num_classes))
    return 0


def _cmd_bench_routing(args: argparse.Namespace) -> int:
    from routemix.bench.routing import MODELS, format_table, run, summarize

    models = tuple(args.models.split(",")) if args.models else MODELS
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise RoutemixError(f"bench routing trains {', '.join(MODELS)}; not {', '.join(unknown)}.")
    results = run(data_dir=args.data_dir, seeds=tuple(_parse_seeds(args.seeds)), models=models, epochs=args.epochs,
                  train_images=args.train_images, test_images=args.test_images, out=args.out, progress=not args.no_progress)
    print(format_table(summarize(results, models)))
    return 0


def _cmd_bench_gates(args: argparse.Namespace) -> int:
    from routemix.bench.gates import VARIANTS, format_table, plot_gate_response, run, summarize

    variants = tuple(v.strip() for v in args.variants.split(",")) if args.variants else VARIANTS
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise RoutemixError(f"bench gates compares {', '.join(VARIANTS)}; not {', '.join(unknown)}.")
    results = run(data_dir=args.data_dir, seeds=tuple(_parse_seeds(args.seeds)), variants=variants, model=args.model,
                  epochs=args.epochs, train_images=args.train_images, test_images=args.test_images, weight=args.weight,
                  out=args.out, progress=not args.no_progress)
    print(format_table(summarize(results, variants)))
    if results:
        for path in plot_gate_response(results, Path(args.out).with_suffix("")):
            print(f"figure: {path}")
    return 0


def _cmd_bench_sparse(args: argparse.Namespace) -> int:
    from routemix.bench.sparse import DEFAULT_VARIANTS, VARIANTS, format_table, model_for, run, summarize, time_steps

    variants = tuple(v.strip() for v in args.variants.split(",")) if args.variants else DEFAULT_VARIANTS
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise RoutemixError(f"bench sparse compares {', '.join(VARIANTS)}; not {', '.join(unknown)}.")
    results = run(data_dir=args.data_dir, paths=args.paths, k=args.k, seeds=tuple(_parse_seeds(args.seeds)), variants=variants,
                  epochs=args.epochs, train_images=args.train_images, test_images=args.test_images, weight=args.weight,
                  out=args.out, progress=not args.no_progress)
    timings = None if args.no_timing else time_steps(sorted({model_for(v, args.paths, args.k) for v in variants}))
    print(format_table(summarize(results, timings), args.paths))
    return 0


def _cmd_bench_clustering(args: argparse.Namespace) -> int:
    from routemix.bench.clustering import BUDGETS, format_markdown, plot_time_to_accuracy, run, summarize, write_tables
    from routemix.cluster.registry import METHODS
    from routemix.data import get_dataset_spec

    datasets = tuple(args.datasets.split(","))
    methods = tuple(args.methods.split(","))
    for name in datasets:
        get_dataset_spec(name)  # unknown names fail here, with suggestions
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise RoutemixError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(METHODS)}.")
    if args.budget not in BUDGETS:
        raise RoutemixError(f"unknown budget {args.budget!r}; available: {', '.join(BUDGETS)}.")
    results = run(datasets, methods, tuple(_parse_seeds(args.seeds)), budget=args.budget, data_dir=args.data_dir,
                  device=args.device, out=args.out, progress=not args.no_progress)
    rows = summarize(results)
    print(format_markdown(rows))
    markdown, table = write_tables(rows, args.out)
    figures = [str(plot_time_to_accuracy(results, args.out, dataset)[0]) for dataset in dict.fromkeys(r["dataset"] for r in results)]
    print(f"\nwritten: {markdown}, {table}, {', '.join(figures)} (raw results: {Path(args.out) / 'results.json'})")
    return 0


def _cmd_bench_speed(args: argparse.Namespace) -> int:
    from routemix.bench.speed import THESIS_NETWORKS, format_table, format_throughput_table, run, run_throughput

    mode_options = {"--bases": args.bases, "--paths": args.paths} if args.throughput else \
        {"--models": args.models, "--workers": args.workers, "--peak-size": args.peak_size}
    misplaced = [option for option, value in mode_options.items() if value is not None]
    if misplaced:
        mode = "path-count mode (without --throughput)" if args.throughput else "--throughput mode"
        raise RoutemixError(f"{', '.join(misplaced)} belong{'s' if len(misplaced) == 1 else ''} to the {mode}.")
    if args.throughput:
        models = tuple(args.models.split(",")) if args.models else THESIS_NETWORKS
        rows = run_throughput(models, batch=args.batch or 128, steps=args.steps, repeats=args.repeats,
                              workers=args.workers or 0, device=args.device, peak_size=args.peak_size or 4096,
                              memory=not args.no_memory, progress=not args.no_progress)
        print(format_throughput_table(rows))
    else:
        paths_text = args.paths or "2,3,4"
        try:
            paths = [int(p) for p in paths_text.split(",")]
        except ValueError:
            raise RoutemixError(f"--paths takes comma-separated path counts like 2,3,4, got {paths_text!r}.") from None
        if any(p < 2 for p in paths):
            raise RoutemixError(f"--paths takes path counts of 2 or more, got {paths_text}.")
        rows = run(tuple((args.bases or "basecnn,resnet20").split(",")), tuple(paths), steps=args.steps,
                   repeats=args.repeats, batch=args.batch, device=args.device, memory=not args.no_memory,
                   progress=not args.no_progress)
        print(format_table(rows))
    print("CPU malloc: " + ("freed memory kept for reuse (routemix.allocator)" if is_keeping_freed_memory()
                            else "as the system set it"))
    if args.out:
        from dataclasses import asdict

        from routemix.storage import write_json

        write_json(Path(args.out), [asdict(r) for r in rows])
    return 0


def _cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from routemix.bench.pipeline import format_table, run

    try:
        workers = tuple(int(w) for w in args.workers.split(","))
    except ValueError:
        raise RoutemixError(f"--workers takes comma-separated worker counts like 0,1,2, got {args.workers!r}.") from None
    rows = run(tuple(args.shapes.split(",")), workers, batch=args.batch, steps=args.steps, repeats=args.repeats,
               device=args.device, progress=not args.no_progress)
    print(format_table(rows))
    if args.out:
        from dataclasses import asdict

        from routemix.storage import write_json

        write_json(Path(args.out), [asdict(r) for r in rows])
    return 0


def _cmd_bench_nmm2d(args: argparse.Namespace) -> int:
    from routemix.bench.nmm2d import format_table, plot_contours, run_study
    from routemix.storage import write_json

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
    """'3' -> [0, 1, 2] (a count), '0-5' -> a range, '0,1,2' -> a list."""
    usage = f"--seeds takes a count like 3, a range like 0-2 or a list like 0,1,2, got {text!r}."
    try:
        if "-" in text:
            low, high = (int(part) for part in text.split("-"))
            seeds = list(range(low, high + 1))
        elif "," in text:
            seeds = [int(s) for s in text.split(",")]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise RoutemixError(usage) from None
    if not seeds:
        raise RoutemixError(usage + (" A range runs from low to high." if "-" in text else ""))
    return seeds


def _cmd_bench_nmm_digits(args: argparse.Namespace) -> int:
    from routemix.bench.nmm_digits import VARIANTS, format_table, run
    from routemix.storage import write_json

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
    from routemix.storage import write_json

    rows = run(_parse_seeds(args.seeds), progress=not args.no_progress)
    print(format_table(rows))
    if args.out:
        write_json(args.out, rows)
    return 0


def _cmd_bench_nclusters(args: argparse.Namespace) -> int:
    from routemix.bench.nclusters import BUDGETS, METHODS, Settings, format_markdown, run, summarize
    from routemix.data import get_dataset_spec
    from routemix.storage import write_text

    datasets = tuple(args.datasets.split(","))
    methods = tuple(args.methods.split(","))
    for name in datasets:
        if get_dataset_spec(name).num_classes is None:  # unknown names fail here, with suggestions
            raise RoutemixError(f"dataset {name!r} has no known number of classes to compare with.")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise RoutemixError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(METHODS)}.")
    if args.budget not in BUDGETS:
        raise RoutemixError(f"unknown budget {args.budget!r}; available: {', '.join(BUDGETS)}.")
    try:
        settings = Settings(bound_factor=args.bound_factor, drop_factor=args.drop_factor)
    except ValueError as error:
        raise RoutemixError(str(error)) from None
    results = run(datasets, methods, tuple(_parse_seeds(args.seeds)), budget=args.budget, settings=settings,
                  data_dir=args.data_dir, device=args.device, out=args.out, progress=not args.no_progress)
    table = format_markdown(summarize(results))
    print(table)
    write_text(Path(args.out) / "table.md", table + "\n")
    print(f"\nwritten: {Path(args.out) / 'table.md'} (raw results: {Path(args.out) / 'results.json'})")
    return 0


def build_parser(*, viz_figures: bool = True) -> argparse.ArgumentParser:
    """The whole command line; ``viz_figures=False`` leaves out the ``viz`` figures' own options
    (see :func:`routemix.viz.command.add_viz_parser`)."""
    parser = argparse.ArgumentParser(
        prog="routemix", description=__doc__.splitlines()[0],
        epilog="On Linux the command makes malloc keep freed memory for reuse (faster CPU training, higher peak "
               "memory; see routemix.allocator); ROUTEMIX_KEEP_FREED_MEMORY=0 turns that off. It sets "
               "OMP_WAIT_POLICY=PASSIVE unless set, so that fits on a busy machine slow down no more than the "
               "load explains (routemix.threads).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    from routemix.cluster.registry import METHODS

    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cluster = commands.add_parser("cluster", help="cluster a dataset (NMM-EM or a peer method) and compare with k-means")
    cluster.add_argument("dataset", help="registered name (see `routemix datasets`), a .csv/.npy file or a folder of images")
    cluster.add_argument("--method", default="nmm", help=f"clustering method: {', '.join(METHODS)} (default: nmm)")
    cluster.add_argument("--clusters", "-k", type=int, help="number of clusters (default: the number of classes)")
    cluster.add_argument("--epochs", type=int, help="training epochs (default: the method's; nmm: 200 vector data, 250 images)")
    cluster.add_argument("--batch-size", type=int, help="samples per step (default: the method's; nmm: 128)")
    cluster.add_argument("--gamma", type=float, help="nmm: temperature of eq. 4.12 (default 5, for batch 128)")
    cluster.add_argument("--em-lr", type=float, help="nmm: Adam LR of the EM step (default 1e-3 vectors, 5e-5 images)")
    cluster.add_argument("--consistency-lr", type=float, help="nmm: Adam LR of the consistency step (default 2e-3 / 1e-4)")
    cluster.add_argument("--em-only", action="store_true", help="nmm: EM optimisation only (eq. 4.23), no consistency step")
    cluster.add_argument("--normalization", choices=("batch", "running", "none"), help="nmm: score normalisation (default: batch)")
    cluster.add_argument("--priors", action="store_true", help="nmm: estimate cluster priors (uneven clusters)")
    cluster.add_argument("--seed", type=int, default=0)
    cluster.add_argument("--split", choices=("all", "train", "test"), default="all", help="image sets: which split (default: all)")
    cluster.add_argument("--data-dir", help="root of the image datasets (default: $ROUTEMIX_DATA or the user cache)")
    cluster.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    cluster.add_argument("--label-column", help="files: the column holding labels (name or 0-based index)")
    cluster.add_argument("--n-samples", type=int, help="synthetic 2-D sets: number of samples")
    cluster.add_argument("--image-size", type=int, metavar="S", help="a folder of images: resize each (shorter side S, centre crop) to SxS; "
                         "needed when its images differ in size")
    cluster.add_argument("--limit", type=int, help="use only the first N samples (quick runs)")
    cluster.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    cluster.add_argument("--devices", type=int, default=1, help="nmm on images: data-parallel processes per node (default 1); --batch-size stays the global batch")
    cluster.add_argument("--num-nodes", type=int, default=1, help="nmm on images: machines, each running --devices processes (default 1)")
    cluster.add_argument("--strategy", default="auto", help="auto (ddp when more than one process), ddp or ddp_spawn")
    cluster.add_argument("--run-dir", help="output directory (default: runs/cluster-DATASET-METHOD-TIME)")
    cluster.add_argument("--resume", action="store_true", help="nmm on images: continue from RUN_DIR/checkpoints/last.ckpt")
    cluster.add_argument("--overwrite", action="store_true", help="replace the run already in --run-dir (its files are removed first)")
    cluster.add_argument("--checkpoint-every", type=int, default=CHECKPOINT_EVERY, metavar="N",
                         help=f"nmm on images: also save last.ckpt every N training batches inside an epoch (default {CHECKPOINT_EVERY}; 0: at epoch ends only)")
    cluster.add_argument("--no-kmeans", action="store_true", help="skip the k-means comparison")
    cluster.add_argument("--no-progress", action="store_true", help="no progress bar")
    cluster.set_defaults(handler=_cmd_cluster)

    predict = commands.add_parser("predict", help="the clusters a `routemix cluster` run gives new data (labels.csv's format)")
    predict.add_argument("run", help="the run directory of a `routemix cluster` run of a neural method, or its model.pt")
    predict.add_argument("input", help="registered name, a .csv/.npy file or a folder of images (resized to the run's side)")
    predict.add_argument("--out", help="write the labels to this CSV file (default: standard output)")
    predict.add_argument("--split", choices=("all", "train", "test"), default="all", help="image sets: which split (default: all)")
    predict.add_argument("--data-dir", help="root of the image datasets (default: $ROUTEMIX_DATA or the user cache)")
    predict.add_argument("--label-column", help="files: the column holding labels, left out of the features")
    predict.set_defaults(handler=_cmd_predict)

    train = commands.add_parser("train", help="train a classifier of the model zoo (thesis sec. 3.4 recipes)")
    train.add_argument("--config", help="YAML file of options (configs/ holds one per thesis experiment); flags override it")
    train.add_argument("--model", help="registered model name (see `routemix models`)")
    train.add_argument("--dataset", help="mnist, fashion_mnist, cifar10, cifar100 or imagenet (an ImageFolder root)")
    train.add_argument("--epochs", type=int, help="default: the recipe's (200 BaseCNNs, 350 CIFAR ResNets, 120/90 ImageNet)")
    train.add_argument("--batch-size", type=int, help="default: 128 BaseCNNs, 64 CIFAR ResNets, 256 ImageNet")
    train.add_argument("--lr", type=float, help="initial SGD learning rate (default 0.1)")
    train.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    train.add_argument("--weight-decay", type=float, help="default 5e-4 CIFAR-scale, 1e-4 ImageNet")
    train.add_argument("--milestones", type=_parse_milestones, help="epochs where the LR drops, e.g. 80,150 ('none': never)")
    train.add_argument("--gamma", type=float, help="LR factor at each milestone (default 0.1)")
    train.add_argument("--seed", type=int, help="seed of initialisation, shuffling and augmentation (default 0)")
    train.add_argument("--classes", type=int, help="imagenet: keep the first N classes (the thesis' 100-class subset)")
    train.add_argument("--image-size", type=int, help="imagenet: crop size (default 224, resized to 256 first)")
    train.add_argument("--ten-crop", action="store_true", default=None, help="imagenet: final test error with ten crops")
    train.add_argument("--data-dir", help="root of the datasets (default: $ROUTEMIX_DATA or the user cache)")
    train.add_argument("--download", action="store_true", default=None, help="let torchvision download the dataset")
    train.add_argument("--limit", type=int, help="use only the first N training images (quick runs)")
    train.add_argument("--limit-test", type=int, help="use only the first N test images")
    train.add_argument("--workers", type=int, help="imagenet: DataLoader worker processes (default min(8, CPUs))")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"))
    train.add_argument("--devices", type=int, help="data-parallel processes (GPUs) per node (default 1); --batch-size stays the global batch")
    train.add_argument("--num-nodes", type=int, help="machines, each running --devices processes (default 1)")
    train.add_argument("--strategy", help="auto (ddp when more than one process), ddp or ddp_spawn")
    train.add_argument("--precision", help="32 (default), bf16-mixed, or 16-mixed (CUDA only)")
    train.add_argument("--channels-last", action="store_true", default=None, help="NHWC memory layout (faster convolutions on recent GPUs)")
    train.add_argument("--compile", action="store_true", default=None, help="torch.compile the network (minutes of compilation first)")
    train.add_argument("--run-dir", help="output directory (default: runs/train-MODEL-DATASET-TIME)")
    train.add_argument("--resume", action="store_true", default=None, help="continue from RUN_DIR/checkpoints/last.ckpt")
    train.add_argument("--overwrite", action="store_true", default=None, help="replace the run already in --run-dir (its files are removed first)")
    train.add_argument("--checkpoint-every", type=int, metavar="N",
                       help=f"also save last.ckpt every N training batches inside an epoch (default {CHECKPOINT_EVERY}; 0: at epoch ends only)")
    train.add_argument("--gate-reg", choices=("none", "local", "global", "balance"),
                       help="regularise the routers' gates with the NMM-EM loss: local (thesis ch. 5.1, one mixture per "
                            "gating vector) or global (ch. 5.2, one per router); or balance, the load-balancing loss of "
                            "sparse mixtures of experts (for sparse_basecnn_*); default none")
    train.add_argument("--gate-reg-weight", type=float, help="weight of the gate loss against the task loss (default 0.01, ch. 5.1)")
    train.add_argument("--gate-reg-priors", action=argparse.BooleanOptionalAction, default=None,
                       help="learn cluster priors in the gate loss (default: yes, as ch. 5.1 recommends)")
    train.add_argument("--gate-reg-routers", help="comma-separated shell patterns of the gate networks to regularise (default: all)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=_cmd_train)

    evaluate = commands.add_parser("eval", help="test error and mean gates of a trained classifier")
    evaluate.add_argument("checkpoint", help="a model.pt written by `routemix train`, or its run directory")
    evaluate.add_argument("--dataset", help="default: the dataset it was trained on")
    evaluate.add_argument("--model", help="check that the checkpoint is of this model")
    evaluate.add_argument("--data-dir", help="default: the one it was trained with")
    evaluate.add_argument("--download", action="store_true")
    evaluate.add_argument("--ten-crop", action="store_true", help="imagenet: average over ten crops")
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--limit", type=int, help="use only the first N test images")
    evaluate.add_argument("--classes", type=int, help="imagenet: the first N classes (default: as trained)")
    evaluate.add_argument("--image-size", type=int, help="imagenet: crop size (default: as trained)")
    evaluate.add_argument("--workers", type=int)
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    evaluate.add_argument("--out", help="also write the result as JSON here")
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(handler=_cmd_eval)

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
        seeded.add_argument("--seeds", default="0-2", help="seed count, range or list (default 0-2)")
        seeded.add_argument("--out", help="write the rows as JSON here")
        seeded.add_argument("--no-progress", action="store_true")
        seeded.set_defaults(handler=handler)
        if name == "nmm-digits":
            seeded.add_argument("--variants", help="comma-separated subset of the variants (default: all)")

    routing = benches.add_parser("routing", help="Table 3.2 on Fashion-MNIST: the BaseCNN family over seeds, short budget")
    routing.add_argument("--data-dir", help="root holding FashionMNIST (default: $ROUTEMIX_DATA or the user cache)")
    routing.add_argument("--seeds", default="0-2", help="seed count, range or list (default 0-2)")
    routing.add_argument("--models", help="comma-separated subset (default: all eight)")
    routing.add_argument("--epochs", type=int, default=4, help="epochs per run (default 4)")
    routing.add_argument("--train-images", type=int, default=10_000, help="fixed training subset (default 10000)")
    routing.add_argument("--test-images", type=int, help="test on the first N test images (default: all 10000)")
    routing.add_argument("--out", default="runs/bench-routing.json", help="results, appended run by run; a rerun continues")
    routing.add_argument("--no-progress", action="store_true")
    routing.set_defaults(handler=_cmd_bench_routing)

    gates = benches.add_parser("gates", help="thesis ch. 5.1: gates trained with no, local and global NMM-EM regularisation")
    gates.add_argument("--data-dir", help="root holding FashionMNIST (default: $ROUTEMIX_DATA or the user cache)")
    gates.add_argument("--seeds", default="0-2", help="seed count, range or list (default 0-2)")
    gates.add_argument("--variants", help="comma-separated subset of none,local,global (default: all)")
    gates.add_argument("--model", default="basecnn_2cc", help="a routed model of the zoo (default basecnn_2cc, two paths as in Fig. 5.1)")
    gates.add_argument("--epochs", type=int, default=4, help="epochs per run (default 4, as bench routing)")
    gates.add_argument("--train-images", type=int, default=10_000, help="fixed training subset (default 10000)")
    gates.add_argument("--test-images", type=int, help="test on the first N test images (default: all 10000)")
    gates.add_argument("--weight", type=float, default=0.01, help="weight of the gate loss (default 0.01, ch. 5.1)")
    gates.add_argument("--out", default="runs/bench-gates.json", help="results, appended run by run (a rerun continues); the figure goes beside it")
    gates.add_argument("--no-progress", action="store_true")
    gates.set_defaults(handler=_cmd_bench_gates)

    sparse = benches.add_parser("sparse", help="sec. 5.3: sparse top-k routing by clustering vs soft routing vs a load-balancing loss")
    sparse.add_argument("--data-dir", help="root holding FashionMNIST (default: $ROUTEMIX_DATA or the user cache)")
    sparse.add_argument("--paths", type=int, default=4, help="paths per layer, 2 or more (default 4)")
    sparse.add_argument("--k", type=int, default=1, help="paths per sample in the sparse layers, at most --paths (default 1)")
    sparse.add_argument("--seeds", default="0-1", help="seed count, range or list (default 0-1)")
    sparse.add_argument("--variants", help="comma-separated subset of soft,sparse,sparse+balance,clustered,clustered+nmm "
                        "and the ablations sparse/drop,sparse/independent (default: the first five)")
    sparse.add_argument("--epochs", type=int, default=4, help="epochs per run (default 4, as bench routing)")
    sparse.add_argument("--train-images", type=int, default=10_000, help="fixed training subset (default 10000)")
    sparse.add_argument("--test-images", type=int, help="test on the first N test images (default: all 10000)")
    sparse.add_argument("--weight", type=float, default=0.01, help="weight of the gate loss, NMM-EM or load balancing (default 0.01)")
    sparse.add_argument("--out", default="runs/bench-sparse.json", help="results, appended run by run (a rerun continues)")
    sparse.add_argument("--no-timing", action="store_true", help="skip the side-by-side step-time measurement")
    sparse.add_argument("--no-progress", action="store_true")
    sparse.set_defaults(handler=_cmd_bench_sparse)

    clustering = benches.add_parser("clustering", help="every clustering method on the same data, beside the papers' numbers")
    clustering.add_argument("--datasets", default="digits,mnist,fashion_mnist", help="comma-separated (default: digits,mnist,fashion_mnist)")
    clustering.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated (default: {','.join(METHODS)})")
    clustering.add_argument("--seeds", default="3", help="seed count, range or list (default 3: seeds 0, 1, 2)")
    clustering.add_argument("--budget", default="cpu", help="cpu (all images, every deep method about 30 min of one thread, the MoE about 40), "
                            "cpu-long (about 2 h each) or paper (each paper's recipe, for a GPU); default cpu")
    clustering.add_argument("--data-dir", help="root holding MNIST/FashionMNIST (default: $ROUTEMIX_DATA or the user cache)")
    clustering.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    clustering.add_argument("--out", default="runs/bench-clustering", help="folder for results.json (a rerun continues), table.md, table.csv")
    clustering.add_argument("--no-progress", action="store_true")
    clustering.set_defaults(handler=_cmd_bench_clustering)

    nclusters = benches.add_parser("nclusters", help="how many clusters: NMM-EM dropping clusters from an upper bound vs UMAP + HDBSCAN")
    nclusters.add_argument("--datasets", default="digits,blobs,moons,rings,mnist,fashion_mnist", help="comma-separated, each with known classes (default: digits,blobs,moons,rings,mnist,fashion_mnist)")
    nclusters.add_argument("--methods", default="nmm,hdbscan", help="comma-separated subset of nmm,hdbscan")
    nclusters.add_argument("--seeds", default="3", help="seed count, range or list (default 3: seeds 0, 1, 2)")
    nclusters.add_argument("--bound-factor", type=float, default=2.0, help="NMM-EM starts with this times the true K clusters (default 2)")
    nclusters.add_argument("--drop-factor", type=float, default=0.8, help="NMM-EM drops a cluster whose running share of won samples falls below this / its start K (default 0.8)")
    nclusters.add_argument("--budget", default="cpu", help="cpu (image sets: first 5000 images, 3 epochs; 2-D sets: 50 epochs) or full (all samples, the estimator's default epochs)")
    nclusters.add_argument("--data-dir", help="root holding MNIST/FashionMNIST (default: $ROUTEMIX_DATA or the user cache)")
    nclusters.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    nclusters.add_argument("--out", default="runs/bench-nclusters", help="folder for results.json (a rerun continues) and table.md")
    nclusters.add_argument("--no-progress", action="store_true")
    nclusters.set_defaults(handler=_cmd_bench_nclusters)

    speed = benches.add_parser(
        "speed", help="step time of P-path models: batched vs naive loops vs no routing; "
                      "--throughput: images/s, data-loading share, memory and arithmetic utilisation of any models")
    speed.add_argument("--bases", help="base networks (default basecnn,resnet20)")
    speed.add_argument("--paths", help="path counts (default 2,3,4)")
    speed.add_argument("--throughput", action="store_true",
                       help="time training of whole models with a real DataLoader instead (routemix.bench.speed)")
    speed.add_argument("--models", help="--throughput: comma-separated model names (default: the BaseCNN family of "
                                        "Table 3.2, resnet20, resnet20_3cc)")
    speed.add_argument("--workers", type=int, help="--throughput: DataLoader worker processes (default 0)")
    speed.add_argument("--peak-size", type=int, help="--throughput: n of the n x n float32 matmul that measures the "
                                                     "device's peak (default 4096)")
    speed.add_argument("--batch", type=int, help="batch size (default: the thesis', 128 BaseCNN, 64 ResNet20; "
                                                 "--throughput: 128)")
    speed.add_argument("--steps", type=int, default=5, help="training steps per timing (default 5)")
    speed.add_argument("--repeats", type=int, default=3, help="timings per network, interleaved (default 3)")
    speed.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    speed.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    speed.add_argument("--out", help="write the rows as JSON here")
    speed.add_argument("--no-progress", action="store_true")
    speed.set_defaults(handler=_cmd_bench_speed)

    pipeline = benches.add_parser("pipeline", help="augmentation batched on the device (kornia) vs per image in "
                                                   "DataLoader workers (torchvision v2): images/s")
    pipeline.add_argument("--shapes", default="mnist,cifar", help="synthetic image sizes: mnist (1x28x28), "
                                                                  "cifar (3x32x32) (default both)")
    pipeline.add_argument("--workers", default="0,1,2", help="worker counts of the per-image pipelines (default 0,1,2)")
    pipeline.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    pipeline.add_argument("--steps", type=int, default=10, help="batches per timing (default 10)")
    pipeline.add_argument("--repeats", type=int, default=3, help="timings per configuration, interleaved (default 3)")
    pipeline.add_argument("--device", default="cpu", help="where batches end up and the batched one runs: cpu or cuda")
    pipeline.add_argument("--out", help="write the rows as JSON here")
    pipeline.add_argument("--no-progress", action="store_true")
    pipeline.set_defaults(handler=_cmd_bench_pipeline)

    from routemix.viz.command import add_viz_parser

    add_viz_parser(commands, figures=viz_figures)

    models = commands.add_parser("models", help="list the registered models with parameter counts and multiply-adds")
    models.add_argument("patterns", nargs="*", help="only names matching these shell patterns, e.g. 'resnet20*'")
    models.add_argument("--num-classes", type=int, help="outputs to count parameters and multiply-adds for (default: the class count of "
                                                        "the model's published figure, else its own)")
    models.set_defaults(handler=_cmd_models)
    return parser


def _raise_interrupted(signum: int, frame) -> None:
    raise Interrupted(signum)


def _report_interrupted(error: Interrupted, command: str) -> int:
    """One line on stderr: what stopped the run, what was saved, how to go on; the shell's status."""
    if error.checkpoint is not None:
        how = f"continue with the same command and --resume (the --run-dir is {Path(error.checkpoint).parent.parent})."
        print(f"routemix: {error}; {how}", file=sys.stderr)
    else:
        print(f"routemix: {error}; nothing was saved to resume from: run `routemix {command}` again.", file=sys.stderr)
    return error.exit_status


def _output_closed() -> int:
    """After stdout's reader closed the pipe: point stdout at /dev/null, so that Python's flush at
    exit does not print a second error, and exit as a process stopped by SIGPIPE would (141)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def main(argv: list[str] | None = None) -> int:
    prefer_passive_waiting()  # before anything imports torch; see routemix.threads
    arguments = sys.argv[1:] if argv is None else argv
    parser = build_parser(viz_figures="viz" in arguments)
    args = parser.parse_args(arguments)
    # Ctrl-C and SIGTERM (a scheduler's stop, `kill`) end the command with a message and status
    # 130 / 143 (Lightning would turn a KeyboardInterrupt into exit 1, and SIGTERM exited 0); while
    # a model trains, routemix.train.resumable takes them over and saves first
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, _raise_interrupted) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        keep_freed_memory_unless_opted_out()  # CPU training speed; see routemix.allocator
        return args.handler(args)
    except (RoutemixError, ValueError) as error:
        if args.debug:
            raise
        print(f"routemix: error: {error}", file=sys.stderr)
        return 2
    except Interrupted as error:
        return _report_interrupted(error, args.command)
    except KeyboardInterrupt:
        return _report_interrupted(Interrupted(signal.SIGINT), args.command)
    except BrokenPipeError:  # the reader of our output went away (`routemix models | head`): stop quietly
        return _output_closed()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    raise SystemExit(main())
