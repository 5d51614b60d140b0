"""The Flax (Linen) DIN: the same model as `din_torch/model.py`, functional.

Shape letters, used in every comment below:
  B  batch size
  T  history (sequence) length
  E  embedding width of one feature (config.embedding_dim)
  D  width of an attention group: pairs x E
  F  width of the main MLP's input (schema.mlp_input_dim(E))
  H  a hidden layer's width

Classes and submodule names mirror the torch reference (Embeddings, Dice,
MLP, AttentionUnit, DIN; flax names a list entry `dense_0` where torch says
`dense.0`), so `inference/convert.py` is a short table of renames.

The attention unit is written for ONE example and vmapped over the batch
(`nn.vmap`, axis name 'batch'); its BatchNorm statistics are reduced across
that axis, so they are the statistics of all B * T rows, as in torch.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from core.config import PAPER_EMBEDDING_STD, DINConfig
from data.schema import ROW_MASK, AttentionGroup, FeatureSchema

Batch = dict[str, jax.Array]
BATCH_AXIS = "batch"
# config.dtype -> the computation's dtype (None: the parameters')
COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}

# The SPEC's initialisation, as torch's init functions define it.
kaiming_uniform = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")  # bound sqrt(6 / fan_in)
normal_bias = nn.initializers.normal(stddev=1.0)


def batchnorm_scale_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)  # N(1, 0.02)


def padded_embedding_init(stddev: float, vocab_size: int | None = None) -> nn.initializers.Initializer:
    """N(0, stddev^2) rows, row 0 (padding) zero. A table allocated with more
    rows than `vocab_size` (padded so that it shards evenly) gets the same
    first vocab_size rows as an unpadded one, and zeros after them."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        rows = shape[0] if vocab_size is None else vocab_size
        table = (stddev * jax.random.normal(key, (rows, *shape[1:]), dtype)).at[0].set(0.0)
        return jnp.pad(table, ((0, shape[0] - rows), (0, 0)))

    return init


def bias_init(config: DINConfig) -> nn.initializers.Initializer:
    """The tutorial's N(0, 1) Linear biases, or zeros (config.init 'paper')."""
    return nn.initializers.zeros if config.init == "paper" else normal_bias


def embedding_init(config: DINConfig, vocab_size: int) -> nn.initializers.Initializer:
    return padded_embedding_init(PAPER_EMBEDDING_STD if config.init == "paper" else 1.0, vocab_size)


def padded_rows(vocab_size: int, multiple: int) -> int:
    return -(-vocab_size // multiple) * multiple


def wide(dtype: Any) -> Any:
    """The dtype of statistics, normalisation and the loss: at least float32."""
    return jnp.promote_types(dtype, jnp.float32)


class Moments(NamedTuple):
    """Train-mode batch statistics of [N, H] rows: mean [H], biased variance [H], total row weight []."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array


class BatchNorm(nn.Module):
    """torch.nn.BatchNorm1d over axis 0 of [N, H] (and over `axis_name` if set).

    Train mode normalises with the biased batch variance and updates the
    running statistics with torch's momentum convention (new = (1 - m) * old
    + m * batch) and the UNBIASED batch variance, which flax's BatchNorm does
    not do. Statistics are two-pass sums reduced with psum, so a vmapped
    caller gets exactly the statistics of all its rows.
    """

    eps: float
    momentum: float
    axis_name: str | None = None
    affine: bool = True
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, mask: jax.Array | None = None, moments: Moments | None = None,
                 with_moments: bool = False) -> Any:
        """x [N, H] -> [N, H]; mask [N] (1 = real row, 0 = ignored) weights the statistics.

        Statistics and the normalisation run in at least float32 (x may be bfloat16).
        `moments`: x's train-mode batch statistics, when the caller knows them.
        with_moments: returns (out, out's Moments), None in eval mode. A
        normalised x's statistics are known exactly without a pass over it, so
        Dice after BatchNorm (the attention MLP) skips two reductions over
        [N, H] forward and their backward.
        """
        features, dtype = x.shape[-1], x.dtype
        x = x.astype(wide(dtype))
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), x.dtype)
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,), x.dtype)
        # torch's buffer, kept so that a checkpoint converts both ways unchanged.
        tracked = self.variable("batch_stats", "num_batches_tracked", jnp.zeros, (), jnp.int32)

        if train:
            if moments is not None:
                mean, var, count = moments
            else:  # two-pass sums reduced with psum: a vmapped caller gets the statistics of all its rows
                weight = (jnp.ones(x.shape[0], x.dtype) if mask is None else mask.astype(x.dtype))[:, None]  # [N, 1]
                count = self._sum(jnp.sum(weight))
                # max(., 1): a mask may leave 0 or 1 rows, which must not give NaN.
                mean = self._sum(jnp.sum(weight * x, axis=0)) / jnp.maximum(count, 1)  # [H]
                var = self._sum(jnp.sum(weight * jnp.square(x - mean), axis=0)) / jnp.maximum(count, 1)  # [H], biased
            if not self.is_initializing():
                m = self.momentum
                running_mean.value = (1 - m) * running_mean.value + m * mean
                running_var.value = (1 - m) * running_var.value + m * var * count / jnp.maximum(count - 1, 1)
                tracked.value = tracked.value + 1
        else:
            mean, var = running_mean.value, running_var.value
        out = (x - mean) / jnp.sqrt(var + self.eps)
        shift, gain = jnp.zeros_like(mean), jnp.ones_like(mean)
        if self.affine:  # the paper's Dice has no weight and bias
            scale = self.param("scale", batchnorm_scale_init, (features,), self.param_dtype)
            bias = self.param("bias", nn.initializers.zeros, (features,), self.param_dtype)
            out = out * scale + bias
            shift, gain = bias.astype(x.dtype), scale.astype(x.dtype)
        if not with_moments:
            return out.astype(dtype)
        # out's own weighted batch moments, exactly: mean = bias, variance = scale^2 var / (var + eps).
        out_moments = Moments(shift, jnp.square(gain) * (var / (var + self.eps)), count) if train else None
        return out.astype(dtype), out_moments

    def _sum(self, value: jax.Array) -> jax.Array:
        return value if self.axis_name is None else jax.lax.psum(value, self.axis_name)


class Dice(nn.Module):
    """Dice(x) = alpha * (1 - p) * x + p * x with p = sigmoid(BatchNorm(x));
    affine=False is the paper's form (a BatchNorm with no weight and bias).
    After a BatchNorm (every layer of the attention MLP) x's batch statistics
    are that BatchNorm's output moments, passed in rather than recomputed."""

    eps: float
    momentum: float
    axis_name: str | None = None
    affine: bool = True
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, mask: jax.Array | None = None,
                 moments: Moments | None = None) -> jax.Array:  # [N, H]
        """moments: x's train-mode batch statistics, when known (BatchNorm's with_moments)."""
        batchnorm = BatchNorm(self.eps, self.momentum, self.axis_name, self.affine, self.param_dtype, name="batchnorm")
        p = nn.sigmoid(batchnorm(x, train, mask, moments))
        alpha = self.param("alpha", nn.initializers.zeros, (x.shape[-1],), self.param_dtype)
        return (alpha * (1 - p) * x + p * x).astype(x.dtype)


