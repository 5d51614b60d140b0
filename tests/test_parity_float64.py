"""Runs tests/parity again in float64, in a child process: jax_enable_x64 is
process-global and must be set before JAX starts. Every test runs there,
the optimiser-step tests included: 100 Adam steps on the tutorial layout and
ten for every option, each parameter and statistic compared at 1e-9."""

import os
import pathlib
import subprocess
import sys

import pytest
from conftest import child_xla_flags

pytestmark = pytest.mark.slow  # a child process compiling every parity test in float64
ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_parity_suite_in_float64():
    env = dict(os.environ, XLA_FLAGS=child_xla_flags(), JAX_ENABLE_X64="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "parity")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )
    assert result.returncode == 0, f"float64 parity failed:\n{result.stdout[-8000:]}\n{result.stderr[-4000:]}"
    assert " passed" in result.stdout and "failed" not in result.stdout
