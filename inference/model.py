"""A finished run directory as a model: score raw rows, read its attention, evaluate.

    model = load_run("runs/jax")                  # the backend that trained it
    model = load_run("runs/jax", backend="torch")  # weights converted (inference/convert.py)
    p = model.predict(frame)       # probabilities [N] float32
    a = model.attention(frame)     # {group: DataFrame row, position, <history ids>, weight}
    m = model.evaluate(frame)      # {'auc', 'gauc', 'logloss', 'unknown_ids'}, needs `label`

Rows are raw values in the run's own columns (data/rows.py). Only the
framework asked for is imported. Batches are padded to a few fixed sizes,
so JAX compiles a handful of shapes whatever the number of rows.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import pandas as pd

from core.config import DINConfig
from core.errors import DataError, RunError
from data.encoders import FeatureEncoders
from data.rows import USER_COLUMNS, expected_columns, history_ids, to_columns
from data.schema import LABEL, USER
from inference.convert import to_backend
from training import metrics
from training.backend import BACKENDS, backend_module
from training.run_dir import read_run

Rows = pd.DataFrame | Mapping[str, Any]


def bucket_sizes(batch_size: int) -> tuple[int, ...]:
    """The padded batch sizes: powers of 8 below batch_size, and batch_size."""
    sizes = [1]
    while sizes[-1] * 8 < batch_size:
        sizes.append(sizes[-1] * 8)
    return (*sizes, batch_size) if batch_size > 1 else (1,)


class TrainedModel:
    """A run's encoders and eval-mode weights in one framework (see `load_run`)."""

    def __init__(self, run_dir: str, config: DINConfig, encoders: FeatureEncoders, predictor, backend: str,
                 trained_by: str, batch_size: int | None = None):
        self.run_dir, self.config, self.encoders = run_dir, config, encoders
        self.schema = encoders.schema()
        self.predictor, self.backend, self.trained_by = predictor, backend, trained_by
        self.batch_size = batch_size or config.eval_batch_size
        self.sizes = bucket_sizes(self.batch_size)
        # The label and user columns: the dataset file's, else the MovieLens layouts' names.
        layout = _layout(config)
        self.label_column = layout.label if layout else LABEL
        self.user_columns = ((layout.user,) if layout and layout.user else ()) + USER_COLUMNS

    @property
    def columns(self) -> tuple[str, ...]:
        """The raw feature columns every row needs."""
        return expected_columns(self.encoders)

    def encode(self, rows: Rows, source: str = "rows", lines: np.ndarray | None = None
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(raw columns as checked, encoded model inputs)."""
        columns = to_columns(rows, self.encoders, source, lines, self.user_columns, self.label_column)
        return columns, self.encoders.transform(columns)

    def unknown_ids(self, inputs: dict[str, np.ndarray]) -> dict[str, tuple[int, int]]:
        """Per id feature: (ids the run's vocabulary does not know, ids given) of
        encoded inputs; padding is no id. An unknown id shares one embedding
        row with every other, so many of them make a score uninformed."""
        found = {}
        for name, encoder in (*self.encoders.categorical.items(), *self.encoders.sequence.items()):
            codes = inputs[name]
            found[name] = (int((codes == encoder.vocabulary.unknown).sum()), int((codes != 0).sum()))
        return found

    def forward(self, inputs: dict[str, np.ndarray], progress=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Encoded inputs [N, ...] -> (logits [N], attention weights per group [N, T]).

        Rows go in batches of batch_size; a shorter one is padded (its last row
        repeated) to the smallest size in `self.sizes` that holds it.
        """
        n = len(inputs[self.schema.inputs[0]])
        logits, weights = [], {g.name: [] for g in self.schema.attention_groups}
        for start in range(0, n, self.batch_size):
            rows = np.arange(start, min(start + self.batch_size, n))
            size = next(s for s in self.sizes if s >= len(rows))
            padded = np.pad(rows, (0, size - len(rows)), mode="edge")
            batch_logits, batch_weights = self.predictor({name: inputs[name][padded] for name in self.schema.inputs})
            logits.append(batch_logits[: len(rows)])
            for group, values in batch_weights.items():
                weights[group].append(values[: len(rows)])
            if progress is not None:
                progress(len(rows))
        empty = {g.name: np.zeros((0, self.schema.history_length(g)), np.float32) for g in self.schema.attention_groups}
        return (np.concatenate(logits) if logits else np.zeros(0, np.float32),
                {g: np.concatenate(v) if v else empty[g] for g, v in weights.items()})

    def predict(self, rows: Rows) -> np.ndarray:
        """Probabilities [N] float32 of raw rows."""
        _, inputs = self.encode(rows)
        return probabilities(self.forward(inputs)[0])

    def attention(self, rows: Rows) -> dict[str, pd.DataFrame]:
        """Per attention group, one line per real history position: row, position,
        the raw id of each of the group's history features there, and its weight."""
        columns, inputs = self.encode(rows)
        return self.attention_frames(columns, self.forward(inputs)[1])

    def attention_frames(self, columns: dict[str, np.ndarray], weights: dict[str, np.ndarray]) -> dict[str, pd.DataFrame]:
        frames = {}
        for group in self.schema.attention_groups:
            first = self.encoders.sequence[group.histories[0]]
            row, position, _ = history_ids(columns[group.histories[0]], first)
            frame = pd.DataFrame({"row": row, "position": position})
            for history in group.histories:  # a multi-pair group: the position's id in each history
                encoder = self.encoders.sequence[history]
                r, p, ids = history_ids(columns[history], encoder)
                frame = frame.merge(pd.DataFrame({"row": r, "position": p, history: ids}), on=["row", "position"])
            frame["weight"] = weights[group.name][frame["row"].to_numpy(), frame["position"].to_numpy()]
            frames[group.name] = frame.sort_values(["row", "position"], ignore_index=True)
        return frames

    def evaluate(self, rows: Rows) -> dict:
        """AUC, GAUC (needs the user column; else NaN), logloss, and `unknown_ids`
        ({feature: (unknown, given)}, see unknown_ids); rows need `label`."""
        columns, inputs = self.encode(rows)
        if LABEL not in columns:
            raise DataError(f"evaluate needs a {self.label_column!r} column (0 or 1)")
        return {**self.metrics(columns, self.forward(inputs)[0]), "unknown_ids": self.unknown_ids(inputs)}

    @staticmethod
    def metrics(columns: dict[str, np.ndarray], logits: np.ndarray) -> dict[str, float]:
        """AUC, GAUC, logloss of checked columns holding the label."""
        users = columns.get(USER, np.arange(len(logits)))  # no users: every row its own, GAUC NaN
        return metrics.evaluate(users, columns[LABEL], logits)


def _layout(config: DINConfig):
    """The run's dataset file, if it was trained through one and the file is still there."""
    if not config.dataset or not os.path.isfile(config.dataset):
        return None
    from data.sources.dataset_layout import read_layout

    return read_layout(config.dataset)


def describe_unknown(unknown: dict[str, tuple[int, int]]) -> str:
    """One line: how many ids of each feature the run did not know."""
    parts = [f"{name} {n:,} of {total:,} ({n / total:.1%})" if total else f"{name} 0 of 0"
             for name, (n, total) in unknown.items()]
    return "ids unknown to the run (scored as its one 'unknown' id): " + ", ".join(parts)


def probabilities(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


def load_run(run_dir: str, backend: str | None = None, batch_size: int | None = None) -> TrainedModel:
    """A finished run directory as a model in `backend` ('jax', 'torch'; None:
    the one that trained it). Imports only that framework (and flax to convert
    torch weights for JAX)."""
    config, encoders, weights, trained_by = read_run(run_dir)
    if trained_by not in BACKENDS:
        raise RunError(f"{run_dir}: its weights name no backend ({trained_by!r})")
    backend = backend or trained_by
    module = backend_module(backend)  # an unknown --backend: one line from the registry
    schema = encoders.schema()
    try:
        variables = to_backend(weights, trained_by, backend, lambda: module.inference.variable_shapes(schema, config))
        predictor = module.Predictor(schema, config, variables)
    except (KeyError, ValueError, RuntimeError) as error:  # names or shapes that do not fit encoders.json
        raise RunError(f"{run_dir}: the weights do not fit the model that encoders.json describes "
                       f"({str(error).splitlines()[0]}); the run's files are damaged or mixed") from None
    return TrainedModel(run_dir, config, encoders, predictor, backend, trained_by, batch_size)
