"""``routemix bench speed`` (step time of P-path models; with ``--throughput``, images per second
of whole models) and ``routemix bench pipeline`` (augmentation on the device vs in workers)."""

from __future__ import annotations

import argparse
from pathlib import Path

from routemix.commands.options import add_option
from routemix.errors import RoutemixError


def add_parser(benches) -> None:
    speed = benches.add_parser(
        "speed",
        help="step time of P-path models: batched vs naive loops vs no routing; "
        "--throughput: images/s, data-loading share, memory and arithmetic utilisation of any models",
    )
    speed.add_argument("--bases", help="base networks (default basecnn,resnet20)")
    add_option(speed, "paths", help="path counts (default 2,3,4)")
    speed.add_argument(
        "--throughput",
        action="store_true",
        help="time training of whole models with a real DataLoader instead (routemix.bench.speed)",
    )
    add_option(
        speed,
        "models",
        help="--throughput: comma-separated model names "
        "(default: the BaseCNN family of Table 3.2, resnet20, resnet20_3cc)",
    )
    add_option(speed, "workers", help="--throughput: DataLoader worker processes (default 0)")
    speed.add_argument(
        "--peak-size",
        type=int,
        help="--throughput: n of the n x n float32 matmul that measures the device's peak (default 4096)",
    )
    add_option(speed, "batch", help="batch size (default: the thesis', 128 BaseCNN, 64 ResNet20; --throughput: 128)")
    add_option(speed, "steps", default=5, help="training steps per timing (default 5)")
    add_option(speed, "repeats", default=3, help="timings per network, interleaved (default 3)")
    add_option(speed, "device", default="cpu", choices=None, help="cpu or cuda (default cpu)")
    speed.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    add_option(speed, "out", help="write the rows as JSON here")
    add_option(speed, "progress")
    speed.set_defaults(handler=run_speed)

    pipeline = benches.add_parser(
        "pipeline",
        help="augmentation batched on the device (kornia) "
        "vs per image in DataLoader workers (torchvision v2): images/s",
    )
    pipeline.add_argument(
        "--shapes", default="mnist,cifar", help="synthetic image sizes: mnist (1x28x28), cifar (3x32x32) (default both)"
    )
    add_option(
        pipeline, "workers", type=str, default="0,1,2", help="worker counts of the per-image pipelines (default 0,1,2)"
    )
    add_option(pipeline, "batch", default=128, help="batch size (default 128)")
    add_option(pipeline, "steps", default=10, help="batches per timing (default 10)")
    add_option(pipeline, "repeats", default=3, help="timings per configuration, interleaved (default 3)")
    add_option(
        pipeline,
        "device",
        default="cpu",
        choices=None,
        help="where batches end up and the batched one runs: cpu or cuda",
    )
    add_option(pipeline, "out", help="write the rows as JSON here")
    add_option(pipeline, "progress")
    pipeline.set_defaults(handler=run_pipeline)


def run_speed(args: argparse.Namespace) -> int:
    from routemix.allocator import is_keeping_freed_memory
    from routemix.bench.speed import THESIS_NETWORKS, format_table, format_throughput_table, run, run_throughput

    mode_options = (
        {"--bases": args.bases, "--paths": args.paths}
        if args.throughput
        else {"--models": args.models, "--workers": args.workers, "--peak-size": args.peak_size}
    )
    misplaced = [option for option, value in mode_options.items() if value is not None]
    if misplaced:
        mode = "path-count mode (without --throughput)" if args.throughput else "--throughput mode"
        raise RoutemixError(f"{', '.join(misplaced)} belong{'s' if len(misplaced) == 1 else ''} to the {mode}.")
    if args.throughput:
        models = tuple(args.models.split(",")) if args.models else THESIS_NETWORKS
        rows = run_throughput(
            models,
            batch=args.batch or 128,
            steps=args.steps,
            repeats=args.repeats,
            workers=args.workers or 0,
            device=args.device,
            peak_size=args.peak_size or 4096,
            memory=not args.no_memory,
            progress=args.progress,
        )
        print(format_throughput_table(rows))
    else:
        paths_text = args.paths or "2,3,4"
        try:
            paths = [int(p) for p in paths_text.split(",")]
        except ValueError:
            raise RoutemixError(f"--paths takes comma-separated path counts like 2,3,4, got {paths_text!r}.") from None
        if any(p < 2 for p in paths):
            raise RoutemixError(f"--paths takes path counts of 2 or more, got {paths_text}.")
        rows = run(
            tuple((args.bases or "basecnn,resnet20").split(",")),
            tuple(paths),
            steps=args.steps,
            repeats=args.repeats,
            batch=args.batch,
            device=args.device,
            memory=not args.no_memory,
            progress=args.progress,
        )
        print(format_table(rows))
    print(
        "CPU malloc: "
        + ("freed memory kept for reuse (routemix.allocator)" if is_keeping_freed_memory() else "as the system set it")
    )
    _write_rows(args.out, rows)
    return 0


def run_pipeline(args: argparse.Namespace) -> int:
    from routemix.bench.pipeline import format_table, run

    try:
        workers = tuple(int(w) for w in args.workers.split(","))
    except ValueError:
        raise RoutemixError(
            f"--workers takes comma-separated worker counts like 0,1,2, got {args.workers!r}."
        ) from None
    rows = run(
        tuple(args.shapes.split(",")),
        workers,
        batch=args.batch,
        steps=args.steps,
        repeats=args.repeats,
        device=args.device,
        progress=args.progress,
    )
    print(format_table(rows))
    _write_rows(args.out, rows)
    return 0


def _write_rows(out: str | None, rows) -> None:
    """The rows of a timing as JSON in ``out``, if given."""
    if out:
        from dataclasses import asdict

        from routemix.storage import write_json

        write_json(Path(out), [asdict(r) for r in rows])
