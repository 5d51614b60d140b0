"""One entry point for every supported data folder, detected from its files.

Raw GroupLens folders are built into samples once and cached on disk
(`<cache_dir>/built/<key>/`: arrays.npz + encoders.json), keyed by the
SHA-256 of the source files and the configuration's whole data group, so a
change to either rebuilds. A damaged cache entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile

import numpy as np

from data.config import DINConfig
from data.download import default_cache_dir, sha256_of
from data.encoders import FeatureEncoders
from data.errors import DataError
from data.grouplens import detect_format
from data.movielens import Arrays, Splits, load_splits as load_tutorial

SOURCE_FILES = ("ratings.dat", "users.dat", "movies.dat", "ratings.csv", "movies.csv")
TUTORIAL_FILES = ("train.csv", "test.csv")
BUILD_VERSION = 2  # bump when the sample builder changes
log = logging.getLogger("din")


def load_splits(data_dir: str, config: DINConfig, cache_dir: str | None = None) -> Splits:
    """The tutorial's train.csv/test.csv, or a raw GroupLens folder built by
    `config.protocol` ('sequential' or 'seed') and cached."""
    if detect_format(data_dir) == "tutorial":
        return load_tutorial(data_dir, config)
    from data.seed_protocol import load_seed_protocol
    from data.sequential import load_sequential

    folder = os.path.join(cache_dir or default_cache_dir(), "built", build_key(data_dir, config))
    if os.path.isfile(os.path.join(folder, "encoders.json")):
        try:
            return _read(folder)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            log.warning("cache entry %s is damaged (%s: %s): rebuilding it", folder, type(error).__name__, error)
            shutil.rmtree(folder, ignore_errors=True)
    splits = (load_seed_protocol if config.protocol == "seed" else load_sequential)(data_dir, config)
    _write(folder, splits)
    return splits


def data_files(data_dir: str) -> list[str]:
    """The files a data folder is read from."""
    names = TUTORIAL_FILES if detect_format(data_dir) == "tutorial" else SOURCE_FILES
    return [os.path.join(data_dir, name) for name in names if os.path.isfile(os.path.join(data_dir, name))]


def data_fingerprint(data_dir: str) -> str:
    """SHA-256 over the content of a data folder's files (not their paths or times)."""
    digest = hashlib.sha256()
    for path in data_files(data_dir):
        digest.update(f"{os.path.basename(path)}:{sha256_of(path)}\n".encode())
    return digest.hexdigest()


def build_key(data_dir: str, config: DINConfig) -> str:
    sources = {os.path.basename(path): sha256_of(path) for path in data_files(data_dir)}
    # The whole data group (a new data setting can never reuse a stale entry); the
    # seed protocol also draws its user split and negatives from the seed.
    options = config.group("data") | ({"seed": config.seed} if config.protocol == "seed" else {})
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


def raw_splits(data_dir: str, config: DINConfig) -> dict[str, dict[str, np.ndarray]]:
    """Raw (unencoded) columns of a data folder's splits, built by the run's
    protocol: 'train' and 'test' always, 'valid' where the protocol splits one
    off before encoding (the tutorial's validation users are part of 'train')."""
    if detect_format(data_dir) == "tutorial":
        from data.movielens import read_tutorial_csv

        return {name: read_tutorial_csv(os.path.join(data_dir, f"{name}.csv")) for name in ("train", "test")}
    from data.grouplens import read_raw
    from data.seed_protocol import build_seed_columns
    from data.sequential import split_samples

    if config.protocol == "seed":
        return dict(zip(("train", "test"), build_seed_columns(read_raw(data_dir), config.seed)))
    return split_samples(read_raw(data_dir), config)


def load_test(data_dir: str, config: DINConfig, encoders: FeatureEncoders) -> Arrays:
    """The test split of a run's data, encoded with the run's own encoders."""
    columns = raw_splits(data_dir, config)["test"]
    missing = [name for name in (*encoders.numeric, *encoders.categorical, *encoders.sequence) if name not in columns]
    if missing:
        raise DataError(f"{data_dir}: its data lack the run's features {missing}; pass the data the run was "
                        "trained on, or data in the same format")
    from data.movielens import encode

    return encode(columns, encoders)
