"""Any CSV, described by a dataset file (TOML): the source for your own data.

    label = "clk"                      # 0/1 column
    user = "userid"                    # optional: GAUC, and the validation hold-out
    time = "time_stamp"                # optional: each row's time (seconds, or a date and time): --split time,
                                       # and the rows a continued run trains on (--continue-from)
    [files]                            # relative to the data folder; .csv or .csv.gz
    train = "train.csv"
    valid = "valid.csv"                # optional: else a seeded share of training users
    test = "test.csv"
    [features]                         # in this order; kind: numeric | categorical | sequence
    price = { kind = "numeric", preprocess = "standard" }   # quantile (default) | standard | none
    adgroup_id = { kind = "categorical", min_count = 1 }
    click_sequence = { kind = "sequence", sep = "^", max_len = 50, share = "adgroup_id" }
    # order = "latest-first" for a sequence listed newest id first (default oldest-first):
    # a sequence longer than max_len keeps its most recent ids, in training and scoring alike
    [attention]                        # group name -> (query, history) pairs
    clicks = [["adgroup_id", "click_sequence"]]

A folder holding `dataset.toml` is read through it; `--dataset FILE` names a
file kept elsewhere. Empty values follow the tutorial's rules: an empty
number is imputed with the training mean, an empty id is unknown, an empty
sequence is all padding. Options left out take the run's (`--min-count`,
`--max-len`). A mistake in the file is one line naming the file, the key and
the fix; a bad value in a CSV names the file, line and column.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib

from core.errors import DataError
from data.encoders import ORDERS
from data.features import KINDS, PREPROCESS, Feature
from data.schema import RESERVED, AttentionGroup

SPLITS = ("train", "valid", "test")
OPTIONS = {"kind", "sep", "min_count", "max_len", "preprocess", "share", "order"}


@dataclasses.dataclass(frozen=True)
class Layout:
    """A parsed dataset file."""

    path: str  # the file, for messages
    label: str
    user: str | None
    files: dict[str, str]  # split -> file name, relative to the data folder
    features: tuple[Feature, ...]
    attention_groups: tuple[AttentionGroup, ...]
    time: str | None = None  # each row's time, integer seconds

    @property
    def columns(self) -> tuple[str, ...]:
        """Every CSV column the layout reads."""
        names = (*([self.user] if self.user else []), *(f.name for f in self.features),
                 *([self.time] if self.time else []), self.label)
        return tuple(dict.fromkeys(names))  # the user column may be a feature too


def read_layout(path: str) -> Layout:
    """Parses and checks a dataset file; every mistake names the file and the key."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such dataset file")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid TOML ({error})") from None

    def fail(key: str, why: str) -> DataError:
        return DataError(f"{path}, key {key!r}: {why}")

    unknown = sorted(set(raw) - {"label", "user", "time", "files", "features", "attention"})
    if unknown:
        raise fail(unknown[0], "unknown key; a dataset file has label, user, time, [files], [features] and [attention]")
    for key in ("label", "files", "features"):
        if key not in raw:
            raise fail(key, "missing; see data/sources/dataset_layout.py or docs/data.md for the layout")
    for key in ("label", "user", "time"):
        if key in raw and not isinstance(raw[key], str):
            raise fail(key, "must be a column name (a string)")
    files = raw["files"]
    if not isinstance(files, dict) or "train" not in files or "test" not in files:
        raise fail("files", "needs train and test (and optionally valid) file names")
    for split, name in files.items():
        if split not in SPLITS or not isinstance(name, str):
            raise fail(f"files.{split}", f"expected one of {SPLITS} naming a CSV file")
    if not isinstance(raw["features"], dict) or not raw["features"]:
        raise fail("features", 'lists no feature; add one line per input column, e.g. item = { kind = "categorical" }')
    features = []
    for name, options in raw["features"].items():
        key = f"features.{name}"
        if not isinstance(options, dict):
            raise fail(key, 'expected a table, e.g. { kind = "categorical" }')
        extra = sorted(set(options) - OPTIONS)
        if extra:
            raise fail(f"{key}.{extra[0]}", f"unknown option; a feature takes {sorted(OPTIONS)}")
        kind = options.get("kind")
        if kind not in KINDS:
            raise fail(f"{key}.kind", f"{kind!r} is not a kind; use one of {KINDS}")
        if name in RESERVED or name == raw["label"]:
            raise fail(key, f"is the label column (or one of the reserved names {RESERVED}); it cannot be a feature")
        for option in ("min_count", "max_len"):
            if option in options and (not isinstance(options[option], int) or options[option] < 0):
                raise fail(f"{key}.{option}", "must be an integer >= 0")
        if options.get("preprocess", "quantile") not in PREPROCESS:
            raise fail(f"{key}.preprocess", f"use one of {PREPROCESS}")
        if "sep" in options and (not isinstance(options["sep"], str) or not options["sep"]):
            raise fail(f"{key}.sep", "must be a non-empty string")
        if options.get("order", ORDERS[0]) not in ORDERS or ("order" in options and kind != "sequence"):
            raise fail(f"{key}.order", f"a sequence's order is one of {ORDERS}")
        features.append(Feature(name, kind, options.get("sep", "|"), options.get("min_count"), options.get("max_len"),
                                options.get("preprocess", "quantile"), options.get("share"),
                                options.get("order", ORDERS[0])))
    by_name = {f.name: f for f in features}
    for feature in features:
        if feature.share is None:
            continue
        key = f"features.{feature.name}.share"
        owner = by_name.get(feature.share)
        if owner is None or owner.kind == "numeric" or feature.kind == "numeric":
            raise fail(key, f"{feature.share!r} is no categorical or sequence feature of this file")
        chain = [feature.name]
        while by_name[chain[-1]].share is not None and len(chain) <= len(features):
            chain.append(by_name[chain[-1]].share)
            if chain[-1] in chain[:-1]:
                raise fail(key, f"the shares form a cycle ({' -> '.join(chain)}); let one feature own "
                           "the vocabulary (no share) and the others share it")
        if owner.share is not None:
            raise fail(key, f"{owner.name!r} itself shares {owner.share!r}; share {owner.share!r} directly")
    groups = []
    for name, pairs in raw.get("attention", {}).items():
        key = f"attention.{name}"
        if not isinstance(pairs, list) or not pairs or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise fail(key, 'expected a list of [query, history] pairs, e.g. [["item", "item_history"]]')
        for query, history in pairs:
            if by_name.get(query) is None or by_name[query].kind != "categorical":
                raise fail(key, f"query {query!r} is not a categorical feature of this file")
            if by_name.get(history) is None or by_name[history].kind != "sequence":
                raise fail(key, f"history {history!r} is not a sequence feature of this file")
        groups.append(AttentionGroup(name, tuple(tuple(p) for p in pairs)))
    return Layout(path, raw["label"], raw.get("user"), dict(files), tuple(features), tuple(groups), raw.get("time"))
