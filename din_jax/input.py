"""How batches reach the devices (mirrors din_torch/input.py).

Two paths, the same batches and so the same results: a split is copied to
every device once and each batch gathered there (device-resident), or each
block of batches is gathered on the host, from memory-mapped arrays, and
each device sent only its shard (streamed). Either gives `steps.train_step`
a block {name: [K, B, ...]}; `blocks` packs an epoch's batches into blocks
of one shape.
"""

from __future__ import annotations

import collections
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

import jax
import numpy as np
from jax.sharding import Mesh

from data.batches import Arrays
from din_jax.mesh import global_array, replicated, rows_sharding
from din_jax.model import Batch

T = TypeVar("T")
DEVICE_SPLITS = 3  # splits kept on the devices: training, validation, test
# --input auto: a split up to this size is copied to every device once (each
# batch gathered there); a bigger one is streamed, batch by batch.
RESIDENT_BYTES = 1 << 30


def blocks(batches: list[np.ndarray], steps_per_call: int, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Packs batches (an epoch, or the part of one between checkpoints) into
    (rows [K, B], row_mask [K, B]) blocks of one shape, K = steps_per_call.

    B is batch_size; a shorter batch is filled by repeating its rows, masked
    out. The last block is filled with all-masked steps, which `train_step`
    skips. One shape means one compilation per run, whatever the batches.
    """
    size = max(batch_size, *(len(rows) for rows in batches))
    count = steps_per_call
    rows = np.zeros((-(-len(batches) // count) * count, size), dtype=np.int32)
    mask = np.zeros(rows.shape, dtype=np.float32)
    for i, batch in enumerate(batches):
        rows[i] = np.resize(batch, size)
        mask[i, : len(batch)] = 1.0
    return [(rows[i : i + count], mask[i : i + count]) for i in range(0, len(rows), count)]




def prefetched(make: Callable[[T], object], items: Iterable[T], ahead: int = 2) -> Iterator:
    """make(item) for each item, in order, each computed in a background thread
    up to `ahead` items before it is asked for: a batch is gathered (numpy
    releases the GIL to copy, memory-mapped pages are read) while the devices
    run the one before."""
    items = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        pending = collections.deque(pool.submit(make, item) for item in itertools.islice(items, ahead))
        while pending:
            result = pending.popleft().result()
            for item in items:  # refill one
                pending.append(pool.submit(make, item))
                break
            yield result


class Inputs:
    """The two input paths on one mesh: which one a split takes (config.input),
    the device-resident copies, and batches gathered on the host."""

    def __init__(self, mesh: Mesh, mode: str):
        self.mesh, self.mode = mesh, mode  # mode: "auto", "device" or "stream"
        self._on_device: list[tuple[Arrays, Batch]] = []  # (a split, its arrays on the devices), the newest last
    def streams(self, data: Arrays, names: tuple[str, ...]) -> bool:
        """Whether batches of `data` are streamed from the host ('stream'), not
        gathered from a copy on every device ('device'); 'auto': streamed when
        the split's `names` columns are over RESIDENT_BYTES."""
        if self.mode != "auto":
            return self.mode == "stream"
        return sum(data[name].nbytes for name in names if name in data) > RESIDENT_BYTES

    def resident(self, data: Arrays, names: tuple[str, ...]) -> Batch:
        """Copies a split to the devices once (replicated: each batch gathers its rows
        there); later calls with the same split reuse it. The last few splits are
        kept (training, validation, test), not every array ever given."""
        cached = next((arrays for split, arrays in self._on_device if split is data), None)
        if cached is None:
            cached = {name: global_array(replicated(self.mesh), data[name]) for name in names}
            self._on_device = [*self._on_device, (data, cached)][-DEVICE_SPLITS:]
        if not set(names) <= set(cached):
            cached |= {name: global_array(replicated(self.mesh), data[name]) for name in names if name not in cached}
        return {name: cached[name] for name in names}

    def rows(self, rows: np.ndarray) -> jax.Array:
        """[K, B] (or [B]) row indices or masks with B split over 'data'."""
        return global_array(rows_sharding(self.mesh, leading=rows.ndim - 1), rows)

    def gathered(self, data: Arrays, rows: np.ndarray, names: tuple[str, ...]) -> Batch:
        """{name: [K, B, ...]} global arrays of data's `rows` [K, B] (or [B]) with B
        split over 'data': each device's slice of the rows is gathered on its own
        host (from memory-mapped arrays: only those rows are read), so no device
        and no host holds more than its shard of a batch."""
        sharding = rows_sharding(self.mesh, leading=rows.ndim - 1)

        def array(values: np.ndarray) -> jax.Array:
            gather = lambda index: np.asarray(values[rows[index[: rows.ndim]]])  # noqa: E731
            return jax.make_array_from_callback(rows.shape + values.shape[1:], sharding, gather)

        return {name: array(data[name]) for name in names}
