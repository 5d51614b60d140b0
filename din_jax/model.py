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

The attention unit computes what the padded [B, T] computation does (torch's)
over only the rows it depends on: real history positions packed, and one
row per example standing for its padded positions (AttentionUnit).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from core.config import PAPER_EMBEDDING_STD, DINConfig
from din_jax.packing import packed_capacity, packs
from data.schema import ROW_MASK, AttentionGroup, FeatureSchema
from din_jax.dropout import Dropout

Batch = dict[str, jax.Array]
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
    """Train-mode batch statistics of [N, H] rows: mean [H], biased variance [H],
    total row weight [], and the rows minus their mean [N, H] where the
    producer has them (saves a pass, and its subtraction's backward)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array
    centred: jax.Array | None = None


class BatchNorm(nn.Module):
    """torch.nn.BatchNorm1d over axis 0 of [N, H].

    Train mode normalises with the biased batch variance and updates the
    running statistics with torch's momentum convention (new = (1 - m) * old
    + m * batch) and the UNBIASED batch variance, which flax's BatchNorm does
    not do. Statistics are two-pass sums weighted by the row mask; a weight
    may count several equal rows (the attention's padding row).
    """

    eps: float
    momentum: float
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

        centred = None
        if train:
            if moments is not None:
                mean, var, count, centred = moments
            else:  # two-pass weighted sums
                weight = (jnp.ones(x.shape[0], x.dtype) if mask is None else mask.astype(x.dtype))[:, None]  # [N, 1]
                count = jnp.sum(weight)
                # max(., 1): a mask may leave 0 or 1 rows, which must not give NaN.
                mean = jnp.sum(weight * x, axis=0) / jnp.maximum(count, 1)  # [H]
                var = jnp.sum(weight * jnp.square(x - mean), axis=0) / jnp.maximum(count, 1)  # [H], biased
            if not self.is_initializing():
                m = self.momentum
                running_mean.value = (1 - m) * running_mean.value + m * mean
                running_var.value = (1 - m) * running_var.value + m * var * count / jnp.maximum(count - 1, 1)
                tracked.value = tracked.value + 1
        else:
            mean, var = running_mean.value, running_var.value
        # One multiply per element by a per-column factor (torch's CPU kernel
        # does the same); the backward then holds no [N, H] division.
        inv_std = jax.lax.rsqrt(var + self.eps)  # [H]
        gain, shift = inv_std, jnp.zeros_like(mean)
        if self.affine:  # the paper's Dice has no weight and bias
            scale = self.param("scale", batchnorm_scale_init, (features,), self.param_dtype)
            bias = self.param("bias", nn.initializers.zeros, (features,), self.param_dtype)
            gain, shift = inv_std * scale.astype(x.dtype), bias.astype(x.dtype)
        out_centred = (x - mean if centred is None else centred.astype(x.dtype)) * gain  # [N, H], out minus its mean
        out = out_centred + shift
        if not with_moments:
            return out.astype(dtype)
        # out's own weighted batch moments, exactly: mean = bias, variance = scale^2 var / (var + eps).
        out_var = jnp.square(gain) * var
        out_moments = Moments(shift, out_var, count, out_centred) if train else None
        return out.astype(dtype), out_moments


class Dice(nn.Module):
    """Dice(x) = alpha * (1 - p) * x + p * x with p = sigmoid(BatchNorm(x));
    affine=False is the paper's form (a BatchNorm with no weight and bias).
    After a BatchNorm (every layer of the attention MLP) x's batch statistics
    are that BatchNorm's output moments, passed in rather than recomputed."""

    eps: float
    momentum: float
    affine: bool = True
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, mask: jax.Array | None = None,
                 moments: Moments | None = None) -> jax.Array:  # [N, H]
        """moments: x's train-mode batch statistics, when known (BatchNorm's with_moments)."""
        batchnorm = BatchNorm(self.eps, self.momentum, self.affine, self.param_dtype, name="batchnorm")
        p = nn.sigmoid(batchnorm(x, train, mask, moments))
        alpha = self.param("alpha", nn.initializers.zeros, (x.shape[-1],), self.param_dtype)
        return (x * (alpha + (1 - alpha) * p)).astype(x.dtype)  # alpha (1 - p) x + p x


