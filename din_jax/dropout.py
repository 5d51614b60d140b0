"""Dropout whose mask is a keyed hash of each element's index.

flax.linen.Dropout draws its mask with jax.random.bernoulli: a Threefry
block (20 rounds of 32-bit add/rotate/xor) per two elements. Over the attention
MLP's [B * T, H] rows that was a quarter of a training step on a CPU
(docs/performance.md). Here one Threefry draw per call gives a 64-bit key,
and each element's 32 random bits are an integer hash of its flat index under
that key: a few multiplies and shifts, elementwise, so XLA fuses them into the
ops around them, and the same masks come out however the array is sharded.

The mask is Bernoulli(1 - rate) per element, its threshold exact to 2^-32
(jax.random.bernoulli's float uniform is exact to 2^-23), kept values scaled
by 1 / (1 - rate): flax's Dropout in distribution, a different stream. The
torch reference keeps torch.nn.Dropout; tests/parity/test_dropout.py compares
the two backends' rates, scaling and output distributions, and
tests/test_dropout_mask.py the mask's statistics.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn


def mix32(h: jax.Array) -> jax.Array:
    """A bijection of uint32 with full avalanche: every input bit flips each
    output bit with probability ~1/2 (C. Wellons' "lowbias32", hash-prospector)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x7FEB352D)
    h = h ^ (h >> 15)
    h = h * jnp.uint32(0x846CA68B)
    return h ^ (h >> 16)


def keyed_hash(index: jax.Array, k0: jax.Array, k1: jax.Array) -> jax.Array:
    """uint32 [...] -> uint32 [...]: mix32(mix32(index + k0) ^ k1). The second
    round keys the hash nonlinearly, so that two keys do not give shifted
    copies of one sequence (as mix32(index + k0) alone would)."""
    return mix32(mix32(index + k0) ^ k1)


def hash_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint32 bits [*shape]: keyed_hash of each element's flat index under the key's two words."""
    k0, k1 = jax.random.bits(key, (2,), jnp.uint32)
    size = math.prod(shape)
    if size >= 2**32:  # the index is uint32
        raise ValueError(f"dropout over {size} elements: at most 2^32 - 1 per call")
    return keyed_hash(jax.lax.iota(jnp.uint32, size).reshape(shape), k0, k1)


def keep_mask(key: jax.Array, rate: float, shape: tuple[int, ...]) -> jax.Array:
    """bool [*shape], True with probability 1 - rate (to 2^-32). An array of
    2^32 elements or more (past a uint32 index) takes jax.random's Threefry
    bits instead: the same distribution, at Threefry's cost."""
    if math.prod(shape) >= 2**32:
        return jax.random.bernoulli(key, 1.0 - rate, shape)
    threshold = min(round(rate * 2**32), 2**32 - 1)
    return hash_bits(key, shape) >= jnp.uint32(threshold)


class Dropout(nn.Module):
    """nn.Dropout's interface and semantics (rate, deterministic, the 'dropout'
    RNG stream), with keep_mask's hashed mask."""

    rate: float
    deterministic: bool = False
    rng_collection: str = "dropout"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.deterministic or self.rate == 0.0:
            return x
        if self.rate >= 1.0:
            return jnp.zeros_like(x)
        keep = keep_mask(self.make_rng(self.rng_collection), self.rate, x.shape)
        return jax.lax.select(keep, x / jnp.asarray(1.0 - self.rate, x.dtype), jnp.zeros_like(x))
