"""The tutorial's MovieLens-1M CSV format: one row per user, their last rating.

    userId,movieId,ratting,timestamp,last,histHighRatedMovieIds,negHistMovieIds,
    gender,age,occupation,zipCode,title,genres,label

`load_splits(data_dir, config)` reads `train.csv` and `test.csv`, holds out a
seeded fraction of the training users for validation, fits the encoders on
the remaining training rows only and returns encoded numpy arrays per split.

Input rules (everything else is an error naming file, column and line):
  * an empty `age` is imputed with the training mean;
  * an empty categorical value is unknown (id n + 1);
  * an empty sequence is all padding (never the term 'nan');
  * `label` is 0 or 1; `userId` an integer.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os

import numpy as np

from data.config import DINConfig
from data.encoders import FeatureEncoders
from data.errors import DataError
from data.schema import LABEL, USER, AttentionGroup

NUMERIC = ("age",)
CATEGORICAL = ("gender", "movieId", "occupation", "zipCode")
SEQUENCE = ("genres", "histHighRatedMovieIds", "negHistMovieIds")
ATTENTION_GROUPS = (AttentionGroup("group1", (("movieId", "histHighRatedMovieIds"),)),)
USER_COLUMN = "userId"
LABEL_COLUMN = "label"
REQUIRED_COLUMNS = (USER_COLUMN, *NUMERIC, *CATEGORICAL, *SEQUENCE, LABEL_COLUMN)
SEPARATOR = "|"

Arrays = dict[str, np.ndarray]


def _optional_finite_float(text: str) -> float:
    value = float(text) if text else float("nan")
    if np.isinf(value):
        raise ValueError(text)
    return value


def _binary_label(text: str) -> float:
    value = float(text)
    if value not in (0.0, 1.0):
        raise ValueError(text)
    return value


def read_tutorial_csv(path: str) -> dict[str, np.ndarray]:
    """Reads and validates one file: raw columns (strings, floats for age)."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file (expected the tutorial's CSV format)")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")  # a UTF-8 byte-order mark (Excel's CSV) is no part of the header
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not valid UTF-8 text; save the file as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))  # csv reads \n, \r\n and \r line ends alike
    try:
        # Blank lines are skipped; each row keeps its physical line number.
        rows = [(reader.line_num, row) for row in reader if row]
    except csv.Error as error:
        raise DataError(f"{path}, line {reader.line_num}: {error}") from None
    if not rows:
        raise DataError(f"{path}: empty file, expected a header line")
    header = [name.strip() for name in rows[0][1]]
    lines, records = [line for line, _ in rows[1:]], [row for _, row in rows[1:]]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; header is {header}")
    if not records:
        raise DataError(f"{path}: no data rows after the header")
    for line, record in zip(lines, records):
        if len(record) != len(header):
            raise DataError(f"{path}, line {line}: {len(record)} fields, the header has {len(header)}")
    position = {name: header.index(name) for name in REQUIRED_COLUMNS}
    raw = {name: np.asarray([r[position[name]].strip() for r in records], dtype=object) for name in REQUIRED_COLUMNS}

    def fail(column: str, index: int, why: str) -> DataError:
        return DataError(f"{path}, line {lines[index]}, column {column!r}: {why} (value {raw[column][index]!r})")

    def parse(column: str, convert, dtype, why: str) -> np.ndarray:
        """Applies `convert` to every value; a ValueError becomes an error naming the line."""
        values = np.empty(len(records), dtype=dtype)
        for i, text in enumerate(raw[column]):
            try:
                values[i] = convert(text)
            except ValueError:
                raise fail(column, i, why) from None
        return values

    out: dict[str, np.ndarray] = {}
    for name in NUMERIC:
        out[name] = parse(name, _optional_finite_float, np.float64, "not a finite number")  # empty -> NaN
    for name in CATEGORICAL:
        out[name] = raw[name].astype(str)
    for name in SEQUENCE:
        for i, text in enumerate(raw[name]):
            if text and "" in text.split(SEPARATOR):
                raise fail(name, i, f"empty term in a {SEPARATOR!r}-separated sequence")
        out[name] = raw[name].astype(str)
    out[LABEL] = parse(LABEL_COLUMN, _binary_label, np.float32, "label must be 0 or 1")
    out[USER] = parse(USER_COLUMN, int, np.int64, "user id must be an integer")
    return out


@dataclasses.dataclass
class Splits:
    """Encoded arrays per split (features, `label` [N] float32, `user_id` [N])."""

    train: Arrays
    valid: Arrays
    test: Arrays
    encoders: FeatureEncoders


def _rows(columns: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[keep] for name, values in columns.items()}


def encode(columns: dict[str, np.ndarray], encoders: FeatureEncoders) -> Arrays:
    arrays = encoders.transform(columns)
    arrays[LABEL] = columns[LABEL].astype(np.float32)
    arrays[USER] = columns[USER]
    return arrays


def holdout_users(users: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask [N] of the rows whose user is in a seeded `fraction` of users."""
    unique = np.unique(users)
    count = int(round(fraction * len(unique)))
    chosen = np.random.default_rng(seed).choice(unique, size=count, replace=False)
    return np.isin(users, chosen)


def load_splits(data_dir: str, config: DINConfig) -> Splits:
    """Train/valid/test arrays from a folder holding `train.csv` and `test.csv`."""
    train_path = os.path.join(data_dir, "train.csv")
    train = read_tutorial_csv(train_path)
    test = read_tutorial_csv(os.path.join(data_dir, "test.csv"))
    try:
        return split_and_encode(train, test, config)
    except DataError as error:  # a column no encoder can be fitted on
        raise DataError(f"{train_path}: {error}") from None


def split_and_encode(train: dict[str, np.ndarray], test: dict[str, np.ndarray], config: DINConfig) -> Splits:
    """Holds out validation users from `train` (raw columns, as `read_tutorial_csv`
    gives), fits the encoders on the rest and encodes every split."""
    if config.valid_on_test:
        # The tutorial's protocol: early stopping looks at the test set.
        fit_rows, valid = train, test
    else:
        held_out = holdout_users(train[USER], config.valid_fraction, config.seed)
        fit_rows, valid = _rows(train, ~held_out), _rows(train, held_out)
    encoders = FeatureEncoders.fit(
        fit_rows, NUMERIC, CATEGORICAL, SEQUENCE, ATTENTION_GROUPS, config.min_count, config.share_embeddings,
        config.max_len,
    )
    return Splits(encode(fit_rows, encoders), encode(valid, encoders), encode(test, encoders), encoders)
