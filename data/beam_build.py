"""The sample build as an Apache Beam pipeline: raw MovieLens in the sequential
protocol, built by any Beam runner (the DirectRunner here; Flink, Spark or
Dataflow at scale) into a sharded cache entry that equals the local build's
arrays bit for bit.

  ranges      the ratings file cut into byte ranges, each parsed by its own
              worker with the local reader's parser (grouplens.RatingsFile)
  shards      user ranges of about `shard_ratings` ratings, from the summed
              ratings per user (the same cut rule as sequential.user_chunks)
  samples     each shard's ratings gathered by user range (spilled to files,
              their names grouped by shard), then
              the local build's own per-chunk code: duplicates dropped,
              sorted by (user, timestamp, movie), sequential.samples, the split
              (made twice, as the local build makes them: to fit, to encode)
  encoders    fitted on the summed statistics of every shard's training
              rows (encoders.Statistics, merged in shard order)
  write       each shard encoded and written as `.npy` columns
              (`shards/<k>/<split>/<column>.npy`), then `manifest.json` last

The entry is built in a temporary folder beside its place and renamed into
place whole; a pipeline that fails leaves nothing a later run would read.
No process holds more than one shard of ratings or samples: the ratings
reach their shard's worker as files in the build's folder (the runner's
shuffle moves only their names; the DirectRunner would otherwise hold every
rating in its own process), so that folder must be one every worker sees (a
local disk for the DirectRunner, a shared filesystem on a cluster). The
per-user ratings counts and the encoders' statistics are the only global state.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
import time

import numpy as np
import pandas as pd

from core.config import DINConfig
from core.errors import DataError
from data import cache
from data.encoders import Statistics, add_counts
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


class Stage:
    """Times a stage's work into Beam metrics: `<stage>_ms` (a distribution over
    its calls) and `<stage>_bytes` (what it hands on), per-stage figures the
    runner sums over workers (`build` returns them)."""

    def __init__(self, name: str):
        self.name = name
        self.ms = beam.metrics.Metrics.distribution("din", f"{name}_ms")
        self.bytes = beam.metrics.Metrics.counter("din", f"{name}_bytes")

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *error):
        self.ms.update(int(1000 * (time.perf_counter() - self.start)))

    def handed_on(self, columns) -> None:
        self.bytes.inc(int(sum(np.asarray(v).nbytes for v in columns.values())))


def byte_ranges(start: int, size: int, range_bytes: int) -> list[tuple[int, int, int]]:
    """(index, first byte, end byte) of the data after the header; a range owns
    the lines that START inside it."""
    cuts = list(range(start, size, range_bytes)) + [size]
    return [(i, a, b) for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))]


def read_range(layout: grouplens.RatingsFile, item: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """The ratings of one byte range, plus `position` (their line order in the file)."""
    with Stage("parse") as stage:
        columns = _read_range(layout, item)
        stage.handed_on(columns)
    return columns


def _read_range(layout: grouplens.RatingsFile, item: tuple[int, int, int]) -> dict[str, np.ndarray]:
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
        return None  # add_counts' empty total

    def add_input(self, total, counts):
        return add_counts(total, counts)

    def merge_accumulators(self, totals):
        return functools.reduce(lambda total, counts: total if counts is None else add_counts(total, counts), totals, None)

    def extract_output(self, total):
        return pd.Series(dtype=np.int64) if total is None else total.sort_index()


def shard_starts(counts: pd.Series, shard_ratings: int) -> np.ndarray:
    """The first user of each shard: a shard ends at the first user to start at or
    after each multiple of shard_ratings ratings (sequential.user_chunks' rule)."""
    if counts.empty:
        raise DataError("the ratings file has no data rows")
    users, sizes = counts.index.to_numpy(), counts.to_numpy()
    starts = np.cumsum(sizes) - sizes  # each user's first row, in user order
    firsts = np.unique(np.searchsorted(starts, np.arange(0, starts[-1] + sizes[-1], shard_ratings)))
    return users[firsts[firsts < len(users)]]


def spill_by_shard(columns: dict[str, np.ndarray], starts: np.ndarray, spill: str):
    """Writes the range's ratings of each shard it touches to spill/<shard>/<range>.npz
    and yields (shard, that file): the ratings cross to their shard's worker
    through the build's folder, the shuffle carries only file names. (A runner's
    shuffle would hold them all in memory on the DirectRunner.)"""
    shard = np.searchsorted(starts, columns["user"], side="right") - 1
    first = int(columns["position"][0] >> 32) if len(shard) else 0  # the range's index
    for k in np.unique(shard):
        here = shard == k
        folder = os.path.join(spill, f"{int(k):05d}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{first:06d}.npz")
        np.savez(path, **{name: values[here] for name, values in columns.items()})
        yield int(k), path


class ShardSamples(beam.DoFn):
    """A shard's ratings -> its samples per split, by the local build's code."""

    def __init__(self, folder: str, config: DINConfig):
        self.folder, self.config = folder, config

    def setup(self):
        self.tables = grouplens.read_tables(self.folder)

    def process(self, element):
        with Stage("samples") as stage:
            shard, splits = self._samples(element)
            for columns in splits.values():
                stage.handed_on(columns)
        yield shard, splits

    def _samples(self, element):
        shard, paths = element
        parts = [dict(np.load(path)) for path in paths]
        columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        order = np.argsort(columns.pop("position"), kind="stable")  # file line order, as the local read has it
        ratings = grouplens._ratings(pd.DataFrame({name: values[order] for name, values in columns.items()}))
        movies, users = self.tables
        if users is not None:
            grouplens.check_users(ratings, users, self.folder)
        raw = grouplens.RawMovieLens(ratings, movies, users, grouplens.detect_format(self.folder), self.folder)
        samples = sequential.samples(raw, sequential.sorted_ratings(raw), self.config.max_hist)
        return shard, sequential.split_samples_of(raw, samples, self.config)


class ShardStatistics(ShardSamples):
    """A shard's ratings -> the encoders' statistics of its training samples
    (what crosses to the next stage is counts and histograms, not samples)."""

    def __init__(self, folder: str, config: DINConfig, specs):
        super().__init__(folder, config)
        self.specs = specs

    def process(self, element):
        for shard, splits in super().process(element):
            yield shard, Statistics(self.specs).add(splits["train"])


class MergeStatistics(beam.CombineFn):
    """The shards' statistics merged in shard order (numeric values keep the
    local build's row order)."""

    def __init__(self, specs):
        self.specs = specs

    def create_accumulator(self):
        return []

    def add_input(self, parts, element):
        return parts + [element]

    def merge_accumulators(self, accumulators):
        return [part for parts in accumulators for part in parts]

    def extract_output(self, parts):
        total = Statistics(self.specs)
        for _, statistics in sorted(parts, key=lambda part: part[0]):
            total.merge(statistics)
        return total


class WriteShard(ShardSamples):
    """A shard's ratings -> its samples, encoded and written as columns under
    work/shards/<k>/ (one step: a runner would hold samples handed between steps)."""

    def __init__(self, folder: str, config: DINConfig, work: str):
        super().__init__(folder, config)
        self.work = work

    def process(self, element, encoders):
        for samples in super().process(element):
            with Stage("write") as stage:
                written = self._write(samples, encoders, stage)
            yield written

    def _write(self, element, encoders, stage):
        shard, splits = element
        name = f"{shard:05d}"
        rows, columns = {}, {}
        for split in SPLITS:
            arrays = encode(splits[split], encoders)
            stage.handed_on(arrays)
            folder = os.path.join(self.work, "shards", name, split)
            os.makedirs(folder, exist_ok=True)
            for column, values in arrays.items():
                np.save(os.path.join(folder, f"{column}.npy"), cache.storable(values))
            rows[split], columns[split] = len(arrays["label"]), sorted(arrays)
        return name, rows, columns


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

    # The parsed ratings and the samples are never handed between stages whole:
    # a runner materialises what two consumers read, so each consumer parses its
    # ranges (cheap) and each pass over the shards makes their samples again,
    # as the local build does (one pass to fit the encoders, one to encode).
    # What crosses stages: the ratings once (written to the build's folder by
    # user range, their file names shuffled), the per-user counts, the
    # statistics, the encoders, the shards' row counts.
    ranges = (
        p
        | "ranges" >> beam.Create(byte_ranges(layout.data_start, os.path.getsize(path), range_bytes))
        | "reshuffle ranges" >> beam.Reshuffle()  # spread the ranges over the workers
    )
    starts = (
        ranges
        | "parse to count" >> beam.Map(lambda item: read_range(layout, item))
        | "count per user" >> beam.Map(user_counts)
        | "sum counts" >> beam.CombineGlobally(SumCounts())
        | "shard starts" >> beam.Map(shard_starts, shard_ratings)
    )
    shards = (
        ranges
        | "parse" >> beam.Map(lambda item: read_range(layout, item))
        | "spill by shard" >> beam.FlatMap(spill_by_shard, beam.pvalue.AsSingleton(starts), os.path.join(work, "spill"))
        | "group by shard" >> beam.GroupByKey()
    )
    encoders = (
        shards
        | "statistics per shard" >> beam.ParDo(ShardStatistics(data_dir, config, specs))
        | "statistics" >> beam.CombineGlobally(MergeStatistics(specs))
        | "fit encoders" >> beam.Map(lambda s: s.fit(sequential.ATTENTION_GROUPS, config.min_count,
                                                     config.share_embeddings, config.max_len))
    )
    written = (
        shards
        | "samples, encode, write" >> beam.ParDo(WriteShard(data_dir, config, work), beam.pvalue.AsSingleton(encoders))
    )
    (
        written
        | "collect shards" >> beam.combiners.ToList()
        | "manifest" >> beam.Map(lambda shards, enc: write_manifest(work, enc, shards), beam.pvalue.AsSingleton(encoders))
    )


def build(data_dir: str, config: DINConfig, folder: str, runner: str = "DirectRunner", pipeline_args: tuple = (),
          shard_ratings: int = sequential.CHUNK_RATINGS, range_bytes: int = RANGE_BYTES) -> dict:
    """Builds the cache entry `folder` with a Beam pipeline (pipeline_args: Beam's
    own options, e.g. --direct_num_workers=2 --direct_running_mode=multi_processing).
    Returns the stages' figures: {stage: {calls, seconds, bytes}} (parse, samples, write)."""
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
        p = beam.Pipeline(options=options)
        pipeline(p, data_dir, config, work, shard_ratings, range_bytes)
        result = p.run()
        result.wait_until_finish()
        figures = stage_figures(result)
        shutil.rmtree(os.path.join(work, "spill"))
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
    return figures


def stage_figures(result) -> dict:
    """{stage: {calls, seconds, bytes}} from the pipeline's `din` metrics (where the runner reports them)."""
    figures: dict[str, dict] = {}
    metrics = result.metrics().query(beam.metrics.MetricsFilter().with_namespace("din"))
    for kind, entries in (("distributions", metrics["distributions"]), ("counters", metrics["counters"])):
        for entry in entries:
            stage, unit = entry.key.metric.name.rsplit("_", 1)
            value = entry.committed if entry.committed is not None else entry.attempted
            row = figures.setdefault(stage, {"calls": 0, "seconds": 0.0, "bytes": 0})  # summed over passes
            if kind == "distributions":
                row["calls"] += value.count
                row["seconds"] += value.sum / 1000
            else:
                row["bytes"] += value
    return figures


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
