"""How a source describes its features: what each column is and how it is encoded.

A `Feature` is one input column: its kind (numeric, categorical, sequence)
and its encoding options; unset options take the run's (config.min_count,
config.max_len). Every source (data/sources.py) declares its features this
way, the dataset file (data/dataset_file.py) spells them in TOML, and
`data.statistics.fit_encoders` fits them.
"""

from __future__ import annotations

import dataclasses

KINDS = ("numeric", "categorical", "sequence")
PREPROCESS = ("quantile", "standard", "none")


@dataclasses.dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # one of KINDS
    sep: str = "|"  # sequence: the separator of its ids
    min_count: int | None = None  # categorical, sequence: None = config.min_count
    max_len: int | None = None  # sequence: None = config.max_len (0: the longest training sequence)
    preprocess: str = "quantile"  # numeric: quantile (uniform [0, 1]), standard (z-score) or none
    share: str | None = None  # categorical, sequence: use this feature's vocabulary and embedding table
    order: str = "oldest-first"  # sequence: how its ids are listed (a cut keeps the most recent: encoders.ORDERS)


def features(numeric=(), categorical=(), sequence=(), sep: str = "|") -> tuple[Feature, ...]:
    """Features by kind with default options, in the order numeric, categorical, sequence."""
    return (
        *(Feature(name, "numeric") for name in numeric),
        *(Feature(name, "categorical") for name in categorical),
        *(Feature(name, "sequence", sep=sep) for name in sequence),
    )
