"""Raw GroupLens readers and the sequential protocol, on hand-made folders, synthetic releases and the real ml-latest-small."""

import os

import numpy as np
import pytest

from core.config import DINConfig
from core.errors import DataError
from data.datasets import load_splits
from data.schema import LABEL, TIME, USER
from data.sources.grouplens import detect_format, read_raw
from data.sources.sequential import HISTORY, LOW_HISTORY, USER_FEATURE, build_samples, split_masks

RATINGS_CSV = """userId,movieId,rating,timestamp
1,10,5.0,100
1,20,4.0,200
1,30,4.0,200
1,40,4.5,300
1,50,2.0,400
2,10,1.0,50
2,20,4.0,60
2,20,5.0,70
2,30,4.0,80
"""
MOVIES_CSV = """movieId,title,genres
10,"Ten, The (1999)",Comedy|Drama
20,Twenty (2000),(no genres listed)
30,Thirty (2001),Drama
50,Fifty (2003),Action
"""


def folder(tmp_path, **files):
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(tmp_path)


def as_rows(samples):
    """{(user, movie): (label, history without padding, genres)}."""
    return {
        (int(u), int(m)): (float(l), [int(x) for x in h if x], g)
        for u, m, l, h, g in zip(samples[USER], samples["movieId"], samples[LABEL], samples[HISTORY], samples["genres"])
    }


class TestSequentialProtocol:
    def test_hand_checked_samples(self, tmp_path):
        raw = read_raw(folder(tmp_path, **{"ratings.csv": RATINGS_CSV, "movies.csv": MOVIES_CSV}))
        assert raw.format == "csv" and raw.users is None
        rows = as_rows(build_samples(raw, max_hist=50))
        assert rows == {
            # user 1: the first rating (movie 10) is no sample; 20 and 30 share a second: neither is the other's history.
            (1, 20): (1.0, [10], ""),  # '(no genres listed)' -> no genres
            (1, 30): (1.0, [10], "Drama"),
            (1, 40): (1.0, [10, 20, 30], ""),  # movie 40 is not in movies.csv: no genres
            (1, 50): (0.0, [10, 20, 30, 40], "Action"),
            # user 2: the duplicate (2, 20) keeps the later rating (5.0 at t=70); movie 10 is rated 1.0: no history.
            (2, 20): (1.0, [], ""),
            (2, 30): (1.0, [20], "Drama"),
        }

    def test_low_rated_history_and_user_id(self, tmp_path):
        """--low-rated-history: the movies rated below 4 strictly earlier, the
        history's twin; --user-feature: the user id as a feature column."""
        raw = read_raw(folder(tmp_path, **{"ratings.csv": RATINGS_CSV, "movies.csv": MOVIES_CSV}))
        samples = build_samples(raw, max_hist=50, low_rated=True, user_id=True)
        np.testing.assert_array_equal(samples[USER_FEATURE], samples[USER])
        low = {(int(u), int(m)): [int(x) for x in h if x]
               for u, m, h in zip(samples[USER], samples["movieId"], samples[LOW_HISTORY])}
        # user 1 rated only movie 50 below 4, last: no sample has it; user 2 rated movie 10 at 1.0, first.
        assert low == {(1, 20): [], (1, 30): [], (1, 40): [], (1, 50): [], (2, 20): [10], (2, 30): [10]}
        plain = build_samples(raw, max_hist=50)
        assert LOW_HISTORY not in plain and USER_FEATURE not in plain
        for name, values in plain.items():  # the options add columns, change none
            np.testing.assert_array_equal(np.asarray(values), np.asarray(samples[name]), err_msg=name)

    def test_history_keeps_the_latest_max_hist_oldest_first(self, tmp_path):
        raw = read_raw(folder(tmp_path, **{"ratings.csv": RATINGS_CSV, "movies.csv": MOVIES_CSV}))
        samples = build_samples(raw, max_hist=2)
        assert samples[HISTORY].shape == (6, 2)
        assert as_rows(samples)[(1, 50)][1] == [30, 40]

    def test_splits_by_time_within_each_user(self):
        order = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0, 1])  # a user with 8 samples, one with 2
        count = np.array([8] * 8 + [2] * 2)
        masks = split_masks(order, count, 0.25, "fraction")
        assert masks["test"].tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0, 1]  # last floor(0.25 * 8) = 2; at least 1
        assert masks["valid"].tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 1, 0]
        assert masks["train"].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
        masks = split_masks(order, count, 0.25, "leave-last-out")
        assert masks["test"].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 0, 1]
        assert masks["valid"].tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 1, 0]

    def test_ml1m_format_with_demographics_and_latin1_titles(self, tmp_path):
        path = folder(
            tmp_path,
            **{
                "users.dat": "1::F::1::10::48067\n2::M::25::4::77345\n",
                "movies.dat": "10::Caf\xe9 (1999)::Comedy\n20::Two (2000)::Drama|War\n".encode("latin-1"),
                "ratings.dat": "1::10::5::100\n1::20::3::200\n1::30::4::300\n1::40::2::400\n"
                "2::20::4::10\n2::10::4::20\n2::30::1::30\n2::40::5::40\n",
            },
        )
        assert detect_format(path) == "ml-1m"
        splits = load_splits(path, DINConfig(min_count=1, split="leave-last-out"))
        schema = splits.encoders.schema()
        assert schema.numeric == ("age",)
        assert [f.name for f in schema.categorical] == ["gender", "movieId", "occupation", "zipCode", "userId"]
        assert [g.pairs for g in schema.attention_groups] == [(("movieId", "histHighRatedMovieIds"),),
                                                             (("movieId", "histLowRatedMovieIds"),)]  # on by default
        plain = load_splits(path, DINConfig(min_count=1, split="leave-last-out", user_feature=False,
                                            low_rated_history=False)).encoders.schema()
        assert [f.name for f in plain.categorical] == ["gender", "movieId", "occupation", "zipCode"]
        assert len(plain.attention_groups) == 1
        # Three samples per user: last -> test, the one before -> valid, the first -> train.
        assert splits.test[LABEL].tolist() == [0.0, 1.0] and splits.valid[LABEL].tolist() == [1.0, 0.0]
        assert splits.train[LABEL].tolist() == [0.0, 1.0]
        gender = splits.encoders.categorical["gender"]
        np.testing.assert_array_equal(splits.train["gender"], gender.transform(np.array(["F", "M"])))

    def test_no_training_sample_is_a_clear_error(self, tmp_path):
        path = folder(tmp_path, **{"ratings.csv": "userId,movieId,rating,timestamp\n1,10,4,1\n1,20,4,2\n",
                                   "movies.csv": MOVIES_CSV})
        with pytest.raises(DataError, match="no training samples"):
            load_splits(path, DINConfig())


