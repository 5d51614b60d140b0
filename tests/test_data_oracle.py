"""An independent oracle for the samples of raw MovieLens: a plain-Python loop
over each user's ratings, written from docs/data.md's protocols and sharing no
code with the builders, against the builders' raw splits
(data.datasets.raw_splits), on drawn ratings with ties in time, long
histories, ratings at the like threshold (3.5, 4.0) and users with a single
rating. Parity cannot see a data bug: both frameworks read the same arrays."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from core.config import DINConfig
from data.datasets import raw_splits

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MOVIES = 30
GENRES = ("Action", "Comedy", "Drama", "Sci-Fi")
NO_GENRES = "(no genres listed)"  # ml-latest-small's marker: no genres
SPLITS = ("train", "valid", "test")


@st.composite
def ratings(draw, stars: tuple[float, ...]) -> list[tuple[int, int, float, int]]:
    """(user, movie, rating, timestamp) rows: each user rates distinct movies,
    at timestamps from a few seconds apart (ties are common)."""
    rows = []
    for user in range(1, draw(st.integers(1, 6)) + 1):
        movies = draw(st.lists(st.integers(1, MOVIES), min_size=1, max_size=15, unique=True))
        rows += [(user, movie, draw(st.sampled_from(stars)), 1_000_000 + draw(st.integers(0, 5))) for movie in movies]
    return rows


def genres_of(movie: int) -> str:
    """A movie's genres as the movies file lists them."""
    return NO_GENRES if movie % 7 == 0 else "|".join(dict.fromkeys((GENRES[movie % 4], GENRES[movie % 3])))


def genres_read(movie: int) -> str:
    """What a sample holds: the genres listed, none for the marker."""
    return "" if genres_of(movie) == NO_GENRES else genres_of(movie)


def write_csv_release(rows, folder) -> str:
    folder.mkdir()
    lines = ["userId,movieId,rating,timestamp"] + [f"{u},{m},{r},{t}" for u, m, r, t in rows]
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    movies = ["movieId,title,genres"] + [f"{m},Movie {m} (2000),{genres_of(m)}" for m in range(1, MOVIES + 1)]
    (folder / "movies.csv").write_text("\n".join(movies) + "\n")
    return str(folder)


def write_ml1m(rows, folder) -> str:
    folder.mkdir()
    (folder / "ratings.dat").write_text("".join(f"{u}::{m}::{int(r)}::{t}\n" for u, m, r, t in rows))
    users = sorted({u for u, *_ in rows})
    (folder / "users.dat").write_text("".join(f"{u}::{'MF'[u % 2]}::25::{u % 21}::{10000 + u}\n" for u in users))
    (folder / "movies.dat").write_text("".join(f"{m}::Movie {m} (2000)::{genres_of(m)}\n" for m in range(1, MOVIES + 1)))
    return str(folder)


# --- the oracle: docs/data.md, "The protocols", one loop per user -------------------------------

def by_user(rows) -> dict[int, list[tuple[int, int, float]]]:
    """user -> their (timestamp, movie, rating), in time order (ties by movie id)."""
    users: dict[int, list] = {}
    for user, movie, rating, timestamp in rows:
        users.setdefault(user, []).append((timestamp, movie, rating))
    return {user: sorted(events) for user, events in sorted(users.items())}


def latest_before(events, i, keep, max_hist) -> list[int]:
    """The latest max_hist movies of `events` kept by `keep` with a timestamp
    strictly before event i's, oldest first, padded with 0 to max_hist."""
    before = [movie for timestamp, movie, rating in events if timestamp < events[i][0] and keep(rating)]
    before = before[len(before) - max_hist:] if len(before) > max_hist else before
    return before + [0] * (max_hist - len(before))


