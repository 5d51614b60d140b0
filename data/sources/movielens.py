"""Raw MovieLens (GroupLens' releases, read by grouplens.py), made into samples
by one of three protocols (`config.protocol`):

  sequential  every rating after a user's first, split by time (sequential.py)
  seed        the tutorial's split, rebuilt (seed_protocol.py)
  paper       the DIN paper's ML-20M setup (paper_protocol.py)
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from core.config import PRESETS, DINConfig
from data import cache
from data.features import Feature
from data.sources import grouplens, paper_protocol, seed_protocol, sequential
from data.sources.base import (SEQUENTIAL_OPTIONS, SourceBase, beam_build, data_key, refuse_sequential_options,
                               refuse_unused)
from data.splits import Splits

PROTOCOLS = {"sequential": sequential, "seed": seed_protocol, "paper": paper_protocol}


class MovieLens(SourceBase):
    """ratings.dat + users.dat + movies.dat (ML-1M), or ratings.csv + movies.csv."""

    name = "movielens"
    built = True
    label_names = ("rated high next", "rated low")

    def detect(self, data_dir: str, config: DINConfig) -> bool:
        return grouplens.detect(data_dir)

    def files(self, data_dir: str, config: DINConfig) -> list[str]:
        return grouplens.files(data_dir)

    def options(self, config: DINConfig) -> dict:
        # The seeded protocols also draw their splits and negatives from the seed.
        seeded = config.protocol in ("seed", "paper")
        data = sequential.options(config) if config.protocol == "sequential" else data_key(config)
        return data | ({"seed": config.seed} if seeded else {})

    def defaults(self, config: DINConfig) -> dict:
        # The paper's sizes and its softmax attention gain on ml-latest-small's
        # sequential protocol and not on the tutorial's split, the low-rated
        # history and the user id there too; the paper's treatment of padding
        # (--mask-padding) scores within noise of the padded statistics and
        # lets the JAX attention skip padded positions (docs/results.md).
        if config.protocol != "sequential":
            return super().defaults(config)
        return dict(PRESETS["paper"], attention_norm="softmax", mask_padding=True,
                    **{name: True for name in SEQUENTIAL_OPTIONS})

    def check(self, data_dir: str, config: DINConfig) -> None:
        if config.protocol != "sequential":
            what = f"MovieLens read by the {config.protocol} protocol"
            refuse_sequential_options(data_dir, config, what)
            refuse_unused(data_dir, config, ("split", "holdout_fraction"), what, "the sequential protocol")

    def load(self, data_dir: str, config: DINConfig, progress: bool = False) -> Splits:
        return PROTOCOLS[config.protocol].load(data_dir, config)

    def build(self, data_dir: str, config: DINConfig, folder: str, progress: bool = False) -> None:
        if config.protocol != "sequential":
            return super().build(data_dir, config, folder, progress)
        # Chunk by chunk: the build's memory is bounded, not the data's.
        raw = grouplens.read_raw(data_dir, progress)
        with tqdm(total=2 * len(raw.ratings), desc="building samples (fit, then encode)", unit="rating", unit_scale=True,
                  leave=False, disable=not progress) as bar:
            built = sequential.build(raw, config, advance=bar.update)
            with cache.Writer(folder, built.rows) as writer:
                for chunk in built.encoded():
                    for split, arrays in chunk.items():
                        writer.append(split, arrays)
                writer.finish(built.encoders)

    def build_beam(self, data_dir: str, config: DINConfig, folder: str, runner: str, pipeline_args: tuple[str, ...]) -> None:
        beam_build("movielens").build(data_dir, config, folder, runner, pipeline_args)

    def raw_splits(self, data_dir: str, config: DINConfig) -> dict[str, dict[str, np.ndarray]]:
        return PROTOCOLS[config.protocol].raw_splits(data_dir, config)

    def features(self, data_dir: str, config: DINConfig) -> tuple[Feature, ...]:
        if config.protocol != "sequential":
            return super().features(data_dir, config)
        return sequential.features(grouplens.read_raw(data_dir), config)

    def titles(self, data_dir: str) -> dict[str, str]:
        movies = grouplens.read_raw(data_dir).movies
        return dict(zip(movies["movie"].astype(str), movies["title"].astype(str)))
