"""The `seed` protocol: the tutorial's samples, built from raw MovieLens-1M.

One sample per user, their last rating (label = rating >= 4), with
  histHighRatedMovieIds  their latest 10 movies rated >= 4 with an earlier
                         timestamp, time order kept
  negHistMovieIds        10 distinct random movies of movies.dat they never
                         rated (seeded)
  demographics, genres   as in the tutorial's CSVs
Users are split 80/20 into train and test (seeded). The result has the
columns `data.sources.tutorial.read_tutorial_csv` gives for the tutorial's
train.csv / test.csv, and goes through the same validation hold-out and
encoders. Needs users.dat (MovieLens-1M).
"""

from __future__ import annotations

import csv
import os
import shutil

import numpy as np

from core.config import DINConfig
from core.errors import DataError
from core.workdirs import work_dir
from data.schema import LABEL, TIME, USER
from data.sources.grouplens import RawMovieLens, read_raw
from data.sources.sequential import DEMOGRAPHICS, HISTORY, build_samples
from data.sources.tutorial import LAYOUT, REQUIRED_COLUMNS, split_and_encode
from data.splits import Splits, holdout_users

HISTORY_LENGTH = 10
NEGATIVES = 10
TEST_FRACTION = 0.2


def sample_negatives(users: np.ndarray, raw: RawMovieLens, count: int, rng: np.random.Generator) -> np.ndarray:
    """[U, count] distinct movies each user never rated, by vectorised rejection sampling."""
    movies = raw.movies["movie"].to_numpy()
    span = int(max(movies.max(), raw.ratings["movie"].max())) + 1
    rated = np.unique(raw.ratings["user"].to_numpy() * span + raw.ratings["movie"].to_numpy())
    out = np.zeros((len(users), count), dtype=np.int64)
    filled = np.zeros(len(users), dtype=np.int64)
    while (open_rows := np.flatnonzero(filled < count)).size:
        draws = rng.choice(movies, size=(len(open_rows), 2 * count))
        never = ~np.isin(users[open_rows, None] * span + draws, rated)
        for j in range(draws.shape[1]):  # a few columns, each vectorised over users
            candidate = draws[:, j]
            fresh = ~(out[open_rows] == candidate[:, None]).any(axis=1)
            take = never[:, j] & fresh & (filled[open_rows] < count)
            rows = open_rows[take]
            out[rows, filled[rows]] = candidate[take]
            filled[rows] += 1
    return out


def _joined(ids: np.ndarray) -> np.ndarray:
    return np.asarray(["|".join(str(i) for i in row if i) for row in ids], dtype=object).astype(str)


def build_seed_columns(raw: RawMovieLens, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(train, test) raw columns, as read_tutorial_csv returns for the tutorial's files."""
    if raw.users is None:
        raise DataError("the seed protocol needs user demographics: MovieLens-1M (users.dat), not a CSV release")
    samples = build_samples(raw, HISTORY_LENGTH)
    last = samples["order"] == samples["count"] - 1  # each user's last rating
    users = samples[USER][last]
    rng = np.random.default_rng(seed)
    columns = {
        USER: users,
        "movieId": samples["movieId"][last].astype(str),
        HISTORY: _joined(samples[HISTORY][last]),
        "negHistMovieIds": _joined(sample_negatives(users, raw, NEGATIVES, rng)),
        "genres": np.asarray(samples["genres"][last], dtype=str),
        LABEL: samples[LABEL][last],
        TIME: samples[TIME][last],
        **{name: samples[name][last] for name in DEMOGRAPHICS},
    }
    test = holdout_users(users, TEST_FRACTION, seed)
    return ({k: v[~test] for k, v in columns.items()}, {k: v[test] for k, v in columns.items()})


def raw_splits(data_dir: str, config: DINConfig) -> dict[str, dict[str, np.ndarray]]:
    return dict(zip(("train", "test"), build_seed_columns(read_raw(data_dir), config.seed)))


def load(data_dir: str, config: DINConfig) -> Splits:
    train, test = build_seed_columns(read_raw(data_dir), config.seed)
    return split_and_encode(train, test, config)


def write_tutorial_split(raw_dir: str, out_dir: str, seed: int = 0) -> str:
    """Writes the tutorial's train.csv / test.csv built from raw MovieLens-1M
    in `raw_dir` (this protocol, seeded) into `out_dir`, whole or not at all.

    The columns are those `data.sources.tutorial.read_tutorial_csv` requires, so the
    folder reads as the tutorial's split (`--data out_dir`).
    """
    train, test = build_seed_columns(read_raw(raw_dir), seed)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    work = work_dir(".seed-split-", parent)
    try:
        for name, columns in (("train.csv", train), ("test.csv", test)):
            source = {LAYOUT.user: columns[USER], LAYOUT.time: columns[TIME], **columns}
            with open(os.path.join(work, name), "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(REQUIRED_COLUMNS)
                for row in zip(*(source[c] for c in REQUIRED_COLUMNS)):
                    writer.writerow(f"{v:g}" if isinstance(v, (float, np.floating)) else v for v in row)
        os.replace(work, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir
