"""Figures of a clustering run made by ``routemix cluster`` (thesis sec. 4.5.1 and 4.5.3).

* ``cluster-density`` (Fig. 4.4b, 4.5): on 2-D data, the assignment map and the density contours
  ``h_j(x) = sigmoid(a*_j / gamma)`` (eq. 4.12) of chosen clusters over the input plane.
* ``tsne`` (Fig. 4.7): t-SNE of the network's response before softmax, by cluster and by label.
* ``cluster-top`` (Fig. 4.8): per cluster, the ten images of highest relevance score and an input
  synthesised by gradient ascent on that output neuron's score.
* ``filters`` (Fig. 4.9): inputs that maximise filters of the first and last convolutional layers,
  and the first layer's raw kernels.
* ``curves`` (Fig. 4.6): ACC, NMI and losses per epoch from the run's Lightning CSV log.
* ``contact-sheets``: one grid of images per cluster, drawn at random from its members, for any
  method's run on images (a folder of the user's own included), read from the run's labels.csv.

Every figure reads the run through :func:`load_run`, which loads ``model.pt``
(:mod:`routemix.cluster.saved`; NMM-EM, IIC and DDC runs, whose networks end in K output scores)
and reloads the run's data as its settings describe it. Clusters are numbered as in the run's ``labels.csv``
(0-based; the thesis' 1-based clusters 4, 6, 10 of Fig. 4.5 are 3, 5, 9 here).
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from routemix.commands.options import add_option
from routemix.errors import RoutemixError
from routemix.rundir import run_config_if_any
from routemix.viz.common import Figure, new_figure, save_figure, synthesize_inputs

# methods whose network ends in K output scores (a softmax, or NMM-EM's eq. 4.20, follows)
SCORE_METHODS = ("nmm", "iic", "ddc")
BASELINES = ("kmeans", "gmm", "spectral")
THESIS_DENSITY_CLUSTERS = (3, 5, 9)  # Fig. 4.5's clusters 4, 6 and 10, 0-based


# --- the run: network, input scaling, data --------------------------------------------------


@dataclass
class ClusterRun:
    """A trained clustering network rebuilt from a ``routemix cluster`` run.

    ``order[c]`` is the output neuron of cluster ``c`` (clusters are numbered by size). Every
    ``*scores`` method returns columns in cluster order, so column ``c`` belongs to cluster ``c``
    of ``labels.csv``.
    """

    checkpoint: Path
    method: str
    image: bool
    network: nn.Module
    preprocess: nn.Module
    loss: nn.Module | None  # NMMLoss with its running statistics (eq. 4.11), NMM-EM only
    order: torch.Tensor
    config: dict
    input_scaling: tuple[torch.Tensor, torch.Tensor] | None  # (shift, scale): x -> (x - shift) / scale
    make_network: Callable[[], nn.Module]  # an untrained network of the same shape (on the CPU)
    device: torch.device = torch.device("cpu")

    @property
    def num_clusters(self) -> int:
        return len(self.order)

    def describe(self, dataset) -> str:
        return (
            f"{self.method} on {dataset.name} ({len(dataset)} samples, K={self.num_clusters}), "
            f"checkpoint {self.checkpoint}"
        )

    def to_input(self, rows: torch.Tensor) -> torch.Tensor:
        """Dataset rows (uint8 images or float vectors) -> the float input the run trained on."""
        rows = rows.to(self.device)
        if self.image:
            x = rows.float() / 255.0 if rows.dtype == torch.uint8 else rows.float()
        else:
            x = rows.double()
        if self.input_scaling is not None:
            shift, scale = self.input_scaling
            x = (x - shift) / scale
        return x.float()

    def scores(self, x: torch.Tensor, network: nn.Module | None = None) -> torch.Tensor:
        """Raw relevance scores ``a`` (eq. 4.6) of input ``x``, columns in cluster order."""
        return (network or self.network)(self.preprocess(x))[:, self.order]

    @torch.no_grad()
    def respond(
        self, rows: torch.Tensor, *, batch_size: int = 1024, network: nn.Module | None = None
    ) -> dict[str, np.ndarray]:
        """Scores, the response before softmax and posteriors of dataset ``rows``, in cluster order.

        ``response`` is NMM-EM's ``a*`` (eq. 4.11, running statistics) and the raw scores
        otherwise; ``density`` is ``sigmoid(a*/gamma)`` (eq. 4.12) for NMM-EM. With ``network`` (an
        untrained one), NMM-EM normalises with the statistics of ``rows`` themselves.
        """
        scores = torch.cat([self.scores(self.to_input(chunk), network) for chunk in rows.split(batch_size)])
        out = {"scores": scores.cpu().numpy()}
        if self.loss is None:
            out.update(response=out["scores"], posterior=scores.softmax(dim=1).cpu().numpy())
            return out
        inverse = torch.argsort(self.order)
        raw = scores[:, inverse]  # back to neuron order for the loss' per-neuron statistics
        if network is None:
            normalized = self.loss.normalize(raw, update_stats=False)
        else:
            normalized = (raw - raw.mean(0)) / raw.std(0, unbiased=False).clamp_min(1e-5)
        posterior = self.loss.posterior(normalized)
        out.update(
            response=normalized[:, self.order].cpu().numpy(),
            posterior=posterior[:, self.order].cpu().numpy(),
            density=torch.sigmoid(normalized / self.loss.gamma)[:, self.order].cpu().numpy(),
        )
        return out


def checkpoint_path(path: str | Path) -> Path:
    """``model.pt`` of a run directory (or the file itself), with a clear error for the rest."""
    path = Path(path)
    if path.is_dir():
        model = path / "model.pt"
        if model.is_file():
            return model
        config = run_config_if_any(path)
        if config.get("method") in BASELINES:
            raise RoutemixError(
                f"{path} is a {config['method']} run, which has no network to draw: these figures need a "
                f"neural method ({', '.join(SCORE_METHODS)})."
            )
        raise RoutemixError(
            f"{path} holds no model.pt: pass the --run-dir of a `routemix cluster` run of a neural method."
        )
    if not path.exists():
        raise RoutemixError(f"no checkpoint or run directory at {path}.")
    return path


def load_run(checkpoint: str | Path, *, data_dir: str | None = None, device: str = "cpu"):
    """The network of a ``routemix cluster`` run (:func:`routemix.cluster.saved.load_clusterer`)
    and the run's data, reloaded as its settings describe it.

    Returns ``(run, dataset)``: a :class:`ClusterRun` in eval mode with frozen weights on
    ``device`` (``cpu``, ``cuda`` or ``auto``), and the :class:`~routemix.data.LoadedDataset` of
    the run's config (same name, split, samples, limit) in memory.
    """
    from routemix.cluster.base import scaler_offset_and_scale
    from routemix.cluster.saved import load_clusterer
    from routemix.train.common import torch_device

    if device == "cuda" and not torch.cuda.is_available():
        raise RoutemixError("--device cuda: no CUDA device is available here; use --device cpu.")
    target = torch_device(device)

    path = checkpoint_path(checkpoint)
    saved = load_clusterer(path)
    estimator, method = saved.estimator, saved.method
    if method not in SCORE_METHODS:
        raise RoutemixError(
            f"{path} is a --method {method} run: the clustering figures read a network ending in K cluster scores, "
            f"which {', '.join(SCORE_METHODS)} runs have; {method} is not supported."
        )
    if saved.config is None:
        raise RoutemixError(
            f"{path} was saved from Python, without a run's settings: the figures need a `routemix cluster` run's data."
        )
    config = dict(saved.config)
    dataset = _load_run_data(config, data_dir)
    image = estimator.image_shape is not None
    if image != (dataset.kind == "image"):
        raise RoutemixError(
            f"{path}: the run's data {config.get('dataset')!r} is no longer {'image' if image else 'vector'} data."
        )

    def scoring_parts(modules: dict):
        """(network, preprocess, loss) of the module that scores clusters (DDC: the anchor run)."""
        module = next(iter(modules.values()))
        module = module[0] if isinstance(module, list) else module
        return (
            module.network,
            getattr(module, "preprocess", nn.Identity()),
            getattr(module, "loss", None) if method == "nmm" else None,
        )

    network, preprocess, loss = scoring_parts({name: getattr(estimator, name) for name in estimator._module_attributes})
    network.eval().requires_grad_(False)
    if hasattr(estimator, "scaler_"):
        offset, scale = scaler_offset_and_scale(estimator.scaler_)
        scaling = (torch.as_tensor(offset).double(), torch.as_tensor(scale).double())
    else:
        low, high = estimator.pixel_range_
        scaling = (torch.tensor(float(low)), torch.tensor(float(high - low)))
    scaling = tuple(t.to(target) for t in scaling)
    order = torch.as_tensor(estimator.cluster_order_).long().to(target)
    loss = None if loss is None else loss.eval().to(target)
    run = ClusterRun(
        path,
        method,
        image,
        network.to(target),
        preprocess.eval().to(target),
        loss,
        order,
        config,
        scaling,
        lambda: scoring_parts(estimator._empty_modules())[0],
        target,
    )
    return run, dataset


def _load_run_data(config: dict, data_dir: str | None):
    from dataclasses import fields

    from routemix.cluster.job import ClusterConfig, load_data

    if "dataset" not in config:
        raise RoutemixError("the checkpoint's config names no dataset: it was not written by `routemix cluster`.")
    settings = ClusterConfig(**{f.name: config[f.name] for f in fields(ClusterConfig) if f.name in config})
    try:
        return load_data(settings, data_dir=data_dir)
    except RoutemixError as error:
        raise RoutemixError(f"{error} (the run's data is needed for this figure: pass --data-dir)") from None


# --- options ----------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 3,5,9, got {text!r}") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _check_clusters(clusters: list[int], k: int) -> list[int]:
    bad = [c for c in clusters if not 0 <= c < k]
    if bad:
        raise RoutemixError(
            f"--clusters {','.join(map(str, bad))}: out of range, the run has {k} clusters, numbered 0 to {k - 1}."
        )
    if not clusters:
        raise RoutemixError("--clusters: name at least one cluster.")
    return list(dict.fromkeys(clusters))


def _add_data_options(
    parser: argparse.ArgumentParser, *, seed: str = "seed of subsets, t-SNE and synthesis inits", device: bool = True
) -> None:
    """``--data-dir`` (where the run's images are), ``--seed`` (``seed``: its help) and, unless
    ``device=False``, ``--device`` (where the network runs)."""
    add_option(
        parser, "data_dir", default=None, help="root of the run's image dataset (default: the run's own --data-dir)"
    )
    add_option(parser, "seed", default=0, help=seed)
    if device:
        add_option(parser, "device", help="where the network runs (default: auto, CUDA when there is one)")


def _clusters_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--clusters``: the clusters a figure draws, 0-based as in labels.csv (default None: the figure's choice)."""
    add_option(parser, "clusters", type=_int_list, default=None, help=help)


def _need_images(run: ClusterRun, figure: str) -> None:
    if not run.image:
        raise RoutemixError(
            f"{figure} shows images and needs a run on an image set; {run.checkpoint} clustered vector data "
            f"({run.config.get('dataset')}). Try `routemix viz tsne` or `cluster-density` (2-D data) instead."
        )


def cluster_colors(k: int):
    """One colour per cluster: tab10 / tab20, else evenly spaced on turbo."""
    import matplotlib

    if k <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(k)]
    if k <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(k)]
    return [matplotlib.colormaps["turbo"](i / (k - 1)) for i in range(k)]


