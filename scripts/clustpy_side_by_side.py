"""ClustPy's deep clustering methods at their defaults, for the side-by-side with routemix (issue 20).

What it measures
----------------
For one dataset, ClustPy's (https://github.com/collinleiber/ClustPy) DEC, IDEC, DCN and N2D, each
with ``n_clusters=10``, ``random_state=SEED`` and every other parameter at ClustPy's default: a
feed-forward auto-encoder d-500-500-2000-10 (LeakyReLU) pre-trained for 100 epochs (Adam, lr 1e-3,
batch 256, squared error summed over features), then DEC / IDEC / DCN train 150 clustering epochs (Adam, lr 1e-4) from a
k-means start; N2D runs its manifold step on the embedding (default: scikit-learn's t-SNE with
``n_components=n_clusters``) and a Gaussian mixture. Each fit is timed (wall clock of ``fit``,
data loading and scoring excluded) and scored against the labels with ACC (Hungarian matching,
``scipy.optimize.linear_sum_assignment``), NMI and ARI (scikit-learn, NMI with its default
arithmetic normalisation, as ``routemix.metrics``).

ClustPy 0.0.3's N2D does not run at its defaults: it sets t-SNE's ``n_components`` to
``n_clusters`` (10) and scikit-learn's default Barnes-Hut t-SNE only allows 1-3 components
(``ValueError: 'n_components' should be inferior to 4 for the barnes_hut algorithm as it relies
on quad-tree or oct-tree.``), on any input. The script records that error as the N2D row and can
run three non-default N2D variants that use only N2D's documented ``manifold_class`` /
``manifold_params`` (their rows say exactly which parameters differ from the defaults):

- ``N2D-tsne2``: ``manifold_params={"n_components": 2}`` (t-SNE to 2-D, the form N2D's docstring shows);
- ``N2D-umap``: ``manifold_class=umap.UMAP, manifold_params={"n_components": 10, "n_neighbors": 20,
  "min_dist": 0.0}`` (the N2D paper's manifold step, as in its authors' code and routemix's N2D);
- ``N2D-tsne-exact``: ``manifold_params={"n_components": 10, "method": "exact"}`` (keeps 10
  components; exact t-SNE is quadratic in the number of samples, so digits only).

Data and preprocessing
----------------------
- ``digits``: ``sklearn.datasets.load_digits`` (1797 x 64, pixel values 0-16), divided by 16 so
  that pixels lie in [0, 1].
- ``fashion-mnist``: all 70,000 images (train then test) loaded by ClustPy's own loader,
  ``clustpy.data.load_fmnist(subset="all", return_X_y=True, downloads_path=DATA_DIR)``, which reads
  torchvision's layout (``DATA_DIR/FashionMNIST/raw``; the files are there, so nothing is
  fetched) and returns the images flattened to 784 float32 values in 0-255 (it does not scale).
  They are divided by 255, as ClustPy's own examples do (``X / 255.`` in the docstrings of
  ``clustpy.deep.neural_networks.ConvolutionalAutoencoder`` and ``clustpy.deep.get_dataloader``).
- ``--preprocessing raw`` skips the division (ClustPy's loaders as they come).

Results go to ``docs/results/clustpy-side-by-side-<dataset>-<date>.json`` (``--out`` to change),
rewritten after every fit so a stopped run keeps what finished. Progress: one log line per
phase on stdout, and ClustPy's own tqdm bars (one per training stage) on stderr.

Timing probe
------------
Where a default fit is too long for the machine (Fashion-MNIST on two shared cores), ``--probe
P,C`` runs every method with ``pretrain_epochs=P`` and ``clustering_epochs=C`` instead, records
the seconds of the auto-encoder's pre-training (measured around ClustPy's
``_AbstractNeuralNetwork.fit``) and of the rest, and writes the extrapolation to the default 100
+ 150 epochs. Probe rows are marked ``"probe": true``; their scores are of the short fit, not of
the defaults.

Commands run on 2026-12-07 (ClustPy lives in its own venv, so routemix's environment is unchanged;
pip took torch 2.14.1 and torchvision 0.29.1 from the registry as ClustPy's dependencies)::

    python3 -m venv /tmp/clustpy-venv
    /tmp/clustpy-venv/bin/pip install clustpy==0.0.3 umap-learn
    cd /work/main
    # digits, seed 0 (every method and variant; stopped after seed 1's IDEC), then seeds 1-2 appended
    OMP_NUM_THREADS=1 /tmp/clustpy-venv/bin/python scripts/clustpy_side_by_side.py digits \
        --methods DEC,IDEC,DCN,N2D,N2D-tsne2,N2D-umap,N2D-tsne-exact --seeds 0,1,2
    OMP_NUM_THREADS=1 /tmp/clustpy-venv/bin/python scripts/clustpy_side_by_side.py digits \
        --methods DCN,N2D-tsne2,N2D-umap --seeds 1 --append \
        --out docs/results/clustpy-side-by-side-digits-2026-12-07.json
    OMP_NUM_THREADS=1 /tmp/clustpy-venv/bin/python scripts/clustpy_side_by_side.py digits \
        --methods DEC,IDEC,DCN,N2D-tsne2,N2D-umap --seeds 2 --append \
        --out docs/results/clustpy-side-by-side-digits-2026-12-07.json
    # Fashion-MNIST: timing probe of every method (2 + 2 epochs), then N2D-umap and DEC at the defaults
    OMP_NUM_THREADS=1 /tmp/clustpy-venv/bin/python scripts/clustpy_side_by_side.py fashion-mnist \
        --methods DEC,IDEC,DCN,N2D,N2D-umap --probe 2,2 \
        --out docs/results/clustpy-side-by-side-fashion-mnist-2026-12-07.json
    OMP_NUM_THREADS=1 /tmp/clustpy-venv/bin/python scripts/clustpy_side_by_side.py fashion-mnist \
        --methods N2D-umap,DEC --append --out docs/results/clustpy-side-by-side-fashion-mnist-2026-12-07.json
    # IDEC and DCN, side by side (11:55-13:45 UTC), each appending to a copy of the results file
    OMP_NUM_THREADS=1 nice -n 10 /tmp/clustpy-venv/bin/python scripts/clustpy_side_by_side.py fashion-mnist \
        --methods IDEC --seeds 0 --append --out /tmp/exp/clustpy-IDEC.json
    OMP_NUM_THREADS=1 nice -n 10 /tmp/clustpy-venv/bin/python scripts/clustpy_side_by_side.py fashion-mnist \
        --methods DCN --seeds 0 --append --out /tmp/exp/clustpy-DCN.json

(The probe first wrote to /tmp/exp/clustpy-probe-fashion-mnist.json and was copied to the
results file before the default fits were appended; the IDEC and DCN rows, and their runs' meta
under "runs", were merged from the two copies into the results file.)

The script needs only ClustPy and its dependencies (plus umap-learn for ``N2D-umap``); it does
not import routemix.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
import traceback
from pathlib import Path

# UMAP (N2D-umap) runs on numba, whose thread pool is sized by NUMBA_NUM_THREADS (default: every
# core), not OMP_NUM_THREADS. UMAP with a random_state computes on one thread anyway, but on
# 2026-12-07 the pool's second thread kept half a core busy after it, and DEC, fitted next in the
# same process, took 80-130 s per Fashion-MNIST pre-training epoch; restarted in a fresh process
# beside the same other jobs, 17 s. (On digits, fits after N2D-umap in one process took 3-4x as
# long.) One thread when OMP_NUM_THREADS says one.
if os.environ.get("OMP_NUM_THREADS"):
    os.environ.setdefault("NUMBA_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import numpy as np  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # noqa: E402

N_CLUSTERS = 10
DEFAULT_PRETRAIN_EPOCHS = 100  # ClustPy 0.0.3's default for DEC, IDEC, DCN and N2D
DEFAULT_CLUSTERING_EPOCHS = 150  # ClustPy 0.0.3's default for DEC, IDEC and DCN
METHODS = ("DEC", "IDEC", "DCN", "N2D", "N2D-tsne2", "N2D-umap", "N2D-tsne-exact")
REPO = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"[{dt.datetime.now().isoformat(timespec='seconds')}] {message}", flush=True)


def clustering_accuracy(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """Best one-to-one matching of clusters to classes (Hungarian), as a fraction of samples."""
    labels_true = np.asarray(labels_true).astype(np.int64).ravel()
    labels_pred = np.asarray(labels_pred).astype(np.int64).ravel()
    _, true_idx = np.unique(labels_true, return_inverse=True)
    _, pred_idx = np.unique(labels_pred, return_inverse=True)
    counts = np.zeros((pred_idx.max() + 1, true_idx.max() + 1), dtype=np.int64)
    np.add.at(counts, (pred_idx, true_idx), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / labels_true.size)


def load_dataset(name: str, data_dir: str, preprocessing: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Return (X float32, y int, a sentence saying what was done)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = X.astype(np.float32)
        note = "sklearn.datasets.load_digits (1797 x 64, values 0-16)"
        if preprocessing == "unit":
            X = X / 16.0
            note += ", divided by 16 to [0, 1]"
    elif name == "fashion-mnist":
        from clustpy.data import load_fmnist

        X, y = load_fmnist(subset="all", return_X_y=True, downloads_path=data_dir)
        X = X.astype(np.float32)
        note = (
            f"clustpy.data.load_fmnist(subset='all', downloads_path={data_dir!r}): "
            "60,000 train + 10,000 test images flattened to 784, values 0-255"
        )
        if preprocessing == "unit":
            X = X / 255.0
            note += ", divided by 255 to [0, 1] (as ClustPy's examples)"
    else:
        raise ValueError(f"unknown dataset {name!r}")
    if preprocessing == "raw":
        note += ", not scaled"
    return np.ascontiguousarray(X, dtype=np.float32), np.asarray(y).astype(np.int64), note


def build(method: str, seed: int, probe: tuple[int, int] | None) -> tuple[object, dict]:
    """The ClustPy estimator and the parameters it gets besides n_clusters and random_state."""
    from clustpy.deep import DCN, DEC, IDEC, N2D

    params: dict = {}
    if probe is not None:
        params["pretrain_epochs"] = probe[0]
        if method in ("DEC", "IDEC", "DCN"):
            params["clustering_epochs"] = probe[1]
    if method == "N2D-tsne2":
        params["manifold_params"] = {"n_components": 2}
    elif method == "N2D-tsne-exact":
        params["manifold_params"] = {"n_components": N_CLUSTERS, "method": "exact"}
    elif method == "N2D-umap":
        import umap

        params["manifold_class"] = umap.UMAP
        params["manifold_params"] = {"n_components": N_CLUSTERS, "n_neighbors": 20, "min_dist": 0.0}
    cls = {"DEC": DEC, "IDEC": IDEC, "DCN": DCN}.get(method, N2D)
    estimator = cls(n_clusters=N_CLUSTERS, random_state=seed, **params)
    shown = {k: (f"{v.__module__}.{v.__qualname__}" if isinstance(v, type) else v) for k, v in params.items()}
    return estimator, shown


class PretrainTimer:
    """Adds up the seconds spent in ClustPy's auto-encoder training (``_AbstractNeuralNetwork.fit``).

    Wraps the method without changing what it does, so a fit's time can be split into
    pre-training and the rest (clustering epochs, k-means start, manifold step).
    """

    def __init__(self) -> None:
        from clustpy.deep.neural_networks import _abstract_neural_network as ann

        self.seconds = 0.0
        original = ann._AbstractNeuralNetwork.fit
        timer = self

        def timed_fit(nn_self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(nn_self, *args, **kwargs)
            finally:
                timer.seconds += time.perf_counter() - start

        ann._AbstractNeuralNetwork.fit = timed_fit


def versions() -> dict:
    import clustpy
    import sklearn
    import torch

    out = {
        "clustpy": getattr(clustpy, "__version__", None),
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS"),
        "cuda_available": torch.cuda.is_available(),
    }
    if out["clustpy"] is None:
        from importlib.metadata import version

        out["clustpy"] = version("clustpy")
    try:
        import umap

        out["umap"] = umap.__version__
    except ImportError:
        out["umap"] = None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("dataset", choices=("digits", "fashion-mnist"))
    parser.add_argument(
        "--methods",
        default="DEC,IDEC,DCN,N2D",
        help=f"comma-separated, from {', '.join(METHODS)} (default: DEC,IDEC,DCN,N2D)",
    )
    parser.add_argument("--seeds", default="0", help="comma-separated random_state values (default: 0)")
    parser.add_argument(
        "--data-dir",
        default=str(REPO.parent / "shared" / "data"),
        help="torchvision root holding FashionMNIST/raw (default: ../shared/data)",
    )
    parser.add_argument(
        "--preprocessing",
        choices=("unit", "raw"),
        default="unit",
        help="unit: pixels divided by their maximum (16 or 255) to [0, 1]; raw: as loaded",
    )
    parser.add_argument(
        "--probe",
        default=None,
        metavar="P,C",
        help="timing probe: pretrain_epochs=P, clustering_epochs=C, extrapolate to the defaults",
    )
    parser.add_argument(
        "--out", default=None, help="JSON file (default: docs/results/clustpy-side-by-side-<dataset>-<date>.json)"
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the rows already in --out (same dataset) and add this run's; its meta goes under 'runs'",
    )
    args = parser.parse_args(argv)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    probe = tuple(int(v) for v in args.probe.split(",")) if args.probe else None
    if probe is not None and (len(probe) != 2 or min(probe) < 1):
        parser.error("--probe takes two positive integers, P,C")
    today = dt.date.today().isoformat()
    out = (
        Path(args.out) if args.out else REPO / "docs" / "results" / f"clustpy-side-by-side-{args.dataset}-{today}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "OMP_NUM_THREADS={} {} {}".format(
        os.environ.get("OMP_NUM_THREADS", "<unset>"),
        Path(sys.executable),
        shlex.join([os.path.relpath(__file__, Path.cwd())] + sys.argv[1:]),
    )

    log(f"loading {args.dataset}")
    X, y, data_note = load_dataset(args.dataset, args.data_dir, args.preprocessing)
    log(f"{X.shape[0]} x {X.shape[1]}, {len(np.unique(y))} classes; {data_note}")
    timer = PretrainTimer()
    meta = {
        "dataset": args.dataset,
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "preprocessing": data_note,
        "n_clusters": N_CLUSTERS,
        "command": command,
        "cwd": str(Path.cwd()),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "host_cpus": os.cpu_count(),
        "versions": versions(),
        "probe": probe,
    }
    log(f"versions: {meta['versions']}")
    rows: list[dict] = []
    if args.append and out.exists():
        previous = json.loads(out.read_text())
        if previous["meta"]["dataset"] != args.dataset:
            parser.error(f"{out} holds {previous['meta']['dataset']}, not {args.dataset}")
        rows = previous["rows"]
        meta["runs"] = previous["meta"].pop("runs", []) + [previous["meta"]]
        log(f"appending to {out} ({len(rows)} rows kept)")

    def save() -> None:
        meta["finished"] = dt.datetime.now().isoformat(timespec="seconds")
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        tmp.replace(out)

    for seed in seeds:
        for method in methods:
            estimator, params = build(method, seed, probe)
            row = {
                "method": method,
                "library": "clustpy",
                "dataset": args.dataset,
                "n_samples": int(X.shape[0]),
                "seed": seed,
                "non_default_params": params,
                "probe": probe is not None,
                "clustpy": meta["versions"]["clustpy"],
                "torch": meta["versions"]["torch"],
                "date": dt.datetime.now().isoformat(timespec="seconds"),
                "command": command,
            }
            log(f"fit {method} seed {seed}, non-default parameters: {params or 'none'}")
            timer.seconds = 0.0
            start = time.perf_counter()
            try:
                estimator.fit(X)
            except Exception as exc:  # record the failure as the row and go on
                row.update(
                    status="error",
                    seconds=round(time.perf_counter() - start, 2),
                    pretrain_seconds=round(timer.seconds, 2),
                    error=f"{type(exc).__name__}: {exc}",
                    traceback=traceback.format_exc().strip().splitlines()[-12:],
                )
                log(f"{method} seed {seed} FAILED after {row['seconds']} s: {row['error']}")
            else:
                seconds = time.perf_counter() - start
                labels = np.asarray(estimator.labels_)
                row.update(
                    status="ok",
                    seconds=round(seconds, 2),
                    pretrain_seconds=round(timer.seconds, 2),
                    acc=round(clustering_accuracy(y, labels), 4),
                    nmi=round(float(normalized_mutual_info_score(y, labels)), 4),
                    ari=round(float(adjusted_rand_score(y, labels)), 4),
                    n_clusters_found=int(len(np.unique(labels))),
                )
                if probe is not None:
                    pre_epoch = timer.seconds / probe[0]
                    rest = seconds - timer.seconds
                    if method in ("DEC", "IDEC", "DCN"):
                        estimate = pre_epoch * DEFAULT_PRETRAIN_EPOCHS + rest / probe[1] * DEFAULT_CLUSTERING_EPOCHS
                        how = "pretrain s/epoch x 100 + (rest / C) x 150 (rest includes the k-means start)"
                    else:
                        estimate = pre_epoch * DEFAULT_PRETRAIN_EPOCHS + rest
                        how = "pretrain s/epoch x 100 + the manifold step and mixture as measured"
                    row.update(
                        pretrain_seconds_per_epoch=round(pre_epoch, 2),
                        estimated_default_seconds=round(estimate, 1),
                        estimate_formula=how,
                    )
                log(
                    f"{method} seed {seed}: ACC {row['acc']:.4f} NMI {row['nmi']:.4f} ARI {row['ari']:.4f} "
                    f"in {row['seconds']:.1f} s (pre-training {row['pretrain_seconds']:.1f} s)"
                    + (f"; default epochs estimated at {row['estimated_default_seconds']:.0f} s" if probe else "")
                )
            rows.append(row)
            save()
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
