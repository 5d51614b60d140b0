"""Amazon product data (2014 release, McAuley et al.) in the DIN authors' protocol.

The folder holds `reviews_<Category>_5.json[.gz]` (JSON lines: reviewerID,
asin, unixReviewTime, ...) and `meta_<Category>.json[.gz]` (one Python dict
literal a line, single-quoted: parsed with `ast.literal_eval`, never `eval`).
Electronics is the paper's benchmark; Books (DIEN's) and the other
categories read the same way.

Samples, as github zhougr1993/DeepInterestNetwork builds them
(utils/1_convert_pd.py, utils/2_remap_id.py, din/build_dataset.py):
  * items without meta are dropped; an item's category is the last element
    of its last category path; items and categories are numbered as the
    authors' remap does (sorted keys), plus one (0 is padding here);
  * each user's reviews in `unixReviewTime` order (ties: file order);
  * for every position i >= 1, a positive (history = the user's items
    before i, candidate item i) and a negative (a random item of the
    catalogue the user never reviewed, drawn from (seed, user, position)
    alone, so that any range of users builds on its own what the whole
    build makes) with the same history, the pair adjacent; the last
    position is test, every earlier one train;
  * features: the candidate item and its category, the history's items and
    their categories: ONE attention group of two pairs, each history
    sharing its query's table (the authors' model); the user for GAUC only.
    Every item and category gets an embedding (min_count 1), as in theirs.
Histories keep the latest `max_hist` items (--max-hist, default 50):
Electronics histories are short (a median of 6 items), a few users' are very
long, and one such user would otherwise widen every batch's tensor.
Validation without peeking: each user's second-to-last position moves from
train to validation; --valid-on-test validates on the test set, as the
authors do. GAUC on these splits is the authors' (every user has one
positive and one negative at each position).
Everything after parsing is numpy group arithmetic: no loop over users.
data/beam/amazon.py builds the same entry as a Beam pipeline, user range by user range.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from core.config import DINConfig
from core.errors import DataError
from data.features import Feature
from data.schema import LABEL, TIME, USER, AttentionGroup
from data.sources.amazon_files import detect, find_files, read_meta, read_reviews
from data.sources.base import SourceBase, beam_build, data_key
from data.sources.history import earlier, run_starts
from data.splits import Splits, encode, time_cuts, time_masks
from data.statistics import fit_encoders

FEATURES = (
    Feature("item", "categorical", min_count=1),
    Feature("category", "categorical", min_count=1),
    Feature("item_history", "sequence", min_count=1, share="item"),
    Feature("category_history", "sequence", min_count=1, share="category"),
)
ATTENTION_GROUPS = (AttentionGroup("history", (("item", "item_history"), ("category", "category_history"))),)
class Catalogue(NamedTuple):
    """The items with meta, numbered as the authors' remap numbers them (sorted
    asins, plus one: 0 is padding), and each one's category (sorted names, plus one)."""

    items: np.ndarray  # [I] asins, sorted
    category: np.ndarray  # [I] int32: item i + 1's category

    @classmethod
    def of(cls, categories: dict[str, str]) -> "Catalogue":
        if not categories:
            raise DataError("no review's item has meta: the reviews and meta files do not match")
        items = np.asarray(sorted(categories), dtype=str)
        names = np.asarray(sorted(set(categories.values())), dtype=str)
        category = np.searchsorted(names, np.asarray([categories[k] for k in items], dtype=str)) + 1
        return cls(items, category.astype(np.int32))

    def number(self, asins: np.ndarray) -> np.ndarray:
        """Item numbers (1-based) of asins that have meta."""
        return (np.searchsorted(self.items, asins) + 1).astype(np.int32)

    def has(self, asins: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(self.items, asins), len(self.items) - 1)
        return self.items[at] == asins


def build_samples(reviews: pd.DataFrame, categories: dict[str, str], max_hist: int, seed: int) -> dict[str, np.ndarray]:
    """Every (user, position >= 1) as a positive and a negative row, unsplit,
    with `position` and `count` (the user's positions) for the split."""
    catalogue = Catalogue.of(categories)
    reviews = reviews[catalogue.has(reviews["item"].to_numpy(dtype=str))]
    user, _ = pd.factorize(reviews["user"], sort=True)  # the authors' remap: sorted reviewer ids
    order = np.arange(len(reviews), dtype=np.int64)  # file order breaks time ties
    return user_samples(user, catalogue.number(reviews["item"].to_numpy(dtype=str)), reviews["time"].to_numpy(),
                        order, catalogue, max_hist, seed)


def user_samples(user: np.ndarray, item: np.ndarray, time: np.ndarray, order: np.ndarray, catalogue: Catalogue,
                 max_hist: int, seed: int) -> dict[str, np.ndarray]:
    """The samples of whole users' reviews: user [R] (their numbers among all
    users), item [R] (numbered), time [R], order [R] (file order). Rows come
    user by user, position by position, each positive before its negative:
    users split into ranges build, range by range, the rows of all at once."""
    sort = np.lexsort((order, time, user))  # by user, then time; ties keep file order
    user, item, time = user[sort].astype(np.int64), item[sort], np.asarray(time, np.int64)[sort]
    start = run_starts(user)
    position = np.arange(len(user)) - start  # [R]
    _, inverse, sizes = np.unique(user, return_inverse=True, return_counts=True)
    counts = sizes[inverse]  # the user's number of reviews
    # History = the user's items at positions < i (time ties included: the
    # authors take the list prefix), so each position is its own "timestamp".
    history = earlier(user, position, np.ones(len(user), bool), max_hist, item)  # [R, H]
    rows = np.repeat(np.flatnonzero(position >= 1), 2)  # each sample twice: positive, then negative
    positive = np.arange(len(rows)) % 2 == 0
    negative = negatives(user[rows], position[rows], item, user, len(catalogue.items), seed)
    candidates = np.where(positive, item[rows], negative)
    hist = history[rows]
    category = catalogue.category
    return {
        USER: user[rows],
        "item": candidates,
        "category": category[candidates - 1],
        "item_history": hist,
        "category_history": np.where(hist > 0, category[np.maximum(hist, 1) - 1], 0),
        LABEL: positive.astype(np.float32),
        TIME: time[rows],
        "position": position[rows],
        "count": counts[rows],
    }


