"""One time-to-accuracy figure from several ``routemix bench clustering`` runs of the same dataset.

Fits of one method come from the last results file that has it (a later run of a method replaces
an earlier one), curves from the folders in the order given (a later file of the same name
replaces an earlier one). Drawn by :func:`routemix.bench.clustering.plot_time_to_accuracy`:

    python scripts/time_to_accuracy_figure.py mnist docs/figures/time_to_accuracy-mnist-n2d-2026-12-07 \\
        --results docs/results/bench-clustering-mnist-2026-12-06.json \\
                  docs/results/bench-clustering-mnist-fixes-2026-12-06.json \\
                  docs/results/bench-clustering-mnist-n2d-2026-12-07.json \\
        --curves docs/results/curves-mnist-2026-12-06 docs/results/curves-mnist-fixes-2026-12-06 \\
                 docs/results/curves-mnist-n2d-2026-12-07
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from routemix.bench.clustering import plot_time_to_accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("out", help="path of the figure without its suffix (.png and .svg are written)")
    parser.add_argument("--results", nargs="+", required=True, help="results.json files, earliest first")
    parser.add_argument("--curves", nargs="+", default=[], help="curve folders, earliest first")
    args = parser.parse_args()
    missing = [p for p in args.results if not Path(p).is_file()] + [p for p in args.curves if not Path(p).is_dir()]
    if missing:
        parser.error(f"not found: {', '.join(missing)} (results are files, curves are folders).")
    by_method: dict[str, list[dict]] = {}
    for path in args.results:
        rows = [r for r in json.loads(Path(path).read_text()) if r["dataset"] == args.dataset]
        for method in dict.fromkeys(r["method"] for r in rows):
            by_method[method] = [r for r in rows if r["method"] == method]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "curves").mkdir()
        for folder in args.curves:
            for curve in Path(folder).glob(f"{args.dataset}-*.jsonl"):
                shutil.copy(curve, Path(tmp) / "curves" / curve.name)
        for drawn in plot_time_to_accuracy([r for rows in by_method.values() for r in rows], tmp, args.dataset):
            target = Path(args.out).with_suffix(drawn.suffix)
            shutil.copy(drawn, target)
            print(target)


if __name__ == "__main__":
    main()
