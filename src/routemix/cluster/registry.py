"""Every clustering method by name: ``make_estimator("ddc", n_clusters=10, ...)``.

The deep methods are routemix estimators (:class:`~routemix.cluster.base.DeepClusterer` and
:class:`~routemix.cluster.NMMClustering`); the baselines are scikit-learn's own estimators on
the raw input, built with the settings below so that every table measures the same thing:

* ``kmeans``: ``KMeans(n_init=10)``, the usual restarts.
* ``gmm``: ``GaussianMixture`` with full covariances up to 100 features and diagonal ones beyond
  (a full 784 x 784 covariance per component costs about 10 s per EM iteration on MNIST on two
  cores and is singular on the constant border pixels), ``n_init=1``.
* ``spectral``: ``SpectralClustering`` on the symmetrised 10-nearest-neighbour graph (a dense
  RBF affinity of MNIST would take 39 GB) with the ``cluster_qr`` label assignment, which has no
  random restarts to tune, and the LOBPCG eigensolver: scikit-learn's default ARPACK factorises
  the shifted graph Laplacian, which on all 70,000 MNIST images ran over 25 minutes with its
  memory past 12 GB and still growing, where LOBPCG took 215 s and 1.6 GB (ACC 0.667; Fashion-MNIST
  208 s against ARPACK's 459 s, ACC 0.506 against 0.509; digits the same 0.804).

All of them take ``fit_predict(X)`` on rows of features (flattened images for image sets).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from routemix.errors import unknown_name


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    deep: bool  # a neural method: takes image_shape, max_iter, device, verbose
    target: str  # "module:Class" of the deep estimator, or "" for a baseline


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "nmm",
            "neural mixture model trained with batch-wise EM (thesis ch. 4)",
            True,
            "routemix.cluster.nmm:NMMClustering",
        ),
        MethodSpec(
            "ddc", "deep divergence-based clustering (Kampffmeyer et al.)", True, "routemix.cluster.ddc:DDCClustering"
        ),
        MethodSpec(
            "edgam",
            "Gaussian mixture unfolded in an autoencoder (EDGaM)",
            True,
            "routemix.cluster.edgam:EDGaMClustering",
        ),
        MethodSpec(
            "moe", "mixture of VAE experts with a manager network (Santos)", True, "routemix.cluster.moe:MoEClustering"
        ),
        MethodSpec(
            "n2d",
            "autoencoder, UMAP of its embedding, Gaussian mixture (N2D, McConville et al.)",
            True,
            "routemix.cluster.n2d:N2DClustering",
        ),
        MethodSpec(
            "iic",
            "invariant information clustering, single head (thesis Table 4.3 setting)",
            True,
            "routemix.cluster.iic:IICClustering",
        ),
        MethodSpec("kmeans", "k-means on the raw input (scikit-learn, n_init=10)", False, ""),
        MethodSpec("gmm", "Gaussian mixture on the raw input (scikit-learn)", False, ""),
        MethodSpec("spectral", "spectral clustering of the 10-NN graph of the raw input (scikit-learn)", False, ""),
    )
}


def get_method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise unknown_name("method", name, METHODS, f"Known: {', '.join(METHODS)}.") from None


def estimator_class(name: str) -> type:
    """The estimator class of a deep method (imported on first use)."""
    spec = get_method(name)
    if not spec.deep:
        raise ValueError(f"{name} is a scikit-learn baseline, not a routemix estimator class.")
    module, _, cls = spec.target.partition(":")
    return getattr(importlib.import_module(module), cls)


def make_estimator(
    name: str,
    n_clusters: int,
    *,
    n_features: int,
    image_shape: tuple[int, int, int] | None = None,
    max_iter: int | None = None,
    random_state: int | None = 0,
    device: str = "cpu",
    verbose: bool = False,
    **params,
):
    """An unfitted estimator for method ``name``.

    ``n_features`` picks the GMM covariance; ``image_shape``, ``max_iter`` (``None``: the
    method's default), ``device`` and ``verbose`` apply to the deep methods, ``params`` are
    passed to the estimator as they are.
    """
    spec = get_method(name)
    if spec.deep:
        if max_iter is not None:
            params["max_iter"] = max_iter
        if image_shape is not None:
            params["image_shape"] = tuple(image_shape)
        return estimator_class(name)(n_clusters, random_state=random_state, device=device, verbose=verbose, **params)
    if name == "kmeans":
        from sklearn.cluster import KMeans

        return KMeans(n_clusters, n_init=10, random_state=random_state, **params)
    if name == "gmm":
        from sklearn.mixture import GaussianMixture

        params.setdefault("covariance_type", "full" if n_features <= 100 else "diag")
        return GaussianMixture(n_clusters, random_state=random_state, **params)
    from sklearn.cluster import SpectralClustering

    params = {
        "affinity": "nearest_neighbors",
        "n_neighbors": 10,
        "assign_labels": "cluster_qr",
        "eigen_solver": "lobpcg",
        **params,
    }
    return SpectralClustering(n_clusters, random_state=random_state, **params)
