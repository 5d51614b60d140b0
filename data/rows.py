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

import re
from typing import Any, Mapping

import numpy as np
import pandas as pd

from core.errors import DataError
from data.encoders import FeatureEncoders, SequenceEncoder, recent
from data.schema import LABEL, USER
from data.vocabulary import split_sequences

USER_COLUMNS = ("userId", USER)  # the user column's names in the readers' layouts


def expected_columns(encoders: FeatureEncoders) -> tuple[str, ...]:
    """The feature columns a row must have, in the encoders' order."""
    return (*encoders.numeric, *encoders.categorical, *encoders.sequence)


class Where:
    """Names a row in messages: the file's line, or the row's position."""

    def __init__(self, source: str, lines: np.ndarray | None):
        self.source, self.lines = source, lines

    def __call__(self, column: str, row: int) -> str:
        place = f"line {self.lines[row]}" if self.lines is not None else f"row {row}"
        return f"{self.source}, {place}, column {column!r}"


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def numbers(values: np.ndarray, column: str, where: Where,
            hint: str = "write a number, or leave it empty to impute the training mean") -> np.ndarray:
    """A numeric column [N] as float64, empty as NaN (imputed by its encoder);
    text that is not a number (Python's '2_5' included) or an infinity, one line."""
    if np.issubdtype(values.dtype, np.number) or values.dtype == bool:
        numbers = values.astype(np.float64)
    else:
        text = np.asarray(["" if _is_missing(v) else str(v).strip() for v in values], dtype=object)
        numbers = pd.to_numeric(pd.Series(text).replace("", np.nan), errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(np.isnan(numbers) & (text != ""))
        if bad.size:
            raise DataError(f"{where(column, bad[0])}: not a number (value {text[bad[0]]!r}); {hint}")
    infinite = np.flatnonzero(np.isinf(numbers))
    if infinite.size:
        raise DataError(f"{where(column, infinite[0])}: not a finite number (value {values[infinite[0]]!r})")
    return numbers  # NaN = empty, imputed by the encoder


_INTEGRAL = re.compile(r"[+-]?\d+\.0*")  # an integer written as a float: '2571.0'
NO_GENRES = "(no genres listed)"  # how the GroupLens releases write a movie without genres: none
_LIST = re.compile(r"[\[(].*,.*[\])]|\[.*\]")  # '[260, 1196]', '(1, 2)', '[260]': a list, not an id
_OTHER_SEPARATOR = re.compile(r"\s*\d+\s*([,;:|/ ])\s*\d+(?:\s*\1\s*\d+)*\s*")  # ids joined by a separator
_FRACTIONAL = r"[+-]?\d*\.\d+(?:[eE][+-]?\d+)?"  # a number with a fraction (an integral one is read by _INTEGRAL first)
_NEEDS_CLEANING = r"\s|\.|^\[|^\("  # a term to strip or normalise, or a list's bracket


def _id_text(text: str) -> str:
    """One id as training and scoring read it: stripped, an integral float as its integer."""
    text = text.strip()
    return text.split(".")[0].lstrip("+") if _INTEGRAL.fullmatch(text) else text


def _integral(values: np.ndarray, column: str, where: Where) -> np.ndarray:
    """Float ids [N] as int64 when every one is a whole number; otherwise one line naming the first."""
    bad = np.flatnonzero(~np.isnan(values) & (values != np.round(values)))
    if bad.size:
        raise DataError(f"{where(column, bad[0])}: an id must be an integer or a string, got {float(values[bad[0]])!r}")
    return np.where(np.isnan(values), -1, values).astype(np.int64)  # -1 (missing) is no term: unknown


def ids(values: np.ndarray, column: str, where: Where) -> np.ndarray:
    """A categorical column as training and scoring read it: integers stay
    integers, whole floats become integers, text is stripped and '2571.0'
    read as '2571'; empty or missing is '' (unknown)."""
    if np.issubdtype(values.dtype, np.integer):
        return values
    if np.issubdtype(values.dtype, np.floating):
        return _integral(values, column, where)
    texts = np.asarray(["" if _is_missing(v) else _id_text(str(v)) for v in values], dtype=str)
    fractional = np.flatnonzero(pd.Series(texts, dtype=object).str.fullmatch(_FRACTIONAL).to_numpy(dtype=bool))
    if fractional.size:  # '2571.5': a number, not an id (a text id such as 'v1.2' is one)
        raise DataError(f"{where(column, fractional[0])}: an id must be an integer or a string, got the fractional "
                        f"number {str(texts[fractional[0]])!r}")
    return texts


def sequences(values: np.ndarray, column: str, sep: str, where: Where) -> np.ndarray:
    """A sequence column as training and scoring read it: sep-joined text (each
    id read as `ids` reads one), or lists of ids, or an integer matrix [N, T]
    right-padded with 0. An empty term, or a list written as '[1, 2]', is
    refused in one line naming the row."""
    if values.ndim == 2:
        if np.issubdtype(values.dtype, np.floating):
            values = _integral(values, column, where).clip(min=0)
        if not np.issubdtype(values.dtype, np.integer):
            raise DataError(f"{where(column, 0)}: a sequence matrix must hold integer ids (0 = padding)")
        return values
    texts = np.asarray([
        "" if _is_missing(value) else
        sep.join(str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in value)
        if isinstance(value, (list, tuple, np.ndarray)) else str(value).strip()
        for value in values
    ], dtype=object)
    messy = pd.Series(texts, dtype=object).str.contains(_NEEDS_CLEANING, regex=True).to_numpy(dtype=bool)
    for i in np.flatnonzero(messy):  # rare: only rows with spaces, decimals or brackets take this loop
        if texts[i] == NO_GENRES:  # MovieLens' own marker: no genres, as its reader reads it
            texts[i] = ""
            continue
        if _LIST.fullmatch(texts[i]) and sep not in "[](),":
            raise DataError(f"{where(column, i)}: a list written as {texts[i]!r}; write its ids joined by {sep!r} "
                            f"(e.g. {sep.join(['260', '1196'])!r})")
        texts[i] = sep.join(_id_text(term) for term in texts[i].split(sep))
        fractional = [term for term in texts[i].split(sep) if re.fullmatch(_FRACTIONAL, term)]
        if fractional:
            raise DataError(f"{where(column, i)}: an id must be an integer or a string, got the fractional number "
                            f"{fractional[0]!r} in {texts[i]!r}")
    for i, text in enumerate(texts):
        if text and "" in text.split(sep):
            raise DataError(f"{where(column, i)}: empty term in a {sep!r}-separated sequence (value {text!r})")
        other = _OTHER_SEPARATOR.fullmatch(text) if sep not in text else None
        if other and other.group(1) != sep:  # '260,1196': numeric ids joined by another separator
            raise DataError(f"{where(column, i)}: the ids in {text!r} are joined by {other.group(1)!r}; this column's "
                            f"separator is {sep!r} (e.g. {sep.join(['260', '1196'])!r})")
    return texts.astype(str)


def labels(values: np.ndarray, where: Where, column: str) -> np.ndarray:
    """A label column [N] as float32 0/1; anything else, empty included, one line."""
    labels = numbers(values, column, where, hint="a label is 0 or 1")
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
        twice = rows.columns[rows.columns.duplicated()]
        if len(twice):
            raise DataError(f"{source}: column {str(twice[0])!r} appears twice; keep one")
        raw = {str(name): rows[name].to_numpy() for name in rows.columns}
    else:
        raw = {str(name): np.asarray(values) if not isinstance(values, np.ndarray) else values
               for name, values in rows.items()}
    expected = expected_columns(encoders)
    missing = [name for name in expected if name not in raw]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; rows need {list(expected)} "
                        f"(and, optional when scoring, {label_column!r} for AUC and the user column "
                        f"{user_columns[0]!r} for GAUC)")
    sizes = {name: len(values) for name, values in raw.items()}
    if len(set(sizes.values())) > 1:
        raise DataError(f"{source}: columns differ in length {sizes}")
    where = Where(source, lines)
    columns: dict[str, np.ndarray] = {}
    for name in encoders.numeric:
        columns[name] = numbers(raw[name], name, where)
    for name in encoders.categorical:
        columns[name] = ids(raw[name], name, where)
    for name, encoder in encoders.sequence.items():
        columns[name] = sequences(raw[name], name, encoder.sep, where)
    if label_column in raw:
        columns[LABEL] = labels(raw[label_column], where, label_column)
    for name in user_columns:
        if name in raw:
            columns[USER] = raw[name]
            break
    return columns


def history_ids(values: np.ndarray, encoder: SequenceEncoder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, position, raw id as a string) of every history entry a model sees:
    the ids the encoder keeps (its cut rule, `recent`), at the slot it puts them in."""
    if values.ndim == 2:
        rows, positions = np.nonzero(values)
        tokens, order = values[rows, positions].astype(str), "oldest-first"
    else:
        (rows, positions, tokens), order = split_sequences(values, encoder.sep), encoder.order
    keep, slot = recent(rows, positions, len(values), encoder.max_len, order)
    return rows[keep], slot[keep], tokens[keep]
