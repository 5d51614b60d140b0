"""The Flax layers DIN is built from, each torch's twin (din_torch/layers.py):
BatchNorm (torch.nn.BatchNorm1d's arithmetic, optionally over weighted rows),
Dice (the paper's data-adaptive activation), PairDense (the attention MLP's
first layer over [q, k, q - k, q * k], computed split) and the MLP of Dense,
BatchNorm, activation and dropout layers. Shapes: N rows, H features, B, T,
D (docs/design.md)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from core.config import DINConfig
from din_jax.dropout import Dropout

# The initialisation of docs/model.md, as torch's init functions define it.
kaiming_uniform = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")  # bound sqrt(6 / fan_in)
normal_bias = nn.initializers.normal(stddev=1.0)


def batchnorm_scale_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)  # N(1, 0.02)


def bias_init(config: DINConfig) -> nn.initializers.Initializer:
    """The tutorial's N(0, 1) Linear biases, or zeros (config.init 'paper')."""
    return nn.initializers.zeros if config.init == "paper" else normal_bias


def at_least_float32(dtype: Any) -> Any:
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
    def __call__(self, x: jax.Array, train: bool, mask: jax.Array | None = None, moments: Moments | None = None
                 ) -> tuple[jax.Array, Moments | None]:
        """x [N, H] -> (out [N, H], out's train-mode Moments; None in eval mode);
        mask [N] (1 = real row, 0 = ignored) weights the statistics.

        Statistics and the normalisation run in at least float32 (x may be bfloat16).
        `moments`: x's train-mode batch statistics, when the caller knows them.
        A normalised x's statistics are known exactly without a pass over it,
        so Dice after BatchNorm (the attention MLP) takes out's Moments and
        skips two reductions over [N, H] forward and their backward (under
        jit, a caller that drops them costs nothing).
        """
        features, dtype = x.shape[-1], x.dtype
        x = x.astype(at_least_float32(dtype))
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
        """moments: x's train-mode batch statistics, when known (a BatchNorm's output Moments)."""
        batchnorm = BatchNorm(self.eps, self.momentum, self.affine, self.param_dtype, name="batchnorm")
        p = nn.sigmoid(batchnorm(x, train, mask, moments)[0])
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
            layer = PairDense if isinstance(x, tuple) else nn.Dense
            dense = layer(
                features, kernel_init=kaiming_uniform, bias_init=bias_init(config), dtype=self.dtype,
                param_dtype=self.param_dtype, name=f"dense_{i}",
            )
            x = dense(*x) if isinstance(x, tuple) else dense(x)
            x = x.reshape(-1, features)  # a [B, T, H] first layer's output is B * T rows
            batchnorm = BatchNorm(config.bn_eps, config.bn_momentum, param_dtype=self.param_dtype,
                                  name=f"batchnorm_{i}")
            x, moments = batchnorm(x, train, mask)
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
