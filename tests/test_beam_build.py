"""The Beam build (data/beam/, DirectRunner) makes exactly the local
build's cache entry: the same encoders.json and every split's arrays bit for
bit, in the same order, from several byte ranges and several user-range
shards, in-process and on two worker processes; training reads the sharded
entry as one split; a failed pipeline leaves no entry; bad input is one line."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import pytest

from conftest import OPTIMISED_SETTINGS, sample_dir
from core.config import DINConfig
from core.errors import DataError
from data import cache
from data.beam.movielens import build as beam_build
from data.datasets import Build, load_splits
from data.sharded import MANIFEST, ShardedColumn
from data.sources.movielens import MovieLens
from data.schema import USER
from data.splits import SPLITS

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = DINConfig(protocol="sequential", max_hist=6)
MULTI_PROCESS = ("--direct_num_workers=2", "--direct_running_mode=multi_processing")
# Small ranges and shards, so that even a small folder is cut into several of each.
SMALL = dict(shard_ratings=4000, range_bytes=64 << 10)


def assert_same_entry(local: str, beam: str) -> None:
    assert pathlib.Path(local, "encoders.json").read_text() == pathlib.Path(beam, "encoders.json").read_text()
    a, b = cache.read(local), cache.read(beam)
    for split in SPLITS:
        mine, theirs = getattr(a, split), getattr(b, split)
        assert sorted(mine) == sorted(theirs)
        for name, values in mine.items():
            assert isinstance(theirs[name], ShardedColumn)
            joined = np.asarray(theirs[name])
            assert joined.dtype == values.dtype, (split, name)
            np.testing.assert_array_equal(joined, values, err_msg=f"{split}/{name}")


def build_both(data_dir: str, tmp_path, pipeline_args=(), config=CONFIG) -> tuple[str, str]:
    local, beam = str(tmp_path / "local"), str(tmp_path / "beam")
    MovieLens().build(data_dir, config, local)
    beam_build(data_dir, config, beam, pipeline_args=pipeline_args, **SMALL)
    return local, beam


@pytest.mark.parametrize("options", [
    {"low_rated_history": True, "user_feature": True},
    pytest.param({"low_rated_history": False, "user_feature": False}, marks=pytest.mark.slow),
], ids=["features on (the default)", "features off"])
def test_synthetic_ml1m_builds_the_same_entry_in_process(ml1m_dir, tmp_path, options, monkeypatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    local, beam = build_both(ml1m_dir, tmp_path, config=CONFIG.replace(**options))
    manifest = cache.read(beam)
    assert len(manifest.train["label"].parts) > 3  # several shards, each a user range
    on = options["user_feature"]
    assert ("userId" in manifest.train) == ("histLowRatedMovieIds" in manifest.train) == on
    assert_same_entry(local, beam)
    # The DirectRunner runs on this machine's pinned packages: Beam's own would
    # first try to start its downloaded Prism runner, leaving a folder here.
    assert not list(temp.iterdir())


@pytest.mark.slow  # two worker processes
def test_ml_latest_small_builds_the_same_entry_on_two_worker_processes(tmp_path):
    local, beam = build_both(sample_dir("ml-latest-small"), tmp_path, MULTI_PROCESS)
    assert len(cache.read(beam).train["label"].parts) > 3
    assert_same_entry(local, beam)


def test_a_sharded_column_gathers_rows_like_one_array():
    rng = np.random.default_rng(0)
    whole = rng.integers(0, 100, (50, 3))
    column = ShardedColumn([whole[:7], whole[7:7], whole[7:31], whole[31:]])
    assert len(column) == 50 and column.shape == (50, 3) and column.nbytes == whole.nbytes
    rows = rng.integers(0, 50, (4, 6))  # a block [K, B] of batches
    np.testing.assert_array_equal(column[rows], whole[rows])
    np.testing.assert_array_equal(column[5:40:3], whole[5:40:3])
    np.testing.assert_array_equal(column[-1], whole[-1])
    np.testing.assert_array_equal(column[(slice(None), slice(1, 3))], whole[:, 1:3])  # a device's shard of a copy
    np.testing.assert_array_equal(column[(4, 2)], whole[4, 2])
    np.testing.assert_array_equal(np.asarray(column), whole)
    with pytest.raises(IndexError):
        column[np.asarray([50])]
    text = np.asarray(["a", "bb", "ccccc", "dd"])  # string ids: each shard as wide as its longest
    column = ShardedColumn([text[:2].astype("<U2"), text[2:].astype("<U5")])
    assert column.dtype == np.dtype("<U5")
    np.testing.assert_array_equal(column[np.asarray([3, 0, 2])], text[[3, 0, 2]])


def test_training_reads_the_sharded_entry_as_the_local_one(ml1m_dir, tmp_path):
    """load_splits with Build('beam') builds once, under the local build's cache
    key, and then reads the entry; an epoch of batches is the same."""
    from data.batches import iterate_batches

    local = load_splits(ml1m_dir, CONFIG, str(tmp_path / "a"))
    sharded = load_splits(ml1m_dir, CONFIG, str(tmp_path / "b"), build=Build("beam"))
    built = os.listdir(tmp_path / "b" / "built")
    assert built == os.listdir(tmp_path / "a" / "built")  # one cache key, whichever engine built it
    assert os.path.isfile(tmp_path / "b" / "built" / built[0] / MANIFEST)
    for mine, theirs in zip(iterate_batches(local.train, 64, 0, 1), iterate_batches(sharded.train, 64, 0, 1)):
        for name in mine:
            np.testing.assert_array_equal(theirs[name], mine[name])


@pytest.mark.parametrize("engine", ["local", "beam"])
def test_a_damaged_array_is_caught_by_its_checksum_and_rebuilt(ml1m_dir, tmp_path, engine, caplog):
    """One flipped label in a cache entry (its header and length intact, so it
    still loads) is caught on the next read and the entry is built again."""
    cache_dir = str(tmp_path / "cache")
    built = load_splits(ml1m_dir, CONFIG, cache_dir, build=Build(engine))
    labels = np.asarray(built.train["label"]).copy()
    (entry,) = (tmp_path / "cache" / "built").iterdir()
    (path,) = [p for p in entry.rglob("label.npy") if p.parent.name == "train"][:1]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # the last row's label, 0 <-> 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="label.npy does not match the checksum"):
        cache.read(str(entry))
    again = load_splits(ml1m_dir, CONFIG, cache_dir, build=Build(engine))
    np.testing.assert_array_equal(np.asarray(again.train["label"]), labels)
    assert "is damaged" in caplog.text


@pytest.mark.optimised  # bit for bit across two programs: at -O1, in tests/test_optimised.py
def test_jax_trains_the_same_bits_from_either_entry(ml1m_dir, tmp_path):
    """Streamed and device-resident input over the shards give the weights of the local entry."""
    from data.batches import epoch_batches
    from training.backend import make_backend

    local = load_splits(ml1m_dir, CONFIG, str(tmp_path / "a"))
    sharded = load_splits(ml1m_dir, CONFIG, str(tmp_path / "b"), build=Build("beam"))
    batches = epoch_batches(len(local.train["label"]), 128, 0, 1)[:6]
    weights = []
    for splits, mode in ((local, "device"), (sharded, "stream")):  # the device path's copy: the ShardedColumn test
        config = CONFIG.replace(**OPTIMISED_SETTINGS, input=mode)
        backend = make_backend("jax", splits.encoders.schema(), config)
        backend.train_batches(splits.train, batches, lambda n: None)
        weights.append(backend.weights())
    for other in weights[1:]:
        for name, value in weights[0].items():
            np.testing.assert_array_equal(other[name], value, err_msg=name)


def test_a_failing_pipeline_leaves_no_entry(ml1m_dir, tmp_path, monkeypatch):
    from data.beam import movielens as beam_build

    def fail(self, element, encoders):
        raise RuntimeError("disk full")
        yield

    monkeypatch.setattr(beam_build.WriteShard, "process", fail)
    folder = tmp_path / "cache" / "entry"
    with pytest.raises(Exception, match="disk full"):
        beam_build.build(ml1m_dir, CONFIG, str(folder), **SMALL)
    assert not folder.exists() and os.listdir(folder.parent) == []  # no entry, no half-written folder


# A child process builds with a WriteShard whose worker dies mid-write; the class
# lives in the child's __main__, so Beam ships it by value to its worker processes.
KILLED_WORKER = """
import os, sys
from core.config import DINConfig
from data.beam import movielens as beam_build

