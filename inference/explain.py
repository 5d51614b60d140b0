"""One user's attention, drawn: the paper's picture of what DIN looks at.

For a user of a data folder, the history of their latest positive sample
(the item they engaged with next) is scored against a few candidates: that
item, an item they rated low, and a random item they never saw (seeded).
Each candidate keeps the user's features and history and brings its own
item columns (those that are a function of the item, e.g. `genres`), so the
panels differ only by the candidate. Items are named by title where the data
has titles (movies.dat / movies.csv, or the tutorial's `title` column).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from data.datasets import raw_splits
from data.errors import DataError
from data import grouplens, tutorial
from data.rows import history_ids
from data.schema import LABEL, USER
from inference.model import TrainedModel, probabilities
from training import run_dir


def item_titles(data_dir: str) -> dict[str, str]:
    """Item id (as a string) -> title, where the folder has titles."""
    if tutorial.detect(data_dir):
        frames = [pd.read_csv(os.path.join(data_dir, f"{name}.csv"), dtype=str, keep_default_na=False,
                              usecols=lambda c: c in ("movieId", "title")) for name in ("train", "test")]
        frame = pd.concat(frames)
        return dict(zip(frame["movieId"], frame["title"])) if "title" in frame else {}
    if not grouplens.detect(data_dir):
        return {}
    movies = grouplens.read_raw(data_dir).movies
    return dict(zip(movies["movie"].astype(str), movies["title"].astype(str)))


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    names = [name for name in parts[0] if all(name in part for part in parts)]
    return {name: np.concatenate([part[name] for part in parts]) for name in names}


def _item_columns(columns: dict[str, np.ndarray], item: str, fixed: set[str]) -> list[str]:
    """Columns that are a function of the item (one value per item in the data)."""
    out = []
    for name, values in columns.items():
        if name in fixed or values.ndim != 1:
            continue
        frame = pd.DataFrame({"item": columns[item].astype(str), "value": values.astype(str)})
        if frame.groupby("item")["value"].nunique().max() == 1:
            out.append(name)
    return out


def candidates(model: TrainedModel, data_dir: str, user: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Rows to score (the user's base row with each candidate's item columns) and their panel names."""
    splits = raw_splits(data_dir, model.config)
    columns = _concat([splits[name] for name in ("train", "valid", "test") if name in splits])
    users = columns[USER].astype(str)
    mine = np.flatnonzero(users == str(user))
    if not mine.size:
        examples = ", ".join(pd.unique(users)[:5])
        raise DataError(f"--explain {user}: no such user in {data_dir} (users are e.g. {examples})")
    group = model.schema.attention_groups[0]
    item, history = group.queries[0], group.histories[0]
    items = columns[item].astype(str)
    positive = mine[columns[LABEL][mine] == 1]
    base = int(positive[-1] if positive.size else mine[-1])  # the latest sample the user engaged with
    # The user's side stays: histories, user and label; the candidate brings its item columns.
    fixed = {USER, LABEL, item} | set(model.schema.history_features)
    movable = [item] + _item_columns(columns, item, fixed)
    donors = [(base, "engaged with next" if columns[LABEL][base] == 1 else "their latest sample")]
    low = [i for i in mine[::-1] if columns[LABEL][i] == 0 and items[i] != items[base]]
    if low:
        donors.append((int(low[0]), "label 0 (e.g. rated low)"))
    encoder = model.encoders.sequence[history]
    seen = set(items[mine]) | set(history_ids(columns[history][base : base + 1], encoder.sep, encoder.max_len)[2])
    unseen = np.asarray(sorted(set(items) - seen))
    if unseen.size:
        choice = np.random.default_rng(model.config.seed).choice(unseen)
        donors.append((int(np.flatnonzero(items == choice)[0]), "never seen (random)"))
    rows = {name: np.repeat(values[base : base + 1], len(donors), axis=0) for name, values in columns.items()}
    for k, (donor, _) in enumerate(donors):
        for name in movable:
            rows[name][k] = columns[name][donor]
    return rows, [why for _, why in donors]


def explain(model: TrainedModel, data_dir: str, user: str, out: str) -> pd.DataFrame:
    """Draws `out` (PNG) and returns the weights: one line per (candidate, history position)."""
    rows, reasons = candidates(model, data_dir, user)
    checked, inputs = model.encode(rows, source=data_dir)
    logits, weights = model.forward(inputs)
    group = model.schema.attention_groups[0]
    frame = model.attention_frames(checked, weights)[group.name]
    titles = item_titles(data_dir)
    item, history = group.queries[0], group.histories[0]
    name = lambda i: titles.get(str(i), str(i))  # noqa: E731
    frame["candidate"] = [name(rows[item][r]) for r in frame["row"]]
    frame["item"] = [name(i) for i in frame[history]]
    draw(frame, [name(rows[item][k]) for k in range(len(reasons))], reasons, probabilities(logits), user, out)
    return frame


def draw(frame: pd.DataFrame, names: list[str], reasons: list[str], probability: np.ndarray, user: str, out: str) -> None:
    from matplotlib.figure import Figure

    history = frame[frame["row"] == 0].sort_values("position")
    labels = [f"{p + 1}. {text[:40]}" for p, text in zip(history["position"], history["item"])]
    height = max(3.0, 0.28 * len(labels) + 1.6)
    figure = Figure(figsize=(4.2 * len(names) + 2.5, height), layout="constrained")
    panels = figure.subplots(1, len(names), sharey=True, squeeze=False)[0]
    top = max(float(frame["weight"].max()), 1e-9)
    for k, axes in enumerate(panels):
        mine = frame[frame["row"] == k].sort_values("position")
        axes.barh(np.arange(len(mine)), mine["weight"], color=f"C{k}")
        axes.set_xlim(0, top * 1.1)
        axes.set_title(f"{reasons[k]}:\n{names[k][:45]}\np = {probability[k]:.3f}", fontsize=9)
        axes.set_xlabel("attention weight")
        axes.grid(axis="x", alpha=0.3)
    panels[0].set_yticks(np.arange(len(labels)), labels, fontsize=8)
    panels[0].invert_yaxis()  # oldest history item on top
    figure.suptitle(f"user {user}: attention over their history (oldest first) for each candidate")
    run_dir.write_file(out, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
