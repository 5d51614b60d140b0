"""CSVs through a dataset file (and the tutorial's split, one such layout) as
a Beam pipeline: the cache entry of the local read, sharded by byte range.

  parts     each of the layout's files cut into byte ranges (a .gz file is
            one part), each parsed with the local reader's own code
            (csv_files.parse_csv, dataset_file.columns_of)
  rows      each part's row count and, from the training file, its distinct
            users, summed: the parts' first rows (a file with no user column
            makes each row its own user) and the held-out validation users
            (splits.held_out on the sorted distinct users, as the local read)
  encoders  fitted on the summed statistics of the training parts' rows
            (held-out users left out), merged in part order
  write     each part encoded and written as a shard; shards in file order
            (train, valid, test) give each split's rows in the local order

A range starts at a line's start, so a quoted field that runs over a line
break cannot be cut: a range that meets one stops the build in one line (such
a file builds with --build local).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from core.config import DINConfig
from core.errors import DataError
from data.beam.pipeline import (RANGE_BYTES, MergeStatistics, Stage, beam, byte_ranges, lines_before, read_block,
                                run, write_manifest, write_shard)
from data.csv_files import parse_csv, read_csv
from data.schema import USER
from data.sources.dataset_file import check_header, columns_of, integer_users
from data.sources.dataset_layout import Layout
from data.splits import SPLITS, held_out
from data.statistics import Statistics


@dataclasses.dataclass(frozen=True)
class Part:
    """A byte range [start, end) of one of the layout's files (end None: the whole file)."""

    shard: int
    split: str  # the file's split: train, valid or test
    path: str
    start: int
    end: int | None
    data_start: int  # the first byte after the header line
    header_line: int  # the header's line number
    header: tuple[str, ...]
    integer: bool | None  # whether the file's user ids are integers (its first row's)


def plan(data_dir: str, layout: Layout, range_bytes: int) -> list[Part]:
    """The parts of every file, in file order; headers checked here, once."""
    parts: list[Part] = []
    for split in SPLITS:
        if split not in layout.files:
            continue
        path = os.path.join(data_dir, layout.files[split])
        if path.endswith(".gz"):  # no byte ranges in a compressed file
            frame, _ = read_csv(path)
            check_header(path, list(frame.columns), layout)
            integer = integer_users(frame[layout.user].iloc[0]) if layout.user and len(frame) else None
            parts.append(Part(len(parts), split, path, 0, None, 0, 1, tuple(frame.columns), integer))
            continue
        header, data_start, header_line = read_header(path)
        check_header(path, list(header), layout)
        size = os.path.getsize(path)
        first, _ = read_block(path, data_start, data_start, data_start + 1)
        integer = None
        if layout.user and first:
            frame, _ = parse_csv(first, path, list(header), header_line + 1)
            integer = integer_users(frame[layout.user].iloc[0]) if len(frame) else None
        # A file of a header only still gets one (empty) part: its "no data rows" is found like any other.
        for _, a, b in byte_ranges(data_start, size, range_bytes) or [(0, size, size)]:
            parts.append(Part(len(parts), split, path, a, b, data_start, header_line, tuple(header), integer))
    return parts


def read_header(path: str) -> tuple[tuple[str, ...], int, int]:
    """A file's header (checked as the local reader checks it), the byte after it, and its line number."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    with open(path, "rb") as f:
        line_number, line = 0, b""
        while not line.strip(b"\r\n"):  # blank lines before the header are skipped
            line = f.readline()
            line_number += 1
            if not line:
                raise DataError(f"{path}: empty file, expected a header line")
        frame, _ = parse_csv(line, path)
        return tuple(frame.columns), f.tell(), line_number


def read_part(part: Part, layout: Layout, first_row: int = 0) -> dict[str, np.ndarray]:
    """One part's raw columns, as the local read makes them."""
    if part.end is None:
        frame, lines = read_csv(part.path)
        return columns_of(frame, lines, part.path, layout, part.integer, first_row)
    block, block_start = read_block(part.path, part.data_start, part.start, part.end)
    try:
        return _parse(block, part, layout, 1, first_row)
    except DataError:  # name the right line: count the lines before the block (only ever on an error)
        first_line = part.header_line + 1 + lines_before(part.path, part.data_start, block_start)
        return _parse(block, part, layout, first_line, first_row)


def _parse(block: bytes, part: Part, layout: Layout, first_line: int, first_row: int) -> dict[str, np.ndarray]:
    if b'"' in block:
        for number, text in enumerate(block.split(b"\n")):
            if text.count(b'"') % 2:
                raise DataError(f"{part.path}, line {first_line + number}: a quoted field runs over a line break; the "
                                "Beam build cuts files at line breaks: build this file with --build local")
    frame, lines = parse_csv(block, part.path, list(part.header), first_line)
    return columns_of(frame, lines, part.path, layout, part.integer, first_row)


def rows_and_users(part: Part, layout: Layout, holdout: bool):
    """(part, its row count, its distinct users where they pick the held-out ones)."""
    with Stage("parse") as stage:
        columns = read_part(part, layout)
        stage.handed_on(columns)
    users = np.unique(columns[USER]) if holdout and part.split == "train" and layout.user else None
    return part.shard, len(columns[USER]), users