class Dies(beam_build.WriteShard):
    def process(self, element, encoders):
        yield from super().process(element, encoders)
        os._exit(1)  # the worker process dies after writing one shard

beam_build.WriteShard = Dies
beam_build.build(sys.argv[1], DINConfig(protocol="sequential", max_hist=6), sys.argv[2], shard_ratings=4000,
                 pipeline_args=sys.argv[3:])
"""


@pytest.mark.slow  # a child process and its two workers
def test_a_killed_worker_leaves_no_entry(tmp_path):
    """A worker process that dies while writing shards fails the pipeline;
    nothing is left where a later run would look."""
    folder = tmp_path / "cache" / "entry"
    argv = [sys.executable, "-c", KILLED_WORKER, sample_dir("ml-latest-small"), str(folder), *MULTI_PROCESS]
    result = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0, result.stderr[-2000:]
    assert not folder.exists() and list(folder.parent.iterdir()) == []


def test_a_bad_line_is_one_line_naming_file_and_line(tmp_path):
    lines = ["userId,movieId,rating,timestamp"] + [f"{u},{m},4.0,{1000 + m}" for u in range(1, 40) for m in range(1, 30)]
    lines[700] = "12,5,four,1005"
    (tmp_path / "ratings.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n" + "".join(f"{m},M{m},Drama\n" for m in range(1, 30)))
    with pytest.raises(DataError) as error:
        beam_build(str(tmp_path), CONFIG, str(tmp_path / "entry"), range_bytes=2048)
    message = str(error.value)
    assert "\n" not in message and f"{tmp_path / 'ratings.csv'}" in message and "line 701" in message, message


def test_build_command_builds_once_where_training_reads(csv_release_dir, tmp_path, capsys):
    """build.py --build beam writes the entry train.py's key names; a second
    build (local or beam) finds it; flags the build does not take are refused."""
    import build

    cache_dir = str(tmp_path / "cache")
    argv = ["--data", csv_release_dir, "--cache-dir", cache_dir, "--max-hist", "6", "--no-progress"]
    assert build.main([*argv, "--build", "beam"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("built (beam): ") and "train " in first
    assert build.main(argv) == 0
    assert capsys.readouterr().out.startswith("already built: " + first.split(": ")[1])
    splits = load_splits(csv_release_dir, CONFIG, cache_dir)
    assert isinstance(splits.train["label"], ShardedColumn)
    with pytest.raises(SystemExit) as refused:
        build.main([*argv, "--direct_num_workers=2"])
    assert refused.value.code == 2
    assert "go with --build beam" in capsys.readouterr().err


# CSVs through a dataset file: the entry of the local read, sharded by byte range.

def csv_variant(tutorial_dir: str, folder: pathlib.Path, variant: str) -> str:
    """The synthetic tutorial split as a dataset-file folder: 'no user column'
    (each row its own user) with a gzipped test file, or 'valid file' with
    string user ids."""
    import gzip

    shutil.copytree(tutorial_dir, folder)
    layout = (ROOT / "data" / "sources" / "layouts" / "tutorial.toml").read_text()
    if variant == "no user column":
        layout = layout.replace('user = "userId"\n', "").replace('"test.csv"', '"test.csv.gz"')
        (folder / "test.csv.gz").write_bytes(gzip.compress((folder / "test.csv").read_bytes()))
    else:  # a valid file (the test file again), user ids that are not integers
        for name in ("train.csv", "test.csv"):
            text = (folder / name).read_text().splitlines()
            column = text[0].split(",").index("userId")
            rows = [row.split(",") for row in text[1:]]
            for row in rows:
                row[column] = f"u{row[column]}"
            (folder / name).write_text("\n".join([text[0], *(",".join(row) for row in rows)]) + "\n")
        shutil.copy(folder / "test.csv", folder / "valid.csv")
        layout = layout.replace('test = "test.csv"', 'valid = "valid.csv"\ntest = "test.csv"')
    (folder / "dataset.toml").write_text(layout)
    return str(folder)


@pytest.mark.parametrize("variant, options", [
    ("tutorial", {}),  # integer users, a held-out share of them for validation
    # The other layouts run in the full suite (the fast tier keeps one in-process pipeline per source).
    pytest.param("tutorial", {"valid_on_test": True, "share_embeddings": True, "max_len": 4}, marks=pytest.mark.slow),
    pytest.param("no user column", {}, marks=pytest.mark.slow),
    pytest.param("valid file", {"min_count": 2}, marks=pytest.mark.slow),
])
def test_a_dataset_file_builds_the_entry_of_the_local_read(tutorial_dir, tmp_path, variant, options):
    from data.beam import dataset_file as beam_csv
    from data.sources import detect

    data_dir = tutorial_dir if variant == "tutorial" else csv_variant(tutorial_dir, tmp_path / "data", variant)
    config = DINConfig(**options)
    source = detect(data_dir, config)
    local, beam = str(tmp_path / "local"), str(tmp_path / "beam")
    source.build(data_dir, config, local)  # the in-memory read, written as an entry
    beam_csv.build(data_dir, source.layout(data_dir, config), config, beam, range_bytes=16 << 10)
    assert len(cache.read(beam).train["label"].parts) > 3
    assert_same_entry(local, beam)


@pytest.mark.slow  # two worker processes
def test_the_taobao_sample_builds_the_same_entry_on_two_worker_processes(tmp_path):
    from data.beam import dataset_file as beam_csv
    from data.sources import detect

    config = DINConfig(dataset=str(ROOT / "examples" / "taobao-ad.toml"))
    data_dir = sample_dir("taobao-ad-sample")
    source = detect(data_dir, config)
    local, beam = str(tmp_path / "local"), str(tmp_path / "beam")
    source.build(data_dir, config, local)
    beam_csv.build(data_dir, source.layout(data_dir, config), config, beam, pipeline_args=MULTI_PROCESS,
                   range_bytes=2048)
    assert len(cache.read(beam).train["label"].parts) > 3
    assert_same_entry(local, beam)


@pytest.mark.parametrize("case", ["bad value", "quoted line break"])
def test_a_bad_csv_line_is_one_line_naming_file_and_line(tutorial_dir, tmp_path, case):
    from data.beam import dataset_file as beam_csv
    from data.sources.tutorial import LAYOUT

    folder = tmp_path / "data"
    shutil.copytree(tutorial_dir, folder)
    lines = (folder / "train.csv").read_text().splitlines()
    fields, label = lines[1500].split(","), lines[0].split(",").index("label")
    if case == "bad value":
        fields[label] = "maybe"
        expected = ["not a number (value 'maybe'); a label is 0 or 1"]
    else:
        fields[label] = '"1\n"'  # a quoted field over two lines
        expected = ["a quoted field runs over a line break", "--build local"]
    lines[1500] = ",".join(fields)
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as error:
        beam_csv.build(str(folder), LAYOUT, DINConfig(), str(tmp_path / "entry"), range_bytes=4096)
    message = str(error.value)
    assert "\n" not in message and f"{folder / 'train.csv'}, line 1501" in message, message
    assert all(part in message for part in expected), message
    assert not (tmp_path / "entry").exists()


def test_build_command_caches_a_csv_source_that_training_then_reads(tutorial_dir, tmp_path, capsys):
    """A CSV source, read in memory with --build local, gets a cache entry with
    --build beam, which training then reads: the in-memory read's arrays."""
    import build

    cache_dir = str(tmp_path / "cache")
    argv = ["--data", tutorial_dir, "--cache-dir", cache_dir, "--no-progress", "--build", "beam"]
    assert build.main(argv) == 0 and capsys.readouterr().out.startswith("built (beam): ")
    assert build.main(argv) == 0 and capsys.readouterr().out.startswith("already built: ")
    config = DINConfig()
    in_memory = load_splits(tutorial_dir, config)
    cached = load_splits(tutorial_dir, config, cache_dir, build=Build("beam"))
    for split in SPLITS:
        mine, theirs = getattr(in_memory, split), getattr(cached, split)
        assert isinstance(theirs["label"], ShardedColumn) and sorted(mine) == sorted(theirs)
        for name, values in mine.items():
            np.testing.assert_array_equal(np.asarray(theirs[name]), values, err_msg=f"{split}/{name}")


