"""Runs tests/parity again in float64, in a child process: jax_enable_x64 is
process-global and must be set before JAX starts. Every test runs there,
the optimiser-step tests included: 100 Adam steps on the tutorial layout and
ten for every option, each parameter and statistic compared at 1e-9."""

import os
import pathlib

import pytest
from conftest import child_pytest, child_xla_flags

pytestmark = pytest.mark.slow  # a child process compiling every parity test in float64
ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_parity_suite_in_float64(tmp_path):
    """Every test passes except those marked float32_only, which skip by design
    (dtype-independent checks: what float32 catches, float64 catches), and no
    other skips."""
    env = dict(os.environ, XLA_FLAGS=child_xla_flags(), JAX_ENABLE_X64="1")
    ran = child_pytest([str(ROOT / "tests" / "parity")], env, 1200, tmp_path)
    assert ran["failures"] == 0 and ran["passed"] > 50, ran["output"]
    assert set(ran["skipped"].values()) <= {"dtype-independent: runs in the float32 session"}, ran["skipped"]
    assert ran["passed"] + len(ran["skipped"]) == ran["tests"]
