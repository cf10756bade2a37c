"""Wall time of small NMM-EM fits on an idle and on a busy machine, under three OpenMP settings.

Each fit runs in a fresh Python process, so that libgomp reads ``OMP_WAIT_POLICY`` and
``OMP_NUM_THREADS`` as a user's command would; ``--load N`` starts N busy-loop processes beside
them for the whole measurement. Fits and settings are interleaved, repeat after repeat, so that
drifts of the machine fall on all of them alike. Writes one JSON line per fit.

    OMP_WAIT_POLICY= python scripts/busy_machine_timing.py --load 0 --repeats 2 --data-dir ../shared/data
    python scripts/busy_machine_timing.py --load 6 --repeats 2 --data-dir ../shared/data

The fits: iris (150 x 4, 200 epochs), digits (1797 x 64, 20 epochs), and the first 4096 MNIST
images through the image network (one epoch), with NMMClustering's defaults otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

FIT = r"""
import sys, time
from routemix.cluster import NMMClustering
import torch
which, data_dir = sys.argv[1], sys.argv[2]
if which == "mnist":
    from routemix.data import load_dataset
    X = load_dataset("mnist", data_dir=data_dir).data[:4096].reshape(4096, -1).float().numpy() / 255
    estimator = NMMClustering(10, max_iter=1, random_state=0, image_shape=(1, 28, 28))
else:
    from sklearn.datasets import load_digits, load_iris
    X = (load_digits() if which == "digits" else load_iris()).data
    estimator = NMMClustering(10 if which == "digits" else 3, max_iter=20 if which == "digits" else 200, random_state=0)
start = time.perf_counter()
estimator.fit(X)
print(time.perf_counter() - start, torch.get_num_threads())
"""

SETTINGS = {  # what a user's environment may hold; each fit starts from an environment without either
    "spinning (OpenMP's default)": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "one thread": {"OMP_NUM_THREADS": "1"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=int, default=0, help="busy-loop processes beside the fits (default 0)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--fits", default="iris,digits,mnist")
    parser.add_argument("--data-dir", default="../shared/data", help="root holding MNIST")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        time.sleep(2)
        for repeat in range(args.repeats):
            for fit in args.fits.split(","):
                for name, setting in SETTINGS.items():
                    result = subprocess.run(
                        [sys.executable, "-c", FIT, fit, args.data_dir],
                        env={**base, **setting},
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    seconds, threads = result.stdout.split()[-2:]
                    print(
                        json.dumps(
                            {
                                "load": args.load,
                                "repeat": repeat,
                                "fit": fit,
                                "setting": name,
                                "seconds": round(float(seconds), 2),
                                "threads": int(threads),
                                "loadavg_1min": round(os.getloadavg()[0], 2),
                            }
                        ),
                        flush=True,
                    )
    finally:
        for process in busy:
            process.kill()


if __name__ == "__main__":
    main()