def sequential(rows, max_hist: int, fraction: float, split: str) -> dict[str, list[dict]]:
    """Every rating after a user's first is a sample; the last share of a
    user's samples (at least one) test, as many before them validation."""
    out = {name: [] for name in SPLITS}
    for user, events in by_user(rows).items():
        samples = [{"user": user, "movie": events[i][1], "label": float(events[i][2] >= 4),
                    "liked": latest_before(events, i, lambda r: r >= 4, max_hist),
                    "disliked": latest_before(events, i, lambda r: r < 4, max_hist)}
                   for i in range(1, len(events))]
        n = len(samples)
        if split == "leave-last-out":
            n_test, n_valid = 1, min(1, n - 1)
        else:
            n_test = max(1, math.floor(fraction * n))
            n_valid = min(max(1, math.floor(fraction * n)), n - n_test)
        for k, sample in enumerate(samples):
            from_end = n - k
            name = "test" if from_end <= n_test else "valid" if from_end <= n_test + n_valid else "train"
            out[name].append(sample)
    return out


def paper(rows, max_hist: int) -> dict[int, list[dict]]:
    """user -> every rating as a sample, its history every movie rated strictly earlier."""
    return {user: [{"movie": events[i][1], "label": float(events[i][2] >= 4),
                    "history": latest_before(events, i, lambda r: True, max_hist)} for i in range(len(events))]
            for user, events in by_user(rows).items()}


def seed_sample(events) -> dict:
    """The tutorial's sample of a user: their last rating, the latest 10 liked movies before it."""
    liked = [m for m in latest_before(events, len(events) - 1, lambda r: r >= 4, 10) if m]
    return {"movie": str(events[-1][1]), "label": float(events[-1][2] >= 4), "history": "|".join(map(str, liked))}


# --- the builders against it ----------------------------------------------------------------------

def columns(split: dict, names: dict[str, str]) -> list[dict]:
    n = len(split["label"])
    return [{key: (split[name][k].tolist() if np.ndim(split[name][k]) else split[name][k].item())
             for key, name in names.items()} for k in range(n)]


@SETTINGS
@given(rows=ratings((0.5, 1.0, 2.5, 3.5, 4.0, 4.5, 5.0)), max_hist=st.integers(1, 5),
       fraction=st.sampled_from([0.1, 0.25, 0.4]), split=st.sampled_from(["fraction", "leave-last-out"]))
def test_the_sequential_protocol_builds_what_the_oracle_does(tmp_path_factory, rows, max_hist, fraction, split):
    folder = write_csv_release(rows, tmp_path_factory.mktemp("oracle") / "ml")
    config = DINConfig(max_hist=max_hist, holdout_fraction=fraction, split=split, low_rated_history=True,
                       user_feature=True)
    built = raw_splits(folder, config)
    expected = sequential(rows, max_hist, fraction, split)
    names = {"user": "user_id", "movie": "movieId", "label": "label", "liked": "histHighRatedMovieIds",
             "disliked": "histLowRatedMovieIds"}
    for name in SPLITS:
        assert columns(built[name], names) == expected[name], name
        assert built[name]["userId"].tolist() == built[name]["user_id"].tolist()  # the user id feature
        assert list(map(str, built[name]["genres"])) == [genres_read(m) for m in built[name]["movieId"].tolist()]


@SETTINGS
@given(rows=ratings((0.5, 2.5, 3.5, 4.0, 5.0)), max_hist=st.integers(1, 5), seed=st.integers(0, 3))
def test_the_paper_protocol_builds_what_the_oracle_does(tmp_path_factory, rows, max_hist, seed):
    folder = write_csv_release(rows, tmp_path_factory.mktemp("oracle") / "ml")
    built = raw_splits(folder, DINConfig(protocol="paper", max_hist=max_hist, seed=seed))
    expected = paper(rows, max_hist)
    found: dict[int, list[dict]] = {}
    names = {"user": "user_id", "movie": "movieId", "label": "label", "history": "histMovieIds"}
    home: dict[int, str] = {}
    for name in SPLITS:
        for row in columns(built[name], names):
            user = row.pop("user")
            assert home.setdefault(user, name) == name  # a user's samples all in one split
            found.setdefault(user, []).append(row)
        # Each history movie carries its own genre, the candidate's genre column's.
        genre = dict(zip(built[name]["movieId"].tolist(), built[name]["genre"].tolist()))
        for movies, genres in zip(built[name]["histMovieIds"], built[name]["histGenres"]):
            assert all(genre.get(m, g) == g for m, g in zip(movies, genres) if m)
            assert all(g == 0 for m, g in zip(movies, genres) if not m)
    assert found == expected


