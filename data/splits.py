"""What every source builds: encoded arrays per split, and the helpers they share."""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Sequence

import numpy as np

from core.errors import DataError
from data.encoders import FeatureEncoders
from data.features import Feature
from data.schema import LABEL, TIME, USER, AttentionGroup
from data.statistics import Statistics

Arrays = dict[str, np.ndarray]
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass
class Splits:
    """Encoded arrays per split (features, `label` [N] float32, `user_id` [N],
    and `event_time` [N] int64 where the data has times)."""

    train: Arrays
    valid: Arrays
    test: Arrays
    encoders: FeatureEncoders

    @property
    def timeline(self) -> dict[str, dict[str, int]]:
        """{split: {'first', 'last'}}: each non-empty split's earliest and latest
        sample time; {} where the data has none."""
        spans = {}
        for split in SPLITS:
            times = getattr(self, split).get(TIME)
            if times is not None and len(times):
                spans[split] = {"first": int(np.min(times)), "last": int(np.max(times))}
        return spans


def encode(columns: dict[str, np.ndarray], encoders: FeatureEncoders) -> Arrays:
    """Raw columns -> the model's inputs, plus the label and the user (for GAUC)."""
    arrays = encoders.transform(columns)
    arrays[LABEL] = columns[LABEL].astype(np.float32)
    arrays[USER] = columns[USER]
    if TIME in columns:
        arrays[TIME] = np.asarray(columns[TIME], np.int64)
    return arrays


def time_cuts(times: np.ndarray, fraction: float) -> tuple[int, int]:
    """(validation, test) cut times of --split time over all samples' `times`:
    the latest floor(f * N) of the N start at the test cut, as many before them
    at the validation cut (samples in a cut's second go after it)."""
    times = np.sort(times)
    held = int(np.floor(fraction * len(times)))
    if not held:
        raise DataError(f"--split time: {len(times)} sample(s) leave none for test at --holdout-fraction {fraction:g}")
    return int(times[len(times) - 2 * held]), int(times[len(times) - held])


def time_masks(time: np.ndarray, cuts: tuple[int, int]) -> dict[str, np.ndarray]:
    """Boolean masks of train / valid / test of samples at `time` by time_cuts' (validation, test) cuts."""
    test = time >= cuts[1]
    valid = ~test & (time >= cuts[0])
    return {"train": ~test & ~valid, "valid": valid, "test": test}


def holdout_users(users: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask [N] of the rows whose user is in a seeded `fraction` of users."""
    return np.isin(users, held_out(np.unique(users), fraction, seed))


def held_out(unique: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded `fraction` of the sorted distinct users `unique`."""
    count = int(round(fraction * len(unique)))
    return np.random.default_rng(seed).choice(unique, size=count, replace=False)


@dataclasses.dataclass
class ChunkedSplits:
    """Splits built a chunk of rows at a time, never whole: the encoders are
    fitted on every chunk's training rows (summed statistics, exactly those of
    the whole split), then each chunk is encoded. `chunks()` yields each
    chunk's raw columns per split; it runs once to fit and once to encode."""

    chunks: Callable[[], Iterator[dict[str, dict]]]
    encoders: FeatureEncoders
    rows: dict[str, int]  # each split's row count

    @classmethod
    def fit(cls, chunks, specs: Sequence[Feature], attention_groups: Sequence[AttentionGroup], config) -> "ChunkedSplits":
        statistics, rows = Statistics(specs), dict.fromkeys(SPLITS, 0)
        for chunk in chunks():
            statistics.add(chunk["train"])
            for split in SPLITS:
                rows[split] += len(chunk[split][LABEL])
        encoders = statistics.fit(attention_groups, config.min_count, config.share_embeddings, config.max_len)
        return cls(chunks, encoders, rows)

    def encoded(self) -> Iterator[dict[str, Arrays]]:
        """Each chunk's encoded arrays per split."""
        for chunk in self.chunks():
            yield {split: encode(chunk[split], self.encoders) for split in SPLITS}

    def in_memory(self) -> Splits:
        parts = list(self.encoded())
        joined = {split: {name: np.concatenate([part[split][name] for part in parts]) for name in parts[0][split]}
                  for split in SPLITS}
        return Splits(joined["train"], joined["valid"], joined["test"], self.encoders)
