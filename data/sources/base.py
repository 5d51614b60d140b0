"""The one interface every data source implements (data/sources/__init__.py keeps the registry)."""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from core.config import DINConfig, flag
from core.errors import DataError
from data import cache
from data.features import Feature
from data.splits import Splits

Columns = dict[str, np.ndarray]


class Source(Protocol):
    """A kind of data folder: how it is recognised, which files it reads, how
    its samples are made.

    A `built` source (raw MovieLens, Amazon) turns raw files into samples once
    and the data layer caches them (data/datasets.py); the others are read as
    they are on every run.
    """

    name: str  # for messages: "dataset file", "tutorial", "movielens", "amazon"
    built: bool
    label_names: tuple[str, str]  # what label 1 and label 0 mean, for pictures

    def detect(self, data_dir: str, config: DINConfig) -> bool:
        """Whether `data_dir` holds this source's files."""

    def files(self, data_dir: str, config: DINConfig) -> list[str]:
        """Every file the samples are read from (their content keys the cache)."""

    def options(self, config: DINConfig) -> dict:
        """The settings the samples depend on, beside the files (part of the cache key)."""

    def load(self, data_dir: str, config: DINConfig, progress: bool = False) -> Splits:
        """Encoded train / valid / test splits, in memory."""

    def build(self, data_dir: str, config: DINConfig, folder: str, progress: bool = False) -> None:
        """Writes the encoded splits as a cache entry into `folder` (built sources)."""

    def build_beam(self, data_dir: str, config: DINConfig, folder: str, runner: str, pipeline_args: tuple[str, ...]) -> None:
        """Writes the same cache entry as `build`, sharded, with an Apache Beam
        pipeline (a DataError where the source has no Beam build)."""

    def timed(self, data_dir: str, config: DINConfig) -> bool:
        """Whether its samples carry times (--split time, --continue-from's newer samples)."""

    def check(self, data_dir: str, config: DINConfig) -> None:
        """A DataError naming the flag when `config` asks for what this source does not build."""

    def defaults(self, config: DINConfig) -> dict:
        """Settings this source trains with unless a flag says otherwise, where a
        study chose them over DINConfig's defaults for its data."""

    def raw_splits(self, data_dir: str, config: DINConfig) -> dict[str, Columns]:
        """Raw (unencoded) columns: 'train' and 'test' always, 'valid' where the
        source splits it off before encoding."""

    def titles(self, data_dir: str) -> dict[str, str]:
        """Item id (as a string) -> title, where the folder has titles."""

    def features(self, data_dir: str, config: DINConfig) -> tuple[Feature, ...]:
        """The features its encoders are fitted for (a continued run fits them on
        the newer training rows to grow its vocabularies); a DataError where the
        source's encoders are fitted otherwise."""


class SourceBase:
    """Defaults shared by the sources: read as they are, keyed by the data group,
    no titles."""

    built = False
    label_names = ("clicked", "not clicked")

    def options(self, config: DINConfig) -> dict:
        return data_key(config)

    def defaults(self, config: DINConfig) -> dict:
        return {name: False for name in SEQUENTIAL_OPTIONS}

    def build(self, data_dir: str, config: DINConfig, folder: str, progress: bool = False) -> None:
        cache.write(folder, self.load(data_dir, config, progress))

    def features(self, data_dir: str, config: DINConfig) -> tuple[Feature, ...]:
        raise DataError(f"--continue-from: {data_dir} is {self.name} data, whose encoders a continued run cannot "
                        "grow; continue on raw MovieLens (sequential protocol), Amazon or CSVs through a dataset file")

    def timed(self, data_dir: str, config: DINConfig) -> bool:
        """Whether its samples carry times, which --split time cuts."""
        return False

    def check(self, data_dir: str, config: DINConfig) -> None:
        refuse_sequential_options(data_dir, config, f"{self.name} data")
        time_split = config.split == "time" and self.timed(data_dir, config)  # the split's flags are used then
        refuse_unused(data_dir, config, ("protocol",) if time_split else ("protocol", "split", "holdout_fraction"),
                      f"{self.name} data", "raw MovieLens; --split time also Amazon's, whose reviews have times")

    def build_beam(self, data_dir: str, config: DINConfig, folder: str, runner: str, pipeline_args: tuple[str, ...]) -> None:
        raise DataError(f"--build beam: {data_dir} is {self.name} data, which builds locally (--build local); the Beam "
                        "build covers raw MovieLens in the sequential protocol, Amazon, and CSVs through a dataset file")

    def titles(self, data_dir: str) -> dict[str, str]:
        return {}


# Options only raw MovieLens in the sequential protocol builds (its samples know
# the ratings below the like threshold, and every test user has training
# samples): on there unless turned off; asked for elsewhere, refused.
SEQUENTIAL_OPTIONS = ("low_rated_history", "user_feature")


def data_key(config: DINConfig) -> dict:
    """The data settings as a cache key, for a source without the sequential
    options: off is keyed as unset, so caches built before the options were
    resolved to false still match."""
    return config.group("data") | {name: None for name in SEQUENTIAL_OPTIONS if getattr(config, name) is False}


def refuse_unused(data_dir: str, config: DINConfig, names: tuple[str, ...], what: str, whose: str) -> None:
    """Refuses settings given away from their defaults that `what` does not use."""
    defaults = DINConfig()
    given = [name for name in names if getattr(config, name) != getattr(defaults, name)]
    if given:
        flags = ", ".join(f"{flag(name)} {getattr(config, name)}" for name in given)
        raise DataError(f"{flags}: {data_dir} is {what}, which does not use {'it' if len(given) == 1 else 'them'} "
                        f"(for {whose}); drop {'it' if len(given) == 1 else 'them'}")


def refuse_sequential_options(data_dir: str, config: DINConfig, what: str) -> None:
    for name in SEQUENTIAL_OPTIONS:
        if getattr(config, name) is True:
            raise DataError(f"{flag(name)}: {data_dir} is {what}; the option builds raw MovieLens in the sequential "
                            f"protocol only (drop {flag(name)})")


def beam_build(name: str):
    """data/beam/<name>.py, the Beam build of a source (or a DataError saying how to install Beam)."""
    try:
        return importlib.import_module(f"data.beam.{name}")
    except ImportError as error:
        raise DataError(f"--build beam needs Apache Beam ({error}): pip install -e '.[beam]'") from None
