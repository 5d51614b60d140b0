"""One entry point for every data folder: its source (data/sources/) is detected
from its files, and asked for everything else.

Sources read as they are (CSVs through a dataset file, the tutorial's split)
are read on every run, unless built by Beam. Built sources (raw MovieLens,
Amazon) turn raw files into samples once and cache them on disk
(`<cache_dir>/built/<key>/`: encoders.json + one .npy per split and column,
data/cache.py; read memory-mapped; or shards of them, built by an Apache Beam
pipeline with `Build("beam")`, data/beam/, which CSV sources take too), keyed by the SHA-256 of the source files and the settings the
samples depend on (the configuration's whole data group), so a change to
either rebuilds. A damaged cache entry is rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil

import numpy as np

from core.config import DINConfig
from core.errors import DataError
from data import cache, sources
from data.download import default_cache_dir, sha256_of
from data.encoders import FeatureEncoders
from data.splits import Arrays, Splits, encode

BUILD_VERSION = 8  # bump when a sample builder or the encoding changes (8: every raw MovieLens sample keeps its time)
log = logging.getLogger("din")
detect = sources.detect


@dataclasses.dataclass(frozen=True)
class Build:
    """How a built source's cache entry is made: `local` (one process, chunk by
    chunk) or `beam` (an Apache Beam pipeline on `runner`, with Beam's own
    `pipeline_args`). Either makes the same entry under the same key."""

    engine: str = "local"
    runner: str = "DirectRunner"
    pipeline_args: tuple[str, ...] = ()


def load_splits(
    data_dir: str, config: DINConfig, cache_dir: str | None = None, progress: bool = False, build: Build = Build()
) -> Splits:
    """Encoded train / valid / test splits of any supported folder (a built
    source's arrays memory-mapped from its cache entry, built by `build` when
    there is none)."""
    source = detect(data_dir, config)
    if not source.built and build.engine == "local":  # read as it is, every run
        return source.load(data_dir, config, progress)
    folder = os.path.join(cache_dir or default_cache_dir(), "built", build_key(data_dir, config))
    if os.path.isfile(os.path.join(folder, "encoders.json")):
        try:
            return cache.read(folder)
        except (OSError, ValueError, KeyError) as error:
            log.warning("cache entry %s is damaged (%s: %s): rebuilding it", folder, type(error).__name__, error)
            shutil.rmtree(folder, ignore_errors=True)
    if build.engine == "beam":
        source.build_beam(data_dir, config, folder, build.runner, build.pipeline_args)
    else:
        source.build(data_dir, config, folder, progress)
    return cache.read(folder)


def raw_splits(data_dir: str, config: DINConfig) -> dict[str, dict[str, np.ndarray]]:
    """Raw (unencoded) columns of a folder's splits, built by the run's protocol:
    'train' and 'test' always, 'valid' where the source splits one off before
    encoding (a held-out share of training users is part of 'train')."""
    return detect(data_dir, config).raw_splits(data_dir, config)


def data_files(data_dir: str, config: DINConfig) -> list[str]:
    """The files a data folder is read from."""
    return detect(data_dir, config).files(data_dir, config)


def data_fingerprint(data_dir: str, config: DINConfig) -> str:
    """SHA-256 over the content of a data folder's files (not their paths or times)."""
    digest = hashlib.sha256()
    for path in data_files(data_dir, config):
        digest.update(f"{os.path.basename(path)}:{sha256_of(path)}\n".encode())
    return digest.hexdigest()


def build_key(data_dir: str, config: DINConfig) -> str:
    source = detect(data_dir, config)
    files = {os.path.basename(path): sha256_of(path) for path in source.files(data_dir, config)}
    text = json.dumps({"version": BUILD_VERSION, "sources": files, "options": source.options(config)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load_test(data_dir: str, config: DINConfig, encoders: FeatureEncoders) -> Arrays:
    """The test split of a run's data, encoded with the run's own encoders."""
    columns = raw_splits(data_dir, config)["test"]
    missing = [name for name in (*encoders.numeric, *encoders.categorical, *encoders.sequence) if name not in columns]
    if missing:
        raise DataError(f"{data_dir}: its data lack the run's features {missing}; pass the data the run was "
                        "trained on, or data in the same format")
    return encode(columns, encoders)