@pytest.mark.parametrize(
    "files, message",
    [
        ({"ratings.csv": RATINGS_CSV.replace("1,50,2.0,400", "1,50,good,400"), "movies.csv": MOVIES_CSV},
         r"ratings.csv, line 6, column 'rating': not a number \(value 'good'\)"),
        ({"ratings.csv": RATINGS_CSV.replace("1,50,2.0,400", "1,50,2.0,400,9"), "movies.csv": MOVIES_CSV},
         r"ratings.csv, line 6: 5 fields, expected 4"),
        ({"ratings.csv": RATINGS_CSV.replace("1,50,2.0,400", "1,50,7.0,400"), "movies.csv": MOVIES_CSV},
         r"line 6, column 'rating': outside 0..5"),
        ({"ratings.csv": "", "movies.csv": MOVIES_CSV}, r"ratings.csv: empty file"),
        ({"ratings.csv": RATINGS_CSV, "movies.csv": MOVIES_CSV.encode() + b"60,Caf\xe9,Drama\n"},
         r"movies.csv, line 6: not valid utf-8 text"),
        ({"ratings.csv": RATINGS_CSV, "movies.csv": MOVIES_CSV + "10,Again,Drama\n"}, r"line 6: movie 10 listed twice"),
        ({"ratings.dat": "1::10::5::100\n9::10::4::200\n", "users.dat": "1::F::1::10::48067\n", "movies.dat": "10::T::Drama\n"},
         r"ratings.dat: user 9 is not in users.dat"),
        ({"ratings.dat": "1::10::5::100\n1::20::4::200::7\n", "users.dat": "1::F::1::10::48067\n", "movies.dat": "10::T::Drama\n"},
         r"ratings.dat, line 2: more than 4 fields"),
        ({"ratings.dat": "1::10::5::100\n1::x::4::200\n", "users.dat": "1::F::1::10::48067\n", "movies.dat": "10::T::Drama\n"},
         r"ratings.dat, line 2, column 'MovieID': not an integer"),
    ],
)
def test_bad_raw_files_name_file_and_line(tmp_path, files, message):
    with pytest.raises(DataError, match=message):
        read_raw(folder(tmp_path, **files))


def test_unknown_folder_says_what_it_expected(tmp_path):
    with pytest.raises(DataError, match="ratings.csv"):
        detect_format(str(tmp_path))


