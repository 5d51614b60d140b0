"""Readers for the raw GroupLens MovieLens releases, every row validated.

Formats, detected from the files in the folder:
  ml-1m  `ratings.dat`, `users.dat`, `movies.dat`; '::'-separated, latin-1.
         ratings: UserID::MovieID::Rating::Timestamp
         users:   UserID::Gender::Age::Occupation::Zip-code
         movies:  MovieID::Title::Genres
  csv    `ratings.csv` (userId,movieId,rating,timestamp) and `movies.csv`
         (movieId,title,genres), UTF-8: ml-latest-small, ml-20m, ml-25m. No
         user demographics.

Rules (anything else is a `DataError` naming file and line):
  * a movie's genres '(no genres listed)' or empty: no genres;
  * a rating of a movie missing from the movies file: the movie has no genres;
  * a rating by a user missing from users.dat (ml-1m): an error;
  * the same (user, movie) rated twice: the later rating is kept (ties: the
    later line);
  * titles are never parsed (latin-1 in ml-1m, so no decoding error there).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os

import numpy as np
import pandas as pd

from data.movielens import DataError

NO_GENRES = "(no genres listed)"


@dataclasses.dataclass
class RawMovieLens:
    """ratings: user, movie, rating, timestamp; movies: movie -> genres ('|'-joined, may be '');
    users (ml-1m only): user -> gender, age, occupation, zip."""

    ratings: pd.DataFrame
    movies: pd.DataFrame
    users: pd.DataFrame | None
    format: str


def detect_format(folder: str) -> str:
    """'tutorial', 'ml-1m' or 'csv', from the files present."""
    has = lambda name: os.path.isfile(os.path.join(folder, name))  # noqa: E731
    if has("train.csv") and has("test.csv"):
        return "tutorial"
    if has("ratings.dat"):
        return "ml-1m"
    if has("ratings.csv"):
        return "csv"
    raise FileNotFoundError(
        f"{folder}: no MovieLens data found: expected train.csv + test.csv (the tutorial's split), "
        "ratings.dat + users.dat + movies.dat (MovieLens-1M) or ratings.csv + movies.csv (ml-latest-small, ml-20m, ml-25m)"
    )


def _read_table(path: str, columns: list[str], separator: str, encoding: str, header: bool) -> pd.DataFrame:
    """All fields as strings, renamed to `columns`; every line's field count checked.

    `frame.attrs` keeps the path and the line number of the first row for
    error messages.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not valid {encoding} text") from None
    if not text.strip():
        raise DataError(f"{path}: empty file")
    if separator == "::":
        # A one-character separator lets pandas use its fast C parser; '\t'
        # never occurs in MovieLens-1M fields.
        text, separator = text.replace("::", "\t"), "\t"
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=separator, dtype=str, keep_default_na=False, na_filter=False,
            header=0 if header else None,
            # Header-less files get a spare column: a line with too many fields fills it.
            names=None if header else columns + ["__extra__"],
            quoting=csv.QUOTE_MINIMAL if header else csv.QUOTE_NONE,
        )
    except pd.errors.ParserError as error:  # too many fields in a CSV line; pandas names the line
        raise DataError(f"{path}: {error}") from None
    first_line = 2 if header else 1
    if header:
        if len(frame.columns) != len(columns):
            raise DataError(f"{path}: expected the columns {columns}, the header has {list(frame.columns)}")
    else:
        extra = np.flatnonzero(frame["__extra__"].to_numpy() != "")
        if len(extra):
            raise DataError(f"{path}, line {int(extra[0]) + first_line}: more than {len(columns)} fields")
    frame = frame.iloc[:, : len(columns)].set_axis(columns, axis=1)
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    frame.attrs.update(path=path, first_line=first_line)
    return frame


def _integers(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy()
    bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{frame.attrs['path']}, line {i + frame.attrs['first_line']}, column {column!r}: "
            f"not an integer (value {frame[column].iloc[i]!r})"
        )
    return values.astype(np.int64)


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{frame.attrs['path']}, line {i + frame.attrs['first_line']}, column {column!r}: "
            f"not a number (value {frame[column].iloc[i]!r})"
        )
    return values


def _ratings(frame: pd.DataFrame) -> pd.DataFrame:
    ratings = pd.DataFrame({
        "user": _integers(frame, "user"),
        "movie": _integers(frame, "movie"),
        "rating": _numbers(frame, "rating"),
        "timestamp": _integers(frame, "timestamp"),
    })
    bad = np.flatnonzero((ratings["rating"] < 0) | (ratings["rating"] > 5))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{frame.attrs['path']}, line {i + frame.attrs['first_line']}, column 'rating': "
                        f"outside 0..5 (value {frame['rating'].iloc[i]!r})")
    # The same (user, movie) twice: keep the later rating (stable sort keeps line order on ties).
    ratings = ratings.sort_values("timestamp", kind="stable")
    return ratings.drop_duplicates(["user", "movie"], keep="last").reset_index(drop=True)


def _movies(frame: pd.DataFrame) -> pd.DataFrame:
    genres = frame["genres"].str.strip().replace(NO_GENRES, "")
    movies = pd.DataFrame({"movie": _integers(frame, "movie"), "genres": genres.to_numpy()})
    duplicated = np.flatnonzero(movies["movie"].duplicated().to_numpy())
    if len(duplicated):
        i = int(duplicated[0])
        raise DataError(f"{frame.attrs['path']}, line {i + frame.attrs['first_line']}: movie {movies['movie'][i]} listed twice")
    return movies


def read_raw(folder: str) -> RawMovieLens:
    """Reads a raw GroupLens folder (format detected from its files)."""
    kind = detect_format(folder)
    path = lambda name: os.path.join(folder, name)  # noqa: E731
    if kind == "ml-1m":
        ratings = _ratings(_read_table(path("ratings.dat"), ["user", "movie", "rating", "timestamp"], "::", "latin-1", False))
        movies = _movies(_read_table(path("movies.dat"), ["movie", "title", "genres"], "::", "latin-1", False))
        users_frame = _read_table(path("users.dat"), ["user", "gender", "age", "occupation", "zip"], "::", "latin-1", False)
        users = pd.DataFrame({
            "user": _integers(users_frame, "user"),
            "gender": users_frame["gender"].to_numpy(),
            "age": _numbers(users_frame, "age"),
            "occupation": users_frame["occupation"].to_numpy(),
            "zip": users_frame["zip"].to_numpy(),
        })
        unknown = ~ratings["user"].isin(users["user"])
        if unknown.any():
            raise DataError(f"{path('ratings.dat')}: user {int(ratings['user'][unknown].iloc[0])} is not in users.dat")
        return RawMovieLens(ratings, movies, users, kind)
    if kind == "csv":
        ratings = _ratings(_read_table(path("ratings.csv"), ["user", "movie", "rating", "timestamp"], ",", "utf-8", True))
        movies = _movies(_read_table(path("movies.csv"), ["movie", "title", "genres"], ",", "utf-8", True))
        return RawMovieLens(ratings, movies, None, kind)
    raise ValueError(f"{folder}: holds the tutorial's split, not raw GroupLens files")
