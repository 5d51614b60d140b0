"""Raw MovieLens in the sequential protocol as a Beam pipeline: the local
build's cache entry, sharded by user range, its arrays equal bit for bit.

  ranges      the ratings file cut into byte ranges, each parsed by its own
              worker with the local reader's parser (grouplens.RatingsFile)
  shards      user ranges of about `shard_ratings` ratings, from the summed
              ratings per user (the same cut rule as sequential.user_chunks)
  samples     each shard's ratings gathered by user range (spilled to files,
              their names grouped by shard), then
              the local build's own per-chunk code: duplicates dropped,
              sorted by (user, timestamp, movie), sequential.samples_of, the split
              (made twice, as the local build makes them: to fit, to encode)
  encoders    fitted on the summed statistics of every shard's training
              rows (data.statistics.Statistics, merged in shard order)
  write       each shard encoded and written as `.npy` columns
              (`shards/<k>/<split>/<column>.npy`), then `manifest.json` last

No process holds more than one shard of ratings or samples: the ratings
reach their shard's worker as files in the build's folder (the runner's
shuffle moves only their names; the DirectRunner would otherwise hold every
rating in its own process), so that folder must be one every worker sees (a
local disk for the DirectRunner, a shared filesystem on a cluster). The
per-user ratings counts and the encoders' statistics are the only global state.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from core.config import DINConfig
from core.errors import DataError
from data.beam.pipeline import (RANGE_BYTES, MergeStatistics, Stage, SumCounts, beam, byte_ranges, lines_before,
                                read_block, run, shard_starts, spill_by_shard, user_counts, write_manifest, write_shard)
from data.sources import grouplens, sequential
from data.statistics import Statistics


def read_range(layout: grouplens.RatingsFile, item: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """The ratings of one byte range, plus `position` (their line order in the file)."""
    with Stage("parse") as stage:
        columns = _read_range(layout, item)
        stage.handed_on(columns)
    return columns


def _read_range(layout: grouplens.RatingsFile, item: tuple[int, int, int]) -> dict[str, np.ndarray]:
    index, start, end = item
    block, block_start = read_block(layout.path, layout.data_start, start, end)
    try:
        frame = layout.parse(block, 0)
    except DataError:  # name the right line: count the lines before this block (only ever on an error)
        frame = layout.parse(block, layout.first_line + lines_before(layout.path, layout.data_start, block_start))
    columns = {name: frame[name].to_numpy() for name in ("user", "movie", "rating", "timestamp")}
    columns["position"] = (np.int64(index) << 32) + np.arange(len(frame), dtype=np.int64)
    return columns


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
        samples = sequential.samples_of(raw, sequential.sorted_ratings(raw), self.config)
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
        return write_shard(self.work, f"{shard:05d}", splits, encoders, stage)


def pipeline(p: beam.Pipeline, data_dir: str, config: DINConfig, work: str, shard_ratings: int,
             range_bytes: int = RANGE_BYTES):
    layout, path = grouplens.ratings_file(data_dir)
    if layout is None:
        raise DataError(f"{path}: a quoted header line: the Beam build reads unquoted headers only (use --build local)")
    movies, users = grouplens.read_tables(data_dir)  # checked once here, before any worker starts
    specs = sequential.features(grouplens.RawMovieLens(pd.DataFrame(), movies, users, grouplens.detect_format(data_dir)),
                                config)

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
        | "fit encoders" >> beam.Map(lambda s: s.fit(sequential.attention_groups(config), config.min_count,
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
    if config.split == "time":  # its cut times are taken over every user's ratings before any shard is split
        raise DataError("--split time builds locally (--build local): the Beam build splits each shard of users on its own")
    return run(lambda p, work: pipeline(p, data_dir, config, work, shard_ratings, range_bytes), folder, runner,
               pipeline_args, f"{data_dir}: no training samples: every user has too few ratings for the "
               f"'{config.split}' split")
