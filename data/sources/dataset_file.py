"""Any CSV, described by a dataset file (data/sources/dataset_layout.py): the
source for your own data. Rows are read by the same functions scoring reads
them with (data/rows.py); validation is the layout's valid file, or a seeded
share of training users; --split time pools every file's rows and cuts them
by the layout's time column."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from core.config import DINConfig
from core.errors import DataError
from data.features import Feature
from data.csv_files import read_csv
from data.rows import Where, ids, labels, numbers, sequences
from data.schema import LABEL, TIME, USER
from data.sources.base import SourceBase, beam_build, data_key
from data.sources.dataset_layout import Layout, read_layout
from data.splits import Splits, encode, holdout_users, time_cuts, time_masks
from data.statistics import fit_encoders

FILE_NAME = "dataset.toml"
_INTEGER = re.compile(r"[+-]?\d+")


def _user(text: str) -> int:
    if not _INTEGER.fullmatch(text):  # int() would take '2_5' and ' 25'
        raise ValueError(text)
    return int(text)


def read_split(path: str, layout: Layout) -> dict[str, np.ndarray]:
    """One CSV file -> raw columns (strings; floats for numeric features), LABEL and USER."""
    frame, lines = read_csv(path)
    check_header(path, list(frame.columns), layout)
    if not len(frame):
        raise DataError(f"{path}: no data rows after the header")
    return columns_of(frame, lines, path, layout)


def check_header(path: str, header: list[str], layout: Layout) -> None:
    missing = [c for c in layout.columns if c not in header]
    if missing:
        why = ""
        if len(missing) > len(layout.columns) // 2:
            why = (f" (not the layout {os.path.basename(layout.path)} describes: describe the file's columns in a "
                   "dataset.toml beside it, or pass --dataset FILE; docs/data.md)")
        elif missing == [layout.user] and layout.user not in {f.name for f in layout.features}:
            why = (f" (training needs the user column {layout.user!r} that {os.path.basename(layout.path)} names, for "
                   "the validation hold-out and GAUC; scoring does not; remove `user` from the dataset file if the "
                   "data has none)")
        raise DataError(f"{path}: missing column(s) {missing}; header is {header}{why}")


def integer_users(first: str) -> bool:
    """Whether a file's user ids are integers: as its first row's is (integer ids stay integers)."""
    return first.strip().lstrip("-").isdigit()


def columns_of(frame, lines: np.ndarray, path: str, layout: Layout, integer: bool | None = None,
               first_row: int = 0) -> dict[str, np.ndarray]:
    """Rows of one CSV file (strings, as parsed) -> raw columns. A piece of a
    file (the Beam build's byte range) passes `integer` (integer_users of the
    file's first row) and, with no user column, `first_row` (its first row's
    index in the file: each row is its own user)."""
    raw = {name: frame[name].to_numpy(dtype=object) for name in layout.columns}
    raw = {name: np.asarray([v.strip() for v in values], dtype=object) for name, values in raw.items()}

    def parse(column: str, convert, dtype, why: str) -> np.ndarray:
        values = np.empty(len(frame), dtype=dtype)
        for i, text in enumerate(raw[column]):
            try:
                values[i] = convert(text)
            except ValueError:
                raise DataError(f"{path}, line {lines[i]}, column {column!r}: {why} (value {text!r})") from None
        return values

    out: dict[str, np.ndarray] = {}
    where = Where(path, lines)  # ids and sequences are read by the same functions as scoring reads them
    for feature in layout.features:
        if feature.kind == "numeric":
            out[feature.name] = numbers(raw[feature.name], feature.name, where)  # empty -> NaN
        elif feature.kind == "sequence":
            out[feature.name] = sequences(raw[feature.name], feature.name, feature.sep, where)
        else:
            out[feature.name] = ids(raw[feature.name], feature.name, where)
    out[LABEL] = labels(raw[layout.label], where, layout.label)
    if layout.user:
        users = raw[layout.user]
        if integer is None:
            integer = bool(len(users)) and integer_users(users[0])
        out[USER] = parse(layout.user, _user, np.int64, "user id must be an integer") if integer else users.astype(str)
    else:
        out[USER] = np.arange(first_row, first_row + len(frame), dtype=np.int64)  # every row its own user (no GAUC)
    if layout.time:
        out[TIME] = _times(raw[layout.time], layout.time, path, lines)
    return out


def _times(values: np.ndarray, column: str, path: str, lines: np.ndarray) -> np.ndarray:
    """A time column [N] as int64 seconds: integers as they are, dates and times
    ('2017-05-06 00:00:00', ISO 8601; UTC unless they say) as Unix seconds."""
    text = pd.Series(values, dtype=object)
    integer = text.str.fullmatch(_INTEGER).to_numpy(dtype=bool)
    seconds = np.zeros(len(text), np.int64)
    seconds[integer] = text[integer].astype(np.int64)
    stamps = pd.to_datetime(text[~integer], errors="coerce", format="ISO8601", utc=True)
    bad = np.flatnonzero(~integer)[stamps.isna().to_numpy()]
    if bad.size:
        raise DataError(f"{path}, line {lines[bad[0]]}, column {column!r}: not a time (value {values[bad[0]]!r}); "
                        "write integer seconds or a date and time such as 2017-05-06 00:00:00")
    seconds[~integer] = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy().astype(np.int64)
    return seconds


def raw_splits(data_dir: str, layout: Layout, config: DINConfig | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The layout's files, read: train, test and (when the file names one) valid;
    with --split time every file's rows pooled and cut by time instead."""
    parts = {split: read_split(os.path.join(data_dir, name), layout) for split, name in layout.files.items()}
    if config is None or config.split != "time":
        return parts
    rows = {name: np.concatenate([part[name] for part in parts.values()]) for name in parts["train"]}
    masks = time_masks(rows[TIME], time_cuts(rows[TIME], config.holdout_fraction))
    return {split: {name: values[mask] for name, values in rows.items()} for split, mask in masks.items()}


