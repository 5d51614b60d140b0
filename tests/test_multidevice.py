"""Runs tests/multidevice in a child process with 8 CPU devices, in float32 and
float64: XLA_FLAGS and jax_enable_x64 must be set before JAX starts."""

import os
import pathlib
import subprocess
import sys

import pytest
from conftest import child_xla_flags

pytestmark = pytest.mark.slow  # two child processes with 8 devices
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
def test_multidevice_suite(x64):
    env = dict(os.environ, XLA_FLAGS=child_xla_flags(devices=8), JAX_ENABLE_X64="1" if x64 else "0")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "multidevice")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )
    assert result.returncode == 0, f"8-device suite failed:\n{result.stdout[-8000:]}\n{result.stderr[-4000:]}"
    assert " passed" in result.stdout and "failed" not in result.stdout
