"""The papers' published numbers as data: ``published_table("table3_2")`` -> rows.

Read by the model registry (each model's printed parameter count), the benchmarks (errors and
clustering scores beside ours) and the tests. The CSV files beside this module:

* ``table3_2`` .. ``table3_4`` copy Tables 3.2-3.4 of the thesis (parameters in millions, errors
  in %). ``model`` is the registry name, empty for rows the zoo does not build (networks the
  thesis only cites).
* ``clustering`` holds the published ACC/NMI/ARI (as fractions) of every clustering method by
  dataset and protocol (``single run``: a run's result, averaged where the paper averages;
  ``lowest loss`` / ``vote``: DDC's selections among 20 runs), each with the paper and table it
  comes from (``source``).

Empty cells are ``None``; text columns stay strings, every other cell is a float.
"""

from __future__ import annotations

import csv
from importlib import resources

TABLES = ("table3_2", "table3_3", "table3_4", "clustering")
TEXT_COLUMNS = ("network", "model", "dataset", "method", "protocol", "source")


def published_table(name: str) -> list[dict]:
    """Rows of one table; numeric cells as float, empty cells as ``None``."""
    if name not in TABLES:
        raise ValueError(f"unknown reference table {name!r}; available: {', '.join(TABLES)}")
    text = resources.files("routemix.published").joinpath(f"{name}.csv").read_text()
    rows = []
    for row in csv.DictReader(text.splitlines()):
        parsed: dict = {}
        for key, value in row.items():
            if key in TEXT_COLUMNS:
                parsed[key] = value or None
            else:
                parsed[key] = float(value) if value else None
        rows.append(parsed)
    return rows
