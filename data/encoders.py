"""Feature encoders fitted on training data only, saved to and loaded from JSON.

numeric      mean imputation, then scikit-learn's QuantileTransformer (its
             defaults: 1000 quantiles, uniform output in [0, 1]), or a
             z-score, or nothing (data/features.py: `preprocess`).
categorical  vocabulary = terms seen >= min_count times in train, sorted,
             numbered 1..n; 0 = padding, n + 1 = unknown (unseen terms).
sequence     '|'-separated terms, same vocabulary rule; max_len = the longest
             training sequence (or config.max_len); longer ones are cut, shorter ones right-padded
             with 0. An empty sequence is all padding.

Inputs are already validated strings and floats (see the sources' readers);
outputs are numpy arrays: float32 [N] for numeric, int32 [N] for categorical,
int32 [N, T] for sequences.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn.preprocessing import QuantileTransformer

from data.errors import DataError
from data.features import KINDS, Feature, features
from data.schema import AttentionGroup, CategoricalFeature, FeatureSchema, SequenceFeature

PADDING = 0
DENSE_IDS = 1 << 26  # integer ids below this are counted and looked up in dense tables
log = logging.getLogger("din")


class Vocabulary:
    """Sorted terms numbered 1..n; 0 is padding and n + 1 unknown."""

    def __init__(self, terms: Sequence[str]):
        self.terms = np.asarray(sorted(terms), dtype=str)
        if len(np.unique(self.terms)) != len(self.terms):
            raise ValueError("vocabulary terms must be unique")

    @classmethod
    def fit(cls, tokens: Iterable[str], min_count: int) -> "Vocabulary":
        tokens = np.asarray(tokens if isinstance(tokens, np.ndarray) else list(tokens))
        if np.issubdtype(tokens.dtype, np.integer):
            # Integer ids (0 = none) count as their decimal strings.
            if len(tokens) and 0 <= tokens.min() and tokens.max() < DENSE_IDS:  # counting beats sorting
                counts = np.bincount(tokens.ravel())
                counts[PADDING] = 0
                terms = np.flatnonzero(counts >= max(min_count, 1))
            else:
                terms, counts = np.unique(tokens[tokens != PADDING], return_counts=True)
                terms = terms[counts >= min_count]
            return cls(terms.astype(str).tolist())
        terms, counts = np.unique(tokens.astype(str), return_counts=True)
        return cls([t for t in terms[counts >= min_count].tolist() if t])  # '' is never a term

    def _encode_integers(self, ids: np.ndarray) -> np.ndarray:
        numeric = np.array([int(t) if t.lstrip("-").isdigit() else np.iinfo(np.int64).min for t in self.terms], dtype=np.int64)
        if ids.size and 0 <= ids.min() and ids.max() < DENSE_IDS:  # a lookup table: one gather, no search
            table = np.full(int(max(ids.max(), numeric.max(initial=0))) + 1, self.unknown, dtype=np.int32)
            real = (numeric >= 0) & (numeric < len(table))
            table[numeric[real]] = np.flatnonzero(real) + 1
            table[PADDING] = PADDING
            return table[ids]
        order = np.argsort(numeric)  # ids sort as numbers; their codes follow the terms' string order
        ordered = numeric[order]
        position = np.minimum(np.searchsorted(ordered, ids), max(len(ordered) - 1, 0))
        found = (ordered[position] == ids) if len(ordered) else np.zeros(ids.shape, dtype=bool)
        codes = np.where(found, order[position] + 1, self.unknown)
        return np.where(ids == PADDING, PADDING, codes).astype(np.int32)

    @property
    def unknown(self) -> int:
        return len(self.terms) + 1

    @property
    def size(self) -> int:
        """Rows of the embedding table: padding + terms + unknown."""
        return len(self.terms) + 2

    def encode(self, tokens: np.ndarray) -> np.ndarray:
        """Vectorised term -> id lookup (binary search in the sorted terms).

        Integer tokens are looked up as their decimal strings, 0 staying padding.
        """
        tokens = np.asarray(tokens)
        if np.issubdtype(tokens.dtype, np.integer):
            return self._encode_integers(tokens)
        tokens = tokens.astype(str)
        if len(self.terms) == 0:
            return np.full(tokens.shape, self.unknown, dtype=np.int32)
        position = np.searchsorted(self.terms, tokens)
        found = self.terms[np.minimum(position, len(self.terms) - 1)] == tokens
        return np.where(found, position + 1, self.unknown).astype(np.int32)


class NumericEncoder:
    """Mean imputation, then a uniform quantile transform (the default), a
    z-score (`standard`) or nothing (`none`)."""

    def __init__(self, mean: float, transformer: QuantileTransformer | None, kind: str = "quantile", std: float = 1.0):
        self.mean = float(mean)
        self.transformer = transformer
        self.kind = kind
        self.std = float(std)

    @classmethod
    def fit(cls, values: np.ndarray, name: str = "", kind: str = "quantile") -> "NumericEncoder":
        values = np.asarray(values, dtype=np.float64)
        if np.isnan(values).all():
            raise DataError(f"column {name!r}: every training value is missing; nothing to impute from")
        mean = float(np.nanmean(values))
        imputed = np.where(np.isnan(values), mean, values)
        if kind == "standard":
            return cls(mean, None, kind, float(np.std(imputed)) or 1.0)  # a constant column stays finite
        if kind == "none":
            return cls(mean, None, kind)
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
        if self.kind == "standard":
            return ((imputed - self.mean) / self.std).astype(np.float32)
        if self.kind == "none":
            return imputed.astype(np.float32)
        return self.transformer.transform(imputed.reshape(-1, 1))[:, 0].astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        if self.kind != "quantile":
            return {"kind": self.kind, "mean": self.mean, "std": self.std}
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
        return cls(Vocabulary.fit(values, min_count))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return self.vocabulary.encode(values)  # [N]

    def to_dict(self) -> dict[str, Any]:
        return {"terms": self.vocabulary.terms.tolist()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "CategoryEncoder":
        return cls(Vocabulary(raw["terms"]))


def split_sequences(values: Sequence[str], sep: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits '|'-joined sequences into (row, position, token) arrays.

    Empty strings are empty sequences. Vectorised with pandas so that a
    million rows take seconds.
    """
    series = pd.Series(np.asarray(values, dtype=object), dtype=object)
    nonempty = series[series.str.len() > 0]
    tokens = nonempty.str.split(sep, regex=False).explode()
    rows = tokens.index.to_numpy(dtype=np.int64)
    positions = tokens.groupby(level=0).cumcount().to_numpy(dtype=np.int64)
    return rows, positions, tokens.to_numpy(dtype=str)


