"""What every Beam build shares: Beam itself (imported quietly), per-stage
figures, byte ranges of a text file, shards by user range (rows per user
summed, each range's rows spilled to its shard's folder), one shard's
columns written, the manifest
written last, and the run that builds an entry in a temporary folder beside
its place and renames it into place whole (a pipeline that fails leaves
nothing a later run would read)."""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import time

import numpy as np
import pandas as pd

from core.errors import DataError
from core.workdirs import work_dir
from data import cache
from data.download import sha256_of
from data.sharded import MANIFEST
from data.splits import SPLITS, encode
from data.statistics import Statistics
from data.vocabulary import add_counts


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

RANGE_BYTES = 4 << 20  # each worker parses this many bytes of a file at a time


class Stage:
    """Times a stage's work into Beam metrics: `<stage>_ms` (a distribution over
    its calls) and `<stage>_bytes` (what it hands on), per-stage figures the
    runner sums over workers (`run` returns them)."""

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


def read_block(path: str, data_start: int, start: int, end: int) -> tuple[bytes, int]:
    """The whole lines that start in [start, end) of a file whose data begin at
    data_start, and the offset of the block's first byte."""
    with open(path, "rb") as f:
        f.seek(start)
        if start > data_start:  # the line running into the range belongs to the one before
            f.seek(start - 1)
            f.readline()
        block = f.read(max(end - f.tell(), 0)) if f.tell() < end else b""
        if block and not block.endswith(b"\n"):
            block += f.readline()  # the last line that starts inside the range, whole
        return block, (end if not block else f.tell() - len(block))


def lines_before(path: str, data_start: int, offset: int) -> int:
    """Data lines before byte `offset` (only ever counted to name a bad line)."""
    with open(path, "rb") as f:
        return f.read(offset)[data_start:].count(b"\n")


def user_counts(columns: dict[str, np.ndarray]) -> pd.Series:
    users, counts = np.unique(columns["user"], return_counts=True)
    return pd.Series(counts, index=users)


class SumCounts(beam.CombineFn):
    """Rows (ratings, reviews) per user, summed over ranges."""

    def create_accumulator(self):
        return None  # add_counts' empty total

    def add_input(self, total, counts):
        return add_counts(total, counts)

    def merge_accumulators(self, totals):
        return functools.reduce(lambda total, counts: total if counts is None else add_counts(total, counts), totals, None)

    def extract_output(self, total):
        return pd.Series(dtype=np.int64) if total is None else total.sort_index()


def shard_starts(counts: pd.Series, shard_ratings: int, empty: str = "the ratings file has no data rows") -> np.ndarray:
    """The first user of each shard: a shard ends at the first user to start at or
    after each multiple of shard_ratings ratings (sequential.user_chunks' rule)."""
    if counts.empty:
        raise DataError(empty)
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


def write_shard(work: str, name: str, splits: dict[str, dict], encoders, stage: Stage) -> tuple[str, dict, dict]:
    """One shard's raw columns per split, encoded and written under
    work/shards/<name>/<split>/<column>.npy; returns (name, rows, columns,
    checksums)."""
    rows, columns, checksums = {}, {}, {}
    for split in SPLITS:
        arrays = encode(splits[split], encoders)
        stage.handed_on(arrays)
        folder = os.path.join(work, "shards", name, split)
        os.makedirs(folder, exist_ok=True)
        for column, values in arrays.items():
            path = os.path.join(folder, f"{column}.npy")
            np.save(path, cache.storable(values))
            checksums[f"shards/{name}/{split}/{column}.npy"] = sha256_of(path)
        rows[split], columns[split] = len(arrays["label"]), sorted(arrays)
    return name, rows, columns, checksums


def write_manifest(work: str, encoders, written) -> None:
    """encoders.json, then manifest.json: the entry is whole once the manifest is."""
    written = sorted(written)
    columns = {split: written[0][2][split] for split in SPLITS}
    cache.write_checksums(work, {path: digest for *_, checksums in written for path, digest in checksums.items()})
    with open(os.path.join(work, "encoders.json"), "w", encoding="utf-8") as f:
        f.write(encoders.to_json())
    manifest = {"build": "beam", "shards": [name for name, *_ in written],
                "rows": {name: rows for name, rows, *_ in written}, "columns": columns}
    with open(os.path.join(work, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)


def run(make, folder: str, runner: str, pipeline_args: tuple, no_rows: str) -> dict:
    """Builds the cache entry `folder`: make(pipeline, work) lays out the
    pipeline writing into the temporary folder `work`, which becomes `folder`
    once the manifest is written (no_rows: the message when it has no training
    rows). Returns the stages' figures: {stage: {calls, seconds, bytes}}."""
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    work = work_dir(".build-", parent)
    beam_log = logging.getLogger("apache_beam")
    level = beam_log.level
    beam_log.setLevel(logging.ERROR)  # Beam's own warnings about its internals (its workers' logs come through it)
    try:
        # Workers log at WARNING unless the user asks for more (Beam's default is INFO per bundle).
        quiet = [] if any(a.startswith("--default_sdk_harness_log_level") for a in pipeline_args) else \
            ["--default_sdk_harness_log_level=WARNING"]
        options = PipelineOptions([f"--runner={runner}", *quiet, *pipeline_args])
        p = beam.Pipeline(runner=local_runner(options) if runner == "DirectRunner" else None, options=options)
        make(p, work)
        result = p.run()
        result.wait_until_finish()
        figures = stage_figures(result)
        shutil.rmtree(os.path.join(work, "spill"), ignore_errors=True)
        with open(os.path.join(work, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
        if not sum(rows["train"] for rows in manifest["rows"].values()):
            raise DataError(no_rows)
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


def local_runner(options):
    """The runner `DirectRunner` names here: Beam's FnApiRunner, built as Beam's
    DirectRunner builds it (the workers see the pipeline's options). Beam's
    DirectRunner would first try its Prism runner, a Go binary it downloads
    at run time, outside the pinned packages; offline that fails, leaves a
    folder in the temporary directory and falls back to this runner."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(provision))


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
