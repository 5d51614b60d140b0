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

from core.errors import DataError
from data.features import KINDS, Feature, features
from data.schema import AttentionGroup, CategoricalFeature, FeatureSchema, SequenceFeature

PADDING = 0
ORDERS = ("oldest-first", "latest-first")  # how a sequence's ids are listed; the cut keeps the most recent
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
        return cls.from_counts(term_counts(tokens), min_count)

    @classmethod
    def from_counts(cls, counts: pd.Series, min_count: int) -> "Vocabulary":
        """The terms counted at least min_count times (term_counts' Series)."""
        # Integer ids are terms as their decimal strings.
        return cls(counts.index[counts.to_numpy() >= max(min_count, 1)].astype(str).tolist())

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


def term_counts(tokens: Iterable[str] | np.ndarray) -> pd.Series:
    """Occurrences of each term [terms] (int64), indexed by the term (an integer id
    or a string); 0 (padding) and '' are never terms."""
    tokens = np.asarray(tokens if isinstance(tokens, np.ndarray) else list(tokens))
    if np.issubdtype(tokens.dtype, np.integer):
        tokens = tokens.ravel()
        if len(tokens) and 0 <= tokens.min() and tokens.max() < DENSE_IDS:  # counting beats sorting
            counts = np.bincount(tokens)
            counts[PADDING] = 0
            ids = np.flatnonzero(counts)
            return pd.Series(counts[ids], index=ids, dtype=np.int64)
        terms, counts = np.unique(tokens[tokens != PADDING], return_counts=True)
        return pd.Series(counts, index=terms, dtype=np.int64)
    terms, counts = np.unique(tokens.astype(str), return_counts=True)
    keep = terms != ""
    return pd.Series(counts[keep], index=terms[keep], dtype=np.int64)


def add_counts(total: pd.Series | None, counts: pd.Series) -> pd.Series:
    """Two term_counts' Series summed term by term (integer ids join strings as their decimal strings)."""
    if total is None:
        return counts
    if total.index.dtype != counts.index.dtype:
        total, counts = (c.set_axis(c.index.astype(str)).groupby(level=0).sum() for c in (total, counts))
    return total.add(counts, fill_value=0).astype(np.int64)


def weighted_counts(terms: np.ndarray, weights: np.ndarray) -> pd.Series:
    """term_counts of a column in which terms[i] occurs weights[i] times (terms may repeat)."""
    counts = pd.Series(np.asarray(weights, np.int64)).groupby(np.asarray(terms)).sum()
    none = PADDING if pd.api.types.is_integer_dtype(counts.index) else ""
    return counts[(counts.index != none) & (counts.to_numpy() > 0)].astype(np.int64)


def category_counts(values: np.ndarray | pd.Categorical) -> pd.Series:
    """term_counts of a categorical column; a pd.Categorical is counted by its codes."""
    if isinstance(values, pd.Categorical):
        occurrences = np.bincount(values.codes[values.codes >= 0], minlength=len(values.categories))
        return weighted_counts(np.asarray(values.categories), occurrences)
    return term_counts(values)


def sequence_statistics(values: Sequence[str] | np.ndarray | pd.Categorical, sep: str) -> tuple[pd.Series, np.ndarray]:
    """(term_counts of a sequence column's ids, histogram of its sequences' lengths).

    values: sep-joined strings, a pd.Categorical of them (each distinct
    sequence is split once), or an integer matrix [N, L] right-padded with 0."""
    if isinstance(values, pd.Categorical):
        occurrences = np.bincount(values.codes[values.codes >= 0], minlength=len(values.categories))  # [C]
        rows, _, tokens = split_sequences(np.asarray(values.categories, dtype=object), sep)
        lengths = np.bincount(rows, minlength=len(occurrences))  # [C]
        histogram = np.bincount(lengths, weights=occurrences, minlength=1).astype(np.int64)
        histogram[0] += int((values.codes < 0).sum())  # a missing value is an empty sequence
        return weighted_counts(tokens, occurrences[rows]), histogram
    if isinstance(values, np.ndarray) and values.ndim == 2:
        return term_counts(values), np.bincount((values != PADDING).sum(axis=1), minlength=1)
    rows, _, tokens = split_sequences(values, sep)
    return term_counts(tokens), np.bincount(np.bincount(rows, minlength=len(values)), minlength=1)


def add_histograms(total: np.ndarray | None, histogram: np.ndarray) -> np.ndarray:
    if total is None:
        return histogram
    size = max(len(total), len(histogram))
    return np.pad(total, (0, size - len(total))) + np.pad(histogram, (0, size - len(histogram)))


