"""Amazon product data in the DIN authors' protocol as a Beam pipeline: the
local build's cache entry (data/sources/amazon.py), sharded by user range,
its arrays equal bit for bit.

  reviewed    the reviews file cut into byte ranges, each parsed by its own
              worker with the local reader's parser; the asins reviewed
  catalogue   the meta file cut into byte ranges, each worker keeping the
              reviewed asins' categories (merged in file order: a later
              line wins, as in the local read); the items numbered
  shards      user ranges of about `shard_reviews` reviews of items with
              meta, from the summed reviews per user, and each shard's
              first user number (users are numbered in sorted order)
  samples     each shard's reviews gathered by user range (spilled to files,
              their names grouped by shard), then the local build's own
              code: amazon.user_samples (negatives are drawn from (seed,
              user, position), so a shard draws what the whole build
              does) and the split
  encoders    fitted on the summed statistics of every shard's training rows
  write       each shard encoded and written as `.npy` columns, then
              `manifest.json` last

A gzipped file cannot be read from the middle: each is one range, read
whole by one worker (decompress the files first to parse them in parallel).
The reviews reach their shard's worker as files in the build's folder, as
in the MovieLens pipeline: that folder must be one every worker sees. The
global state is the catalogue (one asin and category per reviewed item),
the reviews per user, the encoders' statistics.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from core.config import DINConfig
from core.errors import DataError
from data.beam.pipeline import (RANGE_BYTES, MergeStatistics, Stage, SumCounts, beam, byte_ranges, lines_before,
                                read_block, run, shard_starts, spill_by_shard, user_counts, write_manifest, write_shard)
from data.sources import amazon, amazon_files, sequential
from data.statistics import Statistics


def ranges(path: str, range_bytes: int) -> list[tuple[int, int, int]]:
    size = os.path.getsize(path)
    return [(0, 0, size)] if path.endswith(".gz") else byte_ranges(0, size, range_bytes)


def read_text(path: str, item: tuple[int, int, int]) -> tuple[str, int]:
    """The whole lines that start in a range, decoded, and the range's first
    byte (a gzipped file: the whole text)."""
    _, start, end = item
    if path.endswith(".gz"):
        return amazon_files.read_text(path), 0
    block, block_start = read_block(path, 0, start, end)
    try:
        return block.decode("utf-8"), block_start
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: unreadable ({error})") from None


def first_line(path: str, block_start: int) -> int:
    """The number of the line at byte block_start (only ever counted to name a bad line)."""
    return 1 + (lines_before(path, 0, block_start) if block_start else 0)


def read_reviews(path: str, item: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """user, item (asin), time of one range's reviews, plus `position` (their order in the file)."""
    with Stage("parse") as stage:
        text, block_start = read_text(path, item)
        try:
            frame = amazon_files.parse_reviews(text, path)
        except DataError:  # name the right line
            frame = amazon_files.parse_reviews(text, path, first_line(path, block_start))
        columns = {name: frame[name].to_numpy(dtype=str if name != "time" else np.int64)
                   for name in ("user", "item", "time")}
        columns["position"] = (np.int64(item[0]) << 32) + np.arange(len(frame), dtype=np.int64)
        stage.handed_on(columns)
    return columns


def read_meta(path: str, item: tuple[int, int, int], reviewed: set[str]) -> tuple[int, dict[str, str]]:
    """(range index, asin -> category) of one range of the meta file, reviewed asins only."""
    with Stage("meta"):
        text, block_start = read_text(path, item)
        lines = text.splitlines()
        try:
            return item[0], amazon_files.parse_meta(lines, reviewed, path)
        except DataError:
            return item[0], amazon_files.parse_meta(lines, reviewed, path, first_line(path, block_start))


def catalogue(parts: list[tuple[int, dict[str, str]]], data_dir: str) -> amazon.Catalogue:
    categories: dict[str, str] = {}
    for _, part in sorted(parts, key=lambda part: part[0]):  # file order: a later line of an asin wins
        categories.update(part)
    try:
        return amazon.Catalogue.of(categories)
    except DataError as error:
        raise DataError(f"{data_dir}: {error}") from None


def with_meta(columns: dict[str, np.ndarray], items: amazon.Catalogue) -> dict[str, np.ndarray]:
    keep = items.has(columns["item"])
    return {name: values[keep] for name, values in columns.items()}