# --- shared drawing on the 2-D plane (also used by routemix.bench.nmm2d) -------------------------


def plane_grid(points: np.ndarray, resolution: int = 200, pad: float = 0.05):
    """A ``resolution`` x ``resolution`` grid over the points' bounding box (padded by ``pad``):
    ``(grid_x, grid_y, flat)`` with ``flat`` the (resolution², 2) float32 grid points."""
    low, high = points.min(axis=0), points.max(axis=0)
    margin = pad * np.maximum(high - low, 1e-6)
    xs = np.linspace(low[0] - margin[0], high[0] + margin[0], resolution)
    ys = np.linspace(low[1] - margin[1], high[1] + margin[1], resolution)
    grid_x, grid_y = np.meshgrid(xs, ys)
    return grid_x, grid_y, np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).astype(np.float32)


def draw_density(ax, grid_x, grid_y, density: np.ndarray, points: np.ndarray, *, levels, title: str):
    """Fig. 4.5 panel: filled contours of one cluster's density over the plane, points on top."""
    contour = ax.contourf(grid_x, grid_y, density.reshape(grid_x.shape), levels=levels, cmap="viridis", extend="both")
    ax.scatter(points[:, 0], points[:, 1], s=1.5, c="white", alpha=0.35, linewidths=0)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    return contour


