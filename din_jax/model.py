"""The Flax (Linen) DIN: embeddings, an attention unit per attention group
(din_jax/attention.py), then an MLP to one logit (din_jax/layers.py); the
same model as din_torch/model.py, functional. Shapes: the letters of
docs/design.md.

Classes and submodule names mirror the torch reference (Embeddings, Dice,
MLP, AttentionUnit, DIN; flax names a list entry `dense_0` where torch says
`dense.0`), so `inference/convert.py` is a short table of renames.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from core.config import PAPER_EMBEDDING_STD, DINConfig
from data.schema import ROW_MASK, AttentionGroup, FeatureSchema
from din_jax.attention import AttentionUnit, pooled_history
from din_jax.layers import MLP, at_least_float32, bias_init, kaiming_uniform

Batch = dict[str, jax.Array]
# config.dtype -> the computation's dtype (None: the parameters')
COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


def padded_embedding_init(stddev: float, vocab_size: int | None = None) -> nn.initializers.Initializer:
    """N(0, stddev^2) rows, row 0 (padding) zero. A table allocated with more
    rows than `vocab_size` (padded so that it shards evenly) gets the same
    first vocab_size rows as an unpadded one, and zeros after them."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        rows = shape[0] if vocab_size is None else vocab_size
        table = (stddev * jax.random.normal(key, (rows, *shape[1:]), dtype)).at[0].set(0.0)
        return jnp.pad(table, ((0, shape[0] - rows), (0, 0)))

    return init


def embedding_init(config: DINConfig, vocab_size: int) -> nn.initializers.Initializer:
    return padded_embedding_init(PAPER_EMBEDDING_STD if config.init == "paper" else 1.0, vocab_size)