@pytest.mark.parametrize("source", ["synthetic", "ml-latest-small"])
def test_sequential_samples_of_a_csv_release(source, csv_release_dir):
    from conftest import sample_dir

    path = csv_release_dir if source == "synthetic" else sample_dir(source)
    raw = read_raw(path)
    samples = build_samples(raw, max_hist=50)
    users = raw.ratings["user"].nunique()
    assert len(samples[LABEL]) == len(raw.ratings) - users  # every rating after each user's first
    # History strictly before the sample, checked row by row for a seeded subset.
    rng = np.random.default_rng(0)
    ratings = raw.ratings
    times = ratings.set_index(["user", "movie"])["timestamp"]
    for i in rng.choice(len(samples[LABEL]), 200, replace=False):
        user, movie = samples[USER][i], samples["movieId"][i]
        mine = ratings[(ratings.user == user)]
        t = times[(user, movie)]
        expected = mine[(mine.timestamp < t) & (mine.rating >= 4)].sort_values(["timestamp", "movie"], kind="stable")
        assert [int(x) for x in samples[HISTORY][i] if x] == expected["movie"].tolist()[-50:], (user, movie)
    splits = load_splits(path, DINConfig())
    for name in ("train", "valid", "test"):
        assert len(np.unique(getattr(splits, name)[USER])) == users  # every user in every split
    assert len(splits.train[LABEL]) + len(splits.valid[LABEL]) + len(splits.test[LABEL]) == len(samples[LABEL])


def test_built_datasets_are_cached_and_rebuilt_when_inputs_change(tmp_path):
    (tmp_path / "data").mkdir()
    data = folder(tmp_path / "data", **{"ratings.csv": RATINGS_CSV, "movies.csv": MOVIES_CSV})
    cache = str(tmp_path / "cache")
    config = DINConfig(min_count=1, split="leave-last-out")
    first = load_splits(data, config, cache)
    built = os.listdir(os.path.join(cache, "built"))
    assert len(built) == 1
    again = load_splits(data, config, cache)  # read back from the cache
    for split in ("train", "valid", "test"):
        for name, values in getattr(first, split).items():
            np.testing.assert_array_equal(getattr(again, split)[name], values)
    assert again.encoders.schema() == first.encoders.schema()
    load_splits(data, config.replace(max_hist=2), cache)  # another option: another entry
    with open(os.path.join(data, "ratings.csv"), "a") as f:
        f.write("3,10,4.0,1\n3,20,4.0,2\n3,30,1.0,3\n")
    changed = load_splits(data, config, cache)  # changed source: rebuilt
    assert len(os.listdir(os.path.join(cache, "built"))) == 3
    assert 3 in changed.test[USER]


class TestSeedProtocol:
    @staticmethod
    def ml1m(tmp_path):
        ratings = [f"1::{m}::5::{m}" for m in range(1, 16)]  # user 1: movies 1..15 at t = 1..15, all liked
        ratings += ["2::1::4::1", "2::2::2::2", "2::3::3::3"]  # user 2: last is movie 3 (disliked)
        ratings += [f"{u}::{m}::4::{m}" for u in (3, 4, 5) for m in (20, 21)]
        users = "".join(f"{u}::{'F' if u % 2 else 'M'}::25::{u}::1000{u}\n" for u in range(1, 6))
        movies = "".join(f"{m}::Movie {m} (2000)::{'Drama' if m % 2 else 'Comedy|War'}\n" for m in range(1, 41))
        return folder(tmp_path, **{"ratings.dat": "\n".join(ratings) + "\n", "users.dat": users, "movies.dat": movies})

    def test_hand_checked_columns(self, tmp_path):
        from data.sources.seed_protocol import build_seed_columns
        from data.sources.tutorial import REQUIRED_COLUMNS

        raw = read_raw(self.ml1m(tmp_path))
        train, test = build_seed_columns(raw, seed=0)
        expected_keys = {c for c in REQUIRED_COLUMNS if c not in ("userId", "timestamp", "label")} | {USER, TIME, LABEL}
        assert set(train) == set(test) == expected_keys  # the tutorial CSVs' columns
        rows = {int(u): i for i, u in enumerate(np.concatenate([train[USER], test[USER]]))}
        both = {k: np.concatenate([train[k], test[k]]) for k in train}
        assert sorted(rows) == [1, 2, 3, 4, 5] and len(test[USER]) == 1  # 80/20 of 5 users
        one, two = rows[1], rows[2]
        assert both["movieId"][one] == "15" and both[LABEL][one] == 1.0
        assert both[HISTORY][one] == "5|6|7|8|9|10|11|12|13|14"  # latest 10 liked before, time order
        assert both["movieId"][two] == "3" and both[LABEL][two] == 0.0 and both[HISTORY][two] == "1"
        assert both["genres"][one] == "Drama" and both["gender"][one] == "F" and both["age"][one] == 25.0
        rated = raw.ratings.groupby("user")["movie"].apply(set)
        for user, i in rows.items():
            negatives = [int(m) for m in both["negHistMovieIds"][i].split("|")]
            assert len(set(negatives)) == 10 and not set(negatives) & rated[user] and max(negatives) <= 40
        again, _ = build_seed_columns(raw, seed=0)
        np.testing.assert_array_equal(again["negHistMovieIds"], train["negHistMovieIds"])  # seeded
        other, _ = build_seed_columns(raw, seed=1)
        assert not np.array_equal(other["negHistMovieIds"], train["negHistMovieIds"])

    def test_trains_through_the_tutorial_pipeline(self, tmp_path):
        splits = load_splits(self.ml1m(tmp_path), DINConfig(protocol="seed", min_count=1, valid_fraction=0.25),
                             str(tmp_path / "cache"))
        schema = splits.encoders.schema()
        assert schema.mlp_input_dim(16) == 113  # the tutorial's model
        assert len(splits.train[LABEL]) + len(splits.valid[LABEL]) == 4 and len(splits.test[LABEL]) == 1

    def test_needs_demographics(self, tmp_path):
        path = folder(tmp_path, **{"ratings.csv": RATINGS_CSV, "movies.csv": MOVIES_CSV})
        with pytest.raises(DataError, match="needs user demographics"):
            load_splits(path, DINConfig(protocol="seed"), str(tmp_path / "cache"))


