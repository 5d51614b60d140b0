"""The Flax attention unit: the candidate is the query, each history position a
key, an MLP scores each (query, key) pair (din_torch/attention.py's twin).
It computes what the padded [B, T] computation does over only the rows its
result depends on: real history positions packed, and one row per example
standing for its padded positions (AttentionUnit). Shapes: B, T, D, H
(docs/design.md)."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from core.config import DINConfig
from din_jax.layers import MLP, at_least_float32, bias_init, kaiming_uniform
from din_jax.packing import packed_capacity, packs


def masked_softmax(scores: jax.Array, real: jax.Array) -> jax.Array:
    """Softmax of scores [B, T] over the positions where real [B, T] is True.

    Padded positions weigh exactly 0 and an all-padding history gets all-zero
    weights (not NaN); the same float operations as the torch model's.
    """
    top = jnp.max(jnp.where(real, scores, -jnp.inf), axis=-1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    # exp only ever sees real scores, so no inf reaches the gradient.
    exp = jnp.where(real, jnp.exp(jnp.where(real, scores - top, 0.0)), 0.0)
    return exp / jnp.maximum(jnp.sum(exp, axis=-1, keepdims=True), 1.0)  # the sum is >= 1 unless all padding


def pooled_history(keys: jax.Array, length: jax.Array, pooling: str) -> tuple[jax.Array, jax.Array]:
    """The paper's BaseModel in place of the attention: keys [B, T, D], length [B]
    -> (the mean or sum of the real positions' keys [B, D], their weights [B, T]:
    1 / length or 1, 0 where padded)."""
    real = (jnp.arange(keys.shape[1]) < length[:, None]).astype(at_least_float32(keys.dtype))  # [B, T]
    weights = real / jnp.maximum(length, 1)[:, None].astype(real.dtype) if pooling == "mean" else real
    interest = jnp.einsum("bt,btd->bd", weights, keys.astype(weights.dtype))
    return interest.astype(keys.dtype), weights  # [B, D], [B, T]


# How AttentionUnit may pack (see its docstring).
PACKINGS = ("auto", "checked", "off")


class AttentionUnit(nn.Module):
    """Attention pooling of a batch's histories: the candidate is the query,
    each history position a key, an MLP scores each (query, key) pair.

    The MLP runs over ROWS, and only the rows the result depends on. A padded
    position weighs exactly 0, so it matters only through the BatchNorm/Dice
    statistics of training without config.mask_padding (the tutorial's);
    there every padded key is the zero vector, each layer's input at a padded
    position is one vector per example, and one row weighted by the example's
    padding count gives the same statistics. The rows are packed into
    packed_capacity(B, T, config.history_share) slots (din_jax/packing.py):
      eval, or mask_padding       real positions only
      train, padding in the statistics, no attention dropout
                                  real positions + one padding row per example
      train, padding in the statistics, attention dropout
                                  every position (each padded row draws its
                                  own dropout mask, so no two are equal)
    Every position is a row too with history_share 1, `packing` "off", or a
    symbolic batch dimension (jax.export). All paths equal the padded
    computation: tests/parity/test_attention_paths.py.

    `packing` "auto": a batch with more live positions than slots runs on
    every position (lax.cond), so results never depend on the share. "checked":
    the caller has checked that the batch fits (din_jax.packing.fits, on the
    host: the backend and the Predictor do), and no fallback is compiled: a
    gradient through lax.cond keeps the residuals of both branches, the
    every-position one's as large as the padded computation's, and so costs
    what packing saves; in eval mode the conditional still costs a small
    batch more than packing saves.

    Scores scaled by 1 / sqrt(D) become weights by a sigmoid (tutorial) or a
    softmax over the real positions (config.attention_norm); padded positions
    weigh exactly 0.
    """

    config: DINConfig
    train: bool = False
    packing: str = "auto"
    dtype: Any = None  # the computation's (None: the parameters')
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        config = self.config
        self.mlp = MLP(config.attention_hidden, "dice", config.attention_dropout, config, self.dtype,
                       self.param_dtype)
        self.fc = nn.Dense(1, kernel_init=kaiming_uniform, bias_init=bias_init(config), dtype=self.dtype,
                           param_dtype=self.param_dtype)

    def __call__(
        self, query: jax.Array, keys: jax.Array, length: jax.Array, row_mask: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """query [B, D], keys [B, T, D], length [B], row_mask [B] -> (interest [B, D], weights [B, T]).

        row_mask 0 marks a padding example (filling a short batch): its rows
        are left out of the BatchNorm statistics.
        """
        if self.packing not in PACKINGS:
            raise ValueError(f"packing must be one of {PACKINGS}, got {self.packing!r}")
        batch, steps, dim = keys.shape
        config = self.config
        real = jnp.arange(steps) < length[:, None]  # [B, T]
        example_weight = jnp.ones(batch, at_least_float32(keys.dtype)) if row_mask is None else row_mask.astype(at_least_float32(keys.dtype))
        padding_rows = self.train and not config.mask_padding  # padded positions are BatchNorm rows
        every = self.packing == "off" or not packs(config, self.train)
        # A symbolic batch dimension (jax.export's) has no static number of packed rows.
        if every or not isinstance(batch, int) or self.is_initializing():
            scores = self._every_position(query, keys, real, example_weight)
        else:
            # The positions that are rows; with padding in the statistics, a
            # position past the length with a non-zero key (a pair group's
            # longer history) is one too, the zero-key rest its example's padding row.
            live = real | jnp.any(keys != 0, axis=-1) if padding_rows else real  # [B, T]
            capacity = packed_capacity(batch, steps, config.history_share)

            def packed(unit, query, keys, live, example_weight):
                return unit._packed(query, keys, live, example_weight, capacity, padding_rows)

            def every_position(unit, query, keys, live, example_weight):
                return unit._every_position(query, keys, real, example_weight)

            args = (query, keys, live, example_weight)
            if capacity < batch * steps and self.packing == "auto":  # every position only for a batch that overflows
                scores = nn.cond(jnp.sum(live) <= capacity, packed, every_position, self, *args)
            else:
                scores = packed(self, *args)
        scores = scores.astype(at_least_float32(keys.dtype)) / math.sqrt(dim)  # [B, T], normalised in >= float32
        if config.attention_norm == "softmax":
            weights = masked_softmax(scores, real)
        else:
            weights = nn.sigmoid(jnp.where(real, scores, -jnp.inf))  # [B, T], 0 where padded
        interest = jnp.einsum("bt,btd->bd", weights, keys.astype(weights.dtype))
        return interest.astype(keys.dtype), weights  # [B, D], [B, T]

    def _mlp_input(self, query: jax.Array, keys: jax.Array, example: jax.Array | None = None) -> Any:
        """The first layer's input: (query, keys[, example]) for PairDense, or the [.., 4D] concatenation."""
        if self.config.attention_input == "split":
            return (query, keys) if example is None else (query, keys, example)
        queries = jnp.broadcast_to(query[:, None, :], keys.shape) if example is None else jnp.take(query, example, axis=0)
        return jnp.concatenate([queries, keys, queries - keys, queries * keys], axis=-1)  # [B, T, 4D] or [N, 4D]

    def _every_position(self, query, keys, real, example_weight) -> jax.Array:
        """Scores [B, T], every position a row (the padded computation)."""
        batch, steps, _ = keys.shape
        weight = jnp.broadcast_to(example_weight[:, None], (batch, steps))  # [B, T]
        if self.config.mask_padding:
            weight = weight * real
        hidden = self.mlp(self._mlp_input(query, keys), self.train, weight.reshape(-1))  # [B * T, H]
        return self.fc(hidden).reshape(batch, steps)

    def _packed(self, query, keys, live, example_weight, capacity: int, padding_rows: bool) -> jax.Array:
        """Scores [B, T] of the live [B, T] positions (0 elsewhere), packed into `capacity` rows
        (>= live.sum()); padding_rows: plus one zero-key row per example,
        weighing its number of zero-key positions in the statistics."""
        batch, steps, dim = keys.shape
        flat = live.reshape(-1)  # [B * T]
        (index,) = jnp.nonzero(flat, size=capacity, fill_value=batch * steps)  # [C]; unused slots past the end
        example = jnp.minimum(index // steps, batch - 1)  # [C]
        rows = jnp.take(keys.reshape(-1, dim), index, axis=0, mode="clip")  # [C, D]
        weight = (jnp.arange(capacity) < jnp.sum(flat)) * example_weight[example]  # [C], 0 in unused slots
        if padding_rows:
            padding = (steps - jnp.sum(live, axis=1)) * example_weight  # [B]
            rows = jnp.concatenate([rows, jnp.zeros((batch, dim), rows.dtype)])  # [C + B, D]
            example = jnp.concatenate([example, jnp.arange(batch)])
            weight = jnp.concatenate([weight, padding])
        hidden = self.mlp(self._mlp_input(query, rows, example), self.train, weight)  # [N, H]
        scores = self.fc(hidden)[:capacity, 0]  # [C]
        return jnp.zeros(batch * steps, scores.dtype).at[index].set(scores, mode="drop").reshape(batch, steps)