def shard_plan(counts: pd.Series, shard_reviews: int, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """(each shard's first user, that user's number among all users, sorted)."""
    starts = shard_starts(counts, shard_reviews, f"{data_dir}: no review's item has meta").astype(str)
    return starts, np.searchsorted(counts.index.to_numpy(dtype=str), starts)


class ShardSamples(beam.DoFn):
    """A shard's reviews -> its samples per split, by the local build's code."""

    def __init__(self, config: DINConfig):
        self.config = config

    def process(self, element, items, plan):
        with Stage("samples") as stage:
            shard, splits = self._samples(element, items, plan)
            for columns in splits.values():
                stage.handed_on(columns)
        yield shard, splits

    def _samples(self, element, items: amazon.Catalogue, plan):
        shard, paths = element
        parts = [dict(np.load(path)) for path in paths]
        columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        user, _ = pd.factorize(columns["user"], sort=True)
        samples = amazon.user_samples(plan[1][shard] + user, items.number(columns["item"]), columns["time"],
                                      columns["position"], items, self.config.max_hist, self.config.seed)
        return shard, amazon.split_samples(samples, self.config.valid_on_test)


class ShardStatistics(ShardSamples):
    """A shard's reviews -> the encoders' statistics of its training samples."""

    def process(self, element, items, plan):
        for shard, splits in super().process(element, items, plan):
            yield shard, Statistics(amazon.FEATURES).add(splits["train"])


class WriteShard(ShardSamples):
    """A shard's reviews -> its samples, encoded and written under work/shards/<k>/."""

    def __init__(self, config: DINConfig, work: str):
        super().__init__(config)
        self.work = work

    def process(self, element, items, plan, encoders):
        for shard, splits in super().process(element, items, plan):
            with Stage("write") as stage:
                yield write_shard(self.work, f"{shard:05d}", splits, encoders, stage)


def pipeline(p: beam.Pipeline, data_dir: str, config: DINConfig, work: str, shard_reviews: int,
             range_bytes: int = RANGE_BYTES):
    reviews_path, meta_path = amazon_files.find_files(data_dir)
    AsSingleton = beam.pvalue.AsSingleton

    # As in the MovieLens pipeline, parsed reviews are never handed between
    # stages whole: each consumer parses its ranges again (cheap); what
    # crosses stages is the reviewed asins, the catalogue, the reviews per
    # user, the reviews once (spilled by shard, their file names shuffled),
    # the statistics and the encoders.
    review_ranges = (p | "review ranges" >> beam.Create(ranges(reviews_path, range_bytes))
                     | "reshuffle review ranges" >> beam.Reshuffle())
    reviewed = (
        review_ranges
        | "parse for asins" >> beam.Map(lambda item: set(np.unique(read_reviews(reviews_path, item)["item"]).tolist()))
        | "reviewed asins" >> beam.CombineGlobally(lambda sets: set().union(*sets))
    )
    items = (
        p
        | "meta ranges" >> beam.Create(ranges(meta_path, range_bytes))
        | "reshuffle meta ranges" >> beam.Reshuffle()
        | "parse meta" >> beam.Map(lambda item, asins: read_meta(meta_path, item, asins), AsSingleton(reviewed))
        | "collect meta" >> beam.combiners.ToList()
        | "catalogue" >> beam.Map(catalogue, data_dir)
    )
    plan = (
        review_ranges
        | "parse to count" >> beam.Map(lambda item, items: with_meta(read_reviews(reviews_path, item), items),
                                       AsSingleton(items))
        | "count per user" >> beam.Map(user_counts)
        | "sum counts" >> beam.CombineGlobally(SumCounts())
        | "shard plan" >> beam.Map(shard_plan, shard_reviews, data_dir)
    )
    shards = (
        review_ranges
        | "parse" >> beam.Map(lambda item, items: with_meta(read_reviews(reviews_path, item), items), AsSingleton(items))
        | "spill by shard" >> beam.FlatMap(lambda columns, plan: spill_by_shard(columns, plan[0], os.path.join(work, "spill")),
                                           AsSingleton(plan))
        | "group by shard" >> beam.GroupByKey()
    )
    encoders = (
        shards
        | "statistics per shard" >> beam.ParDo(ShardStatistics(config), AsSingleton(items), AsSingleton(plan))
        | "statistics" >> beam.CombineGlobally(MergeStatistics(amazon.FEATURES))
        | "fit encoders" >> beam.Map(lambda s: s.fit(amazon.ATTENTION_GROUPS, config.min_count,
                                                     config.share_embeddings, config.max_len))
    )
    written = (
        shards
        | "samples, encode, write" >> beam.ParDo(WriteShard(config, work), AsSingleton(items), AsSingleton(plan),
                                                 AsSingleton(encoders))
    )
    (
        written
        | "collect shards" >> beam.combiners.ToList()
        | "manifest" >> beam.Map(lambda shards, enc: write_manifest(work, enc, shards), AsSingleton(encoders))
    )


def build(data_dir: str, config: DINConfig, folder: str, runner: str = "DirectRunner", pipeline_args: tuple = (),
          shard_reviews: int = sequential.CHUNK_RATINGS, range_bytes: int = RANGE_BYTES) -> dict:
    """Builds the cache entry `folder` with a Beam pipeline (see data/beam/movielens.py: build).
    Returns the stages' figures: {stage: {calls, seconds, bytes}} (parse, meta, samples, write)."""
    if config.split == "time":  # its cut times are taken over every user's reviews before any shard is split
        raise DataError("--split time builds locally (--build local): the Beam build splits each shard of users on its own")
    return run(lambda p, work: pipeline(p, data_dir, config, work, shard_reviews, range_bytes), folder, runner,
               pipeline_args, f"{data_dir}: no training samples: every user has fewer than 3 reviews of items with meta")
