"""One run format (routemix.cluster.saved): estimators saved and reloaded predict the same, and
``routemix cluster`` on a folder of the user's images, then ``routemix predict`` on it."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError

from routemix.cli import main
from routemix.cluster import DDCClustering, EDGaMClustering, IICClustering, MoEClustering, N2DClustering, NMMClustering
from routemix.cluster.base import DeepClusterer
from routemix.cluster.saved import FORMAT, load_clusterer
from routemix.errors import RoutemixError
from routemix.storage import save_checkpoint

DIGITS = load_digits()


def _images(n: int, side: int = 16) -> np.ndarray:
    """``n`` digits upscaled to ``side`` x ``side``, flattened, in [0, 1]."""
    images = torch.as_tensor(DIGITS.images[:n] / 16.0, dtype=torch.float32).unsqueeze(1)
    return torch.nn.functional.interpolate(images, size=(side, side), mode="bilinear").flatten(1).numpy()


ESTIMATORS = {
    "nmm vectors": (lambda: NMMClustering(4, max_iter=2, random_state=0), lambda: DIGITS.data[:200]),
    "nmm images": (lambda: NMMClustering(4, image_shape=(1, 16, 16), max_iter=1, random_state=0), lambda: _images(64)),
    "ddc vote": (lambda: DDCClustering(4, max_iter=2, n_init=3, random_state=0), lambda: DIGITS.data[:200]),
    "iic": (lambda: IICClustering(4, max_iter=2, random_state=0), lambda: DIGITS.data[:200]),
    "edgam": (lambda: EDGaMClustering(4, max_iter=2, pretrain_epochs=1, random_state=0), lambda: DIGITS.data[:200]),
    "moe images": (lambda: MoEClustering(3, image_shape=(1, 16, 16), max_iter=5, random_state=0), lambda: _images(48)),
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # EDGaM's soft-assignment warning after 2 epochs
@pytest.mark.parametrize("name", ESTIMATORS)
def test_a_saved_estimator_reloads_and_predicts_the_same(name, tmp_path):
    make, data = ESTIMATORS[name]
    X = data()
    fitted = make().fit(X)
    fitted.save(tmp_path / "model.pt")
    loaded = DeepClusterer.load(tmp_path / "model.pt")
    assert type(loaded) is type(fitted) and loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.labels_, fitted.labels_)
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X[:20]), fitted.predict_proba(X[:20]), rtol=0, atol=0)
    state = torch.load(tmp_path / "model.pt", weights_only=True)  # no pickled code in the file
    assert state["format"] == FORMAT and state["config"] is None


def test_the_class_method_checks_what_it_loads(tmp_path):
    DDCClustering(3, max_iter=1, random_state=0).fit(DIGITS.data[:60]).save(tmp_path / "ddc.pt")
    assert isinstance(DDCClustering.load(tmp_path / "ddc.pt"), DDCClustering)
    with pytest.raises(TypeError, match="holds a DDCClustering, not a NMMClustering"):
        NMMClustering.load(tmp_path / "ddc.pt")


def test_what_cannot_be_saved_says_why(tmp_path):
    with pytest.raises(NotFittedError):
        NMMClustering(3).save(tmp_path / "unfitted.pt")
    n2d = N2DClustering(3, max_iter=1, umap_neighbors=5, random_state=0).fit(DIGITS.data[:60])
    with pytest.raises(TypeError, match="UMAP"):
        n2d.save(tmp_path / "n2d.pt")
    assert not (tmp_path / "n2d.pt").exists()


def test_loading_something_else_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path / "classifier.pt", {"model": "basecnn", "state_dict": {}})
    with pytest.raises(RoutemixError, match="classifier checkpoint"):
        load_clusterer(tmp_path / "classifier.pt")
    save_checkpoint(tmp_path / "older.pt", {"kind": "nmm_vector", "network": {}, "config": {}})
    with pytest.raises(RoutemixError, match="older routemix"):
        load_clusterer(tmp_path / "older.pt")
    save_checkpoint(tmp_path / "later.pt", {"format": FORMAT, "version": 99})
    with pytest.raises(RoutemixError, match="version 99"):
        load_clusterer(tmp_path / "later.pt")
    with pytest.raises(RoutemixError, match="holds no model.pt"):
        load_clusterer(tmp_path)
    with pytest.raises(RoutemixError, match="no run directory or model.pt at"):
        load_clusterer(tmp_path / "missing")


# --- the command line: a folder of the user's images ----------------------------------------------


@pytest.fixture
def digit_folder(tmp_path):
    """120 digits as 8x8 grey PNGs in nested folders, no labels, and one file that is not an image."""
    folder = tmp_path / "photos"
    for i, image in enumerate(DIGITS.images[:120]):
        sub = folder / ("even" if i % 2 == 0 else "odd/deeper")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).astype(np.uint8)).save(sub / f"digit{i:03d}.png")
    (folder / "notes.png").write_bytes(b"not an image")
    return folder


def test_cluster_a_folder_of_images_then_predict_it(digit_folder, tmp_path, capsys):
    run = tmp_path / "run"
    args = [
        "cluster",
        str(digit_folder),
        "-k",
        "5",
        "--image-size",
        "16",
        "--epochs",
        "2",
        "--run-dir",
        str(run),
        "--no-progress",
    ]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "skipped 1 unreadable image file(s): notes.png" in err
    rows = (run / "labels.csv").read_text().splitlines()
    assert rows[0] == "file,cluster" and len(rows) == 121
    files = [row.split(",")[0] for row in rows[1:]]
    assert files[0] == "even/digit000.png" and "odd/deeper/digit001.png" in files and "notes.png" not in files
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["skipped_files"] == [{"file": "notes.png", "reason": "not an image Pillow can read"}]
    assert [r["method"] for r in metrics["results"]] == ["nmm"]  # no labels: nothing to score k-means by
    saved = load_clusterer(run)
    assert saved.estimator.image_shape == (1, 16, 16) and saved.config["image_size"] == 16

    assert main(["predict", str(run), str(digit_folder)]) == 0
    assert capsys.readouterr().out == (run / "labels.csv").read_text()
    assert main(["predict", str(run), str(digit_folder), "--out", str(tmp_path / "again.csv")]) == 0
    assert (tmp_path / "again.csv").read_text() == (run / "labels.csv").read_text()


def test_predict_vector_data_gives_the_runs_labels_and_refuses_what_does_not_fit(tmp_path, digit_folder, capsys):
    run = tmp_path / "digits"
    assert main(["cluster", "digits", "--epochs", "2", "--run-dir", str(run), "--no-progress", "--no-kmeans"]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), "digits"]) == 0
    assert capsys.readouterr().out == (run / "labels.csv").read_text()
    assert main(["predict", str(run), "blobs"]) == 2
    assert "vectors of 64 features; blobs has 2" in capsys.readouterr().err
    assert main(["predict", str(run), str(digit_folder)]) == 2
    assert "is a folder of images" in capsys.readouterr().err
    km = tmp_path / "km"
    assert main(["cluster", "digits", "--method", "kmeans", "--run-dir", str(km), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["predict", str(km), "digits"]) == 2
    assert "it is a kmeans run, which keeps its labels.csv only" in capsys.readouterr().err


def test_contact_sheets_of_any_methods_folder_run(digit_folder, tmp_path, capsys):
    import matplotlib.image

    run = tmp_path / "km"
    assert (
        main(
            [
                "cluster",
                str(digit_folder),
                "--method",
                "kmeans",
                "-k",
                "3",
                "--image-size",
                "16",
                "--run-dir",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    out = tmp_path / "sheets"
    assert main(["viz", "contact-sheets", str(run), "--per-cluster", "9", "--out", str(out), "--formats", "png"]) == 0
    sheets = sorted(out.glob("*.png"))
    assert [p.name for p in sheets] == [f"contact-sheet-cluster-0{c}.png" for c in range(3)]
    assert matplotlib.image.imread(sheets[0]).std() > 0.05  # images drawn, not a blank page
    (run / "labels.csv").write_text("file,cluster\nsomething.png,0\n")
    capsys.readouterr()
    assert main(["viz", "contact-sheets", str(run), "--out", str(out)]) == 2
    assert "names 1 samples, not the 120 its data holds now" in capsys.readouterr().err


def test_resuming_a_folder_run_at_another_image_size_is_refused(digit_folder, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["cluster", str(digit_folder), "-k", "3", "--run-dir", str(run), "--no-progress"]
    assert main([*common, "--image-size", "16", "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main([*common, "--image-size", "20", "--epochs", "2", "--resume"]) == 2
    assert "image_size: 16 in the run, 20 now" in capsys.readouterr().err
    assert sorted(p.name for p in (run / "logs").iterdir()) == ["version_0"]  # nothing written by the refusal
