"""``routemix viz`` figures of clustering runs (thesis Fig. 4.4b-4.9), drawn from tiny runs."""

from pathlib import Path

import matplotlib.image
import pytest
import torch

from routemix.cli import main
from routemix.errors import RoutemixError
from routemix.viz.common import DPI

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # as in conftest.py


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    # scikit-learn's t-SNE spins OpenMP threads; on a busy two-core machine one thread is 5x faster
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _cluster(run_dir: Path, *args: str) -> Path:
    assert main(["cluster", *args, "--epochs", "1", "--run-dir", str(run_dir), "--no-progress", "--no-kmeans"]) == 0
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-D run (blobs), a 64-D vector run (digits) and, where MNIST is beside the checkout, an
    NMM-EM image run with its per-epoch log."""
    root = tmp_path_factory.mktemp("runs")
    found = {
        "blobs": _cluster(root / "blobs", "blobs", "--n-samples", "300"),
        "digits": _cluster(root / "digits", "digits", "--limit", "200"),
    }
    if (SHARED_DATA / "MNIST" / "raw").is_dir():
        found["mnist"] = _cluster(root / "mnist", "mnist", "--data-dir", str(SHARED_DATA), "--limit", "96")
    return found


def _mnist(runs) -> Path:
    if "mnist" not in runs:
        pytest.skip(f"../shared/data with MNIST is not beside this checkout ({SHARED_DATA})")
    return runs["mnist"]


def _draw(figure: str, checkpoint: Path, out: Path, *options: str) -> Path:
    assert main(["viz", figure, str(checkpoint), "--out", str(out), *options]) == 0
    png, svg = out / f"{figure}.png", out / f"{figure}.svg"
    assert svg.is_file() and svg.stat().st_size > 1000
    return png


def _check_png(path: Path, width_in: float, height_in: float) -> None:
    image = matplotlib.image.imread(path)  # raises on anything but a valid PNG
    assert image.shape[:2] == (round(height_in * DPI), round(width_in * DPI))
    assert image.std() > 0.05  # not blank


def _error(*argv: str) -> str:
    with pytest.raises(RoutemixError) as error:
        main(["--debug", *argv])
    return str(error.value)


def test_cluster_density_of_a_2d_run(runs, tmp_path):
    png = _draw("cluster-density", runs["blobs"] / "model.pt", tmp_path, "--resolution", "40")
    _check_png(png, 4.6 * 4 + 0.6, 4.2 + 0.6)  # assignment map + the thesis' clusters 3, 5, 9


def test_cluster_density_of_chosen_clusters_wraps_rows(runs, tmp_path):
    png = _draw("cluster-density", runs["blobs"], tmp_path, "--clusters", "0,1,2,3,4", "--resolution", "30")
    _check_png(png, 4.6 * 4 + 0.6, 4.2 * 2 + 0.6)  # six panels on two rows of four


def test_tsne_of_a_vector_run_by_cluster_and_label(runs, tmp_path):
    png = _draw("tsne", runs["digits"], tmp_path, "--limit", "60")
    _check_png(png, 5.4 * 2, 5.0)


def test_tsne_of_an_image_run_with_an_untrained_network(runs, tmp_path):
    png = _draw("tsne", _mnist(runs), tmp_path, "--limit", "60", "--random-network")
    _check_png(png, 5.4 * 3, 5.0)


def test_cluster_top_images_and_synthesised_input(runs, tmp_path):
    png = _draw("cluster-top", _mnist(runs), tmp_path, "--clusters", "0,1", "--steps", "2")
    _check_png(png, 1.15 * 11 + 1.4, 1.3 * 2 + 1.2)


def test_filters_of_first_and_last_convolution(runs, tmp_path):
    png = _draw("filters", _mnist(runs), tmp_path, "--filters", "4", "--steps", "2")
    _check_png(png, 1.5 * 4 + 1.6, 1.75 * 3 + 1.0)


def test_learning_curves_of_an_image_run(runs, tmp_path):
    png = _draw("curves", _mnist(runs), tmp_path)
    _check_png(png, 4.8 * 3 + 0.4, 4.2)  # ACC, NMI, losses


def test_synthesised_inputs_raise_the_objective():
    from routemix.viz.clusters import synthesize_inputs

    weight = torch.randn(1, 1, 8, 8)
    objective = lambda x: (x * weight).flatten(1).sum(1)  # noqa: E731
    start = synthesize_inputs(objective, (1, 1, 8, 8), steps=1, blur_every=0)
    end = synthesize_inputs(objective, (1, 1, 8, 8), steps=30, blur_every=0)
    assert objective(end) > objective(start)
    assert end.min() >= 0 and end.max() <= 1


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("figure", ["cluster-top", "filters"])
def test_image_figures_refuse_vector_data(runs, figure):
    assert "needs a run on an image set" in _error("viz", figure, str(runs["digits"]), "--steps", "1")


def test_density_needs_2d_data(runs):
    message = _error("viz", "cluster-density", str(runs["digits"]))
    assert "needs 2-D data" in message and "64 features per sample" in message


def test_density_of_an_image_run_needs_2d_data(runs):
    assert "needs 2-D data" in _error("viz", "cluster-density", str(_mnist(runs)))


def test_curves_need_a_per_epoch_log(runs):
    assert "no per-epoch log" in _error("viz", "curves", str(runs["blobs"]))


def test_cluster_out_of_range(runs):
    message = _error("viz", "cluster-density", str(runs["blobs"]), "--clusters", "3,12")
    assert "--clusters 12" in message and "0 to 9" in message


def test_not_a_clustering_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": "resnet20", "state_dict": {}}, path)
    assert "classifier checkpoint" in _error("viz", "tsne", str(path))
    torch.save({"weights": torch.zeros(2)}, path)
    assert "not a clustering checkpoint" in _error("viz", "tsne", str(path))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no model.pt" in _error("viz", "filters", str(empty))
    assert "not a `routemix cluster` run" in _error("viz", "curves", str(empty))


def test_baseline_run_has_no_network(tmp_path):
    run_dir = tmp_path / "kmeans"
    assert (
        main(["cluster", "blobs", "--method", "kmeans", "--n-samples", "100", "--run-dir", str(run_dir), "--no-kmeans"])
        == 0
    )
    assert "kmeans run, which has no network" in _error("viz", "tsne", str(run_dir))
