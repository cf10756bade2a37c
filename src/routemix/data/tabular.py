"""A user's own tabular data: a ``.npy`` array or a ``.csv`` file of numeric columns.

A CSV file may have a header row (detected when its first row is not all numbers) and may name
a label column (by header name or 0-based index) that is kept apart for scoring only. Every other
column must be numeric: a non-numeric value is an error that names its row and column.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from routemix.data.registry import LoadedDataset, _tabular
from routemix.errors import RoutemixError


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> tuple[list[str] | None, list[list[str]]]:
    with open(path, newline="") as f:
        rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise RoutemixError(f"{path} is empty: it needs at least one row of numeric columns.")
    header = None
    if not all(_is_number(cell) for cell in rows[0]):
        header, rows = [cell.strip() for cell in rows[0]], rows[1:]
    if not rows:
        raise RoutemixError(f"{path} has a header but no data rows.")
    return header, rows


def _label_index(label_column: str | int, header: list[str] | None, width: int, path: Path) -> int:
    if isinstance(label_column, str) and not label_column.lstrip("-").isdigit():
        if header is None or label_column not in header:
            names = ", ".join(header) if header else "none (the file has no header row)"
            raise RoutemixError(f"{path} has no column {label_column!r}; columns: {names}.")
        return header.index(label_column)
    index = int(label_column)
    if not -width <= index < width:
        raise RoutemixError(f"label column {index} is out of range: {path} has {width} columns.")
    return index % width


def load_tabular_file(path: str | Path, *, label_column: str | int | None = None) -> LoadedDataset:
    """Load ``path`` (.csv or .npy) as float32 features and, optionally, labels."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RoutemixError(f"no file at {path}: pass the path of a .csv or .npy file.")
    name = path.stem
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise RoutemixError(f"{path} is not a readable .npy array ({error}).") from None
        if array.ndim != 2:
            raise RoutemixError(f"{path} holds an array of shape {array.shape}; expected 2-D (samples, features).")
        if not np.issubdtype(array.dtype, np.number):
            raise RoutemixError(f"{path} holds {array.dtype} values; expected numbers.")
        labels = None
        if label_column is not None:
            index = _label_index(label_column, None, array.shape[1], path)
            labels, array = array[:, index], np.delete(array, index, axis=1)
        return _tabular(name, array, labels)

    header, rows = _read_csv(path)
    width = len(header) if header else len(rows[0])
    for number, row in enumerate(rows, start=2 if header else 1):
        if len(row) != width:
            raise RoutemixError(f"{path}, line {number}: {len(row)} columns where the file has {width}.")
    index = None if label_column is None else _label_index(label_column, header, width, path)
    table = np.array(rows, dtype=object)
    labels = None
    if index is not None:
        labels = np.array([cell.strip() for cell in table[:, index]])
        if all(_is_number(v) for v in labels):
            labels = labels.astype(float)
        table = np.delete(table, index, axis=1)
    if table.shape[1] == 0:
        raise RoutemixError(f"{path} has no feature columns besides the label column.")
    features = np.empty(table.shape, dtype=np.float64)
    for (row, col), cell in np.ndenumerate(table):
        try:
            features[row, col] = float(cell)
        except ValueError:
            column = header[col if index is None or col < index else col + 1] if header else col
            raise RoutemixError(
                f"{path}, line {row + (2 if header else 1)}: column {column!r} holds {cell!r}, not a number. "
                "Every column but the label column (--label-column) must be numeric."
            ) from None
    return _tabular(name, features, labels)
