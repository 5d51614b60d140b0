"""The `paper` protocol: MovieLens as the DIN paper's section 6.1 describes it.

  label      rating >= 4
  users      split at random (seeded) into train and test, 100,000 of ML-20M's
             138,493 users training; any release keeps the same fraction
  samples    every rating of a user (the first one too: an empty history)
  history    the movies the user rated before (any rating, liked or not),
             with a STRICTLY earlier timestamp, the latest `max_hist`,
             oldest first, each with its genre
  features   the candidate movie and its genre as the attention group's two
             (query, history) pairs; the candidate's genres (all of them,
             max-pooled, as in the other protocols); ml-1m: the user's
             gender, age, occupation and zip code
  metrics    GAUC as the paper's eq. 1: per-user AUC weighted by the user's
             samples (training/metrics.py)
  validation a seeded share (--valid-fraction) of the training users

Choices the paper's text leaves open, made here: a movie's genre is its
first listed genre (MovieLens lists several; the paper names one), numbered
by sorted name from 1 ("no genres listed" is a genre, numbered first); the user split
uses the run's seed, the validation split seed + 1; ratings in the same
second are not history of each other (as in the sequential protocol); the
history is cut to --max-hist (default 50) like every other builder here.
The paper's anchor: DIN with Dice, GAUC 0.7348 on ML-20M.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.config import DINConfig
from core.errors import DataError
from data.features import features
from data.schema import LABEL, USER, AttentionGroup
from data.sources.grouplens import read_raw
from data.sources.history import earlier
from data.sources.sequential import demographics
from data.splits import Splits, encode, holdout_users
from data.statistics import fit_encoders

TRAIN_USERS = 100_000 / 138_493  # ML-20M's users in the paper's training set
ATTENTION_GROUPS = (AttentionGroup("history", (("movieId", "histMovieIds"), ("genre", "histGenres"))),)


def build_samples(data_dir: str, max_hist: int) -> tuple[dict[str, np.ndarray], bool]:
    """Every rating as a sample (unsplit); whether users.dat demographics are present."""
    raw = read_raw(data_dir)
    ratings = raw.ratings.sort_values(["user", "timestamp", "movie"], kind="stable")
    user, movie = ratings["user"].to_numpy(), ratings["movie"].to_numpy()
    movies = raw.movies.set_index("movie")
    genres = movies["genres"].reindex(movie).fillna("").to_numpy(dtype=object).astype(str)  # [N] 'a|b'
    first = np.asarray([g.split("|", 1)[0] for g in movies["genres"].to_numpy(dtype=str)])
    names = np.unique(first)  # '' (no genres listed) is a genre of its own: every history slot has one
    codes = pd.Series(np.searchsorted(names, first) + 1, index=movies.index)  # movie -> its genre's number
    genre = codes.reindex(movie, fill_value=0).to_numpy()  # a movie missing from movies: no genre (0)
    history, history_genres = earlier(user, ratings["timestamp"].to_numpy(), np.ones(len(user), bool), max_hist,
                                      movie, genre)
    columns = {
        USER: user,
        "movieId": movie,
        "genre": genre,
        "genres": genres,
        "histMovieIds": history.astype(np.int64),
        "histGenres": history_genres.astype(np.int64),
        LABEL: (ratings["rating"].to_numpy() >= 4.0).astype(np.float32),
    }
    if raw.users is not None:
        columns |= demographics(raw, user)
    return columns, raw.users is not None


def raw_splits(data_dir: str, config: DINConfig) -> dict[str, dict[str, np.ndarray]]:
    columns, _ = build_samples(data_dir, config.max_hist)
    return _split(columns, config)


def _split(columns: dict[str, np.ndarray], config: DINConfig) -> dict[str, dict[str, np.ndarray]]:
    test = holdout_users(columns[USER], 1.0 - TRAIN_USERS, config.seed)
    if config.valid_on_test:
        valid = test
    else:  # a share of the training users, drawn from its own seed
        train_users = np.unique(columns[USER][~test])
        chosen = holdout_users(train_users, config.valid_fraction, config.seed + 1)
        valid = np.isin(columns[USER], train_users[chosen])
    train = ~test & ~valid
    return {name: {k: v[mask] for k, v in columns.items()} for name, mask in
            (("train", train), ("valid", valid), ("test", test))}


def load(data_dir: str, config: DINConfig) -> Splits:
    columns, demographics = build_samples(data_dir, config.max_hist)
    splits = _split(columns, config)
    if not len(splits["train"][LABEL]):
        raise DataError(f"{data_dir}: no training samples: too few users for the paper's user split")
    numeric = ("age",) if demographics else ()
    categorical = (("gender", "occupation", "zipCode") if demographics else ()) + ("movieId", "genre")
    specs = features(numeric, categorical, ("genres", "histMovieIds", "histGenres"))
    encoders = fit_encoders(splits["train"], specs, ATTENTION_GROUPS, config.min_count,
                                            config.share_embeddings, config.max_len)
    return Splits(*(encode(splits[name], encoders) for name in ("train", "valid", "test")), encoders)
