"""The sample build as an Apache Beam pipeline: raw MovieLens in the sequential
protocol, built by any Beam runner (the DirectRunner here; Flink, Spark or
Dataflow at scale) into a sharded cache entry that equals the local build's
arrays bit for bit.

  ranges      the ratings file cut into byte ranges, each parsed by its own
              worker with the local reader's parser (grouplens.RatingsFile)
  shards      user ranges of about `shard_ratings` ratings, from the summed
              ratings per user (the same cut rule as sequential.user_chunks)
  samples     each shard's ratings grouped by user range (one shuffle), then
              the local build's own per-chunk code: duplicates dropped,
              sorted by (user, timestamp, movie), sequential.samples, the split
  encoders    fitted on the summed statistics of every shard's training
              rows (encoders.Statistics, merged in shard order)
  write       each shard encoded and written as `.npy` columns
              (`shards/<k>/<split>/<column>.npy`), then `manifest.json` last

The entry is built in a temporary folder beside its place and renamed into
place whole; a pipeline that fails leaves nothing a later run would read.
No step holds more than one shard of ratings or samples; the per-user
ratings counts and the encoders' statistics are the only global state.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile

import numpy as np
import pandas as pd

from core.config import DINConfig
from core.errors import DataError
from data.encoders import Statistics
from data.sharded import MANIFEST
from data.sources import grouplens, sequential
from data.splits import SPLITS, encode


def _import_beam():
    """apache_beam, without the warning its import logs on the root logger when
    Google Cloud's optional BigQuery client is not installed (it is not needed here)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        import apache_beam
        from apache_beam.options import pipeline_options
    finally:
        root.setLevel(level)
    return apache_beam, pipeline_options.PipelineOptions


beam, PipelineOptions = _import_beam()

RANGE_BYTES = 4 << 20  # each worker parses this many bytes of the ratings file at a time


def byte_ranges(start: int, size: int, range_bytes: int) -> list[tuple[int, int, int]]:
    """(index, first byte, end byte) of the data after the header; a range owns
    the lines that START inside it."""
    cuts = list(range(start, size, range_bytes)) + [size]
    return [(i, a, b) for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))]


