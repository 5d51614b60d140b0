"""--split time: one cut time for validation and one for test, the same for
every user, taken over all samples; no training sample is later than a
validation one, none of those later than a test one; the run records each
split's span; a dataset file without a time column, and the Beam build, refuse it in one line."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

import train
from core.config import DINConfig
from core.errors import DataError
from data.datasets import Build, load_splits, raw_splits
from data.schema import TIME, USER
from data.sources.grouplens import read_raw
from data.sources.sequential import cut_times, sorted_ratings

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIME_SPLIT = DINConfig(protocol="sequential", split="time", max_hist=6)


@pytest.mark.parametrize("layout", ["ml1m_dir", "csv_release_dir"])
def test_one_cut_time_for_every_user(layout, request):
    folder = request.getfixturevalue(layout)
    parts = raw_splits(folder, TIME_SPLIT)
    ratings = read_raw(folder).ratings
    # The samples: every rating but each user's first (by time, ties by movie).
    firsts = ratings.sort_values(["user", "timestamp", "movie"], kind="stable").groupby("user").head(1).index
    times = np.sort(ratings.drop(index=firsts)["timestamp"].to_numpy())
    held = int(np.floor(0.1 * len(times)))
    valid_cut, test_cut = times[-2 * held], times[-held]
    assert cut_times(sorted_ratings(read_raw(folder)), 0.1) == (valid_cut, test_cut)
    train_, valid, test = (parts[split][TIME] for split in ("train", "valid", "test"))
    assert train_.max() < valid_cut <= valid.min() and valid.max() < test_cut <= test.min()
    assert len(train_) + len(valid) + len(test) == len(times)
    assert len(test) == int((times >= test_cut).sum()) >= held  # ties at the cut's second go to test
    # The same cuts for every user: a user's last training sample is before the validation cut, whoever it is.
    last_train = pd.Series(train_).groupby(parts["train"][USER]).max()
    assert (last_train < valid_cut).all() and len(last_train) > 1


def test_a_time_split_run_records_its_spans(ml1m_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(["--backend", "torch", "--data", ml1m_dir, "--out", str(out), "--split", "time",
                       "--max-hist", "6", "--epochs", "1", "--no-progress", "--cache-dir", str(tmp_path / "cache")]) == 0
    config = json.loads((out / "config.json").read_text())
    timeline = json.loads((out / "metrics.json").read_text())["timeline"]
    assert config["data"]["split"] == "time"
    assert timeline["train"]["last"] < timeline["valid"]["first"] <= timeline["valid"]["last"] < timeline["test"]["first"]
    splits = load_splits(ml1m_dir, TIME_SPLIT.replace(max_hist=6), str(tmp_path / "cache"))
    assert timeline == splits.timeline  # read from the cache entry the run trained on


def test_a_dataset_file_with_a_time_column_splits_by_it(tutorial_dir, tmp_path, capsys):
    """The tutorial's layout names its time column: --split time pools both
    files and cuts them by time; a dataset file without one refuses it in one line."""
    parts = raw_splits(tutorial_dir, DINConfig(split="time"))
    train_, valid, test = (parts[split][TIME] for split in ("train", "valid", "test"))
    assert train_.max() < valid.min() and valid.max() < test.min()
    rows = sum(len(pd.read_csv(f"{tutorial_dir}/{name}")) for name in ("train.csv", "test.csv"))
    assert len(train_) + len(valid) + len(test) == rows and len(test) >= int(0.1 * rows)
    layout = (ROOT / "data" / "sources" / "layouts" / "tutorial.toml").read_text()
    no_time = tmp_path / "no-time.toml"
    no_time.write_text("\n".join(line for line in layout.splitlines() if not line.startswith("time =")))
    assert train.main(["--backend", "torch", "--data", tutorial_dir, "--dataset", str(no_time), "--split", "time",
                       "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--split time: " in err and 'names no time column; add time = "<column>"' in err
    assert not (tmp_path / "run").exists()


def test_the_beam_build_refuses_it(ml1m_dir, tutorial_dir, tmp_path):
    with pytest.raises(DataError, match="--split time builds locally"):
        load_splits(ml1m_dir, TIME_SPLIT, str(tmp_path / "cache"), build=Build("beam"))


def test_amazon_splits_by_time_too(amazon_dir, tmp_path):
    """Amazon's reviews: a positive and its sampled negative share their
    time and their split; one cut time for every user; the authors' split
    (each user's last position) stays the default."""
    config = DINConfig(split="time", max_hist=6)
    parts = raw_splits(amazon_dir, config)
    train_, valid, test = (parts[split][TIME] for split in ("train", "valid", "test"))
    assert train_.max() < valid.min() and valid.max() < test.min()
    positions = len(train_) + len(valid) + len(test)
    assert len(test) >= 2 * int(np.floor(0.1 * positions / 2)) and len(test) % 2 == 0  # whole pairs
    for split in ("train", "valid", "test"):
        labels = parts[split]["label"]
        assert (labels[::2] == 1).all() and (labels[1::2] == 0).all()  # positive, then its negative
    authors = raw_splits(amazon_dir, DINConfig(max_hist=6))
    last = pd.Series(authors["test"][TIME]).groupby(authors["test"][USER]).size()
    assert (last == 2).all()  # each user's last position, a pair
    with pytest.raises(DataError, match="--split time builds locally"):
        load_splits(amazon_dir, config, str(tmp_path / "cache"), build=Build("beam"))


def test_a_time_column_of_dates_reads_as_seconds(tutorial_dir, tmp_path):
    """The Taobao sample's time_stamp ('2017-05-06 00:00:00') reads as Unix seconds
    (UTC); a value that is no time is one line naming the file, line and column."""
    from conftest import sample_dir

    data = sample_dir("taobao-ad-sample")
    config = DINConfig(dataset=str(ROOT / "examples" / "taobao-ad.toml"), split="time")
    parts = raw_splits(data, config)
    first = pd.read_csv(f"{data}/train.csv", nrows=1)["time_stamp"][0]
    assert pd.Timestamp(first, tz="UTC").timestamp() in np.concatenate([p[TIME] for p in parts.values()])
    assert parts["train"][TIME].max() < parts["test"][TIME].min()
    folder = tmp_path / "bad"
    folder.mkdir()
    for name in ("train.csv", "test.csv"):
        frame = pd.read_csv(f"{tutorial_dir}/{name}", dtype=str, keep_default_na=False)
        if name == "train.csv":
            frame.loc[2, "timestamp"] = "yesterday"
        frame.to_csv(folder / name, index=False)
    with pytest.raises(DataError, match=r"train.csv, line 4, column 'timestamp': not a time \(value 'yesterday'\)"):
        raw_splits(str(folder), DINConfig())
