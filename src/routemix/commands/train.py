"""``routemix train`` (a classifier of the model zoo, by the thesis' recipes) and ``routemix eval``
(the test error and mean gates of a trained one)."""

from __future__ import annotations

import argparse

from routemix.commands.options import add_config_options, add_option, config_values
from routemix.train.config import TrainConfig


def add_parser(commands) -> None:
    train = commands.add_parser("train", help="train a classifier of the model zoo (thesis sec. 3.4 recipes)")
    train.add_argument(
        "--config", help="YAML file of options (configs/ holds one per thesis experiment); flags override it"
    )
    add_config_options(train, TrainConfig, defaults=False)  # a flag not given leaves the config file's value
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser("eval", help="test error and mean gates of a trained classifier")
    evaluate.add_argument("checkpoint", help="a model.pt written by `routemix train`, or its run directory")
    add_option(evaluate, "dataset", help="default: the dataset it was trained on")
    add_option(evaluate, "model", help="check that the checkpoint is of this model")
    add_option(evaluate, "data_dir", help="default: the one it was trained with")
    add_option(evaluate, "download")
    add_option(evaluate, "ten_crop", help="imagenet: average over ten crops")
    add_option(evaluate, "batch_size", default=256)
    add_option(evaluate, "limit", help="use only the first N test images")
    add_option(evaluate, "classes", help="imagenet: the first N classes (default: as trained)")
    add_option(evaluate, "image_size", help="imagenet: crop size (default: as trained)")
    add_option(evaluate, "workers")
    add_option(evaluate, "device")
    add_option(evaluate, "out", help="also write the result as JSON here")
    add_option(evaluate, "progress")
    evaluate.set_defaults(handler=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from routemix.train.evaluate import format_result
    from routemix.train.supervised import resolve_config, run_training

    cfg = resolve_config(config_values(args, TrainConfig), args.config)
    out = run_training(cfg)
    if out is None:  # a data-parallel process other than global rank 0: rank 0 reports
        return 0
    epochs = f"{cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}"
    title = (
        f"\n{cfg.model} on {cfg.dataset}: {epochs}, {out.parameters / 1e6:.3f}M parameters, "
        f"{out.seconds:.1f} s of training"
    )
    print(format_result(out.result, title))
    print(f"run directory: {out.run_dir}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from routemix.storage import write_json
    from routemix.train.evaluate import evaluate_checkpoint, format_result

    result, state = evaluate_checkpoint(
        args.checkpoint,
        dataset=args.dataset,
        model=args.model,
        data_dir=args.data_dir,
        download=args.download,
        ten_crop=args.ten_crop,
        batch_size=args.batch_size,
        limit=args.limit,
        classes=args.classes,
        image_size=args.image_size,
        workers=args.workers,
        device=args.device,
        progress=args.progress,
    )
    dataset = args.dataset or state["config"].get("dataset")
    print(format_result(result, f"{state['model']} on {dataset}"))
    if args.out:
        write_json(
            args.out,
            {"checkpoint": str(args.checkpoint), "model": state["model"], "dataset": dataset, **result.as_dict()},
        )
    return 0
