"""Supervised training and evaluation (thesis sec. 3.4): data, augmentation, the Lightning module,
exact resume, checkpoints, configs and the ``train`` / ``eval`` commands.

Most tests run on tiny synthetic uint8 images (8x8, which BaseCNN accepts when built for it); one
runs the real command on ``../shared/data`` Fashion-MNIST. CIFAR and ImageNet cannot be had here:
their loaders run on synthetic files of the same format.
"""

from __future__ import annotations

import copy
import csv
import importlib.util
import json
import pickle
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from routemix.cli import main
from routemix.data.classification import (
    ClassificationDataModule,
    classification_datasets,
    get_classification_spec,
    load_split,
    random_shift_flip,
)
from routemix.data.loaders import EpochShuffle
from routemix.errors import RoutemixError
from routemix.models import create_model, list_models
from routemix.train.common import run_loggers
from routemix.train.evaluate import build_classifier, evaluate_model, load_classifier, save_classifier
from routemix.train.resumable import saved_position
from routemix.train.supervised import (
    ClassifierModule,
    TrainConfig,
    apply_recipe,
    classification_loss,
    fit,
    load_config_file,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: a second intra-op thread gains nothing, and on a busy 2-core machine
    its spin-waiting made a 2-image ResNet110 forward 100x slower (4 s instead of 0.03 s)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def synthetic(n: int, *, channels: int = 3, size: int = 8, classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g), torch.randint(
        0, classes, (n,), generator=g
    )


def tiny_datamodule(
    n_train: int = 32, n_test: int = 12, *, batch_size: int = 16, seed: int = 0, **kwargs
) -> ClassificationDataModule:
    return ClassificationDataModule.from_tensors(
        synthetic(n_train), synthetic(n_test, seed=1), num_classes=10, batch_size=batch_size, seed=seed, **kwargs
    )


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


# --- data and augmentation ---------------------------------------------------------------------


def test_random_shift_flip_matches_a_per_image_reference():
    """The batched gather equals pad-4, crop at (dy, dx), then flip, done image by image."""
    images = torch.rand(6, 2, 5, 7)
    out = random_shift_flip(images, max_shift=4, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the same draws, in the same order
    dy = torch.randint(0, 9, (6, 1), generator=g)
    dx = torch.randint(0, 9, (6, 1), generator=g)
    flip = torch.rand(6, 1, generator=g) < 0.5
    padded = F.pad(images, (4, 4, 4, 4))
    for i in range(6):
        crop = padded[i, :, dy[i, 0] : dy[i, 0] + 5, dx[i, 0] : dx[i, 0] + 7]
        torch.testing.assert_close(out[i], crop.flip(-1) if flip[i, 0] else crop, rtol=0, atol=0)


def test_augmentation_is_per_image_and_a_function_of_seed_and_step():
    dm = tiny_datamodule()
    images = synthetic(1, size=32)[0].expand(16, -1, -1, -1)  # one image, 16 times
    a = dm.prepare(images, train=True, step=5)
    assert len({tuple(x.flatten()[:64].tolist()) for x in a}) > 4  # drawn per image
    torch.testing.assert_close(a, dm.prepare(images, train=True, step=5), rtol=0, atol=0)
    assert not torch.equal(a, dm.prepare(images, train=True, step=6))
    evaluated = dm.prepare(images, train=False)  # no augmentation, normalised
    torch.testing.assert_close(evaluated, (images.float() / 255 - 0.5) / 0.25)


def test_epoch_shuffle_depends_on_seed_and_epoch_only():
    sampler = EpochShuffle(50, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == list(range(50)) and first != second
    replay = EpochShuffle(50, seed=1)
    replay.set_epoch(1)
    assert list(replay) == second  # what a resumed run draws for epoch 1
    assert list(EpochShuffle(5, shuffle=False)) == [0, 1, 2, 3, 4]


def test_fashion_mnist_splits_are_padded_to_32(shared_data):
    images, labels = load_split("fashion_mnist", "test", data_dir=shared_data)
    assert images.shape == (10000, 1, 32, 32) and images.dtype == torch.uint8 and labels.shape == (10000,)
    assert images[:, :, :2].max() == 0 and images[:, :, :, -2:].max() == 0  # zero border
    assert set(labels.tolist()) == set(range(10))


def test_cifar100_fine_labels_from_synthetic_files(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR100, cifar

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 4)):
        entry = {
            "data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
            "fine_labels": [99 - i for i in range(n)],
            "coarse_labels": [0] * n,
        }
        (folder / split).write_bytes(pickle.dumps(entry))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}))
    monkeypatch.setattr(CIFAR100, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: True)
    images, labels = load_split("cifar100", "train", data_dir=tmp_path)
    assert images.shape == (6, 3, 32, 32) and labels.tolist() == [99, 98, 97, 96, 95, 94]
    assert get_classification_spec("cifar100").num_classes == 100


