"""One entry point for every supported data folder, detected from its files.

Raw GroupLens folders are built into samples once and cached on disk
(`<cache_dir>/built/<key>/`: arrays.npz + encoders.json), keyed by the
SHA-256 of the source files and every option that shapes the samples, so a
change to either rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

from data.config import DINConfig
from data.download import default_cache_dir, sha256_of
from data.encoders import FeatureEncoders
from data.grouplens import detect_format
from data.movielens import Arrays, Splits, load_splits as load_tutorial
from data.movielens import load_test as load_tutorial_test

SOURCE_FILES = ("ratings.dat", "users.dat", "movies.dat", "ratings.csv", "movies.csv")
BUILD_VERSION = 1  # bump when the sample builder changes


def load_splits(data_dir: str, config: DINConfig, cache_dir: str | None = None) -> Splits:
    """The tutorial's train.csv/test.csv, or a raw GroupLens folder built by
    `config.protocol` ('sequential' or 'seed') and cached."""
    if detect_format(data_dir) == "tutorial":
        return load_tutorial(data_dir, config)
    from data.seed_protocol import load_seed_protocol
    from data.sequential import load_sequential

    folder = os.path.join(cache_dir or default_cache_dir(), "built", build_key(data_dir, config))
    if os.path.isfile(os.path.join(folder, "encoders.json")):
        return _read(folder)
    splits = (load_seed_protocol if config.protocol == "seed" else load_sequential)(data_dir, config)
    _write(folder, splits)
    return splits


def build_key(data_dir: str, config: DINConfig) -> str:
    sources = {name: sha256_of(os.path.join(data_dir, name)) for name in SOURCE_FILES
               if os.path.isfile(os.path.join(data_dir, name))}
    shaping = ("protocol", "max_hist", "holdout_fraction", "split", "min_count", "share_embeddings")
    if config.protocol == "seed":  # seeded user splits and negatives
        shaping += ("seed", "valid_fraction", "valid_on_test")
    options = {name: getattr(config, name) for name in shaping}
    text = json.dumps({"version": BUILD_VERSION, "sources": sources, "options": options}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _write(folder: str, splits: Splits) -> None:
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".build-", dir=parent)
    try:
        arrays = {f"{split}/{name}": values for split in ("train", "valid", "test")
                  for name, values in getattr(splits, split).items()}
        np.savez(os.path.join(work, "arrays.npz"), **arrays)
        with open(os.path.join(work, "encoders.json"), "w", encoding="utf-8") as f:
            f.write(splits.encoders.to_json())
        os.replace(work, folder)  # whole or not at all
    except OSError:
        if not os.path.isdir(folder):  # else another process built the same entry first: keep it
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _read(folder: str) -> Splits:
    with open(os.path.join(folder, "encoders.json"), encoding="utf-8") as f:
        encoders = FeatureEncoders.from_json(f.read())
    parts: dict[str, Arrays] = {"train": {}, "valid": {}, "test": {}}
    with np.load(os.path.join(folder, "arrays.npz")) as arrays:
        for key in arrays.files:
            split, name = key.split("/", 1)
            parts[split][name] = arrays[key]
    return Splits(parts["train"], parts["valid"], parts["test"], encoders)


def load_test(data_dir: str, config: DINConfig, encoders: FeatureEncoders) -> Arrays:
    """The test split of a run's data, encoded with the run's own encoders."""
    if detect_format(data_dir) == "tutorial":
        return load_tutorial_test(data_dir, encoders)
    from data.grouplens import read_raw
    from data.movielens import encode
    from data.seed_protocol import build_seed_columns
    from data.sequential import split_samples

    if config.protocol == "seed":
        return encode(build_seed_columns(read_raw(data_dir), config.seed)[1], encoders)
    return encode(split_samples(read_raw(data_dir), config)["test"], encoders)
