"""Host input throughput: a memory-mapped gather with a prefetch thread vs Grain.

    python bench/loader.py --data DIR [--cache-dir DIR] [--batch-size 1024] [--batches 400] [--repeats 3] [--json FILE]

`pip install -e '.[bench]'` installs Grain. The training split of DIR's
build cache (memory-mapped .npy files, as training reads it) is turned
into the first --batches batches of epoch 1, the loaders interleaved, medians
over the repeats, each batch a dict of numpy arrays [B, ...]:

  gather, prefetched      what `--input stream` does on the host: one numpy
                          gather per column and batch (data.batches.take), a
                          background thread two batches ahead
                          (din_jax.input.prefetched); the same batches as training
  grain, batches as records  Grain's MapDataset over the same batches (each
                          record one batch, gathered as above), read with
                          Grain's threads and prefetch buffer
  grain, rows as records  Grain used as its documentation shows: a random-access
                          source of rows, MapDataset.shuffle (a global shuffle
                          of its own), .batch, threads and prefetch: per-row
                          reads stacked into batches

Compare with training's samples/s (bench/scale.py): an input that delivers
several times that keeps the devices fed from one host thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grain  # noqa: E402

from core.config import DINConfig  # noqa: E402
from data.batches import epoch_batches, take  # noqa: E402
from data.datasets import load_splits  # noqa: E402
from data.schema import LABEL  # noqa: E402
from din_jax.input import prefetched  # noqa: E402

THREADS = 2  # this machine's cores; Grain's default is 16


class Rows(grain.sources.RandomAccessDataSource):
    """Row i of every column: Grain's record model."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays[LABEL])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {name: values[index] for name, values in self.arrays.items()}


def consume(batches) -> int:
    rows = 0
    for batch in batches:
        rows += len(batch[LABEL])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--cache-dir")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    config = DINConfig(batch_size=args.batch_size)
    train = load_splits(args.data, config, args.cache_dir).train
    batches = epoch_batches(len(train[LABEL]), args.batch_size, config.seed, 1)[: args.batches]
    options = grain.ReadOptions(num_threads=THREADS, prefetch_buffer_size=4)
    loaders = {
        "gather, prefetched": lambda: prefetched(lambda rows: take(train, rows), batches),
        "grain, batches as records": lambda: grain.MapDataset.source(batches).map(lambda rows: take(train, rows))
        .to_iter_dataset(options),
        "grain, rows as records": lambda: grain.MapDataset.source(Rows(train)).shuffle(seed=config.seed)
        .batch(args.batch_size, drop_remainder=True)[: args.batches].to_iter_dataset(options),
    }
    times: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(args.repeats):
        for name, make in loaders.items():
            start = time.perf_counter()
            rows = consume(make())
            times[name].append(rows / (time.perf_counter() - start))
    result = {name: statistics.median(values) for name, values in times.items()}
    print(f"training split {len(train[LABEL]):,} rows, {args.batches} batches of {args.batch_size}, medians of {args.repeats}")
    print("| loader | samples/s |\n|---|---:|")
    for name, value in result.items():
        print(f"| {name} | {value:,.0f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"batch_size": args.batch_size, "batches": args.batches, "samples_per_s": result}, f, indent=2)


if __name__ == "__main__":
    main()