def write_image_folder(root: Path, *, classes: int = 3, per_class: int = 3) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"n0{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def test_image_folder_loader_crops_and_ten_crop_eval(tmp_path):
    root = write_image_folder(tmp_path / "imagenet")
    dm = ClassificationDataModule(
        "imagenet", data_dir=root, classes=2, image_size=32, batch_size=4, num_workers=0, ten_crop=True
    )
    dm.setup("fit")
    assert dm.num_classes == 2 and len(dm.train_data) == 6 and dm.input_size == 32  # first 2 of 3 classes
    loader = dm.train_dataloader()
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8 and set(labels.tolist()) <= {0, 1}
    epoch0 = [x for x, _ in loader]
    assert all(torch.equal(a, b) for a, b in zip(epoch0, [x for x, _ in loader]))  # crops fixed by (seed, epoch, image)
    loader.sampler.set_epoch(1)
    assert not all(torch.equal(a, b) for a, b in zip(epoch0, [x for x, _ in loader]))
    crops, _ = next(iter(dm.test_dataloader()))
    assert crops.shape == (6, 10, 3, 32, 32)
    model = build_classifier("basecnn_2cc", num_classes=2, in_channels=3, input_size=32)
    ten = evaluate_model(model, dm, ten_crop=True)
    single = evaluate_model(model, dm, ten_crop=False)
    assert ten.n == single.n == 6 and ten.ten_crop and ten.top5_error is None
    for result in (ten, single):
        for matrix in result.gates.values():
            np.testing.assert_allclose(np.sum(matrix, axis=1), 1.0, atol=1e-5)


def test_train_and_ten_crop_eval_commands_on_an_image_folder(tmp_path, capsys):
    root = write_image_folder(tmp_path / "imagenet", per_class=2)
    run_dir = tmp_path / "run"
    args = [
        "train",
        "--model",
        "basecnn",
        "--dataset",
        "imagenet",
        "--data-dir",
        str(root),
        "--classes",
        "3",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--ten-crop",
        "--run-dir",
        str(run_dir),
        "--no-progress",
    ]
    assert main(args) == 0
    assert "(6 test images, 10-crop)" in capsys.readouterr().out
    saved = json.loads((run_dir / "config.json").read_text())
    assert (saved["weight_decay"], saved["milestones"], saved["classes"]) == (1e-4, [], 3)  # ImageNet recipe, 1 epoch
    assert (
        main(["eval", str(run_dir), "--workers", "0", "--no-progress"]) == 0
    )  # data root, classes and size as trained
    assert "(6 test images, single crop)" in capsys.readouterr().out


def test_image_folder_errors_name_the_folder_and_layout(tmp_path):
    with pytest.raises(RoutemixError, match=r"no image folder at .*missing/train.*ROOT/train/<class>/<image>"):
        ClassificationDataModule("imagenet", data_dir=tmp_path / "missing").setup("fit")
    root = write_image_folder(tmp_path / "ok", classes=2, per_class=1)
    with pytest.raises(RoutemixError, match="has only 2 class folders"):
        ClassificationDataModule("imagenet", data_dir=root, classes=5).setup("test")
    (tmp_path / "empty" / "train" / "n00").mkdir(parents=True)
    with pytest.raises(RoutemixError, match="cannot read the image folder .*empty/train"):
        ClassificationDataModule("imagenet", data_dir=tmp_path / "empty").setup("fit")
    bad = tmp_path / "bad" / "train" / "n00"
    bad.mkdir(parents=True)
    (bad / "0.png").write_bytes(b"not an image")
    with pytest.raises(RoutemixError, match="cannot read image .*0.png"):
        ClassificationDataModule("imagenet", data_dir=tmp_path / "bad").setup("fit")
    with pytest.raises(RoutemixError, match="--classes keeps the first N classes"):
        ClassificationDataModule("cifar10", classes=10)