# Amazon in the authors' protocol: the local build's entry, sharded by user range.

def uncompressed(folder: str, to: pathlib.Path) -> str:
    import gzip

    to.mkdir()
    for name in os.listdir(folder):
        (to / name.removesuffix(".gz")).write_bytes(gzip.decompress(pathlib.Path(folder, name).read_bytes()))
    return str(to)


@pytest.mark.parametrize("files, options", [
    ("plain", {}),  # byte ranges of both files
    pytest.param("gzipped", {"valid_on_test": True, "max_hist": 3, "seed": 7}, marks=pytest.mark.slow),  # one range each
])
def test_amazon_builds_the_entry_of_the_local_build(amazon_dir, tmp_path, files, options):
    from data.beam import amazon as beam_amazon
    from data.sources.amazon import Amazon

    data_dir = amazon_dir if files == "gzipped" else uncompressed(amazon_dir, tmp_path / "plain")
    config = DINConfig(**options)
    local, beam = str(tmp_path / "local"), str(tmp_path / "beam")
    Amazon().build(data_dir, config, local)
    figures = beam_amazon.build(data_dir, config, beam, shard_reviews=500, range_bytes=16 << 10)
    assert len(cache.read(beam).train["label"].parts) > 3
    assert figures["parse"]["calls"] > (3 if files == "plain" else 0) and figures["meta"]["calls"] >= 1
    assert_same_entry(local, beam)


