"""A small synthetic MovieLens, written in every layout the readers accept.

Deterministic from its seed, with signal a model can learn in a few epochs:
each user has a favourite genre, rates mostly movies of it, and likes
(rating >= 4) a movie of their favourite genre far more often than another.
So whether a candidate matches the genres of a user's liked history decides
most labels, the interaction DIN's attention is built for.

Layouts: raw MovieLens-1M (`::`-separated, latin-1, demographics), a raw CSV
release (ml-latest-small's header and quoting, UTF-8) and the tutorial's
train.csv / test.csv (the `seed` protocol over the MovieLens-1M layout).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import zipfile

import numpy as np
import pandas as pd

GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Drama", "Sci-Fi")
AGES = (1, 18, 25, 35, 45, 50, 56)


@dataclasses.dataclass
class World:
    ratings: pd.DataFrame  # user, movie, rating, timestamp
    movies: pd.DataFrame  # movie, title, genres
    users: pd.DataFrame  # user, gender, age, occupation, zip


def make_world(users: int = 2000, movies: int = 120, seed: int = 0, per_user: tuple[int, int] = (12, 40)) -> World:
    rng = np.random.default_rng(seed)
    n_genres = len(GENRES)
    primary = rng.integers(0, n_genres, movies)  # [M]
    second = np.where(rng.random(movies) < 0.4, rng.integers(0, n_genres, movies), primary)
    movie_ids = np.arange(1, movies + 1)
    titles = [f"Movie {m} ({1950 + m % 50})" for m in movie_ids]
    titles[0], titles[1] = "Ten, The (1999)", "Amélie (2001)"  # a quoted comma; a non-ASCII title
    genres = ["|".join(dict.fromkeys((GENRES[p], GENRES[s]))) for p, s in zip(primary, second)]
    genres[2] = "(no genres listed)"

    user_ids = np.arange(1, users + 1)
    # Demographics mostly decide the favourite genre: (gender, age) -> genre for 90% of users.
    male = rng.random(users) < 0.5
    age = rng.integers(0, len(AGES), users)
    favourite = np.where(rng.random(users) < 0.9, (2 * age + male) % n_genres, rng.integers(0, n_genres, users))
    user_table = pd.DataFrame({
        "user": user_ids,
        "gender": np.where(male, "M", "F"),
        "age": np.asarray(AGES)[age],
        "occupation": rng.integers(0, 21, users),
        "zip": rng.choice([f"{z:05d}" for z in rng.integers(10000, 99999, 40)], users),
    })

    counts = rng.integers(per_user[0], per_user[1] + 1, users)
    user_of = np.repeat(user_ids, counts)  # [R]
    fav_of = favourite[user_of - 1]
    by_genre = [movie_ids[primary == g] for g in range(n_genres)]
    from_favourite = rng.random(len(user_of)) < 0.6
    pick = rng.random(len(user_of))
    favourite_movie = np.array([by_genre[g][int(p * len(by_genre[g]))] for g, p in zip(fav_of, pick)])
    movie_of = np.where(from_favourite, favourite_movie, rng.integers(1, movies + 1, len(user_of)))
    liked = rng.random(len(user_of)) < np.where(primary[movie_of - 1] == fav_of, 0.95, 0.1)
    rating = np.where(liked, rng.choice([4, 5], len(user_of)), rng.choice([1, 2, 3], len(user_of)))
    # Time moves on per user; 5% of steps are 0 s (ratings in the same second).
    step = np.where(rng.random(len(user_of)) < 0.05, 0, rng.integers(1, 100_000, len(user_of)))
    start = np.repeat(rng.integers(956_703_932, 1_000_000_000, users), counts)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    within = np.cumsum(step) - np.repeat(np.cumsum(step)[first] - step[first], counts)
    ratings = pd.DataFrame({"user": user_of, "movie": movie_of, "rating": rating, "timestamp": start + within})
    ratings = ratings.drop_duplicates(["user", "movie"]).reset_index(drop=True)
    return World(ratings, pd.DataFrame({"movie": movie_ids, "title": titles, "genres": genres}), user_table)


def write_ml1m(world: World, folder: str) -> str:
    """MovieLens-1M's files: ratings.dat, users.dat, movies.dat."""
    os.makedirs(folder, exist_ok=True)
    for name, text in ml1m_files(world).items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(text)
    return folder


def ml1m_files(world: World) -> dict[str, bytes]:
    def lines(frame: pd.DataFrame) -> bytes:
        return "".join("::".join(str(v) for v in row) + "\n" for row in frame.itertuples(index=False)).encode("latin-1")

    return {
        "ratings.dat": lines(world.ratings[["user", "movie", "rating", "timestamp"]]),
        "users.dat": lines(world.users[["user", "gender", "age", "occupation", "zip"]]),
        "movies.dat": lines(world.movies[["movie", "title", "genres"]]),
    }


def ml1m_zip(world: World) -> bytes:
    """The GroupLens archive's layout: ml-1m/*.dat."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in ml1m_files(world).items():
            archive.writestr(f"ml-1m/{name}", content)
    return buffer.getvalue()


def write_csv_release(world: World, folder: str) -> str:
    """ml-latest-small's files: ratings.csv (half-star ratings) and movies.csv."""
    os.makedirs(folder, exist_ok=True)
    # Half stars that keep every label (rating >= 4): 5 -> 4.5 and 3 -> 2.5 on every other row.
    rating = world.ratings["rating"].to_numpy(dtype=float)
    half = np.isin(rating, (3, 5)) & (np.arange(len(rating)) % 2 == 0)
    ratings = world.ratings.assign(rating=rating - 0.5 * half)
    with open(os.path.join(folder, "ratings.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["userId", "movieId", "rating", "timestamp"])
        writer.writerows(ratings[["user", "movie", "rating", "timestamp"]].itertuples(index=False))
    with open(os.path.join(folder, "movies.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["movieId", "title", "genres"])
        writer.writerows(world.movies[["movie", "title", "genres"]].itertuples(index=False))
    return folder


def write_tutorial(world: World, folder: str, seed: int = 0) -> str:
    """The tutorial's train.csv / test.csv, built by the seed protocol."""
    from data.sources.seed_protocol import write_tutorial_split

    raw = write_ml1m(world, folder + "-raw")
    return write_tutorial_split(raw, folder, seed)
