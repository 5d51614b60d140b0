"""Batching over pre-encoded numpy arrays: a batch is a slice, never a per-row loop.

Every array in a split has N rows on axis 0; a batch takes the same rows from
each. The training order is reshuffled each epoch from (seed, epoch), so both
backends see exactly the same batches for the same seed.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

Arrays = dict[str, np.ndarray]


def num_rows(arrays: Arrays) -> int:
    sizes = {name: len(values) for name, values in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"arrays differ in row count: {sizes}")
    return next(iter(sizes.values()))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Row indices of each training batch for one epoch, shuffled by (seed, epoch).

    A final remainder of ONE row is dropped: BatchNorm cannot normalise a
    batch of one. The order changes every epoch, so no row is always left out.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n)
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if batches and len(batches[-1]) == 1:
        batches.pop()
    return batches


def eval_batches(n: int, batch_size: int) -> list[np.ndarray]:
    """In-order row indices covering every row (eval mode accepts a batch of one)."""
    return [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def take(arrays: Arrays, rows: np.ndarray) -> Arrays:
    return {name: values[rows] for name, values in arrays.items()}


def iterate_batches(arrays: Arrays, batch_size: int, seed: int, epoch: int) -> Iterator[Arrays]:
    """Yields the shuffled training batches of one epoch as dicts of arrays."""
    for rows in epoch_batches(num_rows(arrays), batch_size, seed, epoch):
        yield take(arrays, rows)
