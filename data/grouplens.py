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
  * a rating by a user missing from users.dat (ml-1m): an error, as is a
    user or a movie listed twice;
  * CSV releases' columns are found by their header names (`userId`,
    `movieId`, `rating`, `timestamp`; `movieId`, `title`, `genres`) in any
    order; extra columns are ignored, a missing one is an error;
  * CRLF or LF line ends, a UTF-8 byte-order mark and blank lines read alike
    (line numbers in errors are the file's own);
  * the same (user, movie) rated twice: the later rating is kept (ties: the
    later line);
  * titles are never parsed (latin-1 in ml-1m, so no decoding error there).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re

import numpy as np
import pandas as pd

from data.errors import DataError

NO_GENRES = "(no genres listed)"
# Each file's columns: its own name (the header's, or the documented order) -> ours.
ML1M_RATINGS = {"UserID": "user", "MovieID": "movie", "Rating": "rating", "Timestamp": "timestamp"}
ML1M_USERS = {"UserID": "user", "Gender": "gender", "Age": "age", "Occupation": "occupation", "Zip-code": "zip"}
ML1M_MOVIES = {"MovieID": "movie", "Title": "title", "Genres": "genres"}
CSV_RATINGS = {"userId": "user", "movieId": "movie", "rating": "rating", "timestamp": "timestamp"}
CSV_MOVIES = {"movieId": "movie", "title": "title", "genres": "genres"}


@dataclasses.dataclass
class RawMovieLens:
    """ratings: user, movie, rating, timestamp; movies: movie -> genres ('|'-joined, may be ''), title;
    users (ml-1m only): user -> gender, age, occupation, zip."""

    ratings: pd.DataFrame
    movies: pd.DataFrame
    users: pd.DataFrame | None
    format: str


def detect(folder: str) -> bool:
    """Whether the folder holds raw GroupLens files."""
    return any(os.path.isfile(os.path.join(folder, name)) for name in ("ratings.dat", "ratings.csv"))


def detect_format(folder: str) -> str:
    """'ml-1m' or 'csv', from the files present."""
    has = lambda name: os.path.isfile(os.path.join(folder, name))  # noqa: E731
    if has("ratings.dat"):
        return "ml-1m"
    if has("ratings.csv"):
        return "csv"
    raise DataError(
        f"{folder}: no MovieLens data found: expected ratings.dat + users.dat + movies.dat (MovieLens-1M) "
        "or ratings.csv + movies.csv (ml-latest-small, ml-20m, ml-25m)"
    )


def files(folder: str) -> list[str]:
    """The raw files a GroupLens folder is read from."""
    names = ("ratings.dat", "users.dat", "movies.dat") if detect_format(folder) == "ml-1m" else ("ratings.csv", "movies.csv")
    return [os.path.join(folder, name) for name in names if os.path.isfile(os.path.join(folder, name))]


def _read_table(path: str, columns: dict[str, str], separator: str, encoding: str, header: bool) -> pd.DataFrame:
    """All fields as strings, renamed by `columns` (the file's name -> ours); every
    line's field count checked.

    With a header, columns are found by their names in it, in any order (extra
    columns are ignored); without one, they are taken in `columns`' order.
    `frame.attrs` keeps the path and each row's physical line number (blank
    lines are skipped) for error messages.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not valid {encoding} text") from None
    if text.startswith("\ufeff"):  # a UTF-8 byte-order mark
        text = text[1:]
    # One line end: a file saved with CRLF (or CR) reads exactly as with LF.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DataError(f"{path}: empty file")
    if separator == "::":
        # A one-character separator lets pandas use its fast C parser; '\t'
        # never occurs in MovieLens-1M fields.
        text, separator = text.replace("::", "\t"), "\t"
    names = list(columns)
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=separator, dtype=str, keep_default_na=False, na_filter=False,
            header=0 if header else None,
            # Header-less files get a spare column: a line with too many fields fills it.
            names=None if header else names + ["__extra__"],
            quoting=csv.QUOTE_MINIMAL if header else csv.QUOTE_NONE,
        )
    except pd.errors.ParserError as error:  # too many fields in a CSV line; pandas names the (physical) line
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
        why = f"line {found[2]}: {found[3]} fields, expected {found[1]}" if found else " ".join(str(error).split())
        raise DataError(f"{path}, {why}" if found else f"{path}: {why}") from None
    lines = _nonblank_lines(text)[1 if header else 0 :]  # [rows]: each row's physical line number
    if header:
        found = [str(name).strip() for name in frame.columns]
        missing = [name for name in names if name not in found]
        if missing:
            raise DataError(
                f"{path}: the header {','.join(found)!r} lacks {missing}; expected the columns {names} "
                "(in any order), as GroupLens releases name them"
            )
        frame = frame.set_axis(found, axis=1)[names]
    else:
        extra = np.flatnonzero(frame["__extra__"].to_numpy() != "")
        if len(extra):
            raise DataError(f"{path}, line {int(lines[extra[0]])}: more than {len(names)} fields")
        frame = frame[names]
    frame = frame.set_axis([columns[name] for name in names], axis=1)
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    frame.attrs.update(path=path, lines=lines[: len(frame)], names={ours: theirs for theirs, ours in columns.items()})
    return frame


def _nonblank_lines(text: str) -> np.ndarray:
    """Physical numbers of the lines pandas reads (it skips blank and whitespace-only lines)."""
    blank, line, position = [], 1, 0
    for match in re.finditer(r"^[ \t]*$", text, flags=re.MULTILINE):  # few: usually the end's empty line
        line += text.count("\n", position, match.start())
        position = match.start()
        blank.append(line - 1)
    return np.delete(np.arange(1, text.count("\n") + 2), blank)


def _where(frame: pd.DataFrame, row: int, column: str | None = None) -> str:
    """'path, line N[, column C]' of a row of a frame read by _read_table."""
    place = f"{frame.attrs['path']}, line {int(frame.attrs['lines'][row])}"
    return place if column is None else f"{place}, column {frame.attrs['names'].get(column, column)!r}"


def _integers(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy()
    bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{_where(frame, i, column)}: not an integer (value {frame[column].iloc[i]!r})")
    return values.astype(np.int64)


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{_where(frame, i, column)}: not a number (value {frame[column].iloc[i]!r})")
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
        raise DataError(f"{_where(frame, i, 'rating')}: outside 0..5 (value {frame['rating'].iloc[i]!r})")
    # The same (user, movie) twice: keep the later rating (stable sort keeps line order on ties).
    ratings = ratings.sort_values("timestamp", kind="stable")
    return ratings.drop_duplicates(["user", "movie"], keep="last").reset_index(drop=True)


def _movies(frame: pd.DataFrame) -> pd.DataFrame:
    genres = frame["genres"].str.strip().replace(NO_GENRES, "")
    movies = pd.DataFrame({"movie": _integers(frame, "movie"), "genres": genres.to_numpy(), "title": frame["title"].to_numpy()})
    duplicated = np.flatnonzero(movies["movie"].duplicated().to_numpy())
    if len(duplicated):
        i = int(duplicated[0])
        raise DataError(f"{_where(frame, i)}: movie {movies['movie'][i]} listed twice")
    return movies


def read_raw(folder: str) -> RawMovieLens:
    """Reads a raw GroupLens folder (format detected from its files)."""
    kind = detect_format(folder)
    path = lambda name: os.path.join(folder, name)  # noqa: E731
    if kind == "ml-1m":
        ratings = _ratings(_read_table(path("ratings.dat"), ML1M_RATINGS, "::", "latin-1", False))
        movies = _movies(_read_table(path("movies.dat"), ML1M_MOVIES, "::", "latin-1", False))
        users_frame = _read_table(path("users.dat"), ML1M_USERS, "::", "latin-1", False)
        users = pd.DataFrame({
            "user": _integers(users_frame, "user"),
            "gender": users_frame["gender"].to_numpy(),
            "age": _numbers(users_frame, "age"),
            "occupation": users_frame["occupation"].to_numpy(),
            "zip": users_frame["zip"].to_numpy(),
        })
        duplicated = np.flatnonzero(users["user"].duplicated().to_numpy())
        if len(duplicated):
            i = int(duplicated[0])
            raise DataError(f"{_where(users_frame, i)}: user {users['user'][i]} listed twice")
        unknown = ~ratings["user"].isin(users["user"])
        if unknown.any():
            raise DataError(f"{path('ratings.dat')}: user {int(ratings['user'][unknown].iloc[0])} is not in users.dat")
        return RawMovieLens(ratings, movies, users, kind)
    if kind == "csv":
        ratings = _ratings(_read_table(path("ratings.csv"), CSV_RATINGS, ",", "utf-8", True))
        movies = _movies(_read_table(path("movies.csv"), CSV_MOVIES, ",", "utf-8", True))
        return RawMovieLens(ratings, movies, None, kind)
