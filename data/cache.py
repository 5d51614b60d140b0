"""A built dataset on disk: `encoders.json` and one `.npy` file per split and
column (`train/label.npy`, `train/histHighRatedMovieIds.npy`, ...), or the
Beam build's shards of them (data/sharded.py), read as one.

Written chunk by chunk (`Writer`: rows are appended with plain file writes,
so a split is never whole in memory and written pages are not held by the
process), renamed into place whole or not at all; read memory-mapped
(`read`: the operating system pages rows in as batches touch them, and out
again under memory pressure). `checksums.json` holds the SHA-256 of every
array file, taken as it is written and checked on every read: a damaged entry
is rebuilt instead of trained on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil

import numpy as np

from core.workdirs import require_space, work_dir
from data.download import sha256_of
from data import sharded
from data.encoders import FeatureEncoders
from data.splits import SPLITS, Arrays, Splits

CHECKSUMS = "checksums.json"


class Writer:
    """Appends each split's rows to a new cache entry at `folder`, chunk after chunk.

    rows: each split's final row count (each .npy header states its shape
    first). Use as a context manager: the entry appears at `folder` only when
    `finish` has checked every column is complete; an error leaves nothing.
    """

    def __init__(self, folder: str, rows: dict[str, int]):
        parent = os.path.dirname(folder)
        os.makedirs(parent, exist_ok=True)
        self.folder, self.rows = folder, dict(rows)
        self.work = work_dir(".build-", parent)
        self.files: dict[tuple[str, str], tuple] = {}  # (split, column) -> (file, dtype, row shape, digest)
        self.written: dict[tuple[str, str], int] = {}

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *error) -> None:
        for f, *_ in self.files.values():
            f.close()
        shutil.rmtree(self.work, ignore_errors=True)  # finished: already renamed away

    def append(self, split: str, arrays: Arrays) -> None:
        """One chunk of a split: the same columns each time, each [n, ...]."""
        if not self.files:  # the first chunk tells each row's size: is there room for every split's rows?
            row = sum(storable(values[:1]).nbytes // max(len(values[:1]), 1) for values in arrays.values())
            require_space(os.path.dirname(self.folder), row * sum(self.rows.values()), "this data's cache entry",
                          "free space there or pass --cache-dir on a larger disk")
        for name, values in arrays.items():
            values = storable(values)
            key = (split, name)
            if key not in self.files:
                os.makedirs(os.path.join(self.work, split), exist_ok=True)
                header = io.BytesIO()
                np.lib.format.write_array_header_1_0(header, {
                    "descr": np.lib.format.dtype_to_descr(values.dtype), "fortran_order": False,
                    "shape": (self.rows[split], *values.shape[1:])})
                f = open(os.path.join(self.work, split, f"{name}.npy"), "wb")
                f.write(header.getvalue())
                digest = hashlib.sha256(header.getvalue())
                self.files[key], self.written[key] = (f, values.dtype, values.shape[1:], digest), 0
            f, dtype, shape, digest = self.files[key]
            if (values.dtype, values.shape[1:]) != (dtype, shape):
                raise ValueError(f"{split}/{name}: a chunk of {values.dtype} {values.shape[1:]}, earlier ones {dtype} {shape}")
            f.write(values.data)
            digest.update(values.data)
            self.written[key] += len(values)

    def finish(self, encoders: FeatureEncoders) -> None:
        for (split, name), count in self.written.items():
            if count != self.rows[split]:
                raise ValueError(f"{split}/{name}: {count} rows written, {self.rows[split]} announced")
        for f, *_ in self.files.values():
            f.close()
        write_checksums(self.work, {f"{split}/{name}.npy": digest.hexdigest()
                                    for (split, name), (*_, digest) in self.files.items()})
        with open(os.path.join(self.work, "encoders.json"), "w", encoding="utf-8") as f:
            f.write(encoders.to_json())
        try:
            os.replace(self.work, self.folder)  # whole or not at all
        except OSError:
            if not os.path.isdir(self.folder):  # else another process built the same entry first: keep it
                raise


def storable(values: np.ndarray) -> np.ndarray:
    """A column as a .npy file holds it: contiguous, strings as fixed-width text (no pickled objects)."""
    return np.ascontiguousarray(values.astype(str) if values.dtype == object else values)


def write(folder: str, splits: Splits) -> None:
    """A cache entry of splits built in memory."""
    with Writer(folder, {split: _rows(getattr(splits, split)) for split in SPLITS}) as writer:
        for split in SPLITS:
            writer.append(split, getattr(splits, split))
        writer.finish(splits.encoders)


def write_checksums(folder: str, checksums: dict[str, str]) -> None:
    """checksums.json: {path under the entry: SHA-256 of the file}."""
    with open(os.path.join(folder, CHECKSUMS), "w", encoding="utf-8") as f:
        json.dump(dict(sorted(checksums.items())), f, indent=1)


def verify(folder: str) -> None:
    """Raises ValueError naming the first array file of the entry whose content
    is not what was written (an entry built before checksums were kept is read
    as it is)."""
    path = os.path.join(folder, CHECKSUMS)
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        checksums = json.load(f)
    for root, _, names in os.walk(folder):
        for name in names:
            relative = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if name.endswith(".npy") and relative not in checksums:
                raise ValueError(f"{relative} is not among the files the entry was written with")
    for relative, expected in checksums.items():
        if sha256_of(os.path.join(folder, relative)) != expected:
            raise ValueError(f"{relative} does not match the checksum it was written with")


def read(folder: str) -> Splits:
    """A cache entry, its arrays memory-mapped (read-only), each file checked
    against its checksum first. A damaged entry raises OSError or ValueError."""
    verify(folder)
    with open(os.path.join(folder, "encoders.json"), encoding="utf-8") as f:
        encoders = FeatureEncoders.from_json(f.read())
    if sharded.is_sharded(folder):  # the Beam build's entry: shards by user range, read as one
        manifest = sharded.read_manifest(folder)
        parts = {split: sharded.read_split(folder, manifest, split, _load) for split in SPLITS}
        return Splits(parts["train"], parts["valid"], parts["test"], encoders)
    parts = {}
    for split in SPLITS:
        directory = os.path.join(folder, split)
        parts[split] = {name[: -len(".npy")]: _load(os.path.join(directory, name))
                        for name in sorted(os.listdir(directory)) if name.endswith(".npy")}
        _rows(parts[split])
    return Splits(parts["train"], parts["valid"], parts["test"], encoders)


def _load(path: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r")
    except ValueError:
        array = np.load(path)  # an empty array cannot be mapped
        if array.size:
            raise
        return array


def _rows(arrays: Arrays) -> int:
    sizes = {len(values) for values in arrays.values()}
    if len(sizes) != 1:
        raise ValueError(f"columns differ in row count: {sorted(sizes)}")
    return sizes.pop()