def test_a_range_of_users_draws_the_negatives_of_the_whole(amazon_dir):
    """The negatives are a function of (seed, user, position): the build of a
    few users draws exactly what the whole build draws for them."""
    from data.sources import amazon, amazon_files

    reviews = amazon_files.read_reviews(amazon_files.find_files(amazon_dir)[0])
    categories = amazon_files.read_meta(amazon_files.find_files(amazon_dir)[1], set(reviews["item"]))
    items = amazon.Catalogue.of(categories)
    whole = amazon.build_samples(reviews, categories, 6, seed=0)
    reviews = reviews[items.has(reviews["item"].to_numpy(dtype=str))]
    user, _ = pd.factorize(reviews["user"], sort=True)
    few = (user >= 40) & (user < 55)
    part = amazon.user_samples(user[few], items.number(reviews["item"].to_numpy(dtype=str)[few]),
                               reviews["time"].to_numpy()[few], np.flatnonzero(few), items, 6, seed=0)
    rows = (whole[USER] >= 40) & (whole[USER] < 55)
    for name, values in part.items():
        np.testing.assert_array_equal(values, whole[name][rows], err_msg=name)
    assert not np.array_equal(amazon.build_samples(reviews, categories, 6, seed=1)["item"], whole["item"])


def test_a_bad_meta_line_is_one_line_naming_file_and_line(amazon_dir, tmp_path):
    from data.beam import amazon as beam_amazon

    data_dir = pathlib.Path(uncompressed(amazon_dir, tmp_path / "plain"))
    meta = next(data_dir.glob("meta_*.json"))
    lines = meta.read_text().splitlines()
    lines[250] = lines[250].replace("'categories'", "'categories': __import__('os'),  'x'")
    meta.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as error:
        beam_amazon.build(str(data_dir), DINConfig(), str(tmp_path / "entry"), range_bytes=4096)
    message = str(error.value)
    assert "\n" not in message and f"{meta}, line 251: not a meta record" in message, message
    assert not (tmp_path / "entry").exists()
