"""What every source builds: encoded arrays per split, and the helpers they share."""

from __future__ import annotations

import dataclasses

import numpy as np

from data.encoders import FeatureEncoders
from data.schema import LABEL, USER

Arrays = dict[str, np.ndarray]


@dataclasses.dataclass
class Splits:
    """Encoded arrays per split (features, `label` [N] float32, `user_id` [N])."""

    train: Arrays
    valid: Arrays
    test: Arrays
    encoders: FeatureEncoders


def encode(columns: dict[str, np.ndarray], encoders: FeatureEncoders) -> Arrays:
    """Raw columns -> the model's inputs, plus the label and the user (for GAUC)."""
    arrays = encoders.transform(columns)
    arrays[LABEL] = columns[LABEL].astype(np.float32)
    arrays[USER] = columns[USER]
    return arrays


def holdout_users(users: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask [N] of the rows whose user is in a seeded `fraction` of users."""
    unique = np.unique(users)
    count = int(round(fraction * len(unique)))
    chosen = np.random.default_rng(seed).choice(unique, size=count, replace=False)
    return np.isin(users, chosen)