def files(data_dir: str, layout: Layout) -> list[str]:
    return [os.path.join(data_dir, name) for name in layout.files.values()]


def split_and_encode(parts: dict[str, dict[str, np.ndarray]], layout: Layout, config: DINConfig) -> Splits:
    """Validation: the layout's valid file, else a seeded share of training users
    (the test split with --valid-on-test). Encoders are fitted on the rest."""
    train, test = parts["train"], parts["test"]
    if config.valid_on_test:
        fit_rows, valid = train, test
    elif "valid" in parts:
        fit_rows, valid = train, parts["valid"]
    else:
        held_out = holdout_users(train[USER], config.valid_fraction, config.seed)
        fit_rows = {name: values[~held_out] for name, values in train.items()}
        valid = {name: values[held_out] for name, values in train.items()}
    encoders = fit_encoders(
        fit_rows, layout.features, layout.attention_groups, config.min_count, config.share_embeddings, config.max_len,
    )
    return Splits(encode(fit_rows, encoders), encode(valid, encoders), encode(test, encoders), encoders)


def load_splits(data_dir: str, layout: Layout, config: DINConfig) -> Splits:
    parts = raw_splits(data_dir, layout, config)
    try:
        return split_and_encode(parts, layout, config)
    except DataError as error:  # a column no encoder can be fitted on
        raise DataError(f"{os.path.join(data_dir, layout.files['train'])}: {error}") from None


class CsvSource(SourceBase):
    """A source read from CSVs through a layout: a dataset file, or the tutorial's own."""

    def layout(self, data_dir: str, config: DINConfig) -> Layout:
        raise NotImplementedError

    def options(self, config: DINConfig) -> dict:
        return data_key(config) | {"seed": config.seed}  # the seed draws the held-out validation users

    def files(self, data_dir: str, config: DINConfig) -> list[str]:
        return files(data_dir, self.layout(data_dir, config))

    def load(self, data_dir: str, config: DINConfig, progress: bool = False) -> Splits:
        return load_splits(data_dir, self.layout(data_dir, config), config)

    def build_beam(self, data_dir: str, config: DINConfig, folder: str, runner: str, pipeline_args: tuple[str, ...]) -> None:
        beam_build("dataset_file").build(data_dir, self.layout(data_dir, config), config, folder, runner, pipeline_args)

    def raw_splits(self, data_dir: str, config: DINConfig) -> dict[str, dict[str, np.ndarray]]:
        return raw_splits(data_dir, self.layout(data_dir, config), config)

    def timed(self, data_dir: str, config: DINConfig) -> bool:
        return self.layout(data_dir, config).time is not None

    def check(self, data_dir: str, config: DINConfig) -> None:
        if config.split == "time" and not self.timed(data_dir, config):  # the one line says how to name one
            raise DataError(f"--split time: {self.layout(data_dir, config).path} names no time column; add "
                            'time = "<column>" (seconds, or dates and times) to it')
        super().check(data_dir, config)

    def features(self, data_dir: str, config: DINConfig) -> tuple[Feature, ...]:
        return self.layout(data_dir, config).features


class DatasetFile(CsvSource):
    """Your CSVs, described by a dataset file: --dataset FILE, or DIR/dataset.toml."""

    name = "dataset file"

    def detect(self, data_dir: str, config: DINConfig) -> bool:
        return bool(config.dataset) or os.path.isfile(os.path.join(data_dir, FILE_NAME))

    def layout(self, data_dir: str, config: DINConfig) -> Layout:
        return read_layout(config.dataset or os.path.join(data_dir, FILE_NAME))

    def files(self, data_dir: str, config: DINConfig) -> list[str]:
        layout = self.layout(data_dir, config)
        return [layout.path, *files(data_dir, layout)]
