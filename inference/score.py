"""Scoring many rows at once: one table line per input row, metrics when labels are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm import tqdm

from data.schema import LABEL, USER
from inference.model import Rows, TrainedModel, probabilities


def top_attended(model: TrainedModel, frames: dict[str, pd.DataFrame], n: int, k: int) -> pd.DataFrame:
    """Per row, the k most attended history ids of each group with their weights:
    columns attended_1, weight_1, ... (prefixed by the group's name when there are
    several groups; a multi-pair group's ids joined with ':')."""
    out = pd.DataFrame(index=np.arange(n))
    several = len(model.schema.attention_groups) > 1
    for group in model.schema.attention_groups:
        frame = frames[group.name]
        ids = frame[list(group.histories)].astype(str).agg(":".join, axis=1)
        ranked = frame.assign(id=ids).sort_values(["row", "weight"], ascending=[True, False], kind="stable")
        ranked["rank"] = ranked.groupby("row").cumcount() + 1
        ranked = ranked[ranked["rank"] <= k]
        prefix = f"{group.name}_" if several else ""
        for rank in range(1, k + 1):
            mine = ranked[ranked["rank"] == rank].set_index("row")
            out[f"{prefix}attended_{rank}"] = mine["id"].reindex(out.index).fillna("")
            out[f"{prefix}weight_{rank}"] = mine["weight"].reindex(out.index)
    return out


def score(
    model: TrainedModel, rows: Rows, source: str = "rows", lines: np.ndarray | None = None, attention: int = 0,
    progress: bool = False,
) -> tuple[pd.DataFrame, dict[str, float] | None]:
    """(table, metrics): the table holds each row's user and candidate ids, its
    probability, its label when given and, with attention = K, its K most
    attended history ids; metrics (auc, gauc, logloss) when labels are given."""
    columns, inputs = model.encode(rows, source, lines)
    n = len(inputs[model.schema.inputs[0]])
    with tqdm(total=n, unit="row", desc="scoring", disable=not progress or n == 0) as bar:
        logits, weights = model.forward(inputs, progress=bar.update)
    table = pd.DataFrame(index=np.arange(n))
    if USER in columns:
        table[model.user_columns[0]] = columns[USER]
    for query in dict.fromkeys(q for g in model.schema.attention_groups for q in g.queries):
        table[query] = columns[query]
    table["probability"] = probabilities(logits)
    found = None
    if LABEL in columns:
        table[LABEL] = columns[LABEL].astype(np.int64)
        found = model.metrics(columns, logits)
    if attention:
        table = pd.concat([table, top_attended(model, model.attention_frames(columns, weights), n, attention)], axis=1)
    return table, found
