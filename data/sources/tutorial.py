"""The tutorial's MovieLens-1M split: `train.csv` and `test.csv`, one row per user, their last rating.

    userId,movieId,ratting,timestamp,last,histHighRatedMovieIds,negHistMovieIds,
    gender,age,occupation,zipCode,title,genres,label

A folder holding both files (and no dataset.toml) is read through the
dataset file shipped with the project, `data/sources/layouts/tutorial.toml`, like
any other CSV (data/sources/dataset_file.py): a seeded share of the training users
is held out for validation, the encoders are fitted on the remaining
training rows only. Input rules (everything else is an error naming file,
column and line): an empty `age` is imputed with the training mean, an
empty categorical value is unknown, an empty sequence is all padding,
`label` is 0 or 1, `userId` an integer.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from core.config import DINConfig
from data.sources import dataset_file
from data.sources.dataset_layout import Layout, read_layout
from data.splits import Splits

LAYOUT = read_layout(os.path.join(os.path.dirname(os.path.abspath(__file__)), "layouts", "tutorial.toml"))
REQUIRED_COLUMNS = LAYOUT.columns  # userId, the features in the file's order, label
FILES = tuple(LAYOUT.files.values())


def detect(folder: str) -> bool:
    return all(os.path.isfile(os.path.join(folder, name)) for name in FILES)


def read_tutorial_csv(path: str) -> dict[str, np.ndarray]:
    """Reads and validates one file: raw columns (strings, floats for age), label and user."""
    return dataset_file.read_split(path, LAYOUT)


def load_splits(data_dir: str, config: DINConfig) -> Splits:
    """Train/valid/test arrays from a folder holding `train.csv` and `test.csv`."""
    return dataset_file.load_splits(data_dir, LAYOUT, config)


def split_and_encode(train: dict[str, np.ndarray], test: dict[str, np.ndarray], config: DINConfig) -> Splits:
    """Raw columns in the tutorial's layout (as `read_tutorial_csv` gives) -> encoded splits."""
    return dataset_file.split_and_encode({"train": train, "test": test}, LAYOUT, config)


class Tutorial(dataset_file.CsvSource):
    """The tutorial's MovieLens-1M split: train.csv + test.csv (a CSV layout of its own)."""

    name = "tutorial"
    label_names = ("rated high next", "rated low")

    def detect(self, data_dir: str, config: DINConfig) -> bool:
        return detect(data_dir)

    def layout(self, data_dir: str, config: DINConfig) -> Layout:
        return LAYOUT

    def titles(self, data_dir: str) -> dict[str, str]:
        frames = [pd.read_csv(os.path.join(data_dir, name), dtype=str, keep_default_na=False,
                              usecols=lambda c: c in ("movieId", "title")) for name in FILES]
        frame = pd.concat(frames)
        return dict(zip(frame["movieId"], frame["title"])) if "title" in frame else {}