def negatives(user: np.ndarray, position: np.ndarray, reviewed_item: np.ndarray, reviewed_user: np.ndarray,
              n_items: int, seed: int) -> np.ndarray:
    """For each (user, position), an item drawn uniformly from the catalogue
    [1, n_items] that the user never reviewed (reviewed_user/reviewed_item:
    every review of these users). The draw is a function of (seed, user,
    position, attempt) alone, so any range of users draws what the whole does."""
    span = np.int64(n_items + 1)
    reviewed = np.unique(reviewed_user.astype(np.int64) * span + reviewed_item)  # sorted (user, item) keys
    key = _mix(_mix(np.full(len(user), seed, np.uint64)) ^ user.astype(np.uint64))
    key = _mix(key ^ position.astype(np.uint64))  # [N]: one stream per (seed, user, position)
    out = np.zeros(len(user), np.int32)
    redraw, attempt = np.arange(len(user)), 0
    while redraw.size:
        out[redraw] = (_mix(key[redraw] ^ np.uint64(attempt)) % np.uint64(n_items)).astype(np.int32) + 1
        keys = user[redraw].astype(np.int64) * span + out[redraw]
        at = np.minimum(np.searchsorted(reviewed, keys), len(reviewed) - 1)
        redraw, attempt = redraw[reviewed[at] == keys], attempt + 1
    return out


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 whose outputs look uniform
    (the counter-based draw of `negatives`; numpy's uint64 arithmetic wraps)."""
    x = np.asarray(x, np.uint64) + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def split_samples(samples: dict[str, np.ndarray], valid_on_test: bool, fraction: float | None = None
                  ) -> dict[str, dict[str, np.ndarray]]:
    """The last position -> test; the one before -> valid (kept in train with
    valid_on_test). With `fraction` (--split time) the latest floor(f * N) of
    the N positions -> test and as many before them -> valid, by two cut times
    the same for every user (a positive and its negative share their time)."""
    from_end = samples.pop("count") - 1 - samples.pop("position")  # 0 for the user's last position
    test = from_end == 0
    valid = (from_end == 1) & (not valid_on_test)
    if fraction is not None:
        masks = time_masks(samples[TIME], time_cuts(samples[TIME][::2], fraction))  # a position's time: its positive's
        test, valid = masks["test"], masks["valid"] & (not valid_on_test)
    masks = {"train": ~test & ~valid, "valid": test if valid_on_test else valid, "test": test}
    return {name: {k: v[mask] for k, v in samples.items()} for name, mask in masks.items()}


def raw_splits(data_dir: str, config: DINConfig) -> dict[str, dict[str, np.ndarray]]:
    reviews_path, meta_path = find_files(data_dir)
    reviews = read_reviews(reviews_path)
    try:
        samples = build_samples(reviews, read_meta(meta_path, set(pd.unique(reviews["item"]))), config.max_hist,
                                config.seed)
    except DataError as error:
        raise DataError(f"{data_dir}: {error}") from None
    return split_samples(samples, config.valid_on_test, config.holdout_fraction if config.split == "time" else None)


def load_splits(data_dir: str, config: DINConfig) -> Splits:
    splits = raw_splits(data_dir, config)
    if not len(splits["train"][LABEL]):
        raise DataError(f"{data_dir}: no training samples: every user has fewer than 3 reviews of items with meta")
    encoders = fit_encoders(splits["train"], FEATURES, ATTENTION_GROUPS, config.min_count,
                                            config.share_embeddings, config.max_len)
    return Splits(*(encode(splits[name], encoders) for name in ("train", "valid", "test")), encoders)


class Amazon(SourceBase):
    """Amazon reviews + meta (2014 release), in the DIN authors' protocol."""

    name = "amazon"
    built = True
    label_names = ("reviewed next", "not reviewed (a sampled negative)")

    def detect(self, data_dir: str, config: DINConfig) -> bool:
        return detect(data_dir)

    def files(self, data_dir: str, config: DINConfig) -> list[str]:
        return list(find_files(data_dir))

    def options(self, config: DINConfig) -> dict:
        return data_key(config) | {"seed": config.seed}  # negatives are drawn from the seed

    def timed(self, data_dir: str, config: DINConfig) -> bool:
        return True  # unixReviewTime: the authors' split, or --split time

    def load(self, data_dir: str, config: DINConfig, progress: bool = False) -> Splits:
        return load_splits(data_dir, config)

    def raw_splits(self, data_dir: str, config: DINConfig) -> dict[str, dict[str, np.ndarray]]:
        return raw_splits(data_dir, config)

    def features(self, data_dir: str, config: DINConfig) -> tuple[Feature, ...]:
        return FEATURES

    def build_beam(self, data_dir: str, config: DINConfig, folder: str, runner: str, pipeline_args: tuple[str, ...]) -> None:
        beam_build("amazon").build(data_dir, config, folder, runner, pipeline_args)
