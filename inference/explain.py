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

import textwrap

import numpy as np
import pandas as pd

from core.config import DINConfig
from core.errors import DataError
from data.datasets import detect, raw_splits
from data.rows import history_ids
from data.schema import LABEL, USER
from inference.model import TrainedModel, probabilities
from training import outputs, run_dir


def item_titles(data_dir: str, config: DINConfig) -> dict[str, str]:
    """Item id (as a string) -> title, where the folder has titles."""
    return detect(data_dir, config).titles(data_dir)


def label_names(data_dir: str, config: DINConfig) -> tuple[str, str]:
    """What label 1 and label 0 mean in this folder's data, for the panels' names."""
    return detect(data_dir, config).label_names


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
    if not model.schema.attention_groups:
        raise DataError(f"--explain {user}: the run has no attention group, so there is no attention to draw")
    group = model.schema.attention_groups[0]
    item, history = group.queries[0], group.histories[0]
    items = columns[item].astype(str)
    encoder = model.encoders.sequence[history]
    lengths = np.bincount(history_ids(columns[history][mine], encoder)[0], minlength=len(mine))  # [rows of the user]
    mine = mine[lengths > 0]  # a sample with no history has no attention to show
    if not mine.size:
        raise DataError(f"--explain {user}: every sample of this user has an empty history, so there is no "
                        "attention to draw; pick a user with history")
    positive = mine[columns[LABEL][mine] == 1]
    base = int(positive[-1] if positive.size else mine[-1])  # the latest sample the user engaged with
    # The user's side stays: histories, user and label; the candidate brings its item columns.
    fixed = {USER, LABEL, item} | set(model.schema.history_features)
    movable = [item] + _item_columns(columns, item, fixed)
    engaged, rejected = label_names(data_dir, model.config)
    donors = [(base, engaged if columns[LABEL][base] == 1 else "their latest sample")]
    low = [i for i in mine[::-1] if columns[LABEL][i] == 0 and items[i] != items[base]]
    if low:
        donors.append((int(low[0]), rejected))
    seen = set(items[mine]) | set(history_ids(columns[history][base : base + 1], encoder)[2])
    unseen = np.asarray(sorted(set(items) - seen))
    query = model.encoders.categorical.get(item)
    if query is not None and unseen.size:  # a random item the run knows: every unknown id scores alike
        unseen = unseen[query.transform(unseen) != query.vocabulary.unknown]
    if unseen.size:
        choice = np.random.default_rng(model.config.seed).choice(unseen)
        donors.append((int(np.flatnonzero(items == choice)[0]), "never seen (random)"))
    rows = {name: np.repeat(values[base : base + 1], len(donors), axis=0) for name, values in columns.items()}
    for k, (donor, _) in enumerate(donors):
        for name in movable:
            rows[name][k] = columns[name][donor]
    return rows, [why for _, why in donors]


def explain(model: TrainedModel, data_dir: str, user: str, out: str) -> pd.DataFrame:
    """Draws `out` (PNG: a row of panels per attention group, a panel per
    candidate) and returns the weights: one line per (group, candidate,
    history position)."""
    rows, reasons = candidates(model, data_dir, user)
    checked, inputs = model.encode(rows, source=data_dir)
    logits, weights = model.forward(inputs)
    titles = item_titles(data_dir, model.config)
    name = lambda i: titles.get(str(i), str(i))  # noqa: E731
    item = model.schema.attention_groups[0].queries[0]
    vocabulary = model.encoders.categorical[item].vocabulary if item in model.encoders.categorical else None
    names = [name(rows[item][k]) + (" (id unknown to the run)" if vocabulary and inputs[item][k] == vocabulary.unknown
                                     else "") for k in range(len(reasons))]
    frames = {}
    for group in model.schema.attention_groups:
        frame = model.attention_frames(checked, weights)[group.name]
        frame["candidate"] = [name(rows[group.queries[0]][r]) for r in frame["row"]]
        frame["item"] = [name(i) for i in frame[group.histories[0]]]
        frames[group.name] = frame
    draw(frames, names, reasons, probabilities(logits), user, out)
    return pd.concat([frame.assign(group=group) for group, frame in frames.items()], ignore_index=True)


def weight_axis(weights: np.ndarray) -> tuple[float, float]:
    """An x range that shows the weights' differences: the scaled sigmoid's
    weights are not normalised and may cluster in a narrow band, where an
    axis from 0 makes every bar look the same. From 0 only when the smallest weight is
    below a third of the largest."""
    low, high = float(np.min(weights)), float(np.max(weights))
    spread = max(high - low, 1e-3 * max(abs(high), 1e-9))
    if low < high / 3:
        return min(low, 0.0), high + 0.25 * spread
    return low - 0.3 * spread, high + 0.25 * spread  # room on the right for the values


def draw(frames: dict[str, pd.DataFrame], names: list[str], reasons: list[str], probability: np.ndarray, user: str,
         out: str) -> None:
    """One row of panels per attention group (its history down the side), one
    column per candidate; a group whose history is empty says so."""
    from matplotlib.figure import Figure

    histories = {group: frame[frame["row"] == 0].sort_values("position") for group, frame in frames.items()}
    labels = {group: [f"{p + 1}. " + textwrap.fill(text, 48, subsequent_indent="    ")
                      for p, text in zip(history["position"], history["item"])] for group, history in histories.items()}
    heights = [max(2.2, 0.26 * sum(label.count("\n") + 1 for label in rows) + 0.1 * len(rows) + 1.6)
               for rows in labels.values()]
    figure = Figure(figsize=(4.4 * len(names) + 3.0, sum(heights) + 0.6), layout="constrained")
    weights = pd.concat(list(frames.values()))["weight"].to_numpy()
    left, right = weight_axis(weights) if weights.size else (0.0, 1.0)
    for (group, frame), subfigure in zip(frames.items(), np.atleast_1d(figure.subfigures(len(frames), 1,
                                                                                        height_ratios=heights))):
        panels = subfigure.subplots(1, len(names), sharey=True, squeeze=False)[0]
        for k, axes in enumerate(panels):
            mine = frame[frame["row"] == k].sort_values("position")
            values = mine["weight"].to_numpy()
            bars = axes.barh(np.arange(len(mine)), values - left, left=left, color=f"C{k}")
            axes.bar_label(bars, labels=[f"{w:.3f}" for w in values], fontsize=7, padding=2)
            axes.set_xlim(left, right)
            title = textwrap.fill(names[k], 40)
            axes.set_title(f"{reasons[k]}:\n{title}\np = {probability[k]:.3f}", fontsize=9)
            axes.set_xlabel("attention weight" + (" (axis from 0)" if left <= 0 else f" (axis from {left:.3f})"))
            axes.grid(axis="x", alpha=0.3)
            if not len(mine):
                axes.text(0.5, 0.5, f"no {group} history", transform=axes.transAxes, ha="center", va="center")
        panels[0].set_yticks(np.arange(len(labels[group])), labels[group], fontsize=8)
        panels[0].invert_yaxis()  # oldest history item on top
        subfigure.suptitle(f"attention over the {group} history (oldest first)", fontsize=10)
    figure.suptitle(f"user {user}: attention over their history for each candidate")
    # The mark lets predict.py --overwrite tell its own pictures from a user's files (training/outputs.py).
    run_dir.write_file(out, lambda tmp: figure.savefig(tmp, format="png", dpi=110,
                                                       metadata={"Software": outputs.PICTURE_MARK.decode()}))
