"""Runs the tests marked `optimised` in a child process compiled at -O1: each
compares two different compiled programs bit for bit (streamed against
device-resident input, a sharded cache entry against a local one), which holds
for optimised machine code; the session compiles at -O0 (tests/conftest.py)."""

import os
import pathlib

import pytest
from conftest import child_pytest, child_xla_flags

pytestmark = pytest.mark.slow  # a child process
ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_bit_for_bit_comparisons_in_optimised_code(tmp_path):
    """Exactly the two tests marked `optimised` run and pass; none skips."""
    env = dict(os.environ, XLA_FLAGS=f"{child_xla_flags()} --xla_backend_optimization_level=1", DIN_TEST_OPTIMISED="1")
    files = [str(ROOT / "tests" / name) for name in ("test_training.py", "test_beam_build.py")]
    ran = child_pytest(files, env, 900, tmp_path)
    assert ran["passed"] == ran["tests"] == 2 and not ran["skipped"], (ran["skipped"], ran["output"])
