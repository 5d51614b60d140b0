"""What fitting the encoders needs of a training split, summed chunk by chunk
(Statistics), and the encoders fitted from it (fit_encoders): a split need
never be in memory at once."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from data.encoders import CategoryEncoder, FeatureEncoders, NumericEncoder, SequenceEncoder
from data.features import KINDS, Feature
from data.schema import AttentionGroup
from data.vocabulary import Vocabulary, add_counts, add_histograms, category_counts, sequence_statistics


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


def fit_encoders(columns: dict[str, np.ndarray], specs: Sequence[Feature], attention_groups: Sequence[AttentionGroup],
                 min_count: int, share_embeddings: bool = False, max_len: int = 0) -> FeatureEncoders:
    """Every feature's encoder fitted on the training `columns` at once (see Statistics.fit)."""
    return Statistics(specs).add(columns).fit(attention_groups, min_count, share_embeddings, max_len)