def padded_rows(vocab_size: int, multiple: int) -> int:
    return -(-vocab_size // multiple) * multiple


# Logical axes of an embedding table [V, E]; din_jax/mesh.py maps them to mesh axes.
VOCAB, EMBED = "vocab", "embed"


def example_batch(schema: FeatureSchema, size: int = 2, float_dtype: Any = jnp.float32) -> Batch:
    """All-padding inputs of `size` rows (ids 0, numbers 0), in `schema.inputs`
    order: what `init`, shape templates and the export trace; ids int32,
    numeric features in float_dtype (din_torch.model.example_batch's twin)."""
    batch = {f.name: jnp.zeros((size,), jnp.int32) for f in schema.categorical}
    batch |= {f.name: jnp.zeros((size, f.max_len), jnp.int32) for f in schema.sequence}
    batch |= {name: jnp.zeros((size,), float_dtype) for name in schema.numeric}
    return {name: batch[name] for name in schema.inputs}


def table_path(table: str) -> tuple[str, ...]:
    """Where the embedding table of `table` lives in the params tree."""
    return ("embeddings", f"tables_{table}", "embedding")


class Embeddings(nn.Module):
    """One table per categorical and sequence feature (a shared history uses its
    query's table, see FeatureSchema.shared); row 0 is padding. Tables carry
    the logical axes (vocab, embed), so a mesh can split them along the vocabulary."""

    schema: FeatureSchema
    config: DINConfig
    rows_multiple: int = 1  # tables get padded_rows(vocab_size, rows_multiple) rows (even sharding)
    dtype: Any = None  # the computation's (None: the parameters')
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        self.tables = {
            f.name: nn.Embed(
                padded_rows(f.vocab_size, self.rows_multiple),
                self.config.embedding_dim,
                param_dtype=self.param_dtype,
                embedding_init=nn.with_logical_partitioning(embedding_init(self.config, f.vocab_size), (VOCAB, EMBED)),
            )
            for f in self.schema.tables
        }

    def __call__(self, name: str, ids: jax.Array) -> jax.Array:  # [...] -> [..., E]
        vectors = jnp.take(self.tables[self.schema.table_of(name)].embedding, ids, axis=0)
        if self.dtype is not None:
            vectors = vectors.astype(self.dtype)
        # Padding ids give zero vectors and send no gradient to row 0, as
        # torch's padding_idx does (cheaper than copying the table).
        return jnp.where((ids != 0)[..., None], vectors, 0.0)


class DIN(nn.Module):
    """Deep Interest Network: embeddings, pooling, attention, then an MLP to one logit."""

    schema: FeatureSchema
    config: DINConfig
    # Flax's convention: `dtype` computes (e.g. bfloat16; None: the parameters'),
    # `param_dtype` stores. BatchNorm statistics, the attention normalisation
    # and the logits stay at least float32.
    dtype: Any = None
    param_dtype: Any = jnp.float32
    table_rows_multiple: int = 1  # pad every table's rows to a multiple (sharded tables)

    @nn.compact
    def __call__(self, batch: Batch, train: bool = False, packing: str = "auto") -> tuple[jax.Array, dict[str, jax.Array]]:
        """batch: feature name -> [B] or [B, T] array. Returns (logits [B], intermediates).

        An optional batch[ROW_MASK] [B] (1 real, 0 padding) keeps the rows that
        fill a short batch out of every BatchNorm statistic, so a padded batch
        trains exactly like the short one (one compiled shape per run).
        packing: how the attention packs its rows (AttentionUnit): "auto",
        "checked" (the caller has checked din_jax.packing.fits) or "off".
        """
        schema, config = self.schema, self.config
        row_mask = batch.get(ROW_MASK)
        first = batch[schema.embedded[0].name] if schema.embedded else batch[schema.numeric[0]]
        if train and first.shape[0] == 1:
            raise ValueError("DIN cannot train on a batch of one: BatchNorm needs more than one row per feature")
        dtype, param_dtype = self.dtype, self.param_dtype
        embeddings = Embeddings(schema, config, self.table_rows_multiple, dtype, param_dtype, name="embeddings")
        inputs = [batch[name].astype(dtype or param_dtype)[:, None] for name in schema.numeric]  # each [B, 1]
        inputs += [embeddings(f.name, batch[f.name]) for f in schema.categorical]  # each [B, E]
        inputs += [self._pool(embeddings, f.name, batch[f.name]) for f in schema.pooled]  # each [B, E]
        intermediates: dict[str, jax.Array] = {}
        for group in schema.attention_groups:
            query, keys, length = self._group_inputs(group, batch, embeddings)
            if config.pooling == "attention":
                unit = AttentionUnit(config, train, packing, dtype, param_dtype, name=f"attention_{group.name}")
                interest, weights = unit(query, keys, length, row_mask)  # [B, D], [B, T]
            else:
                interest, weights = pooled_history(keys, length, config.pooling)
            inputs.append(interest)
            intermediates[f"attention_weights/{group.name}"] = weights
            intermediates[f"interest/{group.name}"] = interest
        mlp_input = jnp.concatenate(inputs, axis=1)  # [B, F]
        mlp = MLP(config.mlp_hidden, "prelu", config.mlp_dropout, config, dtype, param_dtype, name="mlp")
        hidden = mlp(mlp_input, train, row_mask)  # [B, H]
        final = nn.Dense(1, kernel_init=kaiming_uniform, bias_init=bias_init(config), dtype=dtype, param_dtype=param_dtype,
                         name="final")
        logits = final(hidden)[:, 0].astype(at_least_float32(hidden.dtype))  # [B], the loss's dtype
        intermediates["mlp_input"] = mlp_input
        return logits, intermediates

    def _pool(self, embeddings: Embeddings, name: str, ids: jax.Array) -> jax.Array:
        """Max over the sequence [B, T] -> [B, E]; with mask_padding, over real positions only."""
        vectors = embeddings(name, ids)  # [B, T, E]
        if not self.config.mask_padding:
            return vectors.max(axis=1)  # padding takes part as zero vectors (tutorial)
        real = (ids != 0)[..., None]  # [B, T, 1]
        pooled = jnp.where(real, vectors, -jnp.inf).max(axis=1)  # [B, E]
        return jnp.where(real.any(axis=1), pooled, 0.0)  # all padding -> 0

    @staticmethod
    def _group_inputs(group: AttentionGroup, batch: Batch, embeddings: Embeddings):
        query = jnp.concatenate([embeddings(q, batch[q]) for q in group.queries], axis=-1)  # [B, D]
        keys = jnp.concatenate([embeddings(h, batch[h]) for h in group.histories], axis=-1)  # [B, T, D]
        # The usable length is the shortest of the pair histories' real lengths.
        lengths = jnp.stack([(batch[h] != 0).sum(axis=1) for h in group.histories], axis=1)  # [B, pairs]
        return query, keys, lengths.min(axis=1)  # [B]
