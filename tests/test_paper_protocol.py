"""The DIN paper's MovieLens protocol (`--protocol paper`) on synthetic raw MovieLens."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.config import DINConfig
from data.datasets import load_splits
from data.schema import LABEL, USER
from data.sources import paper_protocol
from data.sources.grouplens import read_raw


def test_every_rating_is_a_sample_of_one_users_split(ml1m_dir):
    config = DINConfig(protocol="paper", max_hist=1000)
    parts = paper_protocol.raw_splits(ml1m_dir, config)
    raw = read_raw(ml1m_dir)
    assert sum(len(p[LABEL]) for p in parts.values()) == len(raw.ratings)  # the first rating too
    users = {name: set(p[USER]) for name, p in parts.items()}
    assert not users["train"] & users["test"] and not users["valid"] & users["test"] and not users["train"] & users["valid"]
    n = raw.ratings["user"].nunique()
    assert abs(len(users["test"]) / n - (1 - 100_000 / 138_493)) < 0.01  # the paper: 100,000 of ML-20M's 138,493 users train
    assert abs(len(users["valid"]) / (n - len(users["test"])) - config.valid_fraction) < 0.01
    # A sample's history: every movie the user rated strictly earlier (liked or not), oldest first.
    ratings = raw.ratings.sort_values(["user", "timestamp", "movie"], kind="stable")
    test = parts["test"]
    first_genre = {m: (g.split("|")[0] if g else "") for m, g in zip(raw.movies["movie"], raw.movies["genres"])}
    names = sorted(set(first_genre.values()))
    for k in np.random.default_rng(0).choice(len(test[LABEL]), 40, replace=False):
        user, movie = test[USER][k], test["movieId"][k]
        mine = ratings[ratings["user"] == user]
        when = mine.loc[mine["movie"] == movie, "timestamp"].iloc[0]
        expected = mine.loc[mine["timestamp"] < when, "movie"].tolist()
        history = test["histMovieIds"][k]
        assert history[history > 0].tolist() == expected
        genres = test["histGenres"][k][: len(expected)]
        assert [names[g - 1] for g in genres] == [first_genre[m] for m in expected]
        assert test[LABEL][k] == float(mine.loc[mine["movie"] == movie, "rating"].iloc[0] >= 4)


def test_builds_and_encodes_with_two_attention_pairs(csv_release_dir, tmp_path):
    splits = load_splits(csv_release_dir, DINConfig(protocol="paper"), cache_dir=str(tmp_path))
    schema = splits.encoders.schema()
    assert [g.pairs for g in schema.attention_groups] == [(("movieId", "histMovieIds"), ("genre", "histGenres"))]
    assert schema.numeric == () and {f.name for f in schema.pooled} == {"genres"}
    assert len(splits.train[LABEL]) > len(splits.test[LABEL]) > 0
    # The seed draws the users: another seed, another split.
    other = load_splits(csv_release_dir, DINConfig(protocol="paper", seed=1), cache_dir=str(tmp_path))
    assert set(pd.unique(other.test[USER])) != set(pd.unique(splits.test[USER]))
