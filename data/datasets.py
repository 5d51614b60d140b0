"""One entry point for every data folder: the source is detected from its files.

| source | module | the folder holds |
| --- | --- | --- |
| dataset file | data/csv_dataset.py | dataset.toml (or --dataset FILE) and the CSVs it names |
| tutorial | data/tutorial.py | train.csv + test.csv (the tutorial's MovieLens-1M split) |
| MovieLens | data/grouplens.py + a protocol: sequential.py, seed_protocol.py, paper_protocol.py | ratings.dat + users.dat + movies.dat, or ratings.csv + movies.csv |
| Amazon | data/amazon.py | reviews_<Category>_5.json[.gz] + meta_<Category>.json[.gz] |

CSV sources are read as they are. Built sources (MovieLens, Amazon) turn raw
files into samples once and cache them on disk
(`<cache_dir>/built/<key>/`: encoders.json + one .npy per split and column,
data/cache.py; read memory-mapped), keyed by the
SHA-256 of the source files and the configuration's whole data group, so a
change to either rebuilds. A damaged cache entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil

import numpy as np
from tqdm import tqdm

from data import amazon, cache, csv_dataset, grouplens, sequential, tutorial
from data.config import DINConfig
from data.download import default_cache_dir, sha256_of
from data.encoders import FeatureEncoders
from data.errors import DataError
from data.splits import Arrays, Splits, encode

BUILD_VERSION = 5  # bump when a sample builder or the encoding changes (5: histories keep their latest ids)
log = logging.getLogger("din")


def layout_of(data_dir: str, config: DINConfig) -> csv_dataset.Layout | None:
    """The dataset file that describes the folder, if any: --dataset, or DIR/dataset.toml."""
    if config.dataset:
        return csv_dataset.read_layout(config.dataset)
    path = os.path.join(data_dir, csv_dataset.FILE_NAME)
    return csv_dataset.read_layout(path) if os.path.isfile(path) else None


def detect(data_dir: str, config: DINConfig) -> str:
    """'dataset file', 'tutorial', 'movielens' or 'amazon'."""
    if not os.path.isdir(data_dir):
        raise DataError(f"--data {data_dir}: no such folder")
    if config.dataset or os.path.isfile(os.path.join(data_dir, csv_dataset.FILE_NAME)):
        return "dataset file"
    if tutorial.detect(data_dir):
        return "tutorial"
    if grouplens.detect(data_dir):
        return "movielens"
    if amazon.detect(data_dir):
        return "amazon"
    raise DataError(
        f"{data_dir}: no data found: expected dataset.toml naming your CSVs (or pass --dataset FILE), "
        "train.csv + test.csv (the tutorial's split), ratings.dat + users.dat + movies.dat (MovieLens-1M), "
        "ratings.csv + movies.csv (ml-latest-small, ml-20m, ml-25m) or reviews_<Category>_5.json.gz + "
        "meta_<Category>.json.gz (Amazon, 2014 release)"
    )


def _layout(data_dir: str, config: DINConfig) -> csv_dataset.Layout:
    return layout_of(data_dir, config) or tutorial.LAYOUT


def load_splits(data_dir: str, config: DINConfig, cache_dir: str | None = None, progress: bool = False) -> Splits:
    """Encoded train / valid / test splits of any supported folder (a built
    source's arrays memory-mapped from its cache entry)."""
    kind = detect(data_dir, config)
    if kind in ("dataset file", "tutorial"):
        return csv_dataset.load_splits(data_dir, _layout(data_dir, config), config)
    folder = os.path.join(cache_dir or default_cache_dir(), "built", build_key(data_dir, config))
    if os.path.isfile(os.path.join(folder, "encoders.json")):
        try:
            return cache.read(folder)
        except (OSError, ValueError, KeyError) as error:
            log.warning("cache entry %s is damaged (%s: %s): rebuilding it", folder, type(error).__name__, error)
            shutil.rmtree(folder, ignore_errors=True)
    if kind == "movielens" and config.protocol == "sequential":  # chunk by chunk: memory bounded, not the data's
        raw = grouplens.read_raw(data_dir, progress)
        with tqdm(total=2 * len(raw.ratings), desc="building samples (fit, then encode)", unit="rating", unit_scale=True,
                  leave=False, disable=not progress) as bar:
            built = sequential.build(raw, config, advance=bar.update)
            with cache.Writer(folder, built.rows) as writer:
                for chunk in built.encoded():
                    for split, arrays in chunk.items():
                        writer.append(split, arrays)
                writer.finish(built.encoders)
    else:
        cache.write(folder, amazon.load_splits(data_dir, config) if kind == "amazon" else _movielens_protocol(config).load(data_dir, config))
    return cache.read(folder)


def _movielens_protocol(config: DINConfig):
    from data import paper_protocol, seed_protocol

    return {"sequential": sequential, "seed": seed_protocol, "paper": paper_protocol}[config.protocol]


def raw_splits(data_dir: str, config: DINConfig) -> dict[str, dict[str, np.ndarray]]:
    """Raw (unencoded) columns of a folder's splits, built by the run's protocol:
    'train' and 'test' always, 'valid' where the source splits one off before
    encoding (a held-out share of training users is part of 'train')."""
    kind = detect(data_dir, config)
    if kind in ("dataset file", "tutorial"):
        return csv_dataset.raw_splits(data_dir, _layout(data_dir, config))
    if kind == "amazon":
        return amazon.raw_splits(data_dir, config)
    return _movielens_protocol(config).raw_splits(data_dir, config)


def data_files(data_dir: str, config: DINConfig) -> list[str]:
    """The files a data folder is read from."""
    kind = detect(data_dir, config)
    if kind in ("dataset file", "tutorial"):
        layout = _layout(data_dir, config)
        return [*([layout.path] if kind == "dataset file" else []), *csv_dataset.files(data_dir, layout)]
    if kind == "amazon":
        return list(amazon.find_files(data_dir))
    return grouplens.files(data_dir)


def data_fingerprint(data_dir: str, config: DINConfig) -> str:
    """SHA-256 over the content of a data folder's files (not their paths or times)."""
    digest = hashlib.sha256()
    for path in data_files(data_dir, config):
        digest.update(f"{os.path.basename(path)}:{sha256_of(path)}\n".encode())
    return digest.hexdigest()


def build_key(data_dir: str, config: DINConfig) -> str:
    sources = {os.path.basename(path): sha256_of(path) for path in data_files(data_dir, config)}
    # The whole data group (a new data setting can never reuse a stale entry); the
    # seeded builds also draw their splits and negatives from the seed.
    seeded = detect(data_dir, config) == "amazon" or config.protocol in ("seed", "paper")
    options = config.group("data") | ({"seed": config.seed} if seeded else {})
    text = json.dumps({"version": BUILD_VERSION, "sources": sources, "options": options}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load_test(data_dir: str, config: DINConfig, encoders: FeatureEncoders) -> Arrays:
    """The test split of a run's data, encoded with the run's own encoders."""
    columns = raw_splits(data_dir, config)["test"]
    missing = [name for name in (*encoders.numeric, *encoders.categorical, *encoders.sequence) if name not in columns]
    if missing:
        raise DataError(f"{data_dir}: its data lack the run's features {missing}; pass the data the run was "
                        "trained on, or data in the same format")
    return encode(columns, encoders)
