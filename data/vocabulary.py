"""Terms and their counts: the vocabulary of a categorical or sequence
feature (terms numbered 1..n, sorted when fitted, new terms appended when a
continued run grows it; 0 is padding, n + 1 unknown), the
counting helpers the fitting sums chunk by chunk, and the splitting of
sep-joined sequences into tokens."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

PADDING = 0
DENSE_IDS = 1 << 26  # integer ids below this are counted and looked up in dense tables


class Vocabulary:
    """Terms numbered 1..n in the order given; 0 is padding and n + 1 unknown.
    A fitted vocabulary's terms are sorted; a grown one keeps every term of the
    one it grew from at its number and appends the new ones."""

    def __init__(self, terms: Sequence[str]):
        self.terms = np.asarray(terms, dtype=str).reshape(-1)
        self._order = np.argsort(self.terms, kind="stable")  # lookups search the sorted terms
        self._sorted = self.terms[self._order]
        if len(np.unique(self.terms)) != len(self.terms):
            raise ValueError("vocabulary terms must be unique")

    def grown(self, terms: Sequence[str]) -> "Vocabulary":
        """This vocabulary and, appended in the order given, the `terms` it lacks
        (a vocabulary fitted on newer data: its terms, sorted)."""
        terms = np.asarray(terms, dtype=str).reshape(-1)
        return Vocabulary(np.concatenate([self.terms, terms[~np.isin(terms, self.terms)]]))

    @classmethod
    def fit(cls, tokens: Iterable[str], min_count: int) -> "Vocabulary":
        return cls.from_counts(term_counts(tokens), min_count)

    @classmethod
    def from_counts(cls, counts: pd.Series, min_count: int) -> "Vocabulary":
        """The terms counted at least min_count times (term_counts' Series)."""
        # Integer ids are terms as their decimal strings.
        return cls(sorted(counts.index[counts.to_numpy() >= max(min_count, 1)].astype(str).tolist()))

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
        position = np.minimum(np.searchsorted(self._sorted, tokens), len(self.terms) - 1)
        found = self._sorted[position] == tokens
        return np.where(found, self._order[position] + 1, self.unknown).astype(np.int32)


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
