"""One entry point for every supported data folder, detected from its files."""

from __future__ import annotations

from data.config import DINConfig
from data.encoders import FeatureEncoders
from data.grouplens import detect_format
from data.movielens import Arrays, Splits, load_splits as load_tutorial
from data.movielens import load_test as load_tutorial_test


def load_splits(data_dir: str, config: DINConfig) -> Splits:
    """The tutorial's train.csv/test.csv, or a raw GroupLens folder (sequential protocol)."""
    if detect_format(data_dir) == "tutorial":
        return load_tutorial(data_dir, config)
    from data.sequential import load_sequential

    return load_sequential(data_dir, config)


def load_test(data_dir: str, config: DINConfig, encoders: FeatureEncoders) -> Arrays:
    """The test split of a run's data, encoded with the run's own encoders."""
    if detect_format(data_dir) == "tutorial":
        return load_tutorial_test(data_dir, encoders)
    from data.sequential import build_samples, split_masks
    from data.grouplens import read_raw
    from data.movielens import encode

    samples = build_samples(read_raw(data_dir), config.max_hist)
    test = split_masks(samples.pop("order"), samples.pop("count"), config.holdout_fraction, config.split)["test"]
    return encode({k: v[test] for k, v in samples.items()}, encoders)
