"""Synthetic Amazon product data (2014 release layout), any size, deterministic.

reviews_<Category>_5.json.gz: one JSON object a line with the release's fields
(reviewerID, asin, reviewerName, helpful, reviewText, overall, summary,
unixReviewTime, reviewTime), grouped by item as the real file is; review
times are whole days, so a user's reviews tie often, as in the real data.
meta_<Category>.json.gz: one Python dict literal a line (single quotes), with
`categories` a list of category paths; the last path's last element is the
item's category. Users' review counts follow a long tail (most short, a few
very long), as Electronics' do.
"""

from __future__ import annotations

import gzip
import json
import os

import numpy as np

DAY = 86_400


def make_reviews(users: int, items: int, reviews: int, seed: int = 0) -> dict[str, np.ndarray]:
    """About `reviews` (user, item, time) rows, every user >= 5 reviews of distinct items."""
    rng = np.random.default_rng(seed)
    weight = rng.zipf(1.5, users).clip(1, 10_000).astype(np.float64)
    counts = np.minimum(5 + rng.multinomial(max(reviews - 5 * users, 0), weight / weight.sum()), items)
    user = np.repeat(np.arange(users), counts)
    popularity = rng.zipf(1.3, items).astype(np.float64)
    popularity /= popularity.sum()
    # Distinct items per user: a prime stride (7919) from a popularity-drawn start.
    start = rng.choice(items, size=users, p=popularity)[user]
    rank = np.arange(len(user)) - np.repeat(np.cumsum(counts) - counts, counts)
    item = (start + rank * 7919) % items
    time = 1_300_000_000 + DAY * (rng.integers(0, 2000, users)[user] + rank * rng.integers(0, 3, len(user)))
    return {"user": user, "item": item, "time": time.astype(np.int64)}


def asin(i) -> str:
    return f"B{i:09d}"


def write_amazon(folder: str, reviews: dict[str, np.ndarray], items: int, category: str = "Electronics",
                 with_meta=None, seed: int = 0) -> str:
    """Writes both files; with_meta: the items that get a meta line (default: all)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    order = np.lexsort((reviews["user"], reviews["item"]))  # the real file is sorted by item
    path = os.path.join(folder, f"reviews_{category}_5.json.gz")
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
        for k in order:
            u, i, t = int(reviews["user"][k]), int(reviews["item"][k]), int(reviews["time"][k])
            f.write(json.dumps({"reviewerID": f"A{u:08d}X", "asin": asin(i), "reviewerName": "r", "helpful": [0, 0],
                                "reviewText": "ok", "overall": float(1 + (u + i) % 5), "summary": "s",
                                "unixReviewTime": t, "reviewTime": "01 1, 2013"}) + "\n")
    leaves = [f"Leaf {c}" for c in range(max(2, items // 50))]
    keep = range(items) if with_meta is None else with_meta
    with gzip.open(os.path.join(folder, f"meta_{category}.json.gz"), "wt", encoding="utf-8", compresslevel=1) as f:
        for i in keep:
            paths = [["Electronics", "Accessories", leaves[int(rng.integers(len(leaves)))]]]
            if i % 3 == 0:  # several paths: the LAST path's last element counts
                paths.insert(0, ["Electronics", "Other", "Decoy"])
            record = {"asin": asin(i), "title": f"Item's {i}", "price": 9.99, "related": {"also_bought": [asin(i + 1)]},
                      "categories": paths}
            f.write(repr(record) + "\n")
    return folder
