"""Write configs/table3_*/*.yaml and configs/README.md from the one table below.

Each row of thesis Tables 3.2-3.4 that has a registry name becomes one config for
``routemix train --config FILE``; its keys are ``routemix train`` options. The published errors go
into each file's header comment and the README, not into the config (they are not options).

    python configs/generate.py      # from the repository root; rewrites every file it owns
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

# Table 3.2, CIFAR-10, sec. 3.4.1: batch 128, decay at 80 and 150 (200 epochs) or 150 and 250 (350).
# name, thesis row, error % after 200 epochs, after 350 epochs (multi-path rows only)
TABLE_3_2 = [
    ("basecnn", "BaseCNN", 9.26, None),
    ("widecnn", "WideCNN", 8.96, None),
    ("deepcnn", "DeepCNN", 8.49, None),
    ("basecnn_3", "BaseCNN-3", 9.41, None),
    ("basecnn_ensemble", "BaseCNN Ensemble", 7.87, None),
    ("all_ensemble", "All Ensemble", 6.9, None),
    ("sebasecnn", "SEBaseCNN", 8.99, None),
    ("sedeepcnn", "SEDeepCNN", 8.15, None),
    ("crossstitch_basecnn_2", "Cr-Stitch2", 7.89, None),
    ("basecnn_2cp", "BaseCNN-2-CP", 7.24, 6.48),
    ("basecnn_3cp", "BaseCNN-3-CP", 6.63, 6.04),
    ("basecnn_4cp", "BaseCNN-4-CP", 6.45, 5.91),
    ("basecnn_2cc", "BaseCNN-2-CC", 7.03, 6.53),
    ("basecnn_3cc", "BaseCNN-3-CC", 6.51, 6.09),
    ("basecnn_4cc", "BaseCNN-4-CC", 6.55, 6.26),
]

# Table 3.3, sec. 3.4.2: 350 epochs, batch 64, decay at 150 and 250. name, row, CIFAR-10 %, CIFAR-100 %
TABLE_3_3 = [
    ("resnet20", "ResNet20", 8.75, None),
    ("resnet110", "ResNet110", 6.61, 26.88),
    ("wrn40_2", "WRN-40-2", 5.33, 26.04),
    ("seresnet110", "SEResNet110", 5.21, 23.85),
    ("resnet20_2cp", "ResNet20-2-CP", 5.86, 27.7),
    ("resnet20_3cp", "ResNet20-3-CP", 4.99, 25.13),
    ("resnet20_4cp", "ResNet20-4-CP", 4.81, 23.82),
    ("resnet20_2cc", "ResNet20-2-CC", 5.5, 27.36),
    ("resnet20_3cc", "ResNet20-3-CC", 5.18, 25.76),
    ("resnet20_4cc", "ResNet20-4-CC", 4.96, 24.81),
    ("resnet32_2cc", "ResNet32-2-CC", 5.14, 25.96),
    ("resnet32_3cc", "ResNet32-3-CC", 4.96, 24.51),
    ("resnet32_4cc", "ResNet32-4-CC", 4.59, 23.52),
]

# Table 3.4, sec. 3.4.3: batch 256, decay every 30 epochs; 120 epochs on the full set, 90 on the
# first 100 classes. name, row, (single-crop top-1, top-5, 10-crop top-1, top-5) %; None: not printed
TABLE_3_4_FULL = [
    ("resnet18", "ResNet18", (30.4, 10.93, 28.22, 9.42)),
    ("resnet34", "ResNet34", (26.77, 8.77, 24.52, 7.46)),
    ("resnet18_2cc", "ResNet18-2-CC", (26.48, 8.6, 24.5, 7.34)),
]
TABLE_3_4_SUBSET = [
    ("resnet50", "ResNet50*", (20.46, 4.96, 19.26, 4.72)),
    ("resnet101", "ResNet101*", (19.16, 4.58, 17.78, 4.44)),
    ("wide_resnet50_2", "WideResNet50-2*", (19.82, 5.02, 18.62, 4.76)),
    ("resnext50_2x64d", "ResNeXt50-2-64*", (20.26, 5.06, 19.0, 4.84)),
    ("resnet50_2cc", "ResNet50-2-CC", (18.64, 4.34, 17.62, 4.0)),
]

CIFAR_WEIGHT_DECAY = 0.0005  # not in the thesis: see routemix.train.supervised
IMAGENET_WEIGHT_DECAY = 0.0001


def _yaml(header: list[str], settings: dict) -> str:
    lines = [f"# {line}" for line in header]
    for key, value in settings.items():
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, list):
            value = "[" + ", ".join(str(v) for v in value) + "]"
        lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def _recipe(model: str, dataset: str, epochs: int, batch: int, milestones: list[int], decay: float, **extra) -> dict:
    return {
        "model": model, "dataset": dataset, "epochs": epochs, "batch_size": batch, "lr": 0.1, "momentum": 0.9,
        "weight_decay": decay, "milestones": milestones, "gamma": 0.1, "seed": 0, **extra,
    }


def configs() -> list[tuple[str, list[str], dict, str, str]]:
    """(relative path, header lines, settings, thesis row, published result) for every config."""
    out = []
    for name, row, err200, err350 in TABLE_3_2:
        out.append((f"table3_2/{name}.yaml", [f"Thesis Table 3.2, {row}: CIFAR-10 error {err200}% after 200 epochs (best of 3 trials)."],
                    _recipe(name, "cifar10", 200, 128, [80, 150], CIFAR_WEIGHT_DECAY), f"3.2 {row}, 200 epochs", f"{err200}"))
        if err350 is not None:
            out.append((f"table3_2/{name}_350ep.yaml", [f"Thesis Table 3.2, {row}: CIFAR-10 error {err350}% after 350 epochs (the benchmark column)."],
                        _recipe(name, "cifar10", 350, 128, [150, 250], CIFAR_WEIGHT_DECAY), f"3.2 {row}, 350 epochs", f"{err350}"))
    for name, row, c10, c100 in TABLE_3_3:
        for dataset, err in (("cifar10", c10), ("cifar100", c100)):
            if err is None:
                continue
            label = "CIFAR-10" if dataset == "cifar10" else "CIFAR-100"
            out.append((f"table3_3/{name}_{dataset}.yaml", [f"Thesis Table 3.3, {row}: {label} error {err}% (best of 3 trials)."],
                        _recipe(name, dataset, 350, 64, [150, 250], CIFAR_WEIGHT_DECAY), f"3.3 {row}, {label}", f"{err}"))
    for rows, suffix, epochs, extra, where in (
        (TABLE_3_4_FULL, "imagenet", 120, {}, "ILSVRC 2012"),
        (TABLE_3_4_SUBSET, "imagenet100", 90, {"classes": 100}, "ILSVRC 2012, first 100 classes"),
    ):
        for name, row, (t1, t5, t1_10, t5_10) in rows:
            result = f"{t1} / {t5} (10-crop {t1_10} / {t5_10})"
            header = [f"Thesis Table 3.4, {row}: {where}, top-1 / top-5 error {result} %.",
                      "dataset imagenet: --data-dir is an ImageFolder root with train/ and val/."]
            settings = _recipe(name, "imagenet", epochs, 256, list(range(30, epochs, 30)), IMAGENET_WEIGHT_DECAY,
                               **extra, image_size=224, ten_crop=True)
            out.append((f"table3_4/{name}_{suffix}.yaml", header, settings, f"3.4 {row} ({where})", result))
    return out


def readme(rows) -> str:
    lines = [
        "# Configs: one per thesis experiment",
        "",
        "`routemix train --config configs/table3_2/basecnn_2cc.yaml --data-dir DIR` runs a row of the thesis'",
        "Tables 3.2-3.4 with its recipe (sec. 3.4); flags given on the command line override the file",
        "(`--epochs 1 --limit 512` for a smoke test). Keys are `routemix train` options. The thesis does not",
        "state the weight decay: 5e-4 for CIFAR, 1e-4 for ImageNet (see `routemix.train.supervised`).",
        "Rows without a registry name (VGG16, Capsule Nets, Highway, ResNet164, BlockDrop, ConvNet-AIG,",
        "Hyper-WRN, WRN-18-1.5) have no config. The thesis reports the best of three trials: add",
        "`--seed 1` and `--seed 2`. The files are written by `python configs/generate.py`; edit the",
        "table there, not the YAML.",
        "",
        "| config | thesis row | published error % |",
        "| --- | --- | --- |",
    ]
    lines += [f"| `{path}` | {row} | {result} |" for path, _, _, row, result in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    rows = configs()
    for path, header, settings, _, _ in rows:
        target = HERE / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_yaml(header, settings))
    (HERE / "README.md").write_text(readme(rows))
    print(f"wrote {len(rows)} configs and README.md under {HERE}")


if __name__ == "__main__":
    main()
