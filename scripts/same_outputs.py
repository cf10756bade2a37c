"""Fingerprints of short, seeded training runs, to show that a change leaves results bit for bit equal.

A benchmark rerun can only say "within noise"; this says "identical". Run it with the code of two
commits, on the same machine, with the same thread count, and compare the two outputs:

    git worktree add /tmp/before REV
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/before/src python scripts/same_outputs.py --data-dir ../shared/data > before.txt
    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/same_outputs.py --data-dir ../shared/data > after.txt
    diff before.txt after.txt

Each line is a job and a digest of what it produced: the two-fold NMM-EM optimisation on MNIST and
Fashion-MNIST (one epoch on 2,048 images; the trained network's state, read from the checkpoint),
every deep clustering estimator on digits (5 epochs; its labels), and supervised training of the
networks behind the routing and gate benchmarks (1,024 Fashion-MNIST images, one epoch; test error
and mean gates, printed in full). It only uses interfaces that older commits also have.
Buffers named in ``--ignore`` (default: those issue 7 added to the NMM-EM loss) are left out of
the network digests, so a new bookkeeping buffer does not hide an unchanged network.
Takes about 6 minutes on one CPU thread.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import tempfile
from pathlib import Path

import numpy as np
import torch


def state_digest(checkpoint: Path, ignore: tuple[str, ...]) -> str:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    digest = hashlib.sha1()
    for key in sorted(state):
        if torch.is_tensor(state[key]) and not key.endswith(ignore):
            digest.update(key.encode())
            digest.update(state[key].detach().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def two_fold(dataset: str, data_dir: str, ignore: tuple[str, ...]) -> str:
    from routemix.cli import main

    with tempfile.TemporaryDirectory() as run_dir, contextlib.redirect_stdout(io.StringIO()):
        main(
            [
                "cluster",
                dataset,
                "--data-dir",
                data_dir,
                "--limit",
                "2048",
                "--epochs",
                "1",
                "--seed",
                "0",
                "--no-kmeans",
                "--no-progress",
                "--run-dir",
                run_dir,
            ]
        )
        return state_digest(Path(run_dir) / "checkpoints" / "last.ckpt", ignore)


def digits_labels(estimator) -> str:
    from sklearn.datasets import load_digits

    x = load_digits().data.astype("float32")
    labels = np.asarray(estimator(10, max_iter=5, random_state=0).fit_predict(x), dtype=np.int64)
    return hashlib.sha1(labels.tobytes()).hexdigest()[:16]


def supervised(model: str, gate_reg: str, data_dir: str) -> str:
    from routemix.bench.routing import train_one

    row = train_one(model, 0, data_dir=data_dir, epochs=1, train_images=1024, test_images=1000, gate_reg=gate_reg)
    return f"error {row['error']!r} gates {[np.asarray(g).tolist() for g in row['gates'].values()]!r}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="root holding MNIST and FashionMNIST")
    parser.add_argument(
        "--ignore", default="running_share,alive", help="comma-separated buffer name endings to leave out"
    )
    args = parser.parse_args()
    ignore = tuple(args.ignore.split(",")) if args.ignore else ()

    from routemix.cluster import DDCClustering, EDGaMClustering, IICClustering, MoEClustering, NMMClustering

    for dataset in ("mnist", "fashion_mnist"):
        print(f"two-fold {dataset}: {two_fold(dataset, args.data_dir, ignore)}", flush=True)
    for estimator in (NMMClustering, DDCClustering, EDGaMClustering, IICClustering, MoEClustering):
        print(f"digits {estimator.__name__}: {digits_labels(estimator)}", flush=True)
    for model, gate_reg in (
        ("basecnn_2cc", "none"),
        ("basecnn_2cc", "local"),
        ("basecnn_2cc", "global"),
        ("basecnn_2cp", "none"),
        ("crossstitch_basecnn_2", "none"),
    ):
        print(f"supervised {model} gate-reg {gate_reg}: {supervised(model, gate_reg, args.data_dir)}", flush=True)


if __name__ == "__main__":
    main()
