"""A sharded cache entry read as one split: each column a `ShardedColumn`, the
shards' memory-mapped `.npy` files side by side, indexed like one array.

A sharded entry (written by the Beam build, data/beam/) holds
`shards/<k>/<split>/<column>.npy` for shards k = 0, 1, ... in the canonical
row order (shards by user range), `encoders.json`, and `manifest.json`
(written last: the shards and each split's rows per shard). Batches gather
rows by index (`column[rows]`), so a batch reads only its rows' pages, from
whichever shard holds them.
"""

from __future__ import annotations

import json
import os

import numpy as np

MANIFEST = "manifest.json"


class ShardedColumn:
    """Row-wise concatenation of arrays [n_k, ...] (one per shard), never joined
    in memory: `column[rows]` gathers rows from the shards that hold them."""

    def __init__(self, parts: list[np.ndarray]):
        if not parts:
            raise ValueError("a sharded column needs at least one shard")
        # Text columns (string user ids) are as wide as each shard's longest: the column is the widest.
        shapes = {(p.dtype.kind if p.dtype.kind == "U" else p.dtype, p.shape[1:]) for p in parts}
        if len(shapes) != 1:
            raise ValueError(f"shards differ in dtype or row shape: {sorted(map(str, shapes))}")
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])  # shard k holds rows offsets[k]..offsets[k+1]
        self.dtype = max((p.dtype for p in parts), key=lambda dtype: dtype.itemsize)
        self.shape = (int(self.offsets[-1]), *parts[0].shape[1:])

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: int(np.prod(self.shape)))
    nbytes = property(lambda self: self.size * self.dtype.itemsize)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows):
        """Rows by an integer array of any shape (a batch [B] or a block [K, B]),
        a slice or one integer; a tuple indexes the rows, then the rest of each row."""
        if isinstance(rows, tuple):
            first, rest = (rows[0] if rows else slice(None)), rows[1:]
            out = self[first]
            return out[rest] if isinstance(first, (int, np.integer)) else out[(slice(None), *rest)]
        if isinstance(rows, (int, np.integer)):
            return self[np.asarray([rows])][0]
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(len(self)))
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        flat = rows.reshape(-1).astype(np.int64)
        flat = np.where(flat < 0, flat + len(self), flat)
        if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        shard = np.searchsorted(self.offsets, flat, side="right") - 1
        out = np.empty((len(flat), *self.shape[1:]), self.dtype)
        for k in np.unique(shard):
            here = shard == k
            out[here] = self.parts[k][flat[here] - self.offsets[k]]
        return out.reshape(*rows.shape, *self.shape[1:])

    def __array__(self, dtype=None, copy=None):
        joined = np.concatenate([np.asarray(p) for p in self.parts])
        return joined if dtype is None else joined.astype(dtype)

    def __repr__(self) -> str:
        return f"ShardedColumn({self.dtype} {self.shape}, {len(self.parts)} shards)"


def is_sharded(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, MANIFEST))


def read_manifest(folder: str) -> dict:
    with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
        return json.load(f)


def read_split(folder: str, manifest: dict, split: str, load) -> dict:
    """{column: ShardedColumn} of one split; load(path) memory-maps one .npy file."""
    shards = manifest["shards"]
    columns = manifest["columns"][split]
    arrays = {}
    for name in columns:
        parts = [load(os.path.join(folder, "shards", shard, split, f"{name}.npy")) for shard in shards]
        for shard, part in zip(shards, parts):
            if len(part) != manifest["rows"][shard][split]:
                raise ValueError(f"shard {shard} {split}/{name}: {len(part)} rows, the manifest says "
                                 f"{manifest['rows'][shard][split]}")
        arrays[name] = ShardedColumn(parts)
    return arrays