# --- the Lightning module, fit, resume -------------------------------------------------------------


def test_ensemble_members_each_get_their_own_loss():
    """Sum of the members' mean cross-entropies: each member's gradient is that of training it
    alone on the same batch (BaseCNN Ensemble = three independently trained BaseCNNs)."""
    torch.manual_seed(0)
    ensemble = create_model("basecnn_ensemble", num_classes=10, in_channels=3, input_size=8).train()
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 10, (6,))
    logits = ensemble(x)
    assert logits.shape == (6, 3, 10)
    classification_loss(logits, y).backward()
    for member in ensemble.members:
        alone = copy.deepcopy(member).train()
        alone.zero_grad()
        F.cross_entropy(alone(x), y).backward()
        for (name, p), q in zip(member.named_parameters(), alone.parameters()):
            torch.testing.assert_close(p.grad, q.grad, msg=name)
    assert ensemble.eval()(x).shape == (6, 10)


def make_module(name: str = "basecnn_2cc", **kwargs) -> ClassifierModule:
    L.seed_everything(0, verbose=False)
    model = build_classifier(name, num_classes=10, in_channels=3, input_size=8)
    return ClassifierModule(model, lr=0.05, milestones=[1], **kwargs)


def test_fit_logs_curves_and_gates_and_resumes_exactly(tmp_path):
    """Two epochs in one go, and one epoch + a resumed second (with the global RNG disturbed in
    between), end with identical weights: momentum, schedule, shuffling and augmentation resume."""
    straight = make_module()
    fit(straight, tiny_datamodule(seed=3), max_epochs=2, progress=False, accelerator="cpu")

    run_dir = tmp_path / "run"
    fit(make_module(), tiny_datamodule(seed=3), max_epochs=1, run_dir=run_dir, progress=False, accelerator="cpu")
    torch.manual_seed(12345)
    resumed = make_module()
    trainer = fit(
        resumed, tiny_datamodule(seed=3), max_epochs=2, run_dir=run_dir, progress=False, accelerator="cpu", resume=True
    )
    assert trainer.current_epoch == 2
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert resumed.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.005)  # decayed at epoch 1

    first = read_csv(run_dir / "logs" / "version_0" / "metrics.csv")
    second = read_csv(run_dir / "logs" / "version_1" / "metrics.csv")
    assert {row["epoch"] for row in first} == {"0"} and {row["epoch"] for row in second} == {"1"}
    columns = set(first[0])
    assert {"train/loss", "train/acc", "train/lr", "val/loss", "val/top1_error", "val/top5_error"} <= columns
    gates = sorted(c for c in columns if c.startswith("val/gate/"))
    assert gates and any(c.endswith("/1_0") for c in gates)  # (P_in, P_out) entries of every router
    assert {c.replace("val/", "train/", 1) for c in gates} <= columns  # and the same on the training images
    row = next(r for r in first if r["val/top1_error"])
    router = next(c for c in gates if c.endswith("/1_0")).rsplit("/", 1)[0]  # a router with 2 incoming paths
    total = sum(float(row[f"{router}/{i}_{j}"]) for i in range(2) for j in range(2) if f"{router}/{i}_{j}" in row)
    assert total == pytest.approx(2.0, abs=1e-4)  # each of the 2 incoming paths' gates sums to 1
    assert saved_position(run_dir / "checkpoints" / "last.ckpt") == {"epochs": 2, "batches": 0}


