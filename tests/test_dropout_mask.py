"""The JAX dropout's hashed mask (din_jax/dropout.py) behaves as independent
Bernoulli draws: its rate, every output bit balanced, no correlation between
neighbouring elements, between keys, or between keys whose first hash round
lines up. Its rate and scaling inside the MLP, and the output distribution
against torch's dropout, are tests/parity/test_dropout.py's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from din_jax.dropout import Dropout, hash_bits, keep_mask, keyed_hash

SHAPE = (4096, 80)  # an attention layer's [rows, H]
N = SHAPE[0] * SHAPE[1]


def sigmas(observed: float, expected: float, n: int, p: float = 0.5) -> float:
    return abs(observed - expected) / np.sqrt(p * (1 - p) / n)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two boolean arrays; ~N(0, 1/n) when independent."""
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_the_mask_keeps_each_element_with_probability_one_minus_rate(rate):
    keep = np.asarray(keep_mask(jax.random.key(0), rate, SHAPE))
    assert keep.shape == SHAPE and keep.dtype == bool
    assert sigmas(keep.mean(), 1 - rate, N, rate) < 4
    # ... in every column and every block of rows alike (the flat index runs along rows)
    assert sigmas(keep.mean(axis=0).min(), 1 - rate, SHAPE[0], rate) < 5
    assert sigmas(keep.mean(axis=0).max(), 1 - rate, SHAPE[0], rate) < 5
    blocks = keep.reshape(64, -1).mean(axis=1)
    assert max(sigmas(b, 1 - rate, keep.size // 64, rate) for b in blocks) < 5


def test_every_output_bit_is_balanced():
    bits = np.asarray(hash_bits(jax.random.key(1), (N,)))
    for bit in range(32):
        assert sigmas(((bits >> bit) & 1).mean(), 0.5, N) < 4, bit


def test_neighbours_and_keys_are_uncorrelated():
    keep = np.asarray(keep_mask(jax.random.key(2), 0.5, (N,)))
    limit = 4 / np.sqrt(N)
    for lag in (1, 2, SHAPE[1], 1024):  # the next element, the next row, further
        assert abs(correlation(keep[:-lag], keep[lag:])) < limit, lag
    one, other = jax.random.split(jax.random.key(3))  # the step keys of two training steps
    assert abs(correlation(keep_mask(one, 0.5, (N,)), keep_mask(other, 0.5, (N,)))) < limit


def test_keys_whose_first_round_lines_up_are_uncorrelated():
    """mix32(index + k0) alone would make key k0 - s the same mask shifted by s;
    the second round's k1 breaks that."""
    index = jnp.arange(N, dtype=jnp.uint32)
    k0, k1, shift = jnp.uint32(12345), jnp.uint32(0xDEADBEEF), 7
    a = keyed_hash(index[shift:], k0, k1) >= jnp.uint32(2**31)
    b = keyed_hash(index[:-shift], k0 + jnp.uint32(shift), k1 ^ jnp.uint32(1)) >= jnp.uint32(2**31)
    same_k1 = keyed_hash(index[:-shift], k0 + jnp.uint32(shift), k1) >= jnp.uint32(2**31)
    assert np.array_equal(a, same_k1)  # the lined-up first round, as built
    assert abs(correlation(np.asarray(a), np.asarray(b))) < 4 / np.sqrt(N)


def test_an_array_past_a_uint32_index_still_gets_a_mask():
    """[65536, 65536] (2^32 elements): only its shape is traced, nothing allocated."""
    shape = (2**16, 2**16)
    mask = jax.eval_shape(lambda key: keep_mask(key, 0.1, shape), jax.random.key(5))
    assert mask.shape == shape and mask.dtype == bool
    with pytest.raises(ValueError, match="2\\^32"):
        jax.eval_shape(lambda key: hash_bits(key, shape), jax.random.key(5))


def test_the_module_scales_kept_values_and_is_off_when_deterministic():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(256, 16)), jnp.float32)
    out = Dropout(0.25).apply({}, x, rngs={"dropout": jax.random.key(4)})
    kept = np.asarray(out) != 0
    np.testing.assert_allclose(np.asarray(out)[kept], np.asarray(x)[kept] / 0.75, rtol=1e-6)
    assert 0.6 < kept.mean() < 0.9
    assert Dropout(0.25, deterministic=True).apply({}, x) is x
    assert Dropout(0.0).apply({}, x) is x
    assert not np.any(np.asarray(Dropout(1.0).apply({}, x, rngs={"dropout": jax.random.key(4)})))
    again = Dropout(0.25).apply({}, x, rngs={"dropout": jax.random.key(4)})
    assert np.array_equal(np.asarray(out), np.asarray(again))  # a key is one mask: resumed runs repeat it
