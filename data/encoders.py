"""Feature encoders fitted on training data only, saved to and loaded from JSON.

numeric      mean imputation, then scikit-learn's QuantileTransformer (its
             defaults: 1000 quantiles, uniform output in [0, 1]), or a
             z-score, or nothing (data/features.py: `preprocess`).
categorical  vocabulary = terms seen >= min_count times in train, sorted,
             numbered 1..n; 0 = padding, n + 1 = unknown (unseen terms).
sequence     '|'-separated terms, same vocabulary rule; max_len = the longest
             training sequence (or config.max_len); shorter ones are right-padded
             with 0, longer ones are cut to their most recent max_len ids (the
             end of an oldest-first list, the start of a latest-first one:
             `order`), in training and in scoring alike (`recent`). An empty
             sequence is all padding.

Vocabularies and counting live in data/vocabulary.py, fitting chunk by chunk
in data/statistics.py. Inputs are already validated strings and floats (see
the sources' readers); outputs are numpy arrays: float32 [N] for numeric, int32 [N] for categorical,
int32 [N, T] for sequences.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.preprocessing import QuantileTransformer

from core.errors import DataError
from data.schema import AttentionGroup, CategoricalFeature, FeatureSchema, SequenceFeature
from data.vocabulary import Vocabulary, category_counts, percentile_of_histogram, sequence_statistics, split_sequences

ORDERS = ("oldest-first", "latest-first")  # how a sequence's ids are listed; the cut keeps the most recent
log = logging.getLogger("din")


class NumericEncoder:
    """Mean imputation, then a uniform quantile transform (the default), a
    z-score (`standard`) or nothing (`none`)."""

    def __init__(self, mean: float, transformer: QuantileTransformer | None, preprocess: str = "quantile", std: float = 1.0):
        self.mean = float(mean)
        self.transformer = transformer
        self.preprocess = preprocess
        self.std = float(std)

    @classmethod
    def fit(cls, values: np.ndarray, name: str = "", preprocess: str = "quantile") -> "NumericEncoder":
        values = np.asarray(values, dtype=np.float64)
        if np.isnan(values).all():
            raise DataError(f"column {name!r}: every training value is missing; nothing to impute from")
        mean = float(np.nanmean(values))
        imputed = np.where(np.isnan(values), mean, values)
        if preprocess == "standard":
            return cls(mean, None, preprocess, float(np.std(imputed)) or 1.0)  # a constant column stays finite
        if preprocess == "none":
            return cls(mean, None, preprocess)
        # Default n_quantiles (1000) capped at the sample count, as sklearn
        # does with a warning; capping here keeps the fit silent. No
        # subsampling: the quantiles are exact, so the same data always gives
        # the same encoder (sklearn subsamples 10,000 rows at random otherwise).
        transformer = QuantileTransformer(n_quantiles=min(1000, len(values)), subsample=None)
        transformer.fit(imputed.reshape(-1, 1))
        return cls(mean, transformer)

    def transform(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if len(values) == 0:  # An empty split (e.g. no validation users).
            return np.zeros(0, dtype=np.float32)
        imputed = np.where(np.isnan(values), self.mean, values)
        if self.preprocess == "standard":
            return ((imputed - self.mean) / self.std).astype(np.float32)
        if self.preprocess == "none":
            return imputed.astype(np.float32)
        return self.transformer.transform(imputed.reshape(-1, 1))[:, 0].astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        if self.preprocess != "quantile":
            return {"kind": self.preprocess, "mean": self.mean, "std": self.std}  # "kind": encoders.json's key
        return {
            "mean": self.mean,
            "quantiles": self.transformer.quantiles_[:, 0].tolist(),
            "references": self.transformer.references_.tolist(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "NumericEncoder":
        if raw.get("kind", "quantile") != "quantile":
            return cls(raw["mean"], None, raw["kind"], raw["std"])
        quantiles = np.asarray(raw["quantiles"], dtype=np.float64).reshape(-1, 1)
        transformer = QuantileTransformer(n_quantiles=len(quantiles))
        # The fitted state of a QuantileTransformer is exactly these arrays.
        transformer.quantiles_ = quantiles
        transformer.references_ = np.asarray(raw["references"], dtype=np.float64)
        transformer.n_quantiles_ = len(quantiles)
        transformer.n_features_in_ = 1
        return cls(raw["mean"], transformer)


class CategoryEncoder:
    def __init__(self, vocabulary: Vocabulary):
        self.vocabulary = vocabulary

    @classmethod
    def fit(cls, values: np.ndarray, min_count: int) -> "CategoryEncoder":
        return cls(Vocabulary.from_counts(category_counts(values), min_count))

    def transform(self, values: np.ndarray | pd.Categorical) -> np.ndarray:
        if isinstance(values, pd.Categorical):  # each distinct value looked up once; missing = unknown
            return np.append(self.vocabulary.encode(np.asarray(values.categories)), self.vocabulary.unknown)[values.codes]
        return self.vocabulary.encode(values)  # [N]

    def to_dict(self) -> dict[str, Any]:
        return {"terms": self.vocabulary.terms.tolist()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "CategoryEncoder":
        return cls(Vocabulary(raw["terms"]))


def recent(rows: np.ndarray, positions: np.ndarray, n: int, max_len: int, order: str = "oldest-first"
           ) -> tuple[np.ndarray, np.ndarray]:
    """The one cut rule: of each row's ids (rows, positions as split_sequences
    gives them, n rows), which are kept, and at which slot of [N, max_len].

    A sequence keeps its most recent max_len ids: the last ones of an
    oldest-first list, the first ones of a latest-first list; kept ids keep
    their order. Returns (keep [M] bool, slot [M])."""
    if order == "latest-first":
        return positions < max_len, positions
    if order != "oldest-first":
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    lengths = np.bincount(rows, minlength=n) if len(rows) else np.zeros(n, np.int64)  # [N]
    start = np.maximum(lengths - max_len, 0)[rows]  # [M]: each id's row's first kept position
    return positions >= start, positions - start


class SequenceEncoder:
    def __init__(self, vocabulary: Vocabulary, max_len: int, sep: str = "|", order: str = "oldest-first"):
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        self.vocabulary = vocabulary
        self.max_len = int(max_len)
        self.sep = sep
        self.order = order

    def like(self, vocabulary: Vocabulary | None = None, max_len: int | None = None) -> "SequenceEncoder":
        """This encoder with another vocabulary or length (sep and order kept)."""
        return SequenceEncoder(vocabulary or self.vocabulary, max_len or self.max_len, self.sep, self.order)

    @classmethod
    def fit(
        cls, values: Sequence[str] | np.ndarray, min_count: int, sep: str = "|", max_len: int = 0, name: str = "",
        order: str = "oldest-first",
    ) -> "SequenceEncoder":
        """values: as sequence_statistics takes them. See from_statistics."""
        counts, lengths = sequence_statistics(values, sep)
        return cls.from_statistics(counts, lengths, min_count, sep, max_len, name, order)

    @classmethod
    def from_statistics(
        cls, counts: pd.Series, lengths: np.ndarray, min_count: int, sep: str = "|", max_len: int = 0, name: str = "",
        order: str = "oldest-first",
    ) -> "SequenceEncoder":
        """counts: the training ids' term_counts; lengths: the histogram of the
        training sequences' lengths.

        max_len: cut sequences to at most this many ids (0: the longest training
        sequence, at least one slot so that shapes stay valid when every
        training sequence is empty). A longest sequence far beyond the rest is
        logged: one outlier row would otherwise widen every row's tensor.
        """
        longest = max(int(np.flatnonzero(lengths).max(initial=0)), 1)
        typical = int(percentile_of_histogram(lengths, 99))
        if not max_len and longest > max(2 * typical, typical + 10):
            log.warning(
                "%s: max_len %d comes from %d training row(s); 99%% of rows have <= %d ids "
                "(--max-len N cuts sequences to N ids)", name or "sequence", longest, int(lengths[longest]), typical,
            )
        return cls(Vocabulary.from_counts(counts, min_count), min(max_len, longest) if max_len else longest, sep, order)

    def transform(self, values: Sequence[str] | np.ndarray | pd.Categorical) -> np.ndarray:
        if isinstance(values, pd.Categorical):  # each distinct sequence encoded once; missing = empty
            table = self.transform(np.asarray(values.categories, dtype=object))  # [C, T]
            return np.concatenate([table, np.zeros((1, self.max_len), np.int32)])[values.codes]  # [N, T]
        out = np.zeros((len(values), self.max_len), dtype=np.int32)  # [N, T], 0 = padding
        if isinstance(values, np.ndarray) and values.ndim == 2:  # the builders' [N, L], oldest first, right-padded
            if values.shape[1] <= self.max_len:  # nothing to cut: one vectorised lookup
                out[:, : values.shape[1]] = self.vocabulary.encode(values)
                return out
            rows, positions = np.nonzero(values)
            keep, slot = recent(rows, positions, len(values), self.max_len)
            out[rows[keep], slot[keep]] = self.vocabulary.encode(values[rows[keep], positions[keep]])
            return out
        rows, positions, tokens = split_sequences(values, self.sep)
        keep, slot = recent(rows, positions, len(values), self.max_len, self.order)
        out[rows[keep], slot[keep]] = self.vocabulary.encode(tokens[keep])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"terms": self.vocabulary.terms.tolist(), "max_len": self.max_len, "sep": self.sep, "order": self.order}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "SequenceEncoder":
        return cls(Vocabulary(raw["terms"]), raw["max_len"], raw["sep"], raw.get("order", "oldest-first"))


class FeatureEncoders:
    """Every feature's fitted encoder plus the attention groups: the schema's source."""

    def __init__(
        self,
        numeric: dict[str, NumericEncoder],
        categorical: dict[str, CategoryEncoder],
        sequence: dict[str, SequenceEncoder],
        attention_groups: tuple[AttentionGroup, ...],
        shared: tuple[tuple[str, str], ...] = (),
    ):
        self.numeric = numeric
        self.categorical = categorical
        self.sequence = sequence
        self.attention_groups = tuple(attention_groups)
        self.shared = tuple(shared)  # (history, query): one vocabulary and one table

    def grown(self, newer: "FeatureEncoders") -> "FeatureEncoders":
        """These encoders with each vocabulary grown by the terms of `newer`'s
        (the same features fitted on newer training rows) that it lacks: every
        known term keeps its id, new ones follow, the unknown id moves past
        them; numeric statistics and sequence lengths stay these."""
        if (tuple(newer.numeric), tuple(newer.categorical), tuple(newer.sequence)) != \
                (tuple(self.numeric), tuple(self.categorical), tuple(self.sequence)):
            raise ValueError(f"other features: {newer.schema().inputs}, these {self.schema().inputs}")
        categorical = {name: CategoryEncoder(encoder.vocabulary.grown(newer.categorical[name].vocabulary.terms))
                       for name, encoder in self.categorical.items()}
        sequence = {name: encoder.like(encoder.vocabulary.grown(newer.sequence[name].vocabulary.terms))
                    for name, encoder in self.sequence.items()}
        return FeatureEncoders(self.numeric, categorical, sequence, self.attention_groups, self.shared)

    def transform(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for group in (self.numeric, self.categorical, self.sequence):
            for name, encoder in group.items():
                out[name] = encoder.transform(columns[name])
        return out

    def schema(self) -> FeatureSchema:
        return FeatureSchema(
            numeric=tuple(self.numeric),
            categorical=tuple(CategoricalFeature(n, e.vocabulary.size) for n, e in self.categorical.items()),
            sequence=tuple(SequenceFeature(n, e.vocabulary.size, e.max_len) for n, e in self.sequence.items()),
            attention_groups=self.attention_groups,
            shared=self.shared,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "numeric": {n: e.to_dict() for n, e in self.numeric.items()},
                "categorical": {n: e.to_dict() for n, e in self.categorical.items()},
                "sequence": {n: e.to_dict() for n, e in self.sequence.items()},
                "attention_groups": [{"name": g.name, "pairs": [list(p) for p in g.pairs]} for g in self.attention_groups],
                "shared": [list(p) for p in self.shared],
                "schema": self.schema().to_dict(),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> "FeatureEncoders":
        raw = json.loads(text)
        return cls(
            {n: NumericEncoder.from_dict(e) for n, e in raw["numeric"].items()},
            {n: CategoryEncoder.from_dict(e) for n, e in raw["categorical"].items()},
            {n: SequenceEncoder.from_dict(e) for n, e in raw["sequence"].items()},
            tuple(AttentionGroup(g["name"], tuple(tuple(p) for p in g["pairs"])) for g in raw["attention_groups"]),
            tuple(tuple(p) for p in raw.get("shared", ())),
        )