def percentile_of_histogram(histogram: np.ndarray, q: float) -> float:
    """np.percentile(values, q) (linear interpolation) of the values whose
    histogram is histogram[v] = occurrences of v, without the values."""
    n = int(histogram.sum())
    if n == 0:
        return 0.0
    cumulative = np.cumsum(histogram)
    position = (n - 1) * q / 100
    low = int(np.floor(position))
    at = lambda k: int(np.searchsorted(cumulative, k, side="right"))  # noqa: E731  the k-th smallest value
    return at(low) + (position - low) * (at(min(low + 1, n - 1)) - at(low))


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


class Statistics:
    """What fitting the encoders needs of a training split, summed chunk by chunk:
    each categorical and sequence feature's term counts, each sequence's length
    histogram, each numeric feature's values. Fitted from chunks, the encoders
    are exactly those of the whole split (a split need never be in memory)."""

    def __init__(self, specs: Sequence[Feature]):
        self.specs = tuple(specs)
        self.counts: dict[str, pd.Series] = {}
        self.lengths: dict[str, np.ndarray] = {}
        self.values: dict[str, list[np.ndarray]] = {f.name: [] for f in self.specs if f.kind == "numeric"}

    def add(self, columns: dict[str, np.ndarray]) -> "Statistics":
        """Adds one chunk of training rows (raw columns, as the encoders take them)."""
        for f in self.specs:
            values = columns[f.name]
            if f.kind == "numeric":
                self.values[f.name].append(np.asarray(values, dtype=np.float64))
            elif f.kind == "categorical":
                self.counts[f.name] = add_counts(self.counts.get(f.name), category_counts(values))
            else:
                counts, lengths = sequence_statistics(values, f.sep)
                self.counts[f.name] = add_counts(self.counts.get(f.name), counts)
                self.lengths[f.name] = add_histograms(self.lengths.get(f.name), lengths)
        return self

    def merge(self, other: "Statistics") -> "Statistics":
        """Adds another chunk's statistics (numeric values after this one's: merge in row order)."""
        for name, counts in other.counts.items():
            self.counts[name] = add_counts(self.counts.get(name), counts)
        for name, lengths in other.lengths.items():
            self.lengths[name] = add_histograms(self.lengths.get(name), lengths)
        for name, values in other.values.items():
            self.values[name].extend(values)
        return self

    def fit(
        self, attention_groups: Sequence[AttentionGroup], min_count: int, share_embeddings: bool = False, max_len: int = 0
    ) -> "FeatureEncoders":
        """min_count, max_len: the defaults of features that set none (max_len 0:
        each sequence's longest). A feature's `share`, and with share_embeddings
        each attention pair's history, uses one vocabulary fitted on the summed
        counts of both columns (and so one embedding table)."""
        by_kind = {kind: [f for f in self.specs if f.kind == kind] for kind in KINDS}
        minimum = {f.name: min_count if f.min_count is None else f.min_count for f in self.specs}
        categories = {f.name: CategoryEncoder(Vocabulary.from_counts(self.counts[f.name], minimum[f.name]))
                      for f in by_kind["categorical"]}
        sequences = {
            f.name: SequenceEncoder.from_statistics(self.counts[f.name], self.lengths[f.name], minimum[f.name], f.sep,
                                                    max_len if f.max_len is None else f.max_len, f.name, f.order)
            for f in by_kind["sequence"]
        }
        for group in attention_groups:  # one group's histories are read position by position: one length
            length = max(sequences[h].max_len for h in group.histories)
            for h in group.histories:
                sequences[h] = sequences[h].like(max_len=length)
        shared = tuple((f.name, f.share) for f in self.specs if f.share)
        if share_embeddings:
            shared += tuple((h, q) for g in attention_groups for q, h in g.pairs if (h, q) not in shared)
        for borrower, owner in shared:
            vocabulary = Vocabulary.from_counts(add_counts(self.counts[owner], self.counts[borrower]), minimum[owner])
            for name in (owner, borrower):
                if name in categories:
                    categories[name] = CategoryEncoder(vocabulary)
                else:
                    sequences[name] = sequences[name].like(vocabulary)
        numeric = {
            f.name: NumericEncoder.fit(np.concatenate(self.values[f.name]) if self.values[f.name] else np.zeros(0),
                                       f.name, f.preprocess)
            for f in by_kind["numeric"]
        }
        encoders = FeatureEncoders(numeric, categories, sequences, tuple(attention_groups), shared)
        encoders.schema()  # Fail now, not at model build, on an inconsistent layout.
        return encoders


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
        """Fits every feature on the training `columns` (see Statistics.fit)."""
        return Statistics(specs).add(columns).fit(attention_groups, min_count, share_embeddings, max_len)

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
