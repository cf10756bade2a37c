import numpy as np
import pytest

from routemix.bench import nmm2d
from routemix.data import load_dataset


@pytest.fixture(scope="module")
def study():
    points = load_dataset("blobs", n_samples=1500, random_state=0)
    runs = {}
    for normalization in ("batch", "running", "none"):
        module = nmm2d.cluster_2d(points.data.numpy(), normalization=normalization, epochs=2, progress=False)
        runs[normalization] = {
            "scores": {"acc": 0.0, "nmi": 0.0, "ari": 0.0},
            "clusters_used": 0,
            "density_means": nmm2d.density_batch_means(module, points.data.numpy()),
            "seconds": 0.0,
            "module": module,
        }
    return nmm2d.Study2DResult(points.data.numpy(), points.labels, "blobs", runs)


def test_table_4_1_normalised_densities_average_one_half(study):
    # eq. 4.14: with batch-normalised scores every cluster's batch-mean density is ~0.5
    assert np.all(np.abs(study.runs["batch"]["density_means"] - 0.5) < 0.02)


def test_contour_figure_is_a_valid_png(study, tmp_path):
    import matplotlib.image

    path = nmm2d.plot_contours(study, tmp_path / "fig.png")
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 600 and image.shape[1] > 1000  # 12 x 7.5 in at 110 dpi
    assert image.std() > 0.05  # not blank


def test_table_lists_all_runs_and_thesis_rows(study):
    table = nmm2d.format_table(study)
    for label in ("normalized (batch)", "normalized (running)", "un-normalized", "thesis, normalized"):
        assert label in table
