"""Write configs/table3_*/*.yaml and configs/README.md from the thesis' tables (``routemix.published``).

Each row of thesis Tables 3.2-3.4 that has a registry name becomes one config for
``routemix train --config FILE``; its keys are ``routemix train`` options. The published errors go
into each file's header comment and the README, not into the config (they are not options).

    python configs/generate.py      # from the repository root; rewrites every file it owns
"""

from __future__ import annotations

from pathlib import Path

from routemix.published import published_table
from routemix.train.supervised import CIFAR_WEIGHT_DECAY, IMAGENET_WEIGHT_DECAY

HERE = Path(__file__).resolve().parent

# The published tables live once, as data, in routemix/published/ (published_table); a config is
# written for every row that has a registry name. Recipes: Table 3.2, sec. 3.4.1: batch 128, decay at
# 80 and 150 (200 epochs) or 150 and 250 (350). Table 3.3, sec. 3.4.2: 350 epochs, batch 64, decay at
# 150 and 250. Table 3.4, sec. 3.4.3: batch 256, decay every 30 epochs; 120 epochs on the full set,
# 90 on the first 100 classes.
TABLE_3_2 = [
    (r["model"], r["network"], r["error_200"], r["error_350"]) for r in published_table("table3_2") if r["model"]
]
TABLE_3_3 = [(r["model"], r["network"], r["cifar10"], r["cifar100"]) for r in published_table("table3_3") if r["model"]]
_TABLE_3_4 = [r for r in published_table("table3_4") if r["model"]]
TABLE_3_4_FULL, TABLE_3_4_SUBSET = (
    [
        (r["model"], r["network"], (r["top1"], r["top5"], r["top1_10crop"], r["top5_10crop"]))
        for r in _TABLE_3_4
        if r["num_classes"] == classes
    ]
    for classes in (1000, 100)
)


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
        "model": model,
        "dataset": dataset,
        "epochs": epochs,
        "batch_size": batch,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": decay,
        "milestones": milestones,
        "gamma": 0.1,
        "seed": 0,
        **extra,
    }


def configs() -> list[tuple[str, list[str], dict, str, str]]:
    """(relative path, header lines, settings, thesis row, published result) for every config."""
    out = []
    for name, row, err200, err350 in TABLE_3_2:
        out.append(
            (
                f"table3_2/{name}.yaml",
                [f"Thesis Table 3.2, {row}: CIFAR-10 error {err200}% after 200 epochs (best of 3 trials)."],
                _recipe(name, "cifar10", 200, 128, [80, 150], CIFAR_WEIGHT_DECAY),
                f"3.2 {row}, 200 epochs",
                f"{err200}",
            )
        )
        if err350 is not None:
            out.append(
                (
                    f"table3_2/{name}_350ep.yaml",
                    [f"Thesis Table 3.2, {row}: CIFAR-10 error {err350}% after 350 epochs (the benchmark column)."],
                    _recipe(name, "cifar10", 350, 128, [150, 250], CIFAR_WEIGHT_DECAY),
                    f"3.2 {row}, 350 epochs",
                    f"{err350}",
                )
            )
    for name, row, c10, c100 in TABLE_3_3:
        for dataset, err in (("cifar10", c10), ("cifar100", c100)):
            if err is None:
                continue
            label = "CIFAR-10" if dataset == "cifar10" else "CIFAR-100"
            out.append(
                (
                    f"table3_3/{name}_{dataset}.yaml",
                    [f"Thesis Table 3.3, {row}: {label} error {err}% (best of 3 trials)."],
                    _recipe(name, dataset, 350, 64, [150, 250], CIFAR_WEIGHT_DECAY),
                    f"3.3 {row}, {label}",
                    f"{err}",
                )
            )
    for rows, suffix, epochs, extra, where in (
        (TABLE_3_4_FULL, "imagenet", 120, {}, "ILSVRC 2012"),
        (TABLE_3_4_SUBSET, "imagenet100", 90, {"classes": 100}, "ILSVRC 2012, first 100 classes"),
    ):
        for name, row, (t1, t5, t1_10, t5_10) in rows:
            result = f"{t1} / {t5} (10-crop {t1_10} / {t5_10})"
            header = [
                f"Thesis Table 3.4, {row}: {where}, top-1 / top-5 error {result} %.",
                "dataset imagenet: --data-dir is an ImageFolder root with train/ and val/.",
            ]
            settings = _recipe(
                name,
                "imagenet",
                epochs,
                256,
                list(range(30, epochs, 30)),
                IMAGENET_WEIGHT_DECAY,
                **extra,
                image_size=224,
                ten_crop=True,
            )
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
        "`--seed 1` and `--seed 2`. The files are written by `python configs/generate.py` from the",
        "thesis' tables in `src/routemix/published/`; edit those or the script, not the YAML.",
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
