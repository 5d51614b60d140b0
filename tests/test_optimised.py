"""Runs the tests marked `optimised` in a child process compiled at -O1: each
compares two different compiled programs bit for bit (streamed against
device-resident input, a sharded cache entry against a local one), which holds
for optimised machine code; the session compiles at -O0 (tests/conftest.py)."""

import os
import pathlib
import subprocess
import sys

import pytest
from conftest import child_xla_flags

pytestmark = pytest.mark.slow  # a child process
ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_bit_for_bit_comparisons_in_optimised_code():
    env = dict(os.environ, XLA_FLAGS=f"{child_xla_flags()} --xla_backend_optimization_level=1", DIN_TEST_OPTIMISED="1")
    files = [str(ROOT / "tests" / name) for name in ("test_training.py", "test_beam_build.py")]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"optimised tests failed:\n{result.stdout[-8000:]}\n{result.stderr[-4000:]}"
    assert "2 passed" in result.stdout and "failed" not in result.stdout, result.stdout[-2000:]
