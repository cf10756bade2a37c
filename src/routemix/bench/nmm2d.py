"""The 2-D study of thesis sec. 4.5.1: Table 4.1 and the density contours of Fig. 4.5.

1. A supervised CNN with a 2-node bottleneck before its 10-way output is trained on MNIST; its
   bottleneck outputs for every image form the 2-D set D (Fig. 4.4a).
2. D is clustered into 10 clusters by the MLP 32-32-10 with the EM loss alone (eq. 4.22): batch
   128, gamma 5, Adam at 1e-3, ten epochs; once with the relevance scores normalised (eq. 4.11)
   and once without (the failure case of Fig. 4.5a).
3. Table 4.1: the batch mean of every cluster density ``sigmoid(a*/gamma)`` over 128 samples,
   ~0.5 for every cluster with normalisation, arbitrary without. Fig. 4.5: density contours of
   clusters 4, 6 and 10 (1-based, as in the thesis) over the plane, for both runs.

Without MNIST (``data_dir`` has none) the study runs on 2-D Gaussian blobs instead and says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from routemix.data import load_dataset
from routemix.errors import RoutemixError
from routemix.losses import NMMLoss
from routemix.metrics import clustering_scores
from routemix.models import create_model
from routemix.train import clustering as training

THESIS_TABLE_4_1 = {"normalized": [0.498, 0.507, 0.504], "none": [0.736, 0.999, 0.108]}
SHOWN_CLUSTERS = (3, 5, 9)  # the thesis' clusters 4, 6 and 10, 0-based


@dataclass
class Study2DResult:
    points: np.ndarray
    labels: np.ndarray | None
    source: str
    runs: dict  # normalization -> {"scores", "density_means", "module"}


class BottleneckCNN(nn.Module):
    """Supervised MNIST CNN whose 2-node bottleneck gives the 2-D set of sec. 4.5.1."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
            nn.Linear(128, 2),
        )
        self.classifier = nn.Linear(2, 10)

    def forward(self, x):
        return self.classifier(self.features(x))


