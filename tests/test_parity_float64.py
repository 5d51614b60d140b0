"""Runs tests/parity again in float64, in a child process: jax_enable_x64 is
process-global and must be set before JAX starts. The tutorial-layout and
seed-data tests (real-sized batches, 100 Adam steps) run in float32 only: in
float64 the random schemas and every option check the same operations to
1e-12, and the child needs no data folder."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_parity_suite_in_float64():
    env = dict(os.environ, JAX_ENABLE_X64="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "parity"),
         "-k", "not tutorial_layout and not seed_data"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )
    assert result.returncode == 0, f"float64 parity failed:\n{result.stdout[-8000:]}\n{result.stderr[-4000:]}"
    assert " passed" in result.stdout and "failed" not in result.stdout
