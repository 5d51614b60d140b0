"""Data with a planted signal only attention can read whole: whether the
candidate is one of the items in the history.

A positive row's candidate is one item of its history (the planted item, at a
random position); a negative row's candidate is an item the history does not
hold. A model that pools the history (the paper's BaseModel) sees the
history's mean, from which membership of one item among up to T can be read
only in part; an attention unit that scores (candidate, item) pairs can weigh
the matching item alone. Written as a dataset file (data/sources/dataset_file.py),
so it trains through the same loop, encoders and backends as any data.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

DATASET = """label = "label"
user = "user"

[files]
train = "train.csv"
valid = "valid.csv"
test = "test.csv"

[features]
item = {{ kind = "categorical", min_count = 1 }}
history = {{ kind = "sequence", sep = " ", max_len = {max_len}, share = "item" }}

[attention]
history = [["item", "history"]]
"""


def make_rows(n: int, items: int, max_len: int, effect: float, popularity: np.ndarray,
              rng: np.random.Generator) -> pd.DataFrame:
    """n rows: a user, a history of 5..max_len distinct items and a candidate,
    which is one of the history's items (the planted position) in half of the
    rows. The label is drawn with log-odds popularity[candidate] +- effect, +
    where the candidate is in the history: a signal the candidate's embedding
    reads alone (popularity) beside one only attention reads whole (effect)."""
    lengths = rng.integers(5, max_len + 1, n)
    inside = rng.random(n) < 0.5
    histories, candidates, planted = [], [], []
    for length, is_inside in zip(lengths, inside):
        drawn = rng.choice(np.arange(1, items + 1), length + 1, replace=False)  # distinct items
        history, other = drawn[:length], drawn[length]
        position = int(rng.integers(length))
        histories.append(" ".join(map(str, history)))
        candidates.append(int(history[position]) if is_inside else int(other))
        planted.append(position if is_inside else -1)
    logits = popularity[np.asarray(candidates)] + np.where(inside, effect, -effect)
    labels = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(int)
    return pd.DataFrame({"user": rng.integers(1, n // 4 + 2, n), "item": candidates, "history": histories,
                         "label": labels, "planted": planted})


def write(folder: str, train: int = 12800, test: int = 2000, items: int = 300, max_len: int = 20,
          effect: float = 1.0, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Writes train.csv, valid.csv, test.csv and dataset.toml into `folder`; returns the frames."""
    rng = np.random.default_rng(seed)
    popularity = np.concatenate([[0.0], rng.normal(0.0, 1.5, items)])  # [items + 1], by item id
    os.makedirs(folder, exist_ok=True)
    frames = {split: make_rows(n, items, max_len, effect, popularity, rng)
              for split, n in (("train", train), ("valid", test), ("test", test))}
    for split, frame in frames.items():
        frame.drop(columns="planted").to_csv(os.path.join(folder, f"{split}.csv"), index=False)
    with open(os.path.join(folder, "dataset.toml"), "w", encoding="utf-8") as f:
        f.write(DATASET.format(max_len=max_len))
    return frames