def test_loggers_fall_back_to_csv_without_tensorboard(tmp_path, monkeypatch):
    from routemix.train import common

    monkeypatch.setattr(common, "tensorboard_available", lambda: False)
    assert [type(logger).__name__ for logger in run_loggers(tmp_path)] == ["CSVLogger"]


# --- checkpoints and evaluation ----------------------------------------------------------------


def test_evaluation_reports_gates_of_a_routed_model(tmp_path):
    torch.manual_seed(0)
    model = build_classifier("basecnn_2cc", num_classes=10, in_channels=3, input_size=8)
    save_classifier(tmp_path / "model.pt", model, "basecnn_2cc", input_size=8, config={"dataset": "tensors"})
    loaded, state = load_classifier(tmp_path)  # the run directory works as well as the file
    assert state["model"] == "basecnn_2cc" and state["input_size"] == 8
    dm = tiny_datamodule(n_test=20, eval_batch_size=8)
    result = evaluate_model(loaded, dm)
    assert result.n == 20 and 0 <= result.top1_error <= 1 and result.top5_error <= result.top1_error
    assert len(result.gates) == 5  # one-to-many + 3 convolutional + 1 dense cross-connection
    first = next(iter(result.gates.values()))
    assert np.shape(first) == (1, 2)
    for matrix in result.gates.values():
        np.testing.assert_allclose(np.sum(matrix, axis=1), 1.0, atol=1e-5)
    plain = evaluate_model(build_classifier("basecnn", num_classes=10, in_channels=3, input_size=8), dm)
    assert plain.gates == {}


def test_checkpoint_of_another_model_or_shape_is_a_clear_error(tmp_path):
    model = build_classifier("basecnn", num_classes=10, in_channels=3, input_size=8)
    save_classifier(tmp_path / "model.pt", model, "basecnn", input_size=8)
    with pytest.raises(RoutemixError, match="checkpoint .* is for model basecnn, not basecnn_2cc"):
        load_classifier(tmp_path / "model.pt", model="basecnn_2cc")
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    torch.save({**state, "model": "basecnn_2"}, tmp_path / "swapped.pt")
    with pytest.raises(RoutemixError, match="weights do not fit model basecnn_2"):
        load_classifier(tmp_path / "swapped.pt")
    torch.save({"network": {}}, tmp_path / "other.pt")
    with pytest.raises(RoutemixError, match="not a classifier checkpoint"):
        load_classifier(tmp_path / "other.pt")
    with pytest.raises(RoutemixError, match="no checkpoint at"):
        load_classifier(tmp_path / "nothing.pt")


# --- recipes and configs -----------------------------------------------------------------------


def test_recipes_of_section_3_4():
    base = apply_recipe(TrainConfig(model="basecnn_2cc", dataset="cifar10"))
    assert (base.epochs, base.batch_size, base.milestones, base.weight_decay) == (200, 128, [80, 150], 5e-4)
    resnet = apply_recipe(TrainConfig(model="resnet20_3cc", dataset="cifar100"))
    assert (resnet.epochs, resnet.batch_size, resnet.milestones, resnet.weight_decay) == (350, 64, [150, 250], 5e-4)
    full = apply_recipe(TrainConfig(model="resnet18_2cc", dataset="imagenet"))
    assert (full.epochs, full.batch_size, full.milestones, full.weight_decay) == (120, 256, [30, 60, 90], 1e-4)
    subset = apply_recipe(TrainConfig(model="resnet50_2cc", dataset="imagenet", classes=100))
    assert (subset.epochs, subset.milestones) == (90, [30, 60])


CONFIG_FILES = sorted(CONFIGS.glob("table3_*/*.yaml"))
THESIS_NAMES = (
    "basecnn widecnn deepcnn basecnn_3 basecnn_ensemble all_ensemble sebasecnn sedeepcnn crossstitch_basecnn_2 "
    "basecnn_2cp basecnn_3cp basecnn_4cp basecnn_2cc basecnn_3cc basecnn_4cc resnet20 resnet110 wrn40_2 seresnet110 "
    "resnet20_2cp resnet20_3cp resnet20_4cp resnet20_2cc resnet20_3cc resnet20_4cc "
    "resnet32_2cc resnet32_3cc resnet32_4cc "
    "resnet18 resnet34 resnet18_2cc resnet50 resnet101 wide_resnet50_2 resnext50_2x64d resnet50_2cc"
).split()