class SequenceEncoder:
    def __init__(self, vocabulary: Vocabulary, max_len: int, sep: str = "|"):
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.vocabulary = vocabulary
        self.max_len = int(max_len)
        self.sep = sep

    @classmethod
    def fit(
        cls, values: Sequence[str] | np.ndarray, min_count: int, sep: str = "|", max_len: int = 0, name: str = ""
    ) -> "SequenceEncoder":
        """values: '|'-joined strings, or an integer matrix [N, L] right-padded with 0.

        max_len: cut sequences to at most this many ids (0: the longest training
        sequence, at least one slot so that shapes stay valid when every
        training sequence is empty). A longest sequence far beyond the rest is
        logged: one outlier row would otherwise widen every row's tensor.
        """
        if isinstance(values, np.ndarray) and values.ndim == 2:
            lengths = (values != PADDING).sum(axis=1)
            tokens = values.ravel()
        else:
            rows, _, tokens = split_sequences(values, sep)
            lengths = np.bincount(rows, minlength=len(values))
        longest = max(int(lengths.max(initial=0)), 1)
        typical = int(np.percentile(lengths, 99)) if len(lengths) else 0
        if not max_len and longest > max(2 * typical, typical + 10):
            log.warning(
                "%s: max_len %d comes from %d training row(s); 99%% of rows have <= %d ids "
                "(--max-len N cuts sequences to N ids)", name or "sequence", longest, int((lengths == longest).sum()),
                typical,
            )
        return cls(Vocabulary.fit(tokens, min_count), min(max_len, longest) if max_len else longest, sep)

    def transform(self, values: Sequence[str] | np.ndarray) -> np.ndarray:
        if isinstance(values, np.ndarray) and values.ndim == 2:
            cut = values[:, : self.max_len]  # right-padded, so cutting keeps the first max_len
            out = np.zeros((len(values), self.max_len), dtype=np.int32)
            out[:, : cut.shape[1]] = self.vocabulary.encode(cut)
            return out
        rows, positions, tokens = split_sequences(values, self.sep)
        keep = positions < self.max_len  # Longer sequences are cut to max_len.
        out = np.zeros((len(values), self.max_len), dtype=np.int32)  # [N, T], 0 = padding
        out[rows[keep], positions[keep]] = self.vocabulary.encode(tokens[keep])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"terms": self.vocabulary.terms.tolist(), "max_len": self.max_len, "sep": self.sep}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "SequenceEncoder":
        return cls(Vocabulary(raw["terms"]), raw["max_len"], raw["sep"])


