"""The `sequential` protocol: every rating after a user's first is a sample.

For a user's ratings in time order (ties: by movie id), each rating but the
first becomes a sample with
  label    rating >= 4
  history  the user's latest `max_hist` movies rated >= 4 with a STRICTLY
           earlier timestamp (ratings in the same second are not history of
           each other), oldest first, right-padded
  genres   the candidate movie's genres
  ml-1m: the user's gender, age, occupation and zip code.

Split by time within each user (`split`):
  fraction        the user's last floor(f * n) samples (at least one) -> test,
                  the floor(f * n) before them (at least one, if any are left)
                  -> validation, the rest -> train; f = holdout_fraction
  leave-last-out  the last sample -> test, the one before -> validation
so that (nearly) every user is in every split and GAUC is meaningful.

Everything is numpy/pandas group arithmetic: no Python loop over ratings.
"""

from __future__ import annotations

import numpy as np

from data.config import DINConfig
from data.encoders import FeatureEncoders
from data.grouplens import RawMovieLens, read_raw
from data.errors import DataError
from data.splits import Splits, encode
from data.schema import LABEL, USER, AttentionGroup

HISTORY = "histHighRatedMovieIds"
DEMOGRAPHICS = ("gender", "age", "occupation", "zipCode")  # ml-1m's users.dat
ATTENTION_GROUPS = (AttentionGroup("group1", (("movieId", HISTORY),)),)


def _run_starts(*keys: np.ndarray) -> np.ndarray:
    """For sorted rows, the index of the first row of each row's run of equal keys."""
    n = len(keys[0])
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    return np.maximum.accumulate(np.where(change, np.arange(n), 0))


def earlier(user: np.ndarray, timestamp: np.ndarray, keep: np.ndarray, max_hist: int, *values: np.ndarray):
    """For rows sorted by (user, timestamp): each row's latest `max_hist` kept rows
    of the same user with a STRICTLY earlier timestamp, oldest first, as `values`
    at those rows [N, max_hist], right-padded with 0 (one matrix per array in values)."""
    user_start = _run_starts(user)  # first row of the user's rows
    second_start = _run_starts(user, timestamp)  # first row of the (user, timestamp) run
    kept_before = np.concatenate([[0], np.cumsum(keep)])  # [N + 1]: kept rows in [0, k)
    small = np.int32 if len(user) < 2**31 - max_hist else np.int64  # [N, H] index matrices are the memory here
    end = kept_before[second_start].astype(small)  # history = kept rows [end - h, end): strictly earlier
    length = np.minimum(end - kept_before[user_start].astype(small), max_hist)  # [N]
    slots = np.arange(max_hist, dtype=small)
    index = np.clip(end[:, None] - length[:, None] + slots[None, :], 0, max(int(keep.sum()) - 1, 0))  # [N, H]
    real = slots[None, :] < length[:, None]
    out = [np.where(real, v[keep][index], 0) if keep.any() else np.zeros(real.shape, v.dtype) for v in values]
    return out[0] if len(out) == 1 else out


def build_samples(raw: RawMovieLens, max_hist: int) -> dict[str, np.ndarray]:
    """One row per sample, unsplit: raw ids, history [N, max_hist] (0 = none),
    plus `order` (the sample's rank among its user's samples) and `count`."""
    ratings = raw.ratings.sort_values(["user", "timestamp", "movie"], kind="stable")
    user = ratings["user"].to_numpy()
    movie = ratings["movie"].to_numpy()
    timestamp = ratings["timestamp"].to_numpy()
    positive = ratings["rating"].to_numpy() >= 4.0

    user_start = _run_starts(user)  # first row of the user's ratings
    history = earlier(user, timestamp, positive, max_hist, movie)

    rank = np.arange(len(user)) - user_start  # position among the user's ratings
    _, inverse, sizes = np.unique(user, return_inverse=True, return_counts=True)
    counts = sizes[inverse]  # the user's number of ratings
    sample = rank >= 1  # the first rating has nothing before it
    genres = raw.movies.set_index("movie")["genres"].reindex(movie).fillna("").to_numpy(dtype=object)
    columns = {
        USER: user,
        "movieId": movie,
        HISTORY: history.astype(np.int64),
        "genres": genres.astype(str),
        LABEL: positive.astype(np.float32),
        "order": rank - 1,
        "count": counts - 1,
    }
    if raw.users is not None:
        columns |= demographics(raw, user)
    return {name: values[sample] for name, values in columns.items()}


def demographics(raw: RawMovieLens, user: np.ndarray) -> dict[str, np.ndarray]:
    """ml-1m's users.dat columns (DEMOGRAPHICS) for each row's user."""
    users = raw.users.set_index("user").loc[user]
    return {
        "gender": users["gender"].to_numpy().astype(str),
        "age": users["age"].to_numpy(dtype=np.float64),
        "occupation": users["occupation"].to_numpy().astype(str),
        "zipCode": users["zip"].to_numpy().astype(str),
    }


def split_masks(order: np.ndarray, count: np.ndarray, fraction: float, split: str) -> dict[str, np.ndarray]:
    """Boolean masks of train/valid/test from each sample's rank and its user's sample count."""
    if split == "leave-last-out":
        n_test = np.ones_like(count)
        n_valid = np.minimum(1, count - n_test)
    elif split == "fraction":
        n_test = np.maximum(1, np.floor(fraction * count).astype(np.int64))
        n_valid = np.minimum(np.maximum(1, np.floor(fraction * count).astype(np.int64)), count - n_test)
    else:
        raise ValueError(f"split must be 'fraction' or 'leave-last-out', got {split!r}")
    from_end = count - order  # 1 for the user's last sample
    test = from_end <= n_test
    valid = ~test & (from_end <= n_test + n_valid)
    return {"train": ~test & ~valid, "valid": valid, "test": test}


def split_samples(raw: RawMovieLens, config: DINConfig) -> dict[str, dict[str, np.ndarray]]:
    """Raw sample columns per split ('train', 'valid', 'test')."""
    samples = build_samples(raw, config.max_hist)
    masks = split_masks(samples.pop("order"), samples.pop("count"), config.holdout_fraction, config.split)
    return {name: {k: v[mask] for k, v in samples.items()} for name, mask in masks.items()}


def raw_splits(data_dir: str, config: DINConfig) -> dict[str, dict[str, np.ndarray]]:
    return split_samples(read_raw(data_dir), config)


def load(data_dir: str, config: DINConfig) -> Splits:
    raw = read_raw(data_dir)
    splits = split_samples(raw, config)
    if not len(splits["train"][LABEL]):
        raise DataError(f"{data_dir}: no training samples: every user has too few ratings for the '{config.split}' split")
    numeric = ("age",) if raw.users is not None else ()
    categorical = ("gender", "movieId", "occupation", "zipCode") if raw.users is not None else ("movieId",)
    encoders = FeatureEncoders.fit(
        splits["train"], numeric, categorical, ("genres", HISTORY), ATTENTION_GROUPS, config.min_count,
        config.share_embeddings, config.max_len,
    )
    return Splits(*(encode(splits[name], encoders) for name in ("train", "valid", "test")), encoders)