def read_range(layout: grouplens.RatingsFile, item: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """The ratings of one byte range, plus `position` (their line order in the file)."""
    index, start, end = item
    with open(layout.path, "rb") as f:
        f.seek(start)
        if start > layout.data_start:  # the line running into the range belongs to the one before
            f.seek(start - 1)
            f.readline()
        block = f.read(max(end - f.tell(), 0)) if f.tell() < end else b""
        if block and not block.endswith(b"\n"):
            block += f.readline()  # the last line that starts inside the range, whole
        block_start = end if not block else f.tell() - len(block)
    try:
        frame = layout.parse(block, 0)
    except DataError:  # name the right line: count the lines before this block (only ever on an error)
        with open(layout.path, "rb") as f:
            before = f.read(block_start)[layout.data_start:].count(b"\n")
        frame = layout.parse(block, layout.first_line + before)
    columns = {name: frame[name].to_numpy() for name in ("user", "movie", "rating", "timestamp")}
    columns["position"] = (np.int64(index) << 32) + np.arange(len(frame), dtype=np.int64)
    return columns


def user_counts(columns: dict[str, np.ndarray]) -> pd.Series:
    users, counts = np.unique(columns["user"], return_counts=True)
    return pd.Series(counts, index=users)


class SumCounts(beam.CombineFn):
    """Ratings per user, summed over ranges."""

    def create_accumulator(self):
        return pd.Series(dtype=np.int64)

    def add_input(self, total, counts):
        return total.add(counts, fill_value=0).astype(np.int64)

    def merge_accumulators(self, totals):
        totals = list(totals)
        return pd.concat(totals).groupby(level=0).sum().astype(np.int64) if totals else self.create_accumulator()

    def extract_output(self, total):
        return total.sort_index()


def shard_starts(counts: pd.Series, shard_ratings: int) -> np.ndarray:
    """The first user of each shard: a shard ends at the first user to start at or
    after each multiple of shard_ratings ratings (sequential.user_chunks' rule)."""
    if counts.empty:
        raise DataError("the ratings file has no data rows")
    users, sizes = counts.index.to_numpy(), counts.to_numpy()
    starts = np.cumsum(sizes) - sizes  # each user's first row, in user order
    firsts = np.unique(np.searchsorted(starts, np.arange(0, starts[-1] + sizes[-1], shard_ratings)))
    return users[firsts[firsts < len(users)]]


def by_shard(columns: dict[str, np.ndarray], starts: np.ndarray):
    """(shard, the range's ratings of that shard's users) for each shard the range touches."""
    shard = np.searchsorted(starts, columns["user"], side="right") - 1
    for k in np.unique(shard):
        here = shard == k
        yield int(k), {name: values[here] for name, values in columns.items()}


class ShardSamples(beam.DoFn):
    """A shard's ratings -> its samples per split, by the local build's code."""

    def __init__(self, folder: str, config: DINConfig):
        self.folder, self.config = folder, config

    def setup(self):
        self.tables = grouplens.read_tables(self.folder)

    def process(self, element):
        shard, parts = element
        columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        order = np.argsort(columns.pop("position"), kind="stable")  # file line order, as the local read has it
        ratings = grouplens._ratings(pd.DataFrame({name: values[order] for name, values in columns.items()}))
        movies, users = self.tables
        if users is not None:
            grouplens.check_users(ratings, users, self.folder)
        raw = grouplens.RawMovieLens(ratings, movies, users, grouplens.detect_format(self.folder), self.folder)
        samples = sequential.samples(raw, sequential.sorted_ratings(raw), self.config.max_hist)
        yield shard, sequential.split_samples_of(raw, samples, self.config)


class MergeStatistics(beam.CombineFn):
    """The encoders' statistics of every shard's training rows, merged in shard
    order (numeric values keep the local build's row order)."""

    def __init__(self, specs):
        self.specs = specs

    def create_accumulator(self):
        return []

    def add_input(self, parts, element):
        shard, splits = element
        return parts + [(shard, Statistics(self.specs).add(splits["train"]))]

    def merge_accumulators(self, accumulators):
        return [part for parts in accumulators for part in parts]

    def extract_output(self, parts):
        total = Statistics(self.specs)
        for _, statistics in sorted(parts, key=lambda part: part[0]):
            total.merge(statistics)
        return total


class WriteShard(beam.DoFn):
    """Encodes one shard's splits and writes their columns under work/shards/<k>/."""

    def __init__(self, work: str):
        self.work = work

    def process(self, element, encoders):
        shard, splits = element
        name = f"{shard:05d}"
        rows, columns = {}, {}
        for split in SPLITS:
            arrays = encode(splits[split], encoders)
            folder = os.path.join(self.work, "shards", name, split)
            os.makedirs(folder, exist_ok=True)
            for column, values in arrays.items():
                values = np.ascontiguousarray(values.astype(str) if values.dtype == object else values)
                np.save(os.path.join(folder, f"{column}.npy"), values)
            rows[split], columns[split] = len(arrays["label"]), sorted(arrays)
        yield name, rows, columns


def write_manifest(work: str, encoders, written) -> None:
    """encoders.json, then manifest.json: the entry is whole once the manifest is."""
    written = sorted(written)
    columns = {split: written[0][2][split] for split in SPLITS}
    with open(os.path.join(work, "encoders.json"), "w", encoding="utf-8") as f:
        f.write(encoders.to_json())
    manifest = {"build": "beam", "shards": [name for name, _, _ in written],
                "rows": {name: rows for name, rows, _ in written}, "columns": columns}
    with open(os.path.join(work, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)


def pipeline(p: beam.Pipeline, data_dir: str, config: DINConfig, work: str, shard_ratings: int,
             range_bytes: int = RANGE_BYTES):
    layout, path = grouplens.ratings_file(data_dir)
    if layout is None:
        raise DataError(f"{path}: a quoted header line: the Beam build reads unquoted headers only (use --build local)")
    movies, users = grouplens.read_tables(data_dir)  # checked once here, before any worker starts
    specs = sequential.features(grouplens.RawMovieLens(pd.DataFrame(), movies, users, grouplens.detect_format(data_dir)))

    ratings = (
        p
        | "ranges" >> beam.Create(byte_ranges(layout.data_start, os.path.getsize(path), range_bytes))
        | "reshuffle ranges" >> beam.Reshuffle()  # spread the ranges over the workers
        | "parse" >> beam.Map(lambda item: read_range(layout, item))
    )
    starts = (
        ratings
        | "count per user" >> beam.Map(user_counts)
        | "sum counts" >> beam.CombineGlobally(SumCounts())
        | "shard starts" >> beam.Map(shard_starts, shard_ratings)
    )
    samples = (
        ratings
        | "key by shard" >> beam.FlatMap(by_shard, beam.pvalue.AsSingleton(starts))
        | "group by shard" >> beam.GroupByKey()
        | "samples" >> beam.ParDo(ShardSamples(data_dir, config))
    )
    encoders = (
        samples
        | "statistics" >> beam.CombineGlobally(MergeStatistics(specs))
        | "fit encoders" >> beam.Map(lambda s: s.fit(sequential.ATTENTION_GROUPS, config.min_count,
                                                     config.share_embeddings, config.max_len))
    )
    written = samples | "write shards" >> beam.ParDo(WriteShard(work), beam.pvalue.AsSingleton(encoders))
    (
        written
        | "collect shards" >> beam.combiners.ToList()
        | "manifest" >> beam.Map(lambda shards, enc: write_manifest(work, enc, shards), beam.pvalue.AsSingleton(encoders))
    )


def build(data_dir: str, config: DINConfig, folder: str, runner: str = "DirectRunner", pipeline_args: tuple = (),
          shard_ratings: int = sequential.CHUNK_RATINGS, range_bytes: int = RANGE_BYTES) -> None:
    """Builds the cache entry `folder` with a Beam pipeline (pipeline_args: Beam's
    own options, e.g. --direct_num_workers=2 --direct_running_mode=multi_processing)."""
    if config.protocol != "sequential":
        raise DataError(f"--build beam builds the sequential protocol; --protocol {config.protocol} builds locally "
                        "(--build local)")
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".build-", dir=parent)
    beam_log = logging.getLogger("apache_beam")
    level = beam_log.level
    beam_log.setLevel(logging.ERROR)  # Beam's own warnings about its internals (its workers' logs come through it)
    try:
        # Workers log at WARNING unless the user asks for more (Beam's default is INFO per bundle).
        quiet = [] if any(a.startswith("--default_sdk_harness_log_level") for a in pipeline_args) else \
            ["--default_sdk_harness_log_level=WARNING"]
        options = PipelineOptions([f"--runner={runner}", *quiet, *pipeline_args])
        with beam.Pipeline(options=options) as p:
            pipeline(p, data_dir, config, work, shard_ratings, range_bytes)
        with open(os.path.join(work, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
        if not sum(rows["train"] for rows in manifest["rows"].values()):
            raise DataError(f"{data_dir}: no training samples: every user has too few ratings for the "
                            f"'{config.split}' split")
        try:
            os.replace(work, folder)  # whole or not at all
        except OSError:
            if not os.path.isdir(folder):  # else another process built the same entry first: keep it
                raise
    except Exception as error:
        raise data_error(error) from error
    finally:
        beam_log.setLevel(level)
        shutil.rmtree(work, ignore_errors=True)


def data_error(error: Exception) -> Exception:
    """A DataError raised in a worker, as the one line it says (runners wrap it)."""
    seen = error
    while seen is not None:
        if isinstance(seen, DataError):
            return DataError(str(seen).splitlines()[0])
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    marker = "DataError: "
    if marker in text:
        return DataError(text[text.index(marker) + len(marker):].splitlines()[0])
    return error
