"""Reproductions and benchmarks: each a function that runs an experiment and reports figures."""

from __future__ import annotations

import numpy as np

SUMMARY_KEYS = ("acc", "nmi", "ari", "seconds")


def summarize(runs: list[dict]) -> dict:
    """Mean and (population) standard deviation over seeds of each of ACC, NMI, ARI, seconds."""
    row = {}
    for key in SUMMARY_KEYS:
        values = np.array([r[key] for r in runs], dtype=float)
        row[key], row[f"{key}_std"] = float(values.mean()), float(values.std())
    return row
