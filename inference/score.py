"""Scoring many rows at once: one table line per input row, metrics when labels are known."""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.schema import LABEL, USER
from inference.model import Rows, TrainedModel, probabilities


def top_attended(model: TrainedModel, frames: dict[str, pd.DataFrame], n: int, k: int) -> pd.DataFrame:
    """Per row, the k most attended history ids of each group (at most its history's
    length) with their weights:
    columns attended_1, weight_1, ... (prefixed by the group's name when there are
    several groups; a multi-pair group's ids joined with ':')."""
    columns: dict[str, pd.Series] = {}
    index = pd.RangeIndex(n)
    several = len(model.schema.attention_groups) > 1
    for group in model.schema.attention_groups:
        frame = frames[group.name]
        top = min(k, model.encoders.sequence[group.histories[0]].max_len)  # no more than the history holds
        ids = frame[list(group.histories)].astype(str).agg(":".join, axis=1)
        ranked = frame.assign(id=ids).sort_values(["row", "weight"], ascending=[True, False], kind="stable")
        ranked["rank"] = ranked.groupby("row").cumcount() + 1
        ranked = ranked[ranked["rank"] <= top]
        prefix = f"{group.name}_" if several else ""
        for rank in range(1, top + 1):
            mine = ranked[ranked["rank"] == rank].set_index("row")
            columns[f"{prefix}attended_{rank}"] = mine["id"].reindex(index).fillna("")
            columns[f"{prefix}weight_{rank}"] = mine["weight"].reindex(index)
    return pd.DataFrame(columns, index=index)  # built at once: inserting columns one by one is slow


def score(
    model: TrainedModel, rows: Rows, source: str = "rows", lines: np.ndarray | None = None, attention: int = 0,
    bar=None,
) -> tuple[pd.DataFrame, np.ndarray, dict[str, tuple[int, int]]]:
    """(table, logits [N], unknown): the table holds each row's user and
    candidate ids, its probability, its label when given and, with attention =
    K, its K most attended history ids; unknown: TrainedModel.unknown_ids of
    the rows. bar: a progress bar advanced by the rows scored."""
    columns, inputs = model.encode(rows, source, lines)
    n = len(inputs[model.schema.inputs[0]])
    logits, weights = model.forward(inputs, progress=None if bar is None else bar.update)
    table = pd.DataFrame(index=np.arange(n))
    if USER in columns:
        table[model.user_columns[0]] = columns[USER]
    for query in dict.fromkeys(q for g in model.schema.attention_groups for q in g.queries):
        table[query] = columns[query]
    table["probability"] = probabilities(logits)
    if LABEL in columns:
        table[LABEL] = columns[LABEL].astype(np.int64)
    if attention:
        table = pd.concat([table, top_attended(model, model.attention_frames(columns, weights), n, attention)], axis=1)
    return table, logits, model.unknown_ids(inputs)