def mnist_bottleneck_points(
    data_dir, *, epochs: int = 2, seed: int = 0, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Train the bottleneck CNN on MNIST's training split and embed all 70,000 images in 2-D."""
    from tqdm.auto import tqdm

    dataset = load_dataset("mnist", data_dir=data_dir)
    images = dataset.data.float().div(255.0)
    labels = torch.as_tensor(dataset.labels)
    torch.manual_seed(seed)
    model = BottleneckCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = torch.arange(60000)
    for epoch in range(epochs):
        order = train[torch.randperm(len(train))]
        for batch in tqdm(
            order.split(128), desc=f"bottleneck CNN epoch {epoch + 1}/{epochs}", disable=not progress, leave=False
        ):
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        points = torch.cat([model.features(chunk) for chunk in images.split(2048)])
    return points.numpy(), dataset.labels


def cluster_2d(points: np.ndarray, *, normalization: str, epochs: int = 10, seed: int = 0, progress: bool = True):
    """Sec. 4.5.1 setting: MLP 32-32-10, EM loss eq. 4.22, batch 128, gamma 5, Adam 1e-3."""
    data = torch.as_tensor(points, dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = create_model("cluster_mlp", num_classes=10, in_features=2, hidden_sizes=(32, 32))
        module = training.NMMModule(network, NMMLoss(10, 5.0, normalization=normalization), em_lr=1e-3, two_fold=False)
        loader = training.make_loader(data, batch_size=128, shuffle=True, seed=seed)
        training.fit(module, loader, max_epochs=epochs, progress=progress, accelerator="cpu")
    return module.eval()


@torch.no_grad()
def density_batch_means(
    module: training.NMMModule, points: np.ndarray, *, batch_size: int = 128, seed: int = 0
) -> np.ndarray:
    """Table 4.1: mean of ``sigmoid(a*/gamma)`` over random 128-sample batches, per cluster,
    normalised as the run was trained: batch statistics, running statistics, or raw scores."""
    rng = np.random.default_rng(seed)
    loss = module.loss
    means = []
    for _ in range(50):
        batch = torch.as_tensor(points[rng.choice(len(points), batch_size, replace=False)], dtype=torch.float32)
        scores = module.scores(batch)
        if loss.normalization == "batch":
            normalized = torch.nn.functional.batch_norm(scores, None, None, training=True, eps=loss.eps)
        else:  # running statistics (eval mode), or the raw scores for "none"
            normalized = loss.normalize(scores)
        means.append(torch.sigmoid(normalized / loss.gamma).mean(dim=0))
    return torch.stack(means).mean(dim=0).numpy()


def run_study(
    data_dir=None, *, seed: int = 0, epochs: int = 10, cnn_epochs: int = 2, progress: bool = True
) -> Study2DResult:
    try:
        points, labels = mnist_bottleneck_points(data_dir, epochs=cnn_epochs, seed=seed, progress=progress)
        source = "MNIST bottleneck (sec. 4.5.1)"
    except RoutemixError:
        blobs = load_dataset("blobs", n_samples=10000, random_state=seed)
        points, labels, source = blobs.data.numpy(), blobs.labels, "2-D Gaussian blobs (MNIST not found)"
    runs = {}
    for normalization in ("batch", "running", "none"):
        start = time.perf_counter()
        module = cluster_2d(points, normalization=normalization, epochs=epochs, seed=seed, progress=progress)
        predictions = training.predict_proba(module, torch.as_tensor(points, dtype=torch.float32)).argmax(axis=1)
        runs[normalization] = {
            "scores": clustering_scores(labels, predictions),
            "clusters_used": int(len(np.unique(predictions))),
            "density_means": density_batch_means(module, points, seed=seed),
            "seconds": time.perf_counter() - start,
            "module": module,
        }
    return Study2DResult(points, labels, source, runs)


@torch.no_grad()
def plot_contours(result: Study2DResult, path: str | Path) -> Path:
    """Fig. 4.5: density contours ``sigmoid(a*/gamma)`` of three clusters, without (top) and with
    (bottom) relevance-score normalisation, over the 2-D points (panels drawn by
    :func:`routemix.viz.clusters.draw_density`, as ``routemix viz cluster-density`` draws them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from routemix.viz.clusters import draw_density, plane_grid

    points = result.points
    grid_x, grid_y, grid = plane_grid(points)
    grid = torch.as_tensor(grid)
    rows = [("none", "(a) without normalising relevance scores"), ("batch", "(b) with normalised relevance scores")]
    fig, axes = plt.subplots(2, len(SHOWN_CLUSTERS), figsize=(12, 7.5), constrained_layout=True)
    subsample = np.random.default_rng(0).choice(len(points), min(3000, len(points)), replace=False)
    for row, (normalization, title) in enumerate(rows):
        module = result.runs[normalization]["module"]
        loss = module.loss
        normalized = loss.normalize(module.scores(grid), update_stats=False)
        density = torch.sigmoid(normalized / loss.gamma).numpy()[:, list(SHOWN_CLUSTERS)]
        levels = np.linspace(density.min(), density.max(), 21)  # one colour scale per row
        for col, cluster in enumerate(SHOWN_CLUSTERS):
            mean = result.runs[normalization]["density_means"][cluster]
            contour = draw_density(
                axes[row, col],
                grid_x,
                grid_y,
                density[:, col],
                points[subsample],
                levels=levels,
                title=f"cluster {cluster + 1}  (batch mean of h: {mean:.3f})",
            )
        axes[row, 0].annotate(title, xy=(0, 1.12), xycoords="axes fraction", fontsize=11, fontweight="bold")
        fig.colorbar(contour, ax=axes[row, :], shrink=0.9, format="%.2f", label="h_j(x) = sigmoid(a*_j / gamma)")
    fig.suptitle(f"Fig. 4.5 reproduction: cluster densities on {result.source}", fontsize=12)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_table(result: Study2DResult) -> str:
    """Table 4.1 beside the thesis' numbers, plus ACC/NMI of each run."""
    lines = [f"2-D study on {result.source}, {len(result.points)} points", ""]
    lines.append(
        f"{'run':<22}"
        + "".join(f"{'cluster ' + str(c + 1):>12}" for c in SHOWN_CLUSTERS)
        + f"{'all K: min-max':>18}{'ACC':>8}{'NMI':>8}{'used':>6}"
    )
    for normalization, label in (
        ("batch", "normalized (batch)"),
        ("running", "normalized (running)"),
        ("none", "un-normalized"),
    ):
        run = result.runs[normalization]
        means = run["density_means"]
        cells = "".join(f"{means[c]:>12.3f}" for c in SHOWN_CLUSTERS)
        lines.append(
            f"{label:<22}{cells}{f'{means.min():.3f}-{means.max():.3f}':>18}"
            f"{run['scores']['acc']:>8.3f}{run['scores']['nmi']:>8.3f}{run['clusters_used']:>6}"
        )
    for key, label in (("normalized", "thesis, normalized"), ("none", "thesis, un-normalized")):
        lines.append(f"{label:<22}" + "".join(f"{v:>12.3f}" for v in THESIS_TABLE_4_1[key]))
    return "\n".join(lines)
