"""Random feature schemas and batches: oddly sized, padded, for tests and parity checks."""

from __future__ import annotations

import numpy as np

from data.schema import LABEL, AttentionGroup, CategoricalFeature, FeatureSchema, SequenceFeature


def random_schema(rng: np.random.Generator, groups: int | None = None, share: bool = False) -> FeatureSchema:
    """A schema with 1-2 numeric, 1-3 pooled sequence and 1-2 attention groups of
    1-2 pairs; `share`: each pair's history uses its query's table."""
    groups = int(rng.integers(1, 3)) if groups is None else groups
    numeric = tuple(f"num{i}" for i in range(rng.integers(1, 3)))
    categorical = [CategoricalFeature(f"cat{i}", int(rng.integers(3, 12))) for i in range(rng.integers(1, 3))]
    sequence = [SequenceFeature(f"seq{i}", int(rng.integers(3, 15)), int(rng.integers(2, 7))) for i in range(rng.integers(1, 3))]
    attention = []
    for g in range(groups):
        length = int(rng.integers(2, 9))
        pairs = []
        for p in range(int(rng.integers(1, 3))):
            query, history = f"query{g}_{p}", f"hist{g}_{p}"
            query_size = int(rng.integers(4, 20))
            categorical.append(CategoricalFeature(query, query_size))
            sequence.append(SequenceFeature(history, query_size if share else int(rng.integers(4, 20)), length))
            pairs.append((query, history))
        attention.append(AttentionGroup(f"group{g}", tuple(pairs)))
    shared = tuple((h, q) for group in attention for q, h in group.pairs) if share else ()
    return FeatureSchema(numeric, tuple(categorical), tuple(sequence), tuple(attention), shared)


def random_batch(schema: FeatureSchema, size: int, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
    """Right-padded sequences of random lengths (all-padding rows included), ids >= 1 elsewhere."""
    batch: dict[str, np.ndarray] = {name: rng.uniform(0, 1, size).astype(dtype) for name in schema.numeric}
    for f in schema.categorical:
        batch[f.name] = rng.integers(1, f.vocab_size, size).astype(np.int32)
    for f in schema.sequence:
        ids = rng.integers(1, f.vocab_size, (size, f.max_len)).astype(np.int32)
        lengths = rng.integers(0, f.max_len + 1, size)
        lengths[0] = f.max_len  # At least one full and, for size > 1, one empty history.
        if size > 1:
            lengths[1] = 0
        ids[np.arange(f.max_len)[None, :] >= lengths[:, None]] = 0
        batch[f.name] = ids
    batch[LABEL] = rng.integers(0, 2, size).astype(dtype)
    return batch
