"""The `sequential` protocol: every rating after a user's first is a sample.

For a user's ratings in time order (ties: by movie id), each rating but the
first becomes a sample with
  label    rating >= 4
  history  the user's latest `max_hist` movies rated >= 4 with a STRICTLY
           earlier timestamp (ratings in the same second are not history of
           each other), oldest first, right-padded
  genres   the candidate movie's genres
  ml-1m: the user's gender, age, occupation and zip code.
Two features beyond the tutorial's, on unless turned off (--no-low-rated-history,
--no-user-feature): the movies rated below 4 before, as a second attention
group (histLowRatedMovieIds, the history's twin), and the user id (userId).

Split by time (`split`), within each user:
  fraction        the user's last floor(f * n) samples (at least one) -> test,
                  the floor(f * n) before them (at least one, if any are left)
                  -> validation, the rest -> train; f = holdout_fraction
  leave-last-out  the last sample -> test, the one before -> validation
so that (nearly) every user is in every split and GAUC is meaningful; or
over all users at once:
  time            the latest floor(f * N) of all N samples -> test, the
                  floor(f * N) before them -> validation: one cut time each
                  (`cut_times`; samples at a cut's second go after it), the
                  same for every user, so no training sample is later than a
                  validation or test one.
Every sample keeps its time (TIME), which the run records per split.

Everything is numpy/pandas group arithmetic: no Python loop over ratings.
`build` makes the samples a chunk of whole users at a time (`chunks`), so a
build holds the ratings and one chunk, never every sample: a user's samples
and split depend on that user's ratings only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.config import DINConfig
from core.errors import DataError
from data.features import Feature, features as feature_kinds
from data.schema import LABEL, TIME, USER, AttentionGroup
from data.sources.base import SEQUENTIAL_OPTIONS
from data.sources.grouplens import RawMovieLens, read_raw
from data.sources.history import earlier, run_starts
from data.splits import ChunkedSplits, Splits, time_cuts, time_masks

HISTORY = "histHighRatedMovieIds"
LOW_HISTORY = "histLowRatedMovieIds"  # --low-rated-history
USER_FEATURE = "userId"  # --user-feature
DEMOGRAPHICS = ("gender", "age", "occupation", "zipCode")  # ml-1m's users.dat
ATTENTION_GROUPS = (AttentionGroup("liked", (("movieId", HISTORY),)),)


def enabled(option: bool | None) -> bool:
    """A sequential-protocol option. A run resolves it (training/resolve.py);
    None is what a config.json written before that records for "the protocol's
    choice", which was on, and is read as such."""
    return option is not False


def options(config: DINConfig) -> dict:
    """The data settings with the protocol's options as booleans (the cache key)."""
    return config.group("data") | {name: enabled(getattr(config, name)) for name in SEQUENTIAL_OPTIONS}


def attention_groups(config: DINConfig) -> tuple[AttentionGroup, ...]:
    """The liked movies; with --low-rated-history the disliked ones too, a second
    group with the candidate as its query (DIN attends over each behaviour)."""
    low = (AttentionGroup("disliked", (("movieId", LOW_HISTORY),)),) if enabled(config.low_rated_history) else ()
    return ATTENTION_GROUPS + low


CHUNK_RATINGS = 1 << 19  # the ratings of whole users built at a time: bounds a build's memory


def sorted_ratings(raw: RawMovieLens) -> dict[str, np.ndarray]:
    """The ratings as arrays sorted by (user, timestamp, movie)."""
    ratings = raw.ratings.sort_values(["user", "timestamp", "movie"], kind="stable")
    arrays = {name: ratings[name].to_numpy() for name in ("user", "movie", "rating", "timestamp")}
    if len(arrays["movie"]) and 0 <= arrays["movie"].min() and arrays["movie"].max() < 2**31:
        arrays["movie"] = arrays["movie"].astype(np.int32)  # histories [N, max_hist] are the build's memory
    return arrays


