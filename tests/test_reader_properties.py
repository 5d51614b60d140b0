"""Property-based checks of every reader (hypothesis): the same content in any
byte layout (column order, line ends, byte-order mark, blank lines, final
newline) reads to the identical result; damaged bytes (random truncation,
flipped bytes, noise) read either to a result or to one-line DataError naming
the file, never to another exception. And a build is reproducible bit for
bit, into fresh caches, from LF or CRLF files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core.config import DINConfig
from core.errors import DataError
from data.datasets import load_splits
from data.sources import grouplens, tables
from data.sources.grouplens import read_raw
from data.sources.tutorial import read_tutorial_csv

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

RATINGS = [["userId", "movieId", "rating", "timestamp"]] + [
    [str(u), str(m), f"{1 + (u * m) % 4}.{5 * (m % 2)}", str(1000 * u + m)] for u in (1, 2, 3) for m in (10, 11, 12, 13)
]
MOVIES = [["movieId", "title", "genres"], ["10", '"Ten, The (1999)"', "Comedy|Drama"], ["11", "Onze (2000)", "(no genres listed)"],
          ["12", "Amélie (2001)", "Romance"], ["13", "Thirteen (2002)", "Drama"]]


def layout(rows: list[list[str]], order: list[int], newline: str, bom: bool, final: bool, blanks: list[int]) -> bytes:
    lines = [",".join(row[i] for i in order) for row in rows]
    for position in sorted(blanks, reverse=True):  # blank lines after the header
        lines.insert(1 + position % len(lines), "")
    text = newline.join(lines) + (newline if final else "")
    return ("\ufeff" if bom else "").encode() + text.encode("utf-8")


layouts = dict(
    newline=st.sampled_from(["\n", "\r\n"]), bom=st.booleans(), final=st.booleans(),
    blanks=st.lists(st.integers(0, 20), max_size=3),
)


def frames_equal(a, b) -> None:
    pd.testing.assert_frame_equal(a.ratings, b.ratings)
    pd.testing.assert_frame_equal(a.movies, b.movies)


@SETTINGS
@given(ratings_order=st.permutations(range(4)), movies_order=st.permutations(range(3)), **layouts)
def test_csv_release_reads_the_same_in_any_layout(tmp_path_factory, ratings_order, movies_order, newline, bom, final, blanks):
    clean = tmp_path_factory.mktemp("clean")
    (clean / "ratings.csv").write_bytes(layout(RATINGS, [0, 1, 2, 3], "\n", False, True, []))
    (clean / "movies.csv").write_bytes(layout(MOVIES, [0, 1, 2], "\n", False, True, []))
    other = tmp_path_factory.mktemp("other")
    (other / "ratings.csv").write_bytes(layout(RATINGS, list(ratings_order), newline, bom, final, blanks))
    (other / "movies.csv").write_bytes(layout(MOVIES, list(movies_order), newline, bom, final, blanks))
    frames_equal(read_raw(str(other)), read_raw(str(clean)))


def dat_text(newline: str, final: bool, blanks: list[int]) -> dict[str, bytes]:
    files = {
        "ratings.dat": [f"{u}::{m}::{1 + (u * m) % 5}::{1000 * u + m}" for u in (1, 2, 3) for m in (10, 11, 12)],
        "users.dat": [f"{u}::{'FM'[u % 2]}::25::{u}::1000{u}" for u in (1, 2, 3)],
        "movies.dat": ["10::Dix (1999)::Drama", "11::Café (2000)::Comedy|Drama", "12::Douze (2001)::"],
    }
    out = {}
    for name, lines in files.items():
        lines = list(lines)
        for position in sorted(blanks, reverse=True):
            lines.insert(position % (len(lines) + 1), "")
        out[name] = (newline.join(lines) + (newline if final else "")).encode("latin-1")
    return out


@SETTINGS
@given(newline=st.sampled_from(["\n", "\r\n"]), final=st.booleans(), blanks=st.lists(st.integers(0, 20), max_size=3))
def test_movielens_1m_reads_the_same_in_any_layout(tmp_path_factory, newline, final, blanks):
    folders = []
    for files in (dat_text("\n", True, []), dat_text(newline, final, blanks)):
        folder = tmp_path_factory.mktemp("ml1m")
        for name, content in files.items():
            (folder / name).write_bytes(content)
        folders.append(read_raw(str(folder)))
    frames_equal(folders[1], folders[0])
    pd.testing.assert_frame_equal(folders[1].users, folders[0].users)


@pytest.fixture(scope="module")
def tutorial_rows(tutorial_dir):
    import csv

    with open(f"{tutorial_dir}/test.csv", newline="", encoding="utf-8") as f:
        return list(csv.reader(f))[:40]


@SETTINGS
@given(order=st.permutations(range(11)), **layouts)
def test_tutorial_csv_reads_the_same_in_any_layout(tmp_path_factory, tutorial_rows, order, newline, bom, final, blanks):
    assert len(tutorial_rows[0]) == 11  # the tutorial layout's columns, its time included
    folder = tmp_path_factory.mktemp("tutorial")
    (folder / "clean.csv").write_bytes(layout(tutorial_rows, list(range(11)), "\n", False, True, []))
    (folder / "other.csv").write_bytes(layout(tutorial_rows, list(order), newline, bom, final, blanks))
    clean, other = read_tutorial_csv(str(folder / "clean.csv")), read_tutorial_csv(str(folder / "other.csv"))
    assert clean.keys() == other.keys()
    for name in clean:
        np.testing.assert_array_equal(other[name], clean[name], err_msg=name)


def damage(data: bytes, how: str, position: float, noise: bytes) -> bytes:
    at = int(position * len(data))
    if how == "truncate":
        return data[:at]
    if how == "flip":
        return data[:at] + noise[:1] + data[at + 1 :]
    return data[:at] + noise + data[at:]  # insert


damages = dict(how=st.sampled_from(["truncate", "flip", "insert"]), position=st.floats(0, 1), noise=st.binary(min_size=1, max_size=12))


def read_or_refuse(read, path: str) -> None:
    """A result, or a DataError whose one line names the file."""
    try:
        read()
    except DataError as error:
        message = str(error)
        assert path in message and "\n" not in message, message


@SETTINGS
@given(which=st.sampled_from(["ratings.csv", "movies.csv"]), **damages)
def test_damaged_csv_release_is_read_or_refused_in_one_line(tmp_path_factory, which, how, position, noise):
    folder = tmp_path_factory.mktemp("damaged")
    files = {"ratings.csv": layout(RATINGS, [0, 1, 2, 3], "\n", False, True, []),
             "movies.csv": layout(MOVIES, [0, 1, 2], "\n", False, True, [])}
    files[which] = damage(files[which], how, position, noise)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    read_or_refuse(lambda: read_raw(str(folder)), str(folder))


@SETTINGS
@given(which=st.sampled_from(["ratings.dat", "users.dat", "movies.dat"]), **damages)
def test_damaged_movielens_1m_is_read_or_refused_in_one_line(tmp_path_factory, which, how, position, noise):
    folder = tmp_path_factory.mktemp("damaged")
    files = dat_text("\n", True, [])
    files[which] = damage(files[which], how, position, noise)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    read_or_refuse(lambda: read_raw(str(folder)), str(folder))


@SETTINGS
@given(**damages)
def test_damaged_tutorial_csv_is_read_or_refused_in_one_line(tmp_path_factory, tutorial_rows, how, position, noise):
    path = tmp_path_factory.mktemp("damaged") / "test.csv"
    path.write_bytes(damage(layout(tutorial_rows, list(range(10)), "\n", False, True, []), how, position, noise))
    read_or_refuse(lambda: read_tutorial_csv(str(path)), str(path))


def test_builds_are_bit_identical_into_fresh_caches_and_from_crlf_files(ml1m_dir, tmp_path):
    """The same content always builds to the same arrays and encoders (the age
    quantiles are exact, not subsampled), and trains to the same weights."""
    crlf = tmp_path / "crlf"
    crlf.mkdir()
    for name in ("ratings.dat", "users.dat", "movies.dat"):
        data = open(f"{ml1m_dir}/{name}", "rb").read()
        (crlf / name).write_bytes(data.replace(b"\n", b"\r\n").rstrip(b"\r\n"))  # and no final newline
    config = DINConfig(epochs=1)
    builds = [load_splits(ml1m_dir, config, str(tmp_path / "cache-a")), load_splits(ml1m_dir, config, str(tmp_path / "cache-b")),
              load_splits(str(crlf), config, str(tmp_path / "cache-c"))]
    for other in builds[1:]:
        assert other.encoders.to_json() == builds[0].encoders.to_json()
        for split in ("train", "valid", "test"):
            for name, values in getattr(builds[0], split).items():
                np.testing.assert_array_equal(getattr(other, split)[name], values, err_msg=f"{split}/{name}")
    from training import make_backend

    weights = []
    for splits in builds[:2]:
        backend = make_backend("torch", splits.encoders.schema(), config)
        backend.train_batches(splits.train, [np.arange(i, i + 128) for i in range(0, 1280, 128)], lambda n: None)
        weights.append(backend.weights())
    for name, value in weights[0].items():
        np.testing.assert_array_equal(weights[1][name], value, err_msg=name)


@SETTINGS
@given(which=st.sampled_from(["csv", "dat"]), block_bytes=st.integers(1, 96), **damages)
def test_ratings_read_in_blocks_read_as_the_whole_file(tmp_path_factory, which, block_bytes, how, position, noise):
    """The ratings reader parses a file a block at a time (memory holds one
    block); any block size reads any file, damaged or not, to the rows the
    whole-file parse gives, or both refuse it in one line naming the file."""
    folder = tmp_path_factory.mktemp("blocks")
    if which == "csv":
        path, content, args = folder / "ratings.csv", layout(RATINGS, [2, 0, 3, 1], "\n", False, True, [3]), (grouplens.CSV_RATINGS, ",", "utf-8", True)
    else:
        path, content, args = folder / "ratings.dat", dat_text("\n", True, [2])["ratings.dat"], (grouplens.ML1M_RATINGS, "::", "latin-1", False)
    path.write_bytes(damage(content, how, position, noise))
    outcomes = []
    for read in (lambda: grouplens._checked_ratings(tables.read_table(str(path), *args)),
                 lambda: grouplens._read_ratings(str(folder), block_bytes=block_bytes)):
        try:
            outcomes.append(read())
        except DataError as error:
            assert str(path) in str(error) and "\n" not in str(error), error
            outcomes.append(None)
    whole, blocks = outcomes
    assert (whole is None) == (blocks is None)
    if whole is not None:
        pd.testing.assert_frame_equal(blocks, whole)
