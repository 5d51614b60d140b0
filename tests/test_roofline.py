"""bench/roofline.py's count of a compiled program's passes over big arrays,
on programs whose passes are known: one elementwise loop reads and writes
its array once, a reduction only reads it, and XLA:CPU computes a sine that
feeds a reduction's consumer in a loop of its own (an array written and read
again)."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # bench/ is scripts, not an installed package
from bench.roofline import big_passes  # noqa: E402

MIB = 1 << 20
X = jnp.zeros((2048, 1024), jnp.float32)  # 8 MiB


def passes(fn, threshold: int = 4 * MIB) -> dict:
    return big_passes(jax.jit(fn).lower(X).compile(), threshold)


def test_an_elementwise_loop_reads_and_writes_its_array_once():
    assert passes(lambda x: x * 2 + 1) == {"ops": 1, "read": 8 * MIB, "written": 8 * MIB, "threshold": 4 * MIB}


def test_a_reduction_reads_its_array_and_writes_a_small_one():
    assert passes(lambda x: x.sum(0)) == {"ops": 1, "read": 8 * MIB, "written": 0, "threshold": 4 * MIB}


def test_an_unfused_producer_is_a_pass_of_its_own():
    # sin(x) written (8 MiB), then one loop reading x and it for the sum and the add, writing the result.
    assert passes(lambda x: jnp.sin(x) + x.sum(0)) == {"ops": 2, "read": 24 * MIB, "written": 16 * MIB,
                                                     "threshold": 4 * MIB}


def test_arrays_under_the_threshold_are_not_counted():
    assert passes(lambda x: jnp.sin(x) + x.sum(0), threshold=16 * MIB)["ops"] == 0
