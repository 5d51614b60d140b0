"""Raw rows in a run's own columns, checked and turned into what its encoders take.

A row holds RAW feature values, named as the run's `encoders.json` names its
features: numbers for numeric features (empty: imputed with the training
mean), ids or strings for categorical ones (unseen: the unknown index), and
for sequences either a separator-joined string ("1|2|3", empty: no history),
a list of ids, or (from the data builders) an integer matrix [N, T]
right-padded with 0. `label` (0 or 1) and the user column (`userId` or
`user_id`, for GAUC) are optional. Anything else is an error that names the
column, the row (or the file's line) and what was expected.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from typing import Any, Mapping

import numpy as np
import pandas as pd

from data.encoders import FeatureEncoders, split_sequences
from data.errors import DataError
from data.schema import LABEL, USER

USER_COLUMNS = ("userId", USER)  # the user column's names in the readers' layouts


def expected_columns(encoders: FeatureEncoders) -> tuple[str, ...]:
    """The feature columns a row must have, in the encoders' order."""
    return (*encoders.numeric, *encoders.categorical, *encoders.sequence)


def read_csv(path: str) -> tuple[pd.DataFrame, np.ndarray]:
    """A CSV file (optionally .gz) as strings, and each data row's physical line number."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        text = data.decode("utf-8-sig")  # a byte-order mark is no part of the header
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not valid UTF-8 text; save the file as UTF-8") from None
    except (OSError, EOFError) as error:  # e.g. a truncated .gz
        raise DataError(f"{path}: unreadable ({error})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = [(reader.line_num, row) for row in reader if row]  # blank lines skipped, line numbers kept
    except csv.Error as error:
        raise DataError(f"{path}, line {reader.line_num}: {error}") from None
    if not rows:
        raise DataError(f"{path}: empty file, expected a header line")
    header = [name.strip() for name in rows[0][1]]
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
    frame = pd.DataFrame([row for _, row in rows[1:]], columns=header, dtype=object)
    return frame, np.asarray([line for line, _ in rows[1:]], dtype=np.int64)


class _Where:
    """Names a row in messages: the file's line, or the row's position."""

    def __init__(self, source: str, lines: np.ndarray | None):
        self.source, self.lines = source, lines

    def __call__(self, column: str, row: int) -> str:
        place = f"line {self.lines[row]}" if self.lines is not None else f"row {row}"
        return f"{self.source}, {place}, column {column!r}"


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _numbers(values: np.ndarray, column: str, where: _Where) -> np.ndarray:
    if np.issubdtype(values.dtype, np.number) or values.dtype == bool:
        numbers = values.astype(np.float64)
    else:
        text = np.asarray(["" if _is_missing(v) else str(v).strip() for v in values], dtype=object)
        numbers = pd.to_numeric(pd.Series(text).replace("", np.nan), errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(np.isnan(numbers) & (text != ""))
        if bad.size:
            raise DataError(f"{where(column, bad[0])}: not a number (value {text[bad[0]]!r}); "
                            "write a number, or leave it empty to impute the training mean")
    infinite = np.flatnonzero(np.isinf(numbers))
    if infinite.size:
        raise DataError(f"{where(column, infinite[0])}: not a finite number (value {values[infinite[0]]!r})")
    return numbers  # NaN = empty, imputed by the encoder


def _ids(values: np.ndarray, column: str, where: _Where) -> np.ndarray:
    if np.issubdtype(values.dtype, np.integer):
        return values
    if np.issubdtype(values.dtype, np.floating):
        raise DataError(f"{where(column, 0)}: ids are integers or strings, got floats (dtype {values.dtype}); "
                        "read the column as strings (e.g. pandas dtype=str)")
    return np.asarray(["" if _is_missing(v) else str(v).strip() for v in values], dtype=str)  # '' = unknown


def _sequences(values: np.ndarray, column: str, sep: str, where: _Where) -> np.ndarray:
    if values.ndim == 2:
        if not np.issubdtype(values.dtype, np.integer):
            raise DataError(f"{where(column, 0)}: a sequence matrix must hold integer ids (0 = padding)")
        return values
    out = []
    for i, value in enumerate(values):
        if _is_missing(value):
            text = ""
        elif isinstance(value, (list, tuple, np.ndarray)):
            text = sep.join(str(v) for v in value)
        else:
            text = str(value).strip()
        if text and "" in text.split(sep):
            raise DataError(f"{where(column, i)}: empty term in a {sep!r}-separated sequence (value {text!r})")
        out.append(text)
    return np.asarray(out, dtype=str)


def _labels(values: np.ndarray, where: _Where, column: str) -> np.ndarray:
    labels = _numbers(values, column, where)
    bad = np.flatnonzero(~np.isin(labels, (0.0, 1.0)))
    if bad.size:
        raise DataError(f"{where(column, bad[0])}: label must be 0 or 1 (value {values[bad[0]]!r})")
    return labels.astype(np.float32)


def to_columns(
    rows: pd.DataFrame | Mapping[str, Any], encoders: FeatureEncoders, source: str = "rows",
    lines: np.ndarray | None = None, user_columns: tuple[str, ...] = USER_COLUMNS, label_column: str = LABEL,
) -> dict[str, np.ndarray]:
    """Raw rows -> {feature: values the encoders take}, plus LABEL and USER when given.

    source, lines: how messages name the input (a file and its data rows' line numbers).
    user_columns: the names the user column may have (the first found is taken);
    label_column: the label's (a dataset file may name it, e.g. 'clk').
    """
    if isinstance(rows, pd.DataFrame):
        raw = {str(name): rows[name].to_numpy() for name in rows.columns}
    else:
        raw = {str(name): np.asarray(values) if not isinstance(values, np.ndarray) else values
               for name, values in rows.items()}
    expected = expected_columns(encoders)
    missing = [name for name in expected if name not in raw]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; rows need {list(expected)} "
                        f"(optional: {label_column!r}, the user column {user_columns[0]!r})")
    sizes = {name: len(values) for name, values in raw.items()}
    if len(set(sizes.values())) > 1:
        raise DataError(f"{source}: columns differ in length {sizes}")
    where = _Where(source, lines)
    columns: dict[str, np.ndarray] = {}
    for name in encoders.numeric:
        columns[name] = _numbers(raw[name], name, where)
    for name in encoders.categorical:
        columns[name] = _ids(raw[name], name, where)
    for name, encoder in encoders.sequence.items():
        columns[name] = _sequences(raw[name], name, encoder.sep, where)
    if label_column in raw:
        columns[LABEL] = _labels(raw[label_column], where, label_column)
    for name in user_columns:
        if name in raw:
            columns[USER] = raw[name]
            break
    return columns


def history_ids(values: np.ndarray, sep: str, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, position, raw id as a string) of every history entry a model sees
    (the first max_len of each row, as the encoder keeps them)."""
    if values.ndim == 2:
        rows, positions = np.nonzero(values[:, :max_len])
        return rows, positions, values[rows, positions].astype(str)
    rows, positions, tokens = split_sequences(values, sep)
    keep = positions < max_len
    return rows[keep], positions[keep], tokens[keep]