class PairDense(nn.Module):
    """The attention's first layer, Dense([q, k, q - k, q * k]) for one query
    q [D] and keys [T, D], computed without the [T, 4D] input: with the kernel's
    four [D, H] blocks W_q, W_k, W_d, W_p,

        [q, k, q - k, q * k] W + b = (q (W_q + W_d) + b) + k ((W_k - W_d) + diag(q) W_p)

    a query term once per example and one [D, H] matrix per example applied to
    every key: a quarter of the products per key, and no [T, 4D] array in
    memory. The same parameters as nn.Dense(4D -> H) (name, shape,
    initialisation), so weights convert to and from torch's Linear unchanged;
    the torch reference computes the concatenated form (config.attention_input
    "concat" does here too), and the parity suite compares the two."""

    features: int
    kernel_init: Any
    bias_init: Any
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, query: jax.Array, keys: jax.Array) -> jax.Array:  # [D], [T, D] -> [T, H]
        dim = keys.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (4 * dim, self.features), self.param_dtype)  # [4D, H]
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)  # [H]
        query, keys, kernel, bias = nn.dtypes.promote_dtype(query, keys, kernel, bias, dtype=self.dtype)
        w_q, w_k, w_d, w_p = jnp.split(kernel, 4)  # each [D, H]
        query_term = query @ (w_q + w_d) + bias  # [H]
        per_key = (w_k - w_d) + query[:, None] * w_p  # [D, H]
        return keys @ per_key + query_term  # [T, H]


class MLP(nn.Module):
    """Layers of Dense -> BatchNorm -> activation (Dice or PReLU) -> Dropout."""

    hidden: tuple[int, ...]
    activation: str
    dropout: float
    config: DINConfig
    axis_name: str | None = None
    dtype: Any = None  # the computation's (None: the parameters')
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array | tuple[jax.Array, jax.Array], train: bool, mask: jax.Array | None = None
                 ) -> jax.Array:
        """x [N, in], or (query [D], keys [N, D]) for the attention's [q, k, q - k, q * k]
        input (PairDense) -> [N, hidden[-1]]; mask [N] selects the rows BatchNorm learns from."""
        config = self.config
        for i, features in enumerate(self.hidden):
            kind = PairDense if isinstance(x, tuple) else nn.Dense
            dense = kind(
                features, kernel_init=kaiming_uniform, bias_init=bias_init(config), dtype=self.dtype,
                param_dtype=self.param_dtype, name=f"dense_{i}",
            )
            x = dense(*x) if isinstance(x, tuple) else dense(x)
            batchnorm = BatchNorm(config.bn_eps, config.bn_momentum, self.axis_name, param_dtype=self.param_dtype,
                                  name=f"batchnorm_{i}")
            x, moments = batchnorm(x, train, mask, with_moments=True)
            if self.activation == "dice":
                dice = Dice(config.dice_eps, config.bn_momentum, self.axis_name, config.dice == "tutorial",
                            self.param_dtype, name=f"activation_{i}")
                x = dice(x, train, mask, moments)
            elif self.activation == "prelu":
                x = nn.PReLU(param_dtype=self.param_dtype, negative_slope_init=0.25, name=f"activation_{i}")(x)
            else:
                raise ValueError(f"activation must be 'dice' or 'prelu', got {self.activation!r}")
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return x