@SETTINGS
@given(rows=ratings((1.0, 2.0, 3.0, 4.0, 5.0)), seed=st.integers(0, 3))
def test_the_seed_protocol_builds_what_the_oracle_does(tmp_path_factory, rows, seed):
    folder = write_ml1m(rows, tmp_path_factory.mktemp("oracle") / "ml-1m")
    built = raw_splits(folder, DINConfig(protocol="seed", seed=seed))
    events = by_user(rows)
    expected = {user: seed_sample(e) for user, e in events.items() if len(e) > 1}  # one rating: no sample
    found = {}
    for name in ("train", "test"):
        split = built[name]
        for k, user in enumerate(split["user_id"].tolist()):
            assert user not in found  # one sample per user, in one split
            found[user] = {"movie": str(split["movieId"][k]), "label": float(split["label"][k]),
                           "history": str(split["histHighRatedMovieIds"][k])}
            negatives = [int(m) for m in str(split["negHistMovieIds"][k]).split("|")]
            rated = {movie for _, movie, _ in events[user]}
            assert len(set(negatives)) == 10 and not rated & set(negatives)  # 10 distinct, never rated
            assert all(1 <= m <= MOVIES for m in negatives)  # from movies.dat
    assert found == expected


def test_the_oracle_sees_what_the_mutations_change():
    """The oracle itself on a hand-checked user: ties are not history, 4.0 is
    liked and 3.5 not, the latest max_hist kept, oldest first."""
    rows = [(1, 10, 4.0, 100), (1, 11, 3.5, 100), (1, 12, 5.0, 200), (1, 13, 4.5, 300), (1, 14, 1.0, 300)]
    out = sequential(rows, 2, 0.25, "fraction")
    assert [s["movie"] for s in out["train"]] == [11, 12] and [s["movie"] for s in out["valid"]] == [13]
    assert out["test"] == [{"user": 1, "movie": 14, "label": 0.0, "liked": [10, 12], "disliked": [11, 0]}]
    assert out["train"][0]["liked"] == [0, 0]  # movie 10 shares movie 11's second
    assert out["valid"][0] == {"user": 1, "movie": 13, "label": 1.0, "liked": [10, 12], "disliked": [11, 0]}


@SETTINGS
@given(rows=ratings((2.5, 4.0)), min_count=st.integers(1, 4))
def test_the_user_id_keeps_users_with_min_count_training_samples(tmp_path_factory, rows, min_count):
    """docs/data.md: the user id's vocabulary holds the users in at least
    --min-count training samples, sorted (as text) and numbered from 1; every
    other user, in any split, is the unknown id n + 1."""
    from data.sources.movielens import MovieLens

    folder = write_csv_release(rows, tmp_path_factory.mktemp("oracle") / "ml")
    expected = sequential(rows, 3, 0.25, "fraction")
    if not expected["train"]:
        return  # no training samples: refused, tests/test_bad_inputs.py
    config = DINConfig(max_hist=3, holdout_fraction=0.25, min_count=min_count, user_feature=True)
    splits = MovieLens().load(folder, config)
    counts: dict[int, int] = {}
    for sample in expected["train"]:
        counts[sample["user"]] = counts.get(sample["user"], 0) + 1
    known = sorted((str(u) for u, c in counts.items() if c >= min_count))
    code = {int(term): k + 1 for k, term in enumerate(known)}
    for name in SPLITS:
        users = [s["user"] for s in expected[name]]
        assert getattr(splits, name)["userId"].tolist() == [code.get(u, len(known) + 1) for u in users], name