def user_chunks(user: np.ndarray, size: int) -> list[slice]:
    """Row ranges of whole users (rows sorted by user): a chunk ends at the
    first user to start at or after each multiple of `size` rows."""
    if not len(user):
        return []
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])  # each user's first row
    cuts = starts[np.minimum(np.searchsorted(starts, np.arange(size, len(user), size)), len(starts) - 1)]
    cuts = np.unique(np.r_[0, cuts, len(user)])
    return [slice(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]


def build_samples(raw: RawMovieLens, max_hist: int, low_rated: bool = False, user_id: bool = False) -> dict[str, np.ndarray]:
    """One row per sample, unsplit, for every user (see samples)."""
    return samples(raw, sorted_ratings(raw), max_hist, low_rated, user_id)


def samples(raw: RawMovieLens, ratings: dict[str, np.ndarray], max_hist: int, low_rated: bool = False,
            user_id: bool = False) -> dict[str, np.ndarray]:
    """One row per sample of the (user, timestamp, movie)-sorted `ratings` of
    whole users: raw ids, history [N, max_hist] (0 = none), genres (a
    pd.Categorical: each movie's string), plus `order` (the sample's rank among
    its user's samples) and `count`. low_rated: LOW_HISTORY [N, max_hist], the
    movies rated below 4 strictly earlier, as the history holds those rated 4
    or more; user_id: USER_FEATURE, the user as a feature."""
    user, movie, timestamp = ratings["user"], ratings["movie"], ratings["timestamp"]
    positive = ratings["rating"] >= 4.0

    user_start = run_starts(user)  # first row of the user's ratings
    history = earlier(user, timestamp, positive, max_hist, movie)

    rank = np.arange(len(user)) - user_start  # position among the user's ratings
    _, inverse, sizes = np.unique(user, return_inverse=True, return_counts=True)
    counts = sizes[inverse]  # the user's number of ratings
    sample = rank >= 1  # the first rating has nothing before it
    columns = {
        USER: user,
        "movieId": movie,
        HISTORY: history,
        "genres": movie_genres(raw, movie),
        LABEL: positive.astype(np.float32),
        TIME: timestamp.astype(np.int64),
        "order": rank - 1,
        "count": counts - 1,
    }
    if low_rated:
        columns[LOW_HISTORY] = earlier(user, timestamp, ~positive, max_hist, movie)
    if user_id:
        columns[USER_FEATURE] = user
    if raw.users is not None:
        columns |= demographics(raw, user)
    return {name: values[sample] for name, values in columns.items()}


def samples_of(raw: RawMovieLens, ratings: dict[str, np.ndarray], config: DINConfig) -> dict[str, np.ndarray]:
    """samples with the run's options."""
    return samples(raw, ratings, config.max_hist, enabled(config.low_rated_history), enabled(config.user_feature))


def movie_genres(raw: RawMovieLens, movie: np.ndarray) -> pd.Categorical:
    """Each movie's genres string ('' for a movie not in the movies file), as
    codes into the distinct strings: encoded once per string, not per row."""
    table = pd.Categorical(np.append(raw.movies["genres"].to_numpy(dtype=object), ""))  # [M + 1]: the last is ''
    index = pd.Index(raw.movies["movie"]).get_indexer(movie)  # -1 (not found) -> the last entry
    return pd.Categorical.from_codes(table.codes[index], table.categories)


def demographics(raw: RawMovieLens, user: np.ndarray) -> dict[str, np.ndarray]:
    """ml-1m's users.dat columns (DEMOGRAPHICS) for each row's user."""
    users = raw.users.set_index("user").loc[user]
    return {
        "gender": users["gender"].to_numpy().astype(str),
        "age": users["age"].to_numpy(dtype=np.float64),
        "occupation": users["occupation"].to_numpy().astype(str),
        "zipCode": users["zip"].to_numpy().astype(str),
    }


def cut_times(ratings: dict[str, np.ndarray], fraction: float) -> tuple[int, int]:
    """(validation, test) cut times of the time split over the sorted ratings of
    every user: time_cuts of the samples (every rating but a user's first)."""
    user, timestamp = ratings["user"], ratings["timestamp"]
    return time_cuts(timestamp[np.arange(len(user)) != run_starts(user)] if len(user) else np.zeros(0, np.int64),
                     fraction)


def split_masks(order: np.ndarray, count: np.ndarray, fraction: float, split: str, time: np.ndarray | None = None,
                cuts: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Boolean masks of train/valid/test from each sample's rank and its user's
    sample count, or (split 'time') from its time and the (validation, test) cut times."""
    if split == "time":
        return time_masks(time, cuts)
    if split == "leave-last-out":
        n_test = np.ones_like(count)
        n_valid = np.minimum(1, count - n_test)
    elif split == "fraction":
        n_test = np.maximum(1, np.floor(fraction * count).astype(np.int64))
        n_valid = np.minimum(np.maximum(1, np.floor(fraction * count).astype(np.int64)), count - n_test)
    else:
        raise ValueError(f"split must be 'fraction', 'leave-last-out' or 'time', got {split!r}")
    from_end = count - order  # 1 for the user's last sample
    test = from_end <= n_test
    valid = ~test & (from_end <= n_test + n_valid)
    return {"train": ~test & ~valid, "valid": valid, "test": test}


def split_samples(raw: RawMovieLens, config: DINConfig) -> dict[str, dict[str, np.ndarray]]:
    """Raw sample columns per split ('train', 'valid', 'test')."""
    ratings = sorted_ratings(raw)
    cuts = cut_times(ratings, config.holdout_fraction) if config.split == "time" else None
    return split_samples_of(raw, samples_of(raw, ratings, config), config, cuts)


def split_samples_of(raw: RawMovieLens, columns: dict[str, np.ndarray], config: DINConfig,
                     cuts: tuple[int, int] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """A chunk's samples per split; cuts: the time split's, taken over every user's ratings."""
    masks = split_masks(columns.pop("order"), columns.pop("count"), config.holdout_fraction, config.split,
                        columns[TIME], cuts)
    return {name: {k: v[mask] for k, v in columns.items()} for name, mask in masks.items()}


def chunks(raw: RawMovieLens, config: DINConfig, chunk_ratings: int = CHUNK_RATINGS, advance=lambda ratings: None):
    """split_samples of the users of one chunk of ratings after another: what
    the whole build holds at once is the ratings and one chunk. advance(n):
    called with each chunk's ratings once it is built."""
    ratings = sorted_ratings(raw)
    cuts = cut_times(ratings, config.holdout_fraction) if config.split == "time" else None
    for rows in user_chunks(ratings["user"], chunk_ratings):
        chunk = {name: values[rows] for name, values in ratings.items()}
        yield split_samples_of(raw, samples_of(raw, chunk, config), config, cuts)
        advance(rows.stop - rows.start)


def raw_splits(data_dir: str, config: DINConfig) -> dict[str, dict[str, np.ndarray]]:
    return split_samples(read_raw(data_dir), config)


def features(raw: RawMovieLens, config: DINConfig) -> tuple[Feature, ...]:
    numeric, categorical = (("age",), ("gender", "movieId", "occupation", "zipCode")) if raw.users is not None else \
        ((), ("movieId",))
    user = (USER_FEATURE,) if enabled(config.user_feature) else ()
    low = (LOW_HISTORY,) if enabled(config.low_rated_history) else ()
    return feature_kinds(numeric, (*categorical, *user), ("genres", HISTORY, *low))


def build(raw: RawMovieLens, config: DINConfig, chunk_ratings: int = CHUNK_RATINGS, advance=lambda ratings: None) -> ChunkedSplits:
    """The encoded splits, fitted and encoded one chunk of users at a time
    (advance: as in chunks, in both passes)."""
    built = ChunkedSplits.fit(lambda: chunks(raw, config, chunk_ratings, advance), features(raw, config),
                              attention_groups(config), config)
    if not built.rows["train"]:
        raise DataError(f"{raw.folder}: no training samples: every user has too few ratings for the '{config.split}' split")
    return built


def load(data_dir: str, config: DINConfig) -> Splits:
    """The encoded splits in memory (build's chunks joined)."""
    return build(read_raw(data_dir), config).in_memory()