def summarize(counts, parts: list[Part], layout: Layout, config: DINConfig, holdout: bool) -> dict:
    """The parts' first rows in their file and the held-out users (None: no hold-out)."""
    rows = {shard: n for shard, n, _ in counts}
    first_row, seen = {}, {}
    for part in parts:
        first_row[part.shard] = seen.get(part.path, 0)
        seen[part.path] = first_row[part.shard] + rows[part.shard]
    for part in parts:
        if not seen[part.path]:
            raise DataError(f"{part.path}: no data rows after the header")
    held = None
    if holdout:
        if layout.user:
            users = [u for _, _, u in counts if u is not None]
            unique = np.unique(np.concatenate(users))
        else:
            unique = np.arange(sum(rows[p.shard] for p in parts if p.split == "train"), dtype=np.int64)
        held = held_out(unique, config.valid_fraction, config.seed)
    return {"first_row": first_row, "held": held}


def part_splits(part: Part, layout: Layout, config: DINConfig, plan_: dict) -> dict[str, dict[str, np.ndarray]]:
    """One part's rows per split (every split present, most empty)."""
    columns = read_part(part, layout, plan_["first_row"][part.shard])
    empty = {name: values[:0] for name, values in columns.items()}
    splits = dict.fromkeys(SPLITS, empty)
    if part.split == "train" and plan_["held"] is not None:
        held = np.isin(columns[USER], plan_["held"])
        splits["train"] = {name: values[~held] for name, values in columns.items()}
        splits["valid"] = {name: values[held] for name, values in columns.items()}
    elif part.split == "test" and config.valid_on_test:
        splits["test"] = splits["valid"] = columns
    elif part.split != "valid" or not config.valid_on_test:
        splits[part.split] = columns
    return splits


class PartStatistics(beam.DoFn):
    """A training part's rows -> the encoders' statistics of its rows that fit them."""

    def __init__(self, layout: Layout, config: DINConfig, specs):
        self.layout, self.config, self.specs = layout, config, specs

    def process(self, part: Part, plan_: dict):
        with Stage("statistics"):
            statistics = Statistics(self.specs).add(part_splits(part, self.layout, self.config, plan_)["train"])
        yield part.shard, statistics


class WritePart(beam.DoFn):
    """A part's rows -> encoded and written as one shard."""

    def __init__(self, layout: Layout, config: DINConfig, work: str):
        self.layout, self.config, self.work = layout, config, work

    def process(self, part: Part, plan_: dict, encoders):
        with Stage("write") as stage:
            splits = part_splits(part, self.layout, self.config, plan_)
            yield write_shard(self.work, f"{part.shard:05d}", splits, encoders, stage)


def fit(statistics: Statistics, data_dir: str, layout: Layout, config: DINConfig):
    try:
        return statistics.fit(layout.attention_groups, config.min_count, config.share_embeddings, config.max_len)
    except DataError as error:  # a column no encoder can be fitted on: named as the local read names it
        raise DataError(f"{os.path.join(data_dir, layout.files['train'])}: {error}") from None


def pipeline(p: beam.Pipeline, data_dir: str, layout: Layout, config: DINConfig, work: str, range_bytes: int):
    parts = plan(data_dir, layout, range_bytes)
    # Validation rows: the valid file, the test file (valid_on_test), else a held-out share of training users.
    holdout = not config.valid_on_test and "valid" not in layout.files
    specs = layout.features
    # Each pass parses its parts again (cheap) rather than hand parsed rows on:
    # a runner would materialise them all between stages.
    items = p | "parts" >> beam.Create(parts) | "reshuffle parts" >> beam.Reshuffle()
    plan_ = (
        items
        | "rows and users" >> beam.Map(rows_and_users, layout, holdout)
        | "collect rows" >> beam.combiners.ToList()
        | "first rows, held-out users" >> beam.Map(summarize, parts, layout, config, holdout)
    )
    encoders = (
        items
        | "training parts" >> beam.Filter(lambda part: part.split == "train")
        | "statistics per part" >> beam.ParDo(PartStatistics(layout, config, specs), beam.pvalue.AsSingleton(plan_))
        | "statistics" >> beam.CombineGlobally(MergeStatistics(specs))
        | "fit encoders" >> beam.Map(fit, data_dir, layout, config)
    )
    (
        items
        | "encode, write" >> beam.ParDo(WritePart(layout, config, work), beam.pvalue.AsSingleton(plan_),
                                         beam.pvalue.AsSingleton(encoders))
        | "collect shards" >> beam.combiners.ToList()
        | "manifest" >> beam.Map(lambda shards, enc: write_manifest(work, enc, shards), beam.pvalue.AsSingleton(encoders))
    )


def build(data_dir: str, layout: Layout, config: DINConfig, folder: str, runner: str = "DirectRunner",
          pipeline_args: tuple = (), range_bytes: int = RANGE_BYTES) -> dict:
    """Builds the cache entry `folder` of a dataset file's CSVs with a Beam
    pipeline (pipeline_args: Beam's own options). Returns the stages' figures."""
    if config.split == "time":  # its cut times are taken over every file's rows before any part is split
        raise DataError("--split time builds locally (--build local): the Beam build reads each file's part on its own")
    return run(lambda p, work: pipeline(p, data_dir, layout, config, work, range_bytes), folder, runner,
               pipeline_args, f"{os.path.join(data_dir, layout.files['train'])}: no training rows")