def test_configs_cover_the_thesis_rows_and_match_their_generator():
    settings = [load_config_file(path) for path in CONFIG_FILES]
    assert set(THESIS_NAMES) <= {s["model"] for s in settings}
    assert {p.name for p in CONFIG_FILES if p.parent.name == "table3_2"} >= {
        "basecnn_2cc.yaml",
        "basecnn_2cc_350ep.yaml",
    }
    spec = importlib.util.spec_from_file_location("generate_configs", CONFIGS / "generate.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    rows = generator.configs()
    assert sorted(CONFIGS / path for path, *_ in rows) == CONFIG_FILES
    for path, header, values, *_ in rows:
        assert (CONFIGS / path).read_text() == generator._yaml(header, values), (
            f"{path}: run python configs/generate.py"
        )
    readme = (CONFIGS / "README.md").read_text()
    assert all(f"`{path}`" in readme for path, *_ in rows)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_builds_its_model_for_its_dataset(path):
    cfg = load_config_file(path)
    assert cfg["dataset"] in classification_datasets()
    if not path.stem.endswith("_350ep"):  # the thesis recipe is also what the CLI picks by default
        default = apply_recipe(TrainConfig(model=cfg["model"], dataset=cfg["dataset"], classes=cfg.get("classes")))
        assert (default.epochs, default.batch_size, default.milestones, default.weight_decay) == (
            cfg["epochs"],
            cfg["batch_size"],
            cfg["milestones"],
            cfg["weight_decay"],
        )
    if cfg["model"] not in list_models():
        pytest.skip(f"{cfg['model']} is not registered yet (model zoo in progress)")
    spec = get_classification_spec(cfg["dataset"])
    size = 64 if spec.streamed else 32  # ImageNet models at 64x64 to stay fast
    classes = spec.num_classes or cfg.get("classes") or 1000
    model = build_classifier(cfg["model"], num_classes=classes, in_channels=spec.channels, input_size=size).eval()
    with torch.no_grad():
        assert model(torch.randn(2, spec.channels, size, size)).shape == (2, classes)


# --- the command line --------------------------------------------------------------------------


def test_train_resume_and_eval_on_fashion_mnist(shared_data, tmp_path, capsys):
    """The real command: 256 Fashion-MNIST images, one epoch, from a YAML config that the flags
    override; then a resumed second epoch and ``routemix eval`` of the run."""
    config = tmp_path / "quick.yaml"
    config.write_text(
        "model: basecnn\ndataset: fashion_mnist\nepochs: 50\nbatch_size: 128\nweight_decay: 1.0e-4\nmilestones: [1]\n"
    )
    run_dir = tmp_path / "run"
    common = ["--data-dir", str(shared_data), "--run-dir", str(run_dir), "--no-progress"]
    assert (
        main(["train", "--config", str(config), "--epochs", "1", "--limit", "256", "--limit-test", "200", *common]) == 0
    )
    out = capsys.readouterr().out
    assert "basecnn on fashion_mnist: 1 epoch," in out and "top-1 error" in out and "top-5 error" in out
    saved = json.loads((run_dir / "config.json").read_text())
    assert (saved["epochs"], saved["weight_decay"], saved["milestones"], saved["limit"]) == (1, 1e-4, [1], 256)
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert {"model", "num_classes", "in_channels", "input_size", "state_dict", "config"} <= set(state)
    assert (state["model"], state["num_classes"], state["in_channels"], state["input_size"]) == ("basecnn", 10, 1, 32)
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["n"] == 200

    assert main(["train", "--resume", "--epochs", "2", *common]) == 0  # the rest comes from config.json
    capsys.readouterr()
    assert saved_position(run_dir / "checkpoints" / "last.ckpt") == {"epochs": 2, "batches": 0}
    assert {row["epoch"] for row in read_csv(run_dir / "logs" / "version_1" / "metrics.csv")} == {"1"}

    assert main(["eval", str(run_dir), "--limit", "100", "--no-progress", "--out", str(tmp_path / "eval.json")]) == 0
    out = capsys.readouterr().out
    assert "basecnn on fashion_mnist (100 test images, single crop)" in out and "mean gates" not in out
    assert json.loads((tmp_path / "eval.json").read_text())["n"] == 100


def error_of(args: list[str], capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("routemix: error:") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_command_line_errors_are_one_line(tmp_path, capsys):
    err = error_of(["train", "--model", "basecnn_2c", "--dataset", "cifar10"], capsys)
    assert "unknown model 'basecnn_2c'. Did you mean" in err and "basecnn_2cc" in err
    assert "Did you mean cifar10" in error_of(["train", "--model", "basecnn", "--dataset", "cifar1"], capsys)
    assert "not an image classifier" in error_of(
        ["train", "--model", "cluster_mlp", "--dataset", "mnist", "--data-dir", str(tmp_path)], capsys
    )
    assert "not found under" in error_of(
        ["train", "--model", "basecnn", "--dataset", "cifar10", "--data-dir", str(tmp_path)], capsys
    )
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("model: basecnn\nlearning_rate: 0.1\n")
    assert "unknown key 'learning_rate'" in error_of(["train", "--config", str(bad_key)], capsys)
    bad_value = tmp_path / "value.yaml"
    bad_value.write_text("model: basecnn\nepochs: many\n")
    assert "epochs must be int" in error_of(["train", "--config", str(bad_value)], capsys)
    run_dir = tmp_path / "never"
    assert "no checkpoint at" in error_of(
        ["train", "--model", "basecnn", "--dataset", "mnist", "--resume", "--run-dir", str(run_dir)], capsys
    )
    assert not run_dir.exists()  # a failed resume writes nothing
    assert "no checkpoint at" in error_of(["eval", str(tmp_path / "missing.pt")], capsys)

    colour = build_classifier("basecnn", num_classes=10, in_channels=3, input_size=32)
    save_classifier(tmp_path / "model.pt", colour, "basecnn", input_size=32, config={"dataset": "cifar10"})
    assert "is for model basecnn, not widecnn" in error_of(
        ["eval", str(tmp_path / "model.pt"), "--model", "widecnn"], capsys
    )
    assert "trained on 3-channel images, but fashion_mnist has 1" in error_of(
        ["eval", str(tmp_path / "model.pt"), "--dataset", "fashion_mnist"], capsys
    )


def write_cifar10(root: Path, monkeypatch, *, per_batch: int = 8) -> Path:
    """CIFAR-10 in torchvision's on-disk format (pickled batches), random pixels and labels."""
    from torchvision.datasets import CIFAR10, cifar

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {
            "data": rng.integers(0, 255, (per_batch, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, per_batch).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: True)
    return root


@pytest.mark.parametrize("config", ["table3_2/basecnn_2cc.yaml", "table3_3/resnet20_3cp_cifar10.yaml"])
def test_thesis_config_runs_unchanged_on_synthetic_cifar10(config, tmp_path, monkeypatch, capsys):
    """A user with CIFAR-10 runs the thesis recipe as written; here one epoch of it on 40 fake images."""
    root = write_cifar10(tmp_path / "data", monkeypatch)
    run_dir = tmp_path / "run"
    args = [
        "train",
        "--config",
        str(CONFIGS / config),
        "--data-dir",
        str(root),
        "--epochs",
        "1",
        "--run-dir",
        str(run_dir),
        "--no-progress",
    ]
    assert main(args) == 0
    saved = json.loads((run_dir / "config.json").read_text())
    recipe = load_config_file(CONFIGS / config)
    assert {
        k: saved[k] for k in ("model", "dataset", "batch_size", "lr", "momentum", "weight_decay", "milestones")
    } == {k: recipe[k] for k in ("model", "dataset", "batch_size", "lr", "momentum", "weight_decay", "milestones")}
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["n"] == 8
    assert "top-1 error" in capsys.readouterr().out
