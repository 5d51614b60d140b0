"""Runs tests/multidevice in a child process with 8 CPU devices, in float32 and
float64: XLA_FLAGS and jax_enable_x64 must be set before JAX starts."""

import os
import pathlib

import pytest
from conftest import child_pytest, child_xla_flags

pytestmark = pytest.mark.slow  # two child processes with 8 devices
ROOT = pathlib.Path(__file__).resolve().parents[1]
# The tests of tests/multidevice/test_mesh.py, each run once: a child that ran fewer, or skipped one, fails.
MULTIDEVICE_TESTS = 5


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
def test_multidevice_suite(x64, tmp_path):
    """Every test of tests/multidevice passes in the child; none skips."""
    env = dict(os.environ, XLA_FLAGS=child_xla_flags(devices=8), JAX_ENABLE_X64="1" if x64 else "0")
    ran = child_pytest([str(ROOT / "tests" / "multidevice")], env, 1200, tmp_path)
    assert ran["failures"] == 0 and not ran["skipped"], (ran["skipped"], ran["output"])
    assert ran["passed"] == ran["tests"] == MULTIDEVICE_TESTS, ran["output"]
