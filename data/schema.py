"""The feature schema both backends build their DIN from.

A schema names every input feature with its role and size; it is derived from
fitted encoders (`data.encoders.FeatureEncoders.schema`) and saved inside
`encoders.json`, so a run directory is enough to rebuild its model.

Roles:
  numeric      one float per example                         [B]
  categorical  one id per example, embedded                  [B] -> [B, E]
  sequence     T ids per example (0 = padding), embedded     [B, T] -> [B, T, E]
  attention group: (query, history) pairs; the query is a categorical feature,
               the history a sequence feature; their embeddings are
               concatenated over the pairs (D = pairs x E).
Sequence features that are no group's history are max-pooled.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

# Keys the batches carry besides the features.
LABEL = "label"
USER = "user_id"
ROW_MASK = "row_mask"  # Optional [B]: 1 for a real row, 0 for one that pads a short batch.
TIME = "event_time"  # Optional [N] int64: a sample's time (its rating's timestamp), where the data has one.
RESERVED = (LABEL, USER, ROW_MASK, TIME)


@dataclasses.dataclass(frozen=True)
class CategoricalFeature:
    name: str
    vocab_size: int  # rows of its embedding table: terms + padding + unknown.


@dataclasses.dataclass(frozen=True)
class SequenceFeature:
    name: str
    vocab_size: int
    max_len: int


@dataclasses.dataclass(frozen=True)
class AttentionGroup:
    name: str
    pairs: tuple[tuple[str, str], ...]  # (query feature, history feature) pairs.

    def __post_init__(self) -> None:
        object.__setattr__(self, "pairs", tuple((str(q), str(h)) for q, h in self.pairs))
        if not self.pairs:
            raise ValueError(f"attention group {self.name!r} has no (query, history) pair")

    @property
    def queries(self) -> tuple[str, ...]:
        return tuple(q for q, _ in self.pairs)

    @property
    def histories(self) -> tuple[str, ...]:
        return tuple(h for _, h in self.pairs)

    def lengths(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        """Each row's usable history length ([..., T] ids -> [...]): the shortest
        of its pair histories' id counts, as the models compute it."""
        return np.minimum.reduce([(np.asarray(batch[h]) != 0).sum(axis=-1) for h in self.histories])


@dataclasses.dataclass(frozen=True)
class FeatureSchema:
    numeric: tuple[str, ...]
    categorical: tuple[CategoricalFeature, ...]
    sequence: tuple[SequenceFeature, ...]
    attention_groups: tuple[AttentionGroup, ...]
    # (borrower, owner) pairs: the borrower uses the owner's embedding table and
    # vocabulary (the paper's design for an attention pair's history and query,
    # `--share-embeddings`; any pair a dataset file declares with `share`).
    shared: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "shared", tuple((str(h), str(q)) for h, q in self.shared))
        names = list(self.numeric) + [f.name for f in self.categorical] + [f.name for f in self.sequence]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"feature names used twice: {duplicates}")
        for name in names:
            if name in RESERVED:
                raise ValueError(f"feature name {name!r} is reserved for batch metadata")
        categorical = {f.name for f in self.categorical}
        sequence = {f.name: f for f in self.sequence}
        for group in self.attention_groups:
            for query, history in group.pairs:
                if query not in categorical:
                    raise ValueError(f"attention group {group.name!r}: query {query!r} is not a categorical feature")
                if history not in sequence:
                    raise ValueError(f"attention group {group.name!r}: history {history!r} is not a sequence feature")
            lengths = {sequence[h].max_len for h in group.histories}
            if len(lengths) != 1:
                raise ValueError(f"attention group {group.name!r}: histories differ in max_len {sorted(lengths)}")
        sizes = {f.name: f.vocab_size for f in self.categorical + self.sequence}
        borrowers = {b for b, _ in self.shared}
        for borrower, owner in self.shared:
            if borrower not in sizes or owner not in sizes:
                raise ValueError(f"shared table {borrower!r} -> {owner!r}: both must be categorical or sequence features")
            if owner in borrowers:
                raise ValueError(f"{borrower!r} shares {owner!r}'s table, which itself shares another's")
            if sizes[borrower] != sizes[owner]:
                raise ValueError(f"{borrower!r} shares {owner!r}'s table but their vocab sizes differ")
        if len(borrowers) != len(self.shared):
            raise ValueError("a feature shares more than one table")
        for feature in self.categorical + self.sequence:
            if feature.vocab_size < 2:
                raise ValueError(f"feature {feature.name!r}: vocab_size must be >= 2, got {feature.vocab_size}")
        for feature in self.sequence:
            if feature.max_len < 1:
                raise ValueError(f"feature {feature.name!r}: max_len must be >= 1, got {feature.max_len}")

    @property
    def inputs(self) -> tuple[str, ...]:
        """The model's inputs in one fixed order: embedded features (categorical first), then numeric."""
        return tuple(f.name for f in self.embedded) + self.numeric

    @property
    def embedded(self) -> tuple[CategoricalFeature | SequenceFeature, ...]:
        """Every feature with an embedding table, categorical first (table order)."""
        return self.categorical + self.sequence

    @property
    def tables(self) -> tuple[CategoricalFeature | SequenceFeature, ...]:
        """Features that own an embedding table (a shared history uses its query's)."""
        borrowers = {h for h, _ in self.shared}
        return tuple(f for f in self.embedded if f.name not in borrowers)

    def table_of(self, name: str) -> str:
        """The feature whose embedding table `name` is looked up in."""
        return dict(self.shared).get(name, name)

    def columns_of(self, table: str) -> tuple[str, ...]:
        """The features looked up in `table` (itself, and a history that shares it)."""
        return tuple(f.name for f in self.embedded if self.table_of(f.name) == table)

    def history_length(self, group: AttentionGroup) -> int:
        """T of an attention group: its histories' max_len (one, checked above)."""
        return next(f.max_len for f in self.sequence if f.name == group.histories[0])

    @property
    def history_features(self) -> frozenset[str]:
        return frozenset(h for g in self.attention_groups for h in g.histories)

    @property
    def pooled(self) -> tuple[SequenceFeature, ...]:
        """Sequence features that are no attention group's history: max-pooled."""
        return tuple(f for f in self.sequence if f.name not in self.history_features)

    def mlp_input_dim(self, embedding_dim: int) -> int:
        """Width F of the main MLP's input: numeric, categorical, pooled, attention."""
        attention = sum(len(g.pairs) for g in self.attention_groups)
        return len(self.numeric) + embedding_dim * (len(self.categorical) + len(self.pooled) + attention)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "FeatureSchema":
        return cls(
            numeric=tuple(raw["numeric"]),
            categorical=tuple(CategoricalFeature(**f) for f in raw["categorical"]),
            sequence=tuple(SequenceFeature(**f) for f in raw["sequence"]),
            attention_groups=tuple(
                AttentionGroup(g["name"], tuple(tuple(p) for p in g["pairs"])) for g in raw["attention_groups"]
            ),
            shared=tuple(tuple(p) for p in raw.get("shared", ())),
        )
