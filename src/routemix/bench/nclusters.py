"""How many clusters: NMM-EM's estimates against HDBSCAN's and the X-means family.

For each dataset (the true number of classes K known) and seed, each of ``METHODS``:

* **NMM-EM, auto** (``nmm-auto``): ``NMMClustering(n_clusters="auto")``, a fit for every K up
  to ``max_clusters`` (the estimator's default, 15), the K chosen by modularity against a Gaussian null
  (:mod:`routemix.cluster.nclusters`); the estimate is ``n_clusters_``. The upper bound is the
  same for every set, not a multiple of the true K.
* **NMM-EM with the true K** (``nmm-true``), for the accuracy an estimate could reach.
* **X-means, G-means, Dip-means** (``xmeans``, ``gmeans``, ``dipmeans``): ClustPy's
  implementations at their defaults on the input the NMM-EM network sees (standardised vectors,
  pixels in [0, 1]; the embedding under an ``embed`` budget); they need
  ``pip install routemix[baselines]``.
* **NMM-EM** (:class:`~routemix.cluster.NMMClustering`) starts with an upper bound of
  ``bound_factor * K`` output neurons, priors on (eq. 4.18), and drops every cluster whose running
  share of won samples falls below ``drop_factor / bound`` (``drop_threshold`` of
  :class:`~routemix.losses.NMMLoss`); its estimate is ``n_clusters_found_``, the clusters that
  win at least one sample.
* **HDBSCAN** as in the MoE thesis' pre-training (sec. 3.3 / 4.4 there;
  :mod:`routemix.cluster.moe_pretrain`): codes, the latent-size finder (PCA, 90% of the
  variance), UMAP of the codes (Manhattan, eq. 3.6 neighbours) into that many components, then
  HDBSCAN (``min_cluster_size = N/50``, leaf selection); its estimate is the number of clusters
  it finds (noise excluded). The thesis' codes are the posterior means of a trained VAE; here
  they are the principal components of the (scaled) input at 90% of the variance, so no
  network is trained (a linear auto-encoder in place of the VAE: cheaper, and the same for
  every seed but UMAP's). The 2-D sets are embedded as they are. For ACC/NMI every noise
  point takes the cluster of its nearest clustered neighbour in the embedding; the share of
  noise points is reported beside.

Results are appended to ``out/results.json`` as each fit finishes (a rerun with the same ``out``
continues); a budget is part of each result, and rows of different budgets are never mixed; nor are
NMM-EM rows made under other NMM-EM defaults (:func:`nmm_defaults`), which a rerun fits again.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from routemix.cluster.config import DEFAULT_MAX_CLUSTERS
from routemix.errors import RoutemixError

DATASETS = ("digits", "mnist", "fashion_mnist", "blobs", "moons", "rings")
METHODS = ("nmm-auto", "nmm-true", "nmm", "hdbscan", "xmeans", "gmeans", "dipmeans")
METHOD_NAMES = {
    "nmm-auto": "NMM-EM, auto",
    "nmm-true": "NMM-EM, true K",
    "nmm": "NMM-EM, dropping",
    "xmeans": "X-means (ClustPy)",
    "gmeans": "G-means (ClustPy)",
    "dipmeans": "Dip-means (ClustPy)",
}
CLUSTPY_METHODS = {"xmeans": "XMeans", "gmeans": "GMeans", "dipmeans": "DipMeans"}
# NMM-EM drops a cluster whose running share of won samples falls below DROP_FACTOR / bound,
# i.e. below 80% of a uniform share: the setting that recovered 3 of 3 blobs from a bound of 6.
DEFAULT_BOUND_FACTOR = 2.0
DEFAULT_DROP_FACTOR = 0.8
EXPLAINED_VARIANCE = 0.9  # the MoE thesis' latent-size finder (sec. 3.3.1)


@dataclass(frozen=True)
class Budget:
    """``limit``: the first samples of the set (``None``: all); ``epochs``: NMM-EM epochs
    (``None``: the estimator's default); ``embed``: every method clusters the UMAP embedding that
    HDBSCAN clusters (:func:`embedding`) instead of the input (NMM-EM with its MLP)."""

    limit: int | None = None
    epochs: int | None = None
    embed: bool = False

    def key(self) -> str:
        fields = asdict(self)
        if not self.embed:  # as before embed existed, so earlier results still match
            del fields["embed"]
        return json.dumps(fields, sort_keys=True)


# cpu: measured on 2 shared cores. On images NMM-EM's CNN costs about 100 s per epoch of 10,000
# images, and nmm-auto fits it 14 times, so the image sets get their first 10,000 images and
# every method clusters the UMAP embedding HDBSCAN gets (NMM-EM's MLP 20 epochs: ACC 0.91 on MNIST
# with K = 10 given; ClustPy's X-means and G-means on the pixels found 128-302 clusters); the 2-D
# sets' small MLP 50 epochs instead of 200.
BUDGETS: dict[str, dict[str, Budget]] = {
    "cpu": {
        "digits": Budget(),
        "mnist": Budget(limit=10_000, epochs=20, embed=True),
        "fashion_mnist": Budget(limit=10_000, epochs=20, embed=True),
        "blobs": Budget(epochs=50),
        "moons": Budget(epochs=50),
        "rings": Budget(epochs=50),
    },
    "full": {},
}
# cpu-all: the image sets whole (70,000 images), as the cpu budget otherwise, but for 3 epochs: about
# the mini-batch steps of 20 epochs of 10,000 images (NMM-EM with K = 10 given, seed 0: ACC 0.95 on
# MNIST, ~1 minute a fit on a shared core)
BUDGETS["cpu-all"] = {
    **BUDGETS["cpu"],
    "mnist": Budget(epochs=3, embed=True),
    "fashion_mnist": Budget(epochs=3, embed=True),
}


def budget_for(budget: str, dataset: str) -> Budget:
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; available: {', '.join(BUDGETS)}.")
    return BUDGETS[budget].get(dataset, Budget())


@dataclass(frozen=True)
class Settings:
    """What both methods are run with, beside the dataset and seed (part of each result)."""

    bound_factor: float = DEFAULT_BOUND_FACTOR
    drop_factor: float = DEFAULT_DROP_FACTOR
    max_clusters: int = DEFAULT_MAX_CLUSTERS  # nmm-auto's upper bound

    def __post_init__(self) -> None:
        if not self.bound_factor >= 1.0:
            raise ValueError(f"the bound factor must be at least 1 (n_clusters >= true K), got {self.bound_factor}.")
        if self.max_clusters < 2:
            raise ValueError(f"the largest K considered must be at least 2, got {self.max_clusters}.")
        if not 0.0 < self.drop_factor < 1.0:
            raise ValueError(f"the drop factor must be in (0, 1) (a share of 1/bound), got {self.drop_factor}.")

    def bound(self, true_k: int) -> int:
        return int(round(self.bound_factor * true_k))


def load(dataset: str, budget: Budget, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """Rows ``X`` (pixels / 255 for images), labels, and the image shape (``None`` for vectors)."""
    from routemix.data import load_dataset

    data = load_dataset(dataset, data_dir=data_dir)
    x, labels = data.data, np.asarray(data.labels)
    if budget.limit is not None:
        x, labels = x[: budget.limit], labels[: budget.limit]
    image_shape = tuple(x.shape[1:]) if data.kind == "image" else None
    rows = x.reshape(len(x), -1).numpy()
    rows = rows.astype(np.float32) / 255.0 if data.kind == "image" else rows.astype(np.float64)
    return rows, labels, image_shape


def nmm_defaults() -> str:
    """The NMM-EM defaults that shape the NMM rows beside the bench's budget and settings: the
    estimator's parameters, the augmentations' strengths and the count's tolerance and neighbours,
    as JSON. Each NMM row records them, and a rerun into an old ``out`` fits again the rows made
    under other defaults instead of mixing them (the tolerance and the 2-D noise changed after
    rows had been written)."""
    from routemix.cluster import NMMClustering
    from routemix.cluster.nclusters import DEFAULT_NEIGHBOURS, DEFAULT_TOLERANCE
    from routemix.data.transforms import DEFAULT_STRENGTH

    defaults = {
        "estimator": NMMClustering().get_params(),
        "augmentation_strength": DEFAULT_STRENGTH,
        "tolerance": DEFAULT_TOLERANCE,
        "neighbours": DEFAULT_NEIGHBOURS,
    }
    return json.dumps(defaults, sort_keys=True, default=str)


def fitted_nmm(X: np.ndarray, image_shape, epochs: int | None, seed: int, device: str, **params):
    """``NMMClustering`` fitted to ``X`` with the bench's seed, device and epochs (``None``: the
    estimator's default) and ``params``."""
    from routemix.cluster import NMMClustering

    if epochs is not None:
        params["max_iter"] = epochs
    return NMMClustering(image_shape=image_shape, random_state=seed, device=device, **params).fit(X)


def nmm_estimate(
    X: np.ndarray, image_shape, bound: int, drop_factor: float, epochs: int | None, seed: int, device: str = "cpu"
) -> dict:
    """NMM-EM from ``bound`` clusters with dropping; labels and the clusters found and alive."""
    estimator = fitted_nmm(
        X, image_shape, epochs, seed, device, n_clusters=bound, priors=True, drop_threshold=drop_factor / bound
    )
    return {
        "labels": estimator.labels_,
        "k": estimator.n_clusters_found_,
        "alive": estimator.n_clusters_alive_,
        "epochs": estimator.n_iter_,
    }


def nmm_fit(
    X: np.ndarray,
    image_shape,
    n_clusters,
    epochs: int | None,
    seed: int,
    device: str = "cpu",
    max_clusters: int = DEFAULT_MAX_CLUSTERS,
) -> dict:
    """NMM-EM with ``n_clusters`` given (a number) or ``"auto"``; labels, the K it used, and for
    ``"auto"`` the scores of every K (``cluster_count_scores_``)."""
    estimator = fitted_nmm(X, image_shape, epochs, seed, device, n_clusters=n_clusters, max_clusters=max_clusters)
    found = {"labels": estimator.labels_, "k": int(estimator.n_clusters_), "epochs": estimator.n_iter_}
    if estimator.cluster_count_scores_ is not None:
        found["scores"] = estimator.cluster_count_scores_
    return found


def clustpy_estimate(X: np.ndarray, image_shape, method: str, seed: int) -> dict:
    """ClustPy's X-means, G-means or Dip-means at its defaults on the input NMM-EM's network sees."""
    try:
        import clustpy.centroid as centroid
    except ImportError:
        raise RoutemixError(f"{method} is ClustPy's: pip install 'routemix[baselines]' (or clustpy) first.") from None
    from sklearn.preprocessing import StandardScaler

    scaled = X if image_shape is not None else StandardScaler().fit_transform(X)
    estimator = getattr(centroid, CLUSTPY_METHODS[method])(random_state=seed).fit(scaled)
    return {"labels": np.asarray(estimator.labels_), "k": int(estimator.n_clusters_)}


def pca_codes(X: np.ndarray, image_shape) -> np.ndarray:
    """The stand-in for the VAE codes: principal components of the scaled input that explain
    90% of its variance (the MoE thesis' latent-size finder); 2-D sets as they are."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    from routemix.cluster.moe_pretrain import latent_size_for_variance

    scaled = X.astype(np.float64) if image_shape is not None else StandardScaler().fit_transform(X)
    if scaled.shape[1] <= 2:
        return scaled
    return PCA(n_components=latent_size_for_variance(scaled, EXPLAINED_VARIANCE), svd_solver="full").fit_transform(
        scaled
    )


# the latest (dataset, budget, seed)'s embedding and the seconds it took, shared by its methods
_EMBEDDINGS: dict[tuple, tuple[np.ndarray, float]] = {}


def embedding(
    X: np.ndarray, image_shape, seed: int, key: tuple | None = None, cache_dir: Path | None = None
) -> tuple[np.ndarray, float]:
    """The MoE thesis' step 4: UMAP (:func:`routemix.cluster.moe_pretrain.umap_embedding`) of
    :func:`pca_codes` into as many components, and the seconds it took. ``key`` (dataset, sample
    limit, seed: what the embedding depends on, not the epochs) names the data and seed, so that the
    methods run one after another on them compute it once; with ``cache_dir`` it is also kept there
    (``embedding-<dataset>-seed<seed>-<hash>.npz``), so a rerun or a killed run does not compute it
    again (70,000 images: 7 minutes on a shared core)."""
    from routemix.cluster.moe_pretrain import umap_embedding
    from routemix.storage import write_arrays

    if key is not None and key in _EMBEDDINGS:
        return _EMBEDDINGS[key]
    file = None
    if key is not None and cache_dir is not None:
        digest = hashlib.sha1(repr(key).encode()).hexdigest()[:10]
        file = Path(cache_dir) / f"embedding-{key[0]}-seed{key[-1]}-{digest}.npz"
    if file is not None and file.is_file():
        with np.load(file) as stored:
            found = stored["embedding"], float(stored["seconds"])
    else:
        start = time.perf_counter()
        codes = pca_codes(X, image_shape)
        found = umap_embedding(codes, codes.shape[1], seed), time.perf_counter() - start
        if file is not None:
            write_arrays(file, embedding=found[0], seconds=np.float64(found[1]))
    if key is not None:
        _EMBEDDINGS.clear()
        _EMBEDDINGS[key] = found
    return found


def hdbscan_estimate(embedded: np.ndarray) -> dict:
    """The MoE thesis' step 5 (HDBSCAN) on the :func:`embedding`; noise points take their nearest
    clustered neighbour's label in the embedding."""
    from sklearn.neighbors import KNeighborsClassifier

    from routemix.cluster.moe_pretrain import hdbscan_labels

    labels = hdbscan_labels(embedded)
    noise = labels < 0
    k = int(labels.max()) + 1
    if k == 0:  # everything is noise: one cluster
        labels = np.zeros(len(labels), dtype=int)
    elif noise.any():
        nearest = KNeighborsClassifier(n_neighbors=1).fit(embedded[~noise], labels[~noise])
        labels = labels.copy()
        labels[noise] = nearest.predict(embedded[noise])
    return {"labels": labels, "k": k, "noise": float(noise.mean())}


def fit_one(
    dataset: str,
    method: str,
    seed: int,
    budget: Budget,
    settings: Settings,
    data_dir: str | None = None,
    device: str = "cpu",
    cache_dir: Path | None = None,
) -> dict:
    """One (dataset, method, seed): its estimate of K, ACC/NMI/ARI and seconds; the UMAP embedding
    is kept in ``cache_dir`` when given (:func:`embedding`)."""
    from routemix.metrics import clustering_scores

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; available: {', '.join(METHODS)}.")
    X, y, image_shape = load(dataset, budget, data_dir)
    true_k = int(len(np.unique(y)))
    extra = {}
    if method == "hdbscan" or budget.embed:
        # with embed, computed once for the methods of one (dataset, seed), outside their seconds
        embedded, embed_seconds = embedding(X, image_shape, seed, (dataset, budget.limit, seed), cache_dir)
        extra["embedding_seconds"] = embed_seconds
        if budget.embed:  # every method clusters it
            X, image_shape = embedded, None
    start = time.perf_counter()
    if method == "hdbscan":
        found = hdbscan_estimate(embedded)
    elif method == "nmm":
        found = nmm_estimate(X, image_shape, settings.bound(true_k), settings.drop_factor, budget.epochs, seed, device)
    elif method == "nmm-auto":
        found = nmm_fit(X, image_shape, "auto", budget.epochs, seed, device, max_clusters=settings.max_clusters)
    elif method == "nmm-true":
        found = nmm_fit(X, image_shape, true_k, budget.epochs, seed, device)
    else:
        found = clustpy_estimate(X, image_shape, method, seed)
    seconds = time.perf_counter() - start
    labels = found.pop("labels")
    return {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "budget": budget.key(),
        "settings": json.dumps(asdict(settings), sort_keys=True),
        "n_samples": len(X),
        "true_k": true_k,
        "bound": {"nmm": settings.bound(true_k), "nmm-auto": settings.max_clusters}.get(method),
        **({"defaults": nmm_defaults()} if method.startswith("nmm") else {}),
        **found,
        **clustering_scores(y, labels),
        "seconds": seconds,
        **extra,
    }


def run(
    datasets=DATASETS,
    methods=METHODS,
    seeds=(0, 1, 2),
    *,
    budget: str = "cpu",
    settings: Settings = Settings(),
    data_dir: str | None = None,
    device: str = "cpu",
    out: str | None = None,
    progress: bool = True,
) -> list[dict]:
    """Every (dataset, method, seed) not yet in ``out/results.json``; returns all matching results."""
    from tqdm.auto import tqdm

    from routemix.storage import write_json

    path = Path(out) / "results.json" if out else None
    done: list[dict] = json.loads(path.read_text()) if path is not None and path.is_file() else []
    budgets = {d: budget_for(budget, d) for d in datasets}
    setting = json.dumps(asdict(settings), sort_keys=True)
    defaults = nmm_defaults()

    def asked(r: dict) -> bool:
        return (
            r["dataset"] in budgets
            and r["budget"] == budgets[r["dataset"]].key()
            and r["settings"] == setting
            and r["method"] in methods
            and r["seed"] in seeds
        )

    def matches(r: dict) -> bool:
        return asked(r) and (not r["method"].startswith("nmm") or r.get("defaults") == defaults)

    stale = sum(asked(r) and not matches(r) for r in done)
    if stale:
        notice = f"{stale} NMM-EM result(s) in {path} were made under other NMM-EM defaults: fitting them again."
        print(notice, file=sys.stderr)
    have = {(r["dataset"], r["method"], r["seed"]) for r in done if matches(r)}
    jobs = [(d, m, s) for d in datasets for s in seeds for m in methods if (d, m, s) not in have]
    bar = tqdm(jobs, desc="nclusters", disable=not progress)
    for dataset, method, seed in bar:
        bar.set_postfix_str(f"{dataset} {method} seed {seed}")
        done.append(
            fit_one(
                dataset,
                method,
                seed,
                budgets[dataset],
                settings,
                data_dir,
                device,
                cache_dir=path.parent if path else None,
            )
        )
        if path is not None:
            write_json(path, done)
    return [r for r in done if matches(r)]


def summarize(results: list[dict]) -> list[dict]:
    """One row per (dataset, method) in run order: estimated K and scores, mean and std over seeds."""
    from routemix.bench import summarize as mean_and_std

    rows = []
    for dataset, method in dict.fromkeys((r["dataset"], r["method"]) for r in results):
        runs = [r for r in results if r["dataset"] == dataset and r["method"] == method]
        k = np.array([r["k"] for r in runs], dtype=float)
        rows.append(
            {
                "dataset": dataset,
                "method": method,
                "seeds": len(runs),
                "n_samples": runs[0]["n_samples"],
                "true_k": runs[0]["true_k"],
                "bound": runs[0]["bound"],
                "k": float(k.mean()),
                "k_std": float(k.std()),
                "k_each": [r["k"] for r in runs],
                "k_exact": sum(r["k"] == r["true_k"] for r in runs),
                "noise": float(np.mean([r["noise"] for r in runs])) if "noise" in runs[0] else None,
                # s/fit: with the UMAP embedding for the methods that cluster it
                **mean_and_std([{**r, "seconds": r["seconds"] + r.get("embedding_seconds", 0.0)} for r in runs]),
            }
        )
    return rows


def format_markdown(rows: list[dict]) -> str:
    lines = [
        "| dataset | n | true K | method | start K | estimated K | per seed | ACC | NMI | s/fit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        method = METHOD_NAMES.get(r["method"]) or f"UMAP + HDBSCAN (noise {100 * r['noise']:.0f}%)"
        lines.append(
            f"| {r['dataset']} | {r['n_samples']} | {r['true_k']} | {method} | {r['bound'] or '-'} | "
            f"{r['k']:.1f} ± {r['k_std']:.1f} | {', '.join(map(str, r['k_each']))} | "
            f"{r['acc']:.3f} ± {r['acc_std']:.3f} | "
            f"{r['nmi']:.3f} ± {r['nmi_std']:.3f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def draw_scores(results: list[dict], path) -> list[Path]:
    """One panel per dataset with ``nmm-auto`` results: each seed's modularity of NMM-EM's partition
    for every K (solid) and the Gaussian null's (dashed), the K chosen (dot) and the true K
    (vertical line). The files written (PNG and SVG); none without such results."""
    from routemix.viz.common import new_figure, save_figure

    runs = [r for r in results if r["method"] == "nmm-auto" and "scores" in r]
    datasets = list(dict.fromkeys(r["dataset"] for r in runs))
    if not datasets:
        return []
    fig, axes = new_figure(1, len(datasets), figsize=(3.2 * len(datasets), 3.0), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for index, run in enumerate(r for r in runs if r["dataset"] == dataset):
            scores, colour = run["scores"], f"C{index}"
            ax.plot(scores["n_clusters"], scores["modularity"], color=colour, label=f"seed {run['seed']}")
            ax.plot(scores["n_clusters"], scores["null_modularity"], color=colour, linestyle="--", linewidth=0.8)
            chosen = scores["n_clusters"].index(scores["chosen"])
            ax.plot(scores["chosen"], scores["modularity"][chosen], "o", color=colour)
        ax.axvline(run["true_k"], color="0.5", linewidth=0.8)
        ax.set(title=dataset, xlabel="K", ylabel="modularity")
        ax.legend(fontsize=7)
    caption = (
        "NMM-EM's partition for each K (solid) and k-means' K pieces of a Gaussian null (dashed); "
        "dot: the K chosen; grey line: the true K"
    )
    return save_figure(fig, path, caption)
