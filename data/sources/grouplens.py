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

import numpy as np
import pandas as pd
from tqdm import tqdm

from core.errors import DataError
from data.rows import NO_GENRES
from data.sources.tables import decode, integers, nonblank_lines, numbers, parse, read_table, where

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
    folder: str = ""


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


def _checked_ratings(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame of parse's strings -> user, movie, timestamp (int64) and rating
    (float64, in 0..5); a bad value is an error naming file, line and column."""
    ratings = pd.DataFrame({
        "user": integers(frame, "user"),
        "movie": integers(frame, "movie"),
        "rating": numbers(frame, "rating"),
        "timestamp": integers(frame, "timestamp"),
    })
    bad = np.flatnonzero((ratings["rating"] < 0) | (ratings["rating"] > 5))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{where(frame, i, 'rating')}: outside 0..5 (value {frame['rating'].iloc[i]!r})")
    return ratings


BLOCK_BYTES = 32 << 20  # a ratings file is parsed this many bytes at a time


def _blocks(f, first_line: int, block_bytes: int):
    """(bytes of whole lines, the number of their first line) from a binary file, block_bytes at a time."""
    rest = b""
    while data := f.read(block_bytes):
        data = rest + data
        cut = data.rfind(b"\n") + 1
        block, rest = data[:cut], data[cut:]
        if block:
            yield block, first_line
            first_line += block.count(b"\n")
    if rest:
        yield rest, first_line


@dataclasses.dataclass
class RatingsFile:
    """Where a ratings file's data rows start and how they are parsed: one reader
    for the whole-file build (`_read_ratings`) and the Beam build's byte ranges."""

    path: str
    columns: dict[str, str]
    separator: str
    encoding: str
    file_names: list[str] | None  # the header's column names (None: no header)
    data_start: int  # byte offset of the line after the header
    first_line: int  # that line's number

    @classmethod
    def open(cls, path: str, columns: dict[str, str], separator: str, encoding: str, header: bool) -> "RatingsFile | None":
        """The file's layout; None for a quoted header (read whole, as movies are)."""
        if not os.path.isfile(path):
            raise DataError(f"{path}: no such file")
        with open(path, "rb") as f:
            line, file_names = 1, None
            if header:  # the first non-blank line names the columns
                while (raw := f.readline()) and not decode(raw, path, encoding, line).strip():
                    line += 1
                if not raw:
                    raise DataError(f"{path}: empty file")
                if b'"' in raw:  # a quoted header may run over lines
                    return None
                names = pd.read_csv(io.StringIO(decode(raw, path, encoding, line)), sep=separator, nrows=0).columns
                file_names = [str(name).strip() for name in names]
                parse(",".join(file_names) + "\n", path, columns, ",", True)  # the missing-column check
                line += 1
            return cls(path, columns, separator, encoding, file_names, f.tell(), line)

    def parse(self, block: bytes, first_line: int) -> pd.DataFrame:
        """Whole lines of the file -> user, movie, rating, timestamp (first_line: block's first line number)."""
        return _ratings_block(block, first_line, self.path, self.columns, self.separator, self.encoding, self.file_names)


RATINGS = {  # each format's ratings file: name, columns, separator, encoding, header
    "ml-1m": ("ratings.dat", ML1M_RATINGS, "::", "latin-1", False),
    "csv": ("ratings.csv", CSV_RATINGS, ",", "utf-8", True),
}


def ratings_file(folder: str) -> tuple[RatingsFile | None, str]:
    """The folder's ratings file (None: a quoted header, read whole) and its path."""
    name, columns, separator, encoding, header = RATINGS[detect_format(folder)]
    path = os.path.join(folder, name)
    return RatingsFile.open(path, columns, separator, encoding, header), path


def _read_ratings(folder: str, block_bytes: int = BLOCK_BYTES, progress: bool = False) -> pd.DataFrame:
    """The ratings file, BLOCK_BYTES at a time: memory holds one block's text,
    never the file's, and the ratings as four numeric columns (32 bytes a
    rating). Each block is parsed straight to numbers by pandas' C parser; a
    block where that fails or a check does not hold (a bad value, a wrong field
    count) is parsed again by parse and checked value by value, which names
    the file, line and column of the first bad value: rows read exactly as
    read_table + _checked_ratings read them."""
    layout, path = ratings_file(folder)
    if layout is None:
        _, columns, separator, encoding, header = RATINGS[detect_format(folder)]
        return _checked_ratings(read_table(path, columns, separator, encoding, header))
    parts = []
    with open(path, "rb") as f:
        f.seek(layout.data_start)
        with tqdm(total=os.path.getsize(path), initial=f.tell(), desc=f"reading {os.path.basename(path)}", unit="B",
                  unit_scale=True, leave=False, disable=not progress) as bar:
            for block, first_line in _blocks(f, layout.first_line, block_bytes):
                parts.append(layout.parse(block, first_line))
                bar.update(len(block))
    ratings = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if ratings.empty:
        raise DataError(f"{path}: no data rows" if layout.file_names else f"{path}: empty file")
    return ratings


def _ratings_block(
    block: bytes, first_line: int, path: str, columns: dict[str, str], separator: str, encoding: str,
    file_names: list[str] | None,
) -> pd.DataFrame:
    names = file_names or list(columns)
    types = {theirs: np.float64 if ours == "rating" else np.int64 for theirs, ours in columns.items()}
    data, sep = (block.replace(b"::", b"\t"), "\t") if separator == "::" else (block, separator)
    try:
        frame = pd.read_csv(
            io.BytesIO(data), sep=sep, header=None, names=names, index_col=False, usecols=list(columns), dtype=types,
            encoding=encoding, na_filter=False, quoting=csv.QUOTE_MINIMAL if file_names else csv.QUOTE_NONE,
        )
        # Every line a row (no blank line), none with extra fields (too few leave a value missing: an error).
        lines = data.count(b"\n") + (not data.endswith(b"\n"))
        fields_ok = len(frame) == lines and data.count(sep.encode()) == (len(names) - 1) * lines
        rating = frame[next(theirs for theirs, ours in columns.items() if ours == "rating")].to_numpy()
        if fields_ok and np.all((rating >= 0) & (rating <= 5)):  # NaN fails too
            return frame.set_axis([columns[name] for name in frame.columns], axis=1)[["user", "movie", "rating", "timestamp"]]
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        pass
    text = decode(block, path, encoding, first_line)
    if not len(nonblank_lines(text, "\t" if separator == "::" else separator)):  # only blank lines
        return pd.DataFrame({"user": [], "movie": [], "rating": [], "timestamp": []}).astype(
            {"user": np.int64, "movie": np.int64, "rating": np.float64, "timestamp": np.int64})
    return _checked_ratings(parse(text, path, columns, separator, False, first_line, file_names))


def _ratings(ratings: pd.DataFrame) -> pd.DataFrame:
    """The same (user, movie) twice: the later rating is kept (ties: the later line)."""
    ratings = ratings.sort_values("timestamp", kind="stable")  # stable: line order on ties
    return ratings.drop_duplicates(["user", "movie"], keep="last").reset_index(drop=True)


def _movies(frame: pd.DataFrame) -> pd.DataFrame:
    genres = frame["genres"].str.strip().replace(NO_GENRES, "")
    movies = pd.DataFrame({"movie": integers(frame, "movie"), "genres": genres.to_numpy(), "title": frame["title"].to_numpy()})
    duplicated = np.flatnonzero(movies["movie"].duplicated().to_numpy())
    if len(duplicated):
        i = int(duplicated[0])
        raise DataError(f"{where(frame, i)}: movie {movies['movie'][i]} listed twice")
    return movies


def read_raw(folder: str, progress: bool = False) -> RawMovieLens:
    """Reads a raw GroupLens folder (format detected from its files); progress:
    a bar over the ratings file's bytes."""
    ratings = _ratings(_read_ratings(folder, progress=progress))
    return with_tables(folder, ratings)


def with_tables(folder: str, ratings: pd.DataFrame) -> RawMovieLens:
    """Ratings (of all users or of some) with the folder's movies (and ml-1m's users)."""
    movies, users = read_tables(folder)
    if users is not None:
        check_users(ratings, users, folder)
    return RawMovieLens(ratings, movies, users, detect_format(folder), folder)


def read_tables(folder: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The folder's movies and (ml-1m) users tables."""
    path = lambda name: os.path.join(folder, name)  # noqa: E731
    if detect_format(folder) == "csv":
        return _movies(read_table(path("movies.csv"), CSV_MOVIES, ",", "utf-8", True)), None
    movies = _movies(read_table(path("movies.dat"), ML1M_MOVIES, "::", "latin-1", False))
    users_frame = read_table(path("users.dat"), ML1M_USERS, "::", "latin-1", False)
    users = pd.DataFrame({
        "user": integers(users_frame, "user"),
        "gender": users_frame["gender"].to_numpy(),
        "age": numbers(users_frame, "age"),
        "occupation": users_frame["occupation"].to_numpy(),
        "zip": users_frame["zip"].to_numpy(),
    })
    duplicated = np.flatnonzero(users["user"].duplicated().to_numpy())
    if len(duplicated):
        i = int(duplicated[0])
        raise DataError(f"{where(users_frame, i)}: user {users['user'][i]} listed twice")
    return movies, users


def check_users(ratings: pd.DataFrame, users: pd.DataFrame, folder: str) -> None:
    unknown = ~ratings["user"].isin(users["user"])
    if unknown.any():
        raise DataError(f"{os.path.join(folder, 'ratings.dat')}: user {int(ratings['user'][unknown].iloc[0])} is not in users.dat")
