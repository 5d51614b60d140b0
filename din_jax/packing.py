"""How many rows the JAX attention provisions for a batch's history positions.

The attention MLP runs over the positions its result depends on, packed into
a buffer of static size (din_jax.attention.AttentionUnit): real positions, and
one row per example standing for its padding. The buffer holds
`history_share` of the batch's B * T positions, set from the training
split's lengths so that a shuffled batch overflows it with negligible
probability; a batch that would is trained on every position instead, so
results never depend on the share, only the speed. Framework-free (numpy):
the same counts decide, on the host, which compiled step a block of batches
takes.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from core.config import DINConfig
from data.schema import AttentionGroup, FeatureSchema

# Standard errors of a shuffled batch's mean live share above the split's mean.
MARGIN = 4.0


def packed_capacity(batch: int, steps: int, share: float) -> int:
    """Rows provisioned for a batch's B * T history positions: share * B * T
    rounded up to a multiple of 8, at most B * T (share 0: all of them)."""
    if share <= 0:
        return batch * steps
    return min(batch * steps, -(-math.ceil(share * batch * steps) // 8) * 8)


def packs(config: DINConfig, train: bool) -> bool:
    """Whether the attention packs its rows in this mode: not with
    history_share 1, nor in training with padding in the statistics and
    attention dropout on (each padded row draws its own mask, so no row can
    stand for the others)."""
    padding_rows = train and not config.mask_padding
    return config.history_share < 1 and not (padding_rows and config.attention_dropout > 0)


def live_counts(group: AttentionGroup, batch: Mapping[str, np.ndarray]) -> np.ndarray:
    """The group's live positions in each row ([..., T] ids -> [...]): those
    before the group's length (the shortest of its histories' id counts) or
    where any of its histories has an id. The attention packs a subset of
    them (an id's embedding may be the zero vector), so a batch whose counts
    fit the capacity fits on the device too."""
    ids = [np.asarray(batch[h]) != 0 for h in group.histories]
    live = np.logical_or.reduce(ids) | (np.arange(ids[0].shape[-1]) < group.lengths(batch)[..., None])
    return live.sum(axis=-1)


def all_live_counts(schema: FeatureSchema, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """live_counts of every attention group: {group: [...]}."""
    return {g.name: live_counts(g, batch) for g in schema.attention_groups}


def fits(schema: FeatureSchema, share: float, batches: Mapping[str, np.ndarray]) -> bool:
    """Whether every batch of `batches` ({name: [K, B, ...]}) has at most
    packed_capacity(B, T, share) live positions in every attention group."""
    return counts_fit(schema, share, all_live_counts(schema, batches))


def counts_fit(schema: FeatureSchema, share: float, counts: Mapping[str, np.ndarray]) -> bool:
    """fits() from live_counts already taken: {group: [K, B]}."""
    for group in schema.attention_groups:
        per_row = counts[group.name]  # [K, B]
        if per_row.sum(axis=1).max(initial=0) > packed_capacity(per_row.shape[1], schema.history_length(group), share):
            return False
    return True


def worth_packing(config: DINConfig, schema: FeatureSchema) -> bool:
    """Whether packed rows can be faster than every position: a packed row
    costs its gathers (key and query, D wide each) and its scatter back, a
    saved row the attention MLP's passes over its widths. Measured
    (docs/performance.md): the paper's 80-40 MLP on keys of 24 gains, the
    tutorial's 16-8 on keys of 32 loses even at 55% padding."""
    widest_key = max(len(g.histories) for g in schema.attention_groups) * config.embedding_dim  # D
    return sum(config.attention_hidden) > 2 * widest_key


def resolve(config: DINConfig, schema: FeatureSchema, train: Mapping[str, np.ndarray]) -> DINConfig:
    """history_share 0 -> from the training split: per attention group, the
    mean live share of a row plus MARGIN standard errors of a batch of
    config.batch_size rows' mean, the largest over groups (at most 1); 1
    (every position) where packing does not pay."""
    if config.history_share or not schema.attention_groups:
        return config
    if not worth_packing(config, schema):
        return config.replace(history_share=1.0)
    share = 0.0
    for group in schema.attention_groups:
        steps = np.shape(train[group.histories[0]])[-1]
        counts = live_counts(group, train) / steps  # [N]
        share = max(share, counts.mean() + MARGIN * counts.std() / math.sqrt(config.batch_size))
    return config.replace(history_share=min(1.0, math.ceil(share * 1000) / 1000))
