"""NMM-EM on scikit-learn's digits: the estimator's defaults against the choices behind them.

Each variant is ``NMMClustering(n_clusters=10, random_state=seed, **overrides)`` on the raw
digits, over the same seeds, with k-means (``n_init=10``) on the same data beside it. The table
gives mean and standard deviation of ACC/NMI/ARI and seconds per fit.
"""

from __future__ import annotations

import time

from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

from routemix.bench import summarize
from routemix.metrics import clustering_scores

VARIANTS: dict[str, dict] = {
    "default": {},
    "gamma=3": {"gamma": 3.0},
    "n_init=3": {"n_init": 3},
    "gamma=3 n_init=3": {"gamma": 3.0, "n_init": 3},
    "EM only (eq. 4.23)": {"two_fold": False},
    "noise augmentation": {"augmentation": "noise", "augmentation_strength": 0.5},
    "running statistics": {"normalization": "running"},
    "priors": {"priors": True},
}


def run(seeds, variants=None, progress=True) -> list[dict]:
    from tqdm.auto import tqdm

    from routemix.cluster import NMMClustering

    X, y = load_digits(return_X_y=True)
    names = list(variants or VARIANTS)
    rows = []
    jobs = [(name, seed) for name in names for seed in seeds]
    results: dict[str, list] = {name: [] for name in names}
    for name, seed in tqdm(jobs, disable=not progress, desc="digits"):
        start = time.perf_counter()
        labels = NMMClustering(n_clusters=10, random_state=seed, **VARIANTS[name]).fit_predict(X)
        results[name].append({**clustering_scores(y, labels), "seconds": time.perf_counter() - start})
    kmeans = []
    for seed in seeds:
        start = time.perf_counter()
        labels = KMeans(10, n_init=10, random_state=seed).fit_predict(X)
        kmeans.append({**clustering_scores(y, labels), "seconds": time.perf_counter() - start})
    results["k-means"] = kmeans
    for name, runs in results.items():
        row = {"variant": name, "settings": VARIANTS.get(name, {}), "seeds": list(seeds), **summarize(runs)}
        row["acc_per_seed"] = [round(r["acc"], 4) for r in runs]
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| variant | ACC | NMI | ARI | s/fit | ACC per seed |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['acc']:.3f} ± {r['acc_std']:.3f} | {r['nmi']:.3f} ± {r['nmi_std']:.3f} | "
            f"{r['ari']:.3f} ± {r['ari_std']:.3f} | {r['seconds']:.1f} | "
            f"{', '.join(f'{a:.3f}' for a in r['acc_per_seed'])} |"
        )
    return "\n".join(lines)