def masked_softmax(scores: jax.Array, real: jax.Array) -> jax.Array:
    """Softmax of scores [T] over the positions where real [T] is True.

    Padded positions weigh exactly 0 and an all-padding history gets all-zero
    weights (not NaN); the same float operations as the torch model's.
    """
    top = jnp.max(jnp.where(real, scores, -jnp.inf))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    # exp only ever sees real scores, so no inf reaches the gradient.
    exp = jnp.where(real, jnp.exp(jnp.where(real, scores - top, 0.0)), 0.0)
    return exp / jnp.maximum(jnp.sum(exp), 1.0)  # the sum is >= 1 unless all padding


class AttentionUnit(nn.Module):
    """Attention pooling of ONE example's history; vmap it over the batch.

    Inside a `nn.vmap` with axis name 'batch', the MLP's BatchNorm statistics
    cover all B * T rows (padded ones included, as the tutorial does), or the
    real positions only (config.mask_padding). Scores scaled by 1 / sqrt(D)
    become weights by a sigmoid (tutorial) or a softmax over the real
    positions (config.attention_norm); padded positions weigh exactly 0.
    """

    config: DINConfig
    train: bool = False
    dtype: Any = None  # the computation's (None: the parameters')
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, query: jax.Array, keys: jax.Array, length: jax.Array, row_mask: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """query [D], keys [T, D], length [], row_mask [] -> (interest [D], weights [T]).

        row_mask 0 marks a padding example (filling a short batch): its rows
        are left out of the BatchNorm statistics.
        """
        steps, dim = keys.shape
        config = self.config
        real = jnp.arange(steps) < length  # [T]
        mask = None if row_mask is None else jnp.broadcast_to(row_mask, (steps,))  # [T]
        if config.mask_padding:
            mask = real if mask is None else mask * real
        mlp = MLP(config.attention_hidden, "dice", config.attention_dropout, config, BATCH_AXIS, self.dtype, self.param_dtype,
                  name="mlp")
        if config.attention_input == "split":
            x = (query, keys)  # the first layer is PairDense: no [T, 4D] input
        else:
            queries = jnp.broadcast_to(query, (steps, dim))  # [T, D]
            x = jnp.concatenate([queries, keys, queries - keys, queries * keys], axis=-1)  # [T, 4D]
        hidden = mlp(x, self.train, mask)  # [T, H]
        fc = nn.Dense(1, kernel_init=kaiming_uniform, bias_init=bias_init(config), dtype=self.dtype,
                      param_dtype=self.param_dtype, name="fc")
        scores = fc(hidden)[:, 0].astype(wide(keys.dtype)) / math.sqrt(dim)  # [T], normalised in >= float32
        if config.attention_norm == "softmax":
            weights = masked_softmax(scores, real)
        else:
            weights = nn.sigmoid(jnp.where(real, scores, -jnp.inf))  # [T], 0 where padded
        return (weights @ keys.astype(weights.dtype)).astype(keys.dtype), weights  # [D], [T]


# One example's unit mapped over the batch: parameters and running statistics
# are shared (variable_axes None), dropout masks differ per example.
BatchedAttentionUnit = nn.vmap(
    AttentionUnit,
    in_axes=0,
    out_axes=0,
    variable_axes={"params": None, "batch_stats": None},
    split_rngs={"params": False, "dropout": True},
    axis_name=BATCH_AXIS,
)


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
    def __call__(self, batch: Batch, train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
        """batch: feature name -> [B] or [B, T] array. Returns (logits [B], intermediates).

        An optional batch[ROW_MASK] [B] (1 real, 0 padding) keeps the rows that
        fill a short batch out of every BatchNorm statistic, so a padded batch
        trains exactly like the short one (one compiled shape per run).
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
            unit = BatchedAttentionUnit(config, train, dtype, param_dtype, name=f"attention_{group.name}")
            interest, weights = unit(query, keys, length, row_mask)  # [B, D], [B, T]
            inputs.append(interest)
            intermediates[f"attention_weights/{group.name}"] = weights
            intermediates[f"interest/{group.name}"] = interest
        mlp_input = jnp.concatenate(inputs, axis=1)  # [B, F]
        mlp = MLP(config.mlp_hidden, "prelu", config.mlp_dropout, config, None, dtype, param_dtype, name="mlp")
        hidden = mlp(mlp_input, train, row_mask)  # [B, H]
        final = nn.Dense(1, kernel_init=kaiming_uniform, bias_init=bias_init(config), dtype=dtype, param_dtype=param_dtype,
                         name="final")
        logits = final(hidden)[:, 0].astype(wide(hidden.dtype))  # [B], the loss's dtype
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