def _terms(values: np.ndarray, categories: dict, sequences: dict, name: str) -> np.ndarray:
    """Every term of a column: a categorical column's values ('' is never a term),
    a sequence's ids (an integer matrix without its 0s, or the split strings)."""
    if name in categories:
        return np.asarray(values)
    if isinstance(values, np.ndarray) and np.issubdtype(values.dtype, np.integer):
        flat = values.ravel()
        return flat[flat != PADDING]
    return split_sequences(values, sequences[name].sep)[2]


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

    @classmethod
    def fit(
        cls,
        columns: dict[str, np.ndarray],
        numeric: Sequence[str],
        categorical: Sequence[str],
        sequence: Sequence[str],
        attention_groups: Sequence[AttentionGroup],
        min_count: int,
        share_embeddings: bool = False,
        max_len: int = 0,
    ) -> "FeatureEncoders":
        """Features by kind, each with the default options (see `fit_features`)."""
        return cls.fit_features(columns, features(numeric, categorical, sequence), attention_groups, min_count,
                                share_embeddings, max_len)

    @classmethod
    def fit_features(
        cls,
        columns: dict[str, np.ndarray],
        specs: Sequence[Feature],
        attention_groups: Sequence[AttentionGroup],
        min_count: int,
        share_embeddings: bool = False,
        max_len: int = 0,
    ) -> "FeatureEncoders":
        """Fits every feature on the training `columns`. min_count, max_len: the
        defaults of features that set none (max_len 0: each sequence's longest).
        A feature's `share`, and with share_embeddings each attention pair's
        history, uses one vocabulary fitted on the union of both columns' terms
        (and so one embedding table)."""
        by_kind = {kind: [f for f in specs if f.kind == kind] for kind in KINDS}
        count = lambda f: min_count if f.min_count is None else f.min_count  # noqa: E731
        categories = {f.name: CategoryEncoder.fit(columns[f.name], count(f)) for f in by_kind["categorical"]}
        sequences = {
            f.name: SequenceEncoder.fit(columns[f.name], count(f), f.sep, max_len if f.max_len is None else f.max_len, f.name)
            for f in by_kind["sequence"]
        }
        for group in attention_groups:  # one group's histories are read position by position: one length
            length = max(sequences[h].max_len for h in group.histories)
            for h in group.histories:
                sequences[h] = SequenceEncoder(sequences[h].vocabulary, length, sequences[h].sep)
        shared = tuple((f.name, f.share) for f in specs if f.share)
        if share_embeddings:
            shared += tuple((h, q) for g in attention_groups for q, h in g.pairs if (h, q) not in shared)
        counts = {f.name: count(f) for f in specs}
        for borrower, owner in shared:
            union = np.concatenate([_terms(columns[name], categories, sequences, name) for name in (owner, borrower)])
            vocabulary = Vocabulary.fit(union, counts[owner])
            for name in (owner, borrower):
                if name in categories:
                    categories[name] = CategoryEncoder(vocabulary)
                else:
                    sequences[name] = SequenceEncoder(vocabulary, sequences[name].max_len, sequences[name].sep)
        encoders = cls(
            {f.name: NumericEncoder.fit(columns[f.name], f.name, f.preprocess) for f in by_kind["numeric"]},
            categories,
            sequences,
            tuple(attention_groups),
            shared,
        )
        encoders.schema()  # Fail now, not at model build, on an inconsistent layout.
        return encoders

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