def test_seed_protocol_reads_as_the_tutorial_split_it_writes(ml1m_dir, tutorial_dir, tmp_path):
    """`write_tutorial_split` (how the tests rebuild the tutorial's split from a
    download) loses nothing: its CSVs read back as the raw folder builds."""
    config = DINConfig(protocol="seed")
    built = load_splits(ml1m_dir, config, str(tmp_path / "cache"))
    written = load_splits(tutorial_dir, DINConfig())  # the tutorial source has no protocol
    assert built.encoders.to_json() == written.encoders.to_json()
    for split in ("train", "valid", "test"):
        assert getattr(built, split).keys() == getattr(written, split).keys()
        for name, values in getattr(built, split).items():
            np.testing.assert_array_equal(getattr(written, split)[name], values, err_msg=f"{split}/{name}")


def test_sequential_protocol_on_a_movielens_1m_folder(ml1m_dir, tmp_path):
    splits = load_splits(ml1m_dir, DINConfig(), str(tmp_path / "cache"))
    schema = splits.encoders.schema()
    assert schema.numeric == ("age",)
    assert {f.name for f in schema.categorical} == {"gender", "movieId", "occupation", "zipCode", "userId"}
    for name in ("train", "valid", "test"):
        assert len(np.unique(getattr(splits, name)[USER])) == 3000


# ml-latest-small: 100k real ratings built twice (slow); the synthetic folder runs in the fast tier.
@pytest.mark.parametrize("source", ["ml-1m format", pytest.param("ml-latest-small", marks=pytest.mark.slow)])
def test_chunked_build_is_the_whole_build(source, ml1m_dir, tmp_path):
    """A build a few users at a time (memory: one chunk) gives exactly the
    arrays and encoders of one chunk holding every user, and its cache entry
    (one .npy per split and column) reads back memory-mapped, equal."""
    from conftest import sample_dir
    from data.sources import sequential

    path = ml1m_dir if source == "ml-1m format" else sample_dir(source)
    config = DINConfig(split="fraction")
    raw = read_raw(path)
    whole = sequential.build(raw, config, chunk_ratings=10**9)
    chunked = sequential.build(raw, config, chunk_ratings=997)
    assert len(list(chunked.chunks())) > 10 and len(list(whole.chunks())) == 1
    assert chunked.rows == whole.rows
    assert chunked.encoders.to_json() == whole.encoders.to_json()
    expected, got = whole.in_memory(), chunked.in_memory()
    cached = load_splits(path, config, str(tmp_path / "cache"))
    for name in ("train", "valid", "test"):
        assert getattr(expected, name).keys() == getattr(got, name).keys() == getattr(cached, name).keys()
        for column, values in getattr(expected, name).items():
            np.testing.assert_array_equal(getattr(got, name)[column], values, err_msg=f"{name}/{column}")
            np.testing.assert_array_equal(getattr(cached, name)[column], values, err_msg=f"{name}/{column}")
            assert getattr(got, name)[column].dtype == values.dtype
    assert isinstance(cached.train[HISTORY], np.memmap) and len(cached.train[HISTORY]) == whole.rows["train"]