def draw_assignment_map(
    ax, grid_x, grid_y, grid_clusters: np.ndarray, points: np.ndarray, point_clusters: np.ndarray, k: int, *, title: str
):
    """Fig. 4.4b: the plane coloured by the most probable cluster, each point by its cluster."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    colors = cluster_colors(k)
    cmap = ListedColormap(colors)
    norm = BoundaryNorm(np.arange(-0.5, k), k)
    ax.pcolormesh(
        grid_x,
        grid_y,
        grid_clusters.reshape(grid_x.shape),
        cmap=cmap,
        norm=norm,
        alpha=0.3,
        shading="auto",
        rasterized=True,
    )
    ax.scatter(
        points[:, 0], points[:, 1], c=point_clusters, cmap=cmap, norm=norm, s=5, linewidths=0.2, edgecolors="0.2"
    )
    if k <= 20:
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], marker="o", ls="", color=colors[c], markeredgecolor="0.2", label=str(c)) for c in range(k)
        ]
        ax.legend(
            handles=handles,
            title="cluster",
            fontsize=7,
            title_fontsize=8,
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            frameon=False,
        )
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")


def _subsample(n: int, limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


# --- cluster-density: Fig. 4.4b and 4.5 ----------------------------------------------------------


def _density_arguments(parser: argparse.ArgumentParser) -> None:
    _clusters_argument(
        parser,
        "clusters to draw, 0-based as in labels.csv (default: 3,5,9, the thesis' clusters 4, 6, 10, when K >= 10)",
    )
    parser.add_argument("--resolution", type=_positive, default=200, help="grid points per axis (default 200)")
    _add_data_options(parser)


def draw_cluster_density(args: argparse.Namespace) -> list[Path]:
    """Fig. 4.4b and 4.5: assignment map and density contours of an NMM-EM run on 2-D data."""
    run, dataset = load_run(args.checkpoint, data_dir=args.data_dir, device=args.device)
    if run.method != "nmm":
        raise RoutemixError(
            f"cluster-density draws NMM-EM's densities sigmoid(a*/gamma) (eq. 4.12); "
            f"{run.checkpoint} is a --method {run.method} run: use a --method nmm run."
        )
    if run.image or dataset.data.shape[1] != 2:
        shape = (
            f"images of shape {'x'.join(map(str, dataset.data.shape[1:]))}"
            if run.image
            else f"{dataset.data.shape[1]} features per sample"
        )
        raise RoutemixError(
            f"cluster-density draws densities over the input plane and needs 2-D data; {run.checkpoint} clustered "
            f"{dataset.name}, {shape}. Cluster a 2-D set: `routemix cluster blobs` (or moons, rings; "
            "see `routemix datasets`), a .csv of two columns, or the thesis' 2-D MNIST set of `routemix bench nmm2d`."
        )
    k = run.num_clusters
    clusters = (
        args.clusters
        if args.clusters is not None
        else (list(THESIS_DENSITY_CLUSTERS) if k >= 10 else list(range(min(3, k))))
    )
    clusters = _check_clusters(clusters, k)
    points = dataset.data.numpy()
    grid_x, grid_y, grid = plane_grid(points, args.resolution)
    on_grid = run.respond(torch.as_tensor(grid))
    on_data = run.respond(dataset.data)
    shown = _subsample(len(points), 5000, args.seed)

    panels = 1 + len(clusters)
    cols = min(panels, 4)
    rows = -(-panels // cols)
    fig, axes = new_figure(rows, cols, figsize=(4.6 * cols + 0.6, 4.2 * rows + 0.6), squeeze=False)
    axes = axes.ravel()
    draw_assignment_map(
        axes[0],
        grid_x,
        grid_y,
        on_grid["posterior"].argmax(1),
        points[shown],
        on_data["posterior"].argmax(1)[shown],
        k,
        title="(Fig. 4.4b) assignments: argmax posterior",
    )
    density = on_grid["density"][:, clusters]
    # one colour scale for every panel, spanning the densities at the data points: far from the data
    # the densities run on to extremes that would leave the data region in one colour
    at_data = on_data["density"][:, clusters]
    levels = np.linspace(at_data.min(), max(at_data.max(), at_data.min() + 1e-6), 21)
    data_mean = on_data["density"].mean(axis=0)
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    for ax, column, cluster in zip(axes[1:], density.T, clusters):
        contour = draw_density(
            ax,
            grid_x,
            grid_y,
            column,
            points[shown],
            levels=levels,
            title=f"cluster {cluster}: h(x) = sigmoid(a*/γ)\nmean over the data {data_mean[cluster]:.3f}",
        )
        cax = make_axes_locatable(ax).append_axes("right", size="5%", pad=0.08)  # on every panel, so all keep one width
        if ax is axes[panels - 1]:
            fig.colorbar(contour, cax=cax, format="%.2f", label="density h_j(x)")
        else:
            cax.axis("off")
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.suptitle(f"Cluster densities of NMM-EM on {dataset.name} (thesis Fig. 4.4b, 4.5)", fontsize=12)
    caption = (
        "First panel: each point coloured by its cluster over the most probable cluster of the plane; "
        f"then density contours of clusters {', '.join(map(str, clusters))} (running statistics, eq. 4.11-4.12; "
        f"one colour scale spanning the densities at the data points). {run.describe(dataset)}."
    )
    return save_figure(fig, args.out / "cluster-density", caption, args.formats)


# --- tsne: Fig. 4.7 -------------------------------------------------------------------------------


def _tsne_arguments(parser: argparse.ArgumentParser) -> None:
    add_option(
        parser, "limit", type=_positive, default=2000, help="samples in the t-SNE subset (default 2000; thesis: 2560)"
    )
    parser.add_argument(
        "--perplexity", type=float, default=30.0, help="t-SNE perplexity (default 30, capped for small subsets)"
    )
    parser.add_argument(
        "--random-network",
        action="store_true",
        help="add the response of an untrained network of the same shape (Fig. 4.7a)",
    )
    _add_data_options(parser)


def _tsne(values: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = min(perplexity, max(1.0, (len(values) - 1) / 3))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(values.astype(np.float64))


def _scatter_by(ax, xy: np.ndarray, groups: np.ndarray, title: str, legend_title: str) -> None:
    values = np.unique(groups)
    numbered = np.issubdtype(values.dtype, np.integer) and values.min() >= 0  # keep colour c for cluster c
    colors = cluster_colors(int(values.max()) + 1 if numbered else len(values))
    for position, value in enumerate(values):
        mask = groups == value
        ax.scatter(
            xy[mask, 0],
            xy[mask, 1],
            s=4,
            color=colors[int(value) if numbered else position],
            label=str(value),
            linewidths=0,
        )
    if len(values) <= 20:
        ax.legend(
            title=legend_title,
            fontsize=7,
            title_fontsize=8,
            markerscale=3,
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            frameon=False,
        )
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")


def draw_tsne(args: argparse.Namespace) -> list[Path]:
    """Fig. 4.7: t-SNE of the response before softmax (NMM-EM: a*, eq. 4.11; others: raw scores)."""
    run, dataset = load_run(args.checkpoint, data_dir=args.data_dir, device=args.device)
    subset = _subsample(len(dataset), args.limit, args.seed)
    rows = dataset.data[torch.as_tensor(subset)]
    trained = run.respond(rows)
    clusters = trained["posterior"].argmax(1)
    labels = None if dataset.labels is None else np.asarray(dataset.labels)[subset]
    panels = []
    if args.random_network:
        torch.manual_seed(args.seed)
        untrained = run.make_network().to(run.device).eval().requires_grad_(False)
        random_response = run.respond(rows, network=untrained)["response"]
        panels.append(
            (
                _tsne(random_response, args.perplexity, args.seed),
                labels if labels is not None else clusters,
                "(a) untrained network, " + ("by true label" if labels is not None else "by trained cluster"),
                "label" if labels is not None else "cluster",
            )
        )
    xy = _tsne(trained["response"], args.perplexity, args.seed)
    panels.append((xy, clusters, "trained network, by cluster", "cluster"))
    if labels is not None:
        panels.append((xy, labels, "trained network, by true label", "label"))
    fig, axes = new_figure(1, len(panels), figsize=(5.4 * len(panels), 5.0), squeeze=False)
    for ax, (points, groups, title, legend) in zip(axes[0], panels):
        _scatter_by(ax, points, groups, title, legend)
    response = "a* (normalised scores, eq. 4.11)" if run.method == "nmm" else "raw output scores"
    fig.suptitle(f"t-SNE of the network response before softmax, {dataset.name} (thesis Fig. 4.7)", fontsize=12)
    caption = f"t-SNE of {response} for {len(subset)} samples (seed {args.seed}). {run.describe(dataset)}."
    return save_figure(fig, args.out / "tsne", caption, args.formats)


# --- gradient ascent on the input: routemix.viz.common.synthesize_inputs -----------------------


def _synthesis_channels(run: ClusterRun, channels: int) -> int:
    """The Sobel input reads grayscale: synthesise one channel there, all channels otherwise."""
    from routemix.data.transforms import SobelInput

    return 1 if isinstance(run.preprocess, SobelInput) else channels


def _show_image(ax, image: torch.Tensor, *, stretch: bool = False) -> None:
    """(C, H, W) uint8 or float [0, 1] image, grayscale or RGB, without ticks."""
    image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    if stretch:
        image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-8)
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def _steps_arguments(parser: argparse.ArgumentParser) -> None:
    add_option(
        parser,
        "steps",
        type=_positive,
        default=200,
        help="gradient-ascent steps of each synthesised input (default 200)",
    )


# --- cluster-top: Fig. 4.8 ------------------------------------------------------------------------


def _top_arguments(parser: argparse.ArgumentParser) -> None:
    _clusters_argument(parser, "clusters to show, 0-based as in labels.csv (default: all, up to 10)")
    parser.add_argument("--top", type=_positive, default=10, help="images per cluster (default 10)")
    add_option(
        parser,
        "limit",
        type=_positive,
        default=None,
        help="rank only a random subset of this many images (default: all)",
    )
    _steps_arguments(parser)
    _add_data_options(parser)


def draw_cluster_top(args: argparse.Namespace) -> list[Path]:
    """Fig. 4.8: per cluster, the images of highest relevance score and a synthesised input."""
    run, dataset = load_run(args.checkpoint, data_dir=args.data_dir, device=args.device)
    _need_images(run, "cluster-top")
    k = run.num_clusters
    clusters = _check_clusters(args.clusters if args.clusters is not None else list(range(min(k, 10))), k)
    subset = _subsample(len(dataset), args.limit or len(dataset), args.seed)
    rows = dataset.data[torch.as_tensor(subset)]
    response = run.respond(rows)
    scores, members = response["scores"], np.bincount(response["posterior"].argmax(1), minlength=k)
    top = min(args.top, len(subset))
    channels, height, width = dataset.data.shape[1:]
    chosen = torch.as_tensor(clusters, device=run.device)
    synthetic = synthesize_inputs(
        lambda x: run.scores(x)[torch.arange(len(chosen), device=run.device), chosen],
        (len(clusters), _synthesis_channels(run, channels), height, width),
        steps=args.steps,
        seed=args.seed,
        device=run.device,
        network=run.network,
    )
    fig, axes = new_figure(
        len(clusters), top + 1, figsize=(1.15 * (top + 1) + 1.4, 1.3 * len(clusters) + 1.2), squeeze=False
    )
    labels = None if dataset.labels is None else np.asarray(dataset.labels)[subset]
    for row, cluster in enumerate(clusters):
        best = np.argsort(-scores[:, cluster], kind="stable")[:top]
        for col, index in enumerate(best):
            ax = axes[row, col]
            _show_image(ax, rows[index])
            if labels is not None:
                ax.set_title(f"label {labels[index]}", fontsize=7, pad=2)
        ax = axes[row, top]
        _show_image(ax, synthetic[row], stretch=True)
        for side in ax.spines.values():
            side.set_edgecolor("tab:red")
            side.set_linewidth(1.5)
        axes[row, 0].set_ylabel(
            f"cluster {cluster}\n({members[cluster]} members)", fontsize=8, rotation=0, ha="right", va="center"
        )
        if row == 0:
            ax.set_title("synthesised", fontsize=8, pad=2, color="tab:red")
    fig.suptitle(
        f"Top {top} images per cluster by relevance score, and the input maximising it, "
        f"{dataset.name} (thesis Fig. 4.8)",
        fontsize=11,
    )
    caption = (
        f"Rows: clusters; images ranked by the cluster's raw score a_j over {len(subset)} images; "
        f"last column (red): input synthesised by {args.steps} steps of gradient ascent on a_j "
        f"(L2 + blur + clip, contrast stretched). {run.describe(dataset)}."
    )
    return save_figure(fig, args.out / "cluster-top", caption, args.formats)


# --- filters: Fig. 4.9 ----------------------------------------------------------------------------


def _filters_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--filters", type=_positive, default=8, help="filters shown per layer, evenly spaced over the layer (default 8)"
    )
    _steps_arguments(parser)
    _add_data_options(parser)


def _evenly_spaced(total: int, count: int) -> list[int]:
    return sorted(set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist()))


class _Reached(Exception):
    """Raised by a forward hook to stop the forward pass at the layer being visualised."""


def _activation_after(network: nn.Module, conv: nn.Conv2d) -> nn.Module | None:
    """The first ReLU registered after ``conv`` (conv-BN-ReLU, conv-pool-ReLU), if any."""
    seen = False
    for module in network.modules():
        if module is conv:
            seen = True
        elif seen and isinstance(module, nn.ReLU):
            return module
    return None


def _maximise_filters(
    run: ClusterRun, conv: nn.Conv2d, filters: list[int], shape: tuple[int, ...], steps: int, seed: int
) -> torch.Tensor:
    """Inputs maximising each of ``filters`` of ``conv`` (one input each): the mean over positions
    of the filter's activation after its ReLU. (The mean of the convolution output alone is
    linear in the input and, on the Sobel input, depends only on the border pixels.)"""
    activation = _activation_after(run.network, conv)
    captured = {}

    def hook(module, inputs, output):
        captured["out"] = output if activation is not None else torch.relu(output)
        raise _Reached

    handle = (activation or conv).register_forward_hook(hook)
    index = torch.as_tensor(filters, device=run.device)

    def objective(x):
        try:
            run.network(run.preprocess(x))
        except _Reached:
            pass
        return captured["out"][torch.arange(len(filters), device=run.device), index].mean(dim=(1, 2))

    try:
        return synthesize_inputs(
            objective, (len(filters), *shape), network=run.network, steps=steps, seed=seed, device=run.device
        )
    finally:
        handle.remove()


def _kernel_image(weight: torch.Tensor) -> np.ndarray:
    """(C_in, k, k) kernel -> its input planes side by side, separated by a blank column."""
    planes = [plane.numpy() for plane in weight]
    gap = np.full((weight.shape[1], 1), np.nan)
    return np.concatenate([part for plane in planes for part in (plane, gap)][:-1], axis=1)


def draw_filters(args: argparse.Namespace) -> list[Path]:
    """Fig. 4.9: inputs maximising filters of the first and last convolutions; first-layer kernels."""
    run, dataset = load_run(args.checkpoint, data_dir=args.data_dir, device=args.device)
    _need_images(run, "filters")
    convs = [(name, m) for name, m in run.network.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise RoutemixError(f"{run.checkpoint}: the {run.method} network has no convolutional layer to visualise.")
    channels, height, width = dataset.data.shape[1:]
    shape = (_synthesis_channels(run, channels), height, width)
    layers = [("first", *convs[0])] + ([("last", *convs[-1])] if len(convs) > 1 else [])
    chosen = {tag: _evenly_spaced(conv.out_channels, args.filters) for tag, _, conv in layers}
    columns = max(len(v) for v in chosen.values())
    fig, axes = new_figure(
        len(layers) + 1, columns, figsize=(1.5 * columns + 1.6, 1.75 * (len(layers) + 1) + 1.0), squeeze=False
    )
    # raw first-layer kernels, one input plane after another (Sobel: d/dx, d/dy)
    name, conv = convs[0]
    for col, f in enumerate(chosen["first"]):
        kernel = conv.weight[f].detach().float().cpu()
        bound = float(kernel.abs().max()) or 1.0
        ax = axes[0, col]
        ax.imshow(_kernel_image(kernel), cmap="RdBu_r", vmin=-bound, vmax=bound)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"filter {f}", fontsize=8, pad=2)
    planes = {1: "", 2: "\n(d/dx | d/dy)" if shape[0] == 1 else "\n(2 input planes)"}.get(
        conv.in_channels, f"\n({conv.in_channels} input planes)"
    )
    axes[0, 0].set_ylabel(f"(a) first conv\nkernels{planes}", fontsize=8, rotation=0, ha="right", va="center")
    for row, (tag, name, conv) in enumerate(layers, start=1):
        images = _maximise_filters(run, conv, chosen[tag], shape, args.steps, args.seed)
        for col, f in enumerate(chosen[tag]):
            _show_image(axes[row, col], images[col], stretch=True)
            axes[row, col].set_title(f"filter {f}", fontsize=8, pad=2)
        label = "(a) first" if tag == "first" else "(b) last"
        axes[row, 0].set_ylabel(
            f"{label} conv\n{name}\nmaximising input", fontsize=8, rotation=0, ha="right", va="center"
        )
        for ax in axes[row, len(chosen[tag]) :]:
            ax.set_visible(False)
    for ax in axes[0, len(chosen["first"]) :]:
        ax.set_visible(False)
    fig.suptitle(f"Convolutional filters of the clustering network, {dataset.name} (thesis Fig. 4.9)", fontsize=11)
    caption = (
        "Row 1: raw first-layer kernels (red +, blue -). "
        f"Rows 2-3: inputs maximising each filter's mean activation (after its ReLU), {args.steps} steps of "
        f"gradient ascent (L2 + blur + clip, contrast stretched). {run.describe(dataset)}."
    )
    return save_figure(fig, args.out / "filters", caption, args.formats)


# --- curves: Fig. 4.6 -----------------------------------------------------------------------------


def read_curves(run_dir: Path) -> dict[str, dict[int, float]]:
    """Per-epoch values of every logged metric of ``run_dir/logs/version_*/metrics.csv``; later
    versions (resumed runs) override the epochs they repeat."""
    versions = sorted(
        (run_dir / "logs").glob("version_*/metrics.csv"),
        key=lambda p: int(p.parent.name.split("_")[-1]) if p.parent.name.split("_")[-1].isdigit() else -1,
    )
    curves: dict[str, dict[int, float]] = {}
    for path in versions:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                epoch = row.get("epoch")
                if epoch in (None, ""):
                    continue
                for key, value in row.items():
                    if key not in ("epoch", "step") and value not in (None, ""):
                        curves.setdefault(key, {})[int(float(epoch))] = float(value)
    return curves


def _curves_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="RUN",
        help="more run directories drawn on the same axes (e.g. an IIC and an NMM-EM run, as in Fig. 4.6)",
    )


def _run_curves(path: str | Path) -> tuple[Path, str, dict]:
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    if not run_dir.is_dir():
        raise RoutemixError(f"no run directory at {run_dir}.")
    config = run_config_if_any(run_dir)
    if "method" not in config:
        raise RoutemixError(f"{run_dir} is not a `routemix cluster` run directory (no config.json naming its method).")
    curves = read_curves(run_dir)
    if not curves:
        raise RoutemixError(
            f"{run_dir} has no per-epoch log (logs/version_N/metrics.csv): "
            "only NMM-EM runs on image sets log learning curves; "
            f"this {config['method']} run on {config.get('dataset')} went through the estimator "
            "and recorded its final scores only (metrics.json)."
        )
    return run_dir, f"{config['method']} ({run_dir.name})", curves


def draw_curves(args: argparse.Namespace) -> list[Path]:
    """Fig. 4.6: validation ACC and NMI and the training losses per epoch."""
    from matplotlib.ticker import MaxNLocator

    runs = [_run_curves(args.checkpoint)] + [_run_curves(other) for other in args.compare]
    keys = set().union(*(curves for _, _, curves in runs))
    panels = [(key, label) for key, label in (("val/acc", "ACC"), ("val/nmi", "NMI")) if key in keys]
    losses = sorted(key for key in keys if key.startswith("train/"))
    count = len(panels) + (1 if losses else 0)
    fig, axes = new_figure(1, count, figsize=(4.8 * count + 0.4, 4.2), squeeze=False)
    axes = axes[0]
    colors = cluster_colors(max(len(runs), 1))
    styles = ["-", "--", ":", "-."]
    for ax, (key, label) in zip(axes, panels):
        for color, (_, name, curves) in zip(colors, runs):
            if key in curves:
                epochs = sorted(curves[key])
                ax.plot(
                    [e + 1 for e in epochs],
                    [curves[key][e] for e in epochs],
                    color=color,
                    marker="o" if len(epochs) < 30 else None,
                    ms=3,
                    label=name,
                )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"validation {label}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if losses:
        ax = axes[-1]
        for color, (_, name, curves) in zip(colors, runs):
            for style, key in zip(styles * 4, losses):
                if key in curves:
                    epochs = sorted(curves[key])
                    ax.plot(
                        [e + 1 for e in epochs],
                        [curves[key][e] for e in epochs],
                        color=color,
                        ls=style,
                        marker="o" if len(epochs) < 30 else None,
                        ms=3,
                        label=f"{key.removeprefix('train/')}" + (f", {name}" if len(runs) > 1 else ""),
                    )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("training losses (epoch means)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Learning curves (thesis Fig. 4.6)", fontsize=12)
    missing = "" if panels else " The run has no labels, so no ACC/NMI."
    caption = f"Per-epoch metrics from logs/version_*/metrics.csv of {', '.join(str(r[0]) for r in runs)}.{missing}"
    return save_figure(fig, args.out / "curves", caption, args.formats)


# --- contact sheets: any run's clusters, from labels.csv ------------------------------------------


def _sheet_arguments(parser: argparse.ArgumentParser) -> None:
    _clusters_argument(parser, "clusters to draw, 0-based as in labels.csv (default: all)")
    parser.add_argument(
        "--per-cluster",
        type=_positive,
        default=64,
        help="images on each sheet, drawn at random from the cluster (default 64)",
    )
    _add_data_options(parser, seed="seed of the images drawn for each sheet", device=False)


def read_labels(run_dir: Path) -> tuple[np.ndarray, list[str] | None]:
    """The clusters of ``labels.csv`` in sample order, and the file of each sample for a folder of images."""
    path = run_dir / "labels.csv"
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        clusters = np.array([int(row[1]) for row in rows[1:]], dtype=np.int64)
    except (OSError, ValueError, IndexError):
        raise RoutemixError(
            f"{run_dir} holds no readable labels.csv: pass the run directory of a `routemix cluster` run."
        ) from None
    files = [row[0] for row in rows[1:]] if rows and rows[0][:1] == ["file"] else None
    return clusters, files


def draw_contact_sheets(args: argparse.Namespace) -> list[Path]:
    """One sheet per cluster: a grid of images drawn at random from the cluster, for any method's
    run on images (a folder of the user's own, or an image set), read from its labels.csv."""
    path = Path(args.checkpoint)
    run_dir = path if path.is_dir() else path.parent
    config = run_config_if_any(run_dir)
    if "dataset" not in config:
        raise RoutemixError(f"{run_dir} is not a `routemix cluster` run directory (no config.json naming its data).")
    labels, files = read_labels(run_dir)
    dataset = _load_run_data(config, args.data_dir)
    if dataset.kind != "image":
        raise RoutemixError(f"contact sheets show images; {run_dir} clustered vector data ({config['dataset']}).")
    if len(labels) != len(dataset) or (files is not None and files != dataset.files):
        raise RoutemixError(
            f"{run_dir}/labels.csv names {len(labels)} samples, not the {len(dataset)} its data holds now: "
            "the data changed since the run."
        )
    k = int(labels.max()) + 1
    clusters = _check_clusters(args.clusters if args.clusters is not None else list(range(k)), k)
    rng = np.random.default_rng(args.seed)
    written = []
    for cluster in clusters:
        members = np.flatnonzero(labels == cluster)
        shown = np.sort(rng.choice(members, size=min(args.per_cluster, len(members)), replace=False))
        columns = max(1, int(np.ceil(np.sqrt(args.per_cluster))))
        rows = max(1, int(np.ceil(len(shown) / columns)))
        fig, axes = new_figure(rows, columns, figsize=(0.9 * columns + 0.4, 0.9 * rows + 1.0), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, index in zip(axes.flat, shown):
            _show_image(ax, dataset.data[index])
            ax.axis("on")
        fig.suptitle(
            f"cluster {cluster}: {len(members)} images"
            + (f", {len(shown)} drawn at random" if len(shown) < len(members) else ""),
            fontsize=11,
        )
        caption = (
            f"Images of cluster {cluster} in {run_dir / 'labels.csv'} "
            f"({config.get('method')} on {dataset.name}; seed {args.seed})."
        )
        written += save_figure(fig, args.out / f"contact-sheet-cluster-{cluster:02d}", caption, args.formats)
    return written


FIGURES: list[Figure] = [
    Figure(
        "cluster-density",
        "Fig. 4.4b/4.5: assignment map and density contours of an NMM-EM run on 2-D data",
        _density_arguments,
        draw_cluster_density,
    ),
    Figure(
        "tsne",
        "Fig. 4.7: t-SNE of the network response before softmax, by cluster and by label",
        _tsne_arguments,
        draw_tsne,
    ),
    Figure(
        "cluster-top",
        "Fig. 4.8: top images per cluster and an input synthesised for the cluster's neuron",
        _top_arguments,
        draw_cluster_top,
    ),
    Figure(
        "filters",
        "Fig. 4.9: first and last convolutional filters by gradient ascent; first-layer kernels",
        _filters_arguments,
        draw_filters,
    ),
    Figure(
        "curves",
        "Fig. 4.6: learning curves (ACC, NMI, losses per epoch) of clustering runs",
        _curves_arguments,
        draw_curves,
    ),
    Figure(
        "contact-sheets",
        "one sheet of images per cluster, for any method's run on images (from its labels.csv)",
        _sheet_arguments,
        draw_contact_sheets,
    ),
]