class PairDense(nn.Module):
    """The attention's first layer, Dense([q, k, q - k, q * k]) for queries
    q [B, D] and keys, computed without the [.., 4D] input: with the kernel's
    four [D, H] blocks W_q, W_k, W_d, W_p,

        [q, k, q - k, q * k] W + b = (q (W_q + W_d) + b) + k (W_k - W_d) + (q * k) W_p

    a query term once per example, and per key either one [D, H] matrix per
    example, (W_k - W_d) + diag(q) W_p, applied to its [T, D] keys (keys
    [B, T, D]), or the two key products of packed rows (keys [N, D] of the
    examples `example` [N]). The same parameters as nn.Dense(4D -> H) (name,
    shape, initialisation), so weights convert to and from torch's Linear
    unchanged; the torch reference computes the concatenated form
    (config.attention_input "concat" does here too), and the parity suite
    compares the two."""

    features: int
    kernel_init: Any
    bias_init: Any
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, query: jax.Array, keys: jax.Array, example: jax.Array | None = None) -> jax.Array:
        """[B, D], [B, T, D] -> [B, T, H]; or [B, D], [N, D], example [N] -> [N, H]."""
        dim = keys.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (4 * dim, self.features), self.param_dtype)  # [4D, H]
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)  # [H]
        query, keys, kernel, bias = nn.dtypes.promote_dtype(query, keys, kernel, bias, dtype=self.dtype)
        w_q, w_k, w_d, w_p = jnp.split(kernel, 4)  # each [D, H]
        query_term = query @ (w_q + w_d) + bias  # [B, H]
        if example is None:
            per_key = (w_k - w_d) + query[:, :, None] * w_p  # [B, D, H]
            return jnp.einsum("btd,bdh->bth", keys, per_key) + query_term[:, None, :]  # [B, T, H]
        queries = jnp.take(query, example, axis=0)  # [N, D]
        return jnp.take(query_term, example, axis=0) + keys @ (w_k - w_d) + (queries * keys) @ w_p  # [N, H]


class MLP(nn.Module):
    """Layers of Dense -> BatchNorm -> activation (Dice or PReLU) -> Dropout."""

    hidden: tuple[int, ...]
    activation: str
    dropout: float
    config: DINConfig
    dtype: Any = None  # the computation's (None: the parameters')
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array | tuple[jax.Array, ...], train: bool, mask: jax.Array | None = None
                 ) -> jax.Array:
        """x [N, in] (or [B, T, in]: B * T rows), or PairDense's arguments (query,
        keys[, example]) for the attention's [q, k, q - k, q * k] input ->
        [N, hidden[-1]]; mask [N] weighs the rows in the BatchNorm statistics."""
        config = self.config
        for i, features in enumerate(self.hidden):
            kind = PairDense if isinstance(x, tuple) else nn.Dense
            dense = kind(
                features, kernel_init=kaiming_uniform, bias_init=bias_init(config), dtype=self.dtype,
                param_dtype=self.param_dtype, name=f"dense_{i}",
            )
            x = dense(*x) if isinstance(x, tuple) else dense(x)
            x = x.reshape(-1, features)  # a [B, T, H] first layer's output is B * T rows
            batchnorm = BatchNorm(config.bn_eps, config.bn_momentum, param_dtype=self.param_dtype,
                                  name=f"batchnorm_{i}")
            x, moments = batchnorm(x, train, mask, with_moments=True)
            if self.activation == "dice":
                dice = Dice(config.dice_eps, config.bn_momentum, config.dice == "tutorial",
                            self.param_dtype, name=f"activation_{i}")
                x = dice(x, train, mask, moments)
            elif self.activation == "prelu":
                x = nn.PReLU(param_dtype=self.param_dtype, negative_slope_init=0.25, name=f"activation_{i}")(x)
            else:
                raise ValueError(f"activation must be 'dice' or 'prelu', got {self.activation!r}")
            x = Dropout(self.dropout, deterministic=not train)(x)
        return x


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
    real = (jnp.arange(keys.shape[1]) < length[:, None]).astype(wide(keys.dtype))  # [B, T]
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
        example_weight = jnp.ones(batch, wide(keys.dtype)) if row_mask is None else row_mask.astype(wide(keys.dtype))
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
        scores = scores.astype(wide(keys.dtype)) / math.sqrt(dim)  # [B, T], normalised in >= float32
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
