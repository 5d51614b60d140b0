"""bench/device.py, the accelerator's one command, keeps working: run on the
CPU at tiny sizes, its JSON holds the parity and both shapes' rates.

In a child process as a user runs it: the session compiles with elemental
emitters at -O0 and gives torch one thread (tests/conftest.py), and the
float32 rounding of train-mode BatchNorm over the tiny shape's near-constant
columns then differs by a little more than the parity tolerance (1.2e-5
against 1e-5; 1.2e-6 as a user runs it)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # a child process: two synthetic builds and four small compilations


def test_the_device_bench_runs_at_tiny_sizes(tmp_path):
    out = tmp_path / "device.json"
    # Nor the session's compilation cache: its programs were compiled with the session's flags.
    # nor its one OpenMP thread for torch (a user's torch sums with its own threads' order).
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "OMP_NUM_THREADS")}
    env["DIN_XLA_CACHE"] = str(tmp_path / "xla")
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "device.py"), "--tiny", "--json", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["peaks"]["float32_tflops"] > 0
    for shape in ("movielens", "electronics"):
        parity = results["shapes"][shape]["parity"]
        assert all(parity[f"{kind}_within_tolerance"] for kind in ("forward_train", "forward_eval", "gradients")), parity
        for size in ("16", "32"):
            row = results["shapes"][shape]["batch_sizes"][size]
            assert row["train_samples_per_s"] > 0 and row["eval_samples_per_s"] > 0
            assert 0 < row["train_of_peak_flops"] and row["cost_per_sample"]["train"]["flops"] > 0
