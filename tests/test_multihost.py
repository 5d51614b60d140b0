"""A real two-process JAX job on this machine: `train.py --distributed`, two
processes of 4 CPU devices each (gloo collectives), against one process.

Each process reads the data and feeds only its own devices' slice of every
batch; weights are gathered across processes; process 0 writes the run
directory; checkpoints are written by both (orbax, each its own shards).
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import child_xla_flags
from training.run_dir import read_weights

pytestmark = pytest.mark.slow  # a two-process JAX job
ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def train(tutorial_dir, out, mesh, devices, extra=(), env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS=child_xla_flags(devices))
    env.update(env_extra or {})
    argv = [sys.executable, str(ROOT / "train.py"), "--backend", "jax", "--data", tutorial_dir, "--out", str(out),
            "--epochs", "1", "--batch-size", "128", "--mesh", mesh, "--no-progress", *extra,
            # Decay on the attention too, and Adam's eps at 1e-6: without them the Dense biases that feed a
            # BatchNorm (true gradient 0) step by each program's rounding noise over Adam's eps
            # (tests/parity/test_parity.py, STEP_DECAY and ZERO_GRADIENT_BIASES; seen: 1.9e-5 in one epoch).
            "--attention-weight-decay", "0.001", "--adam-eps", "1e-6"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


# One case keeps the suite short: data=4 x model=2 with sharded tables spans
# both processes on both axes (data=8 alone passes too).
@pytest.mark.parametrize("mesh, shard", [("data=4,model=2", True)], ids=["sharded"])
def test_two_process_job_matches_one_process(tutorial_dir, tmp_path, mesh, shard):
    single = train(tutorial_dir, tmp_path / "single", "data=1", 1)
    assert single.wait(timeout=600) == 0, single.stdout.read()[-3000:]

    port = free_port()
    extra = ["--distributed", "--checkpoint-every", "16"] + (["--shard-embeddings"] if shard else [])
    jobs = [
        train(tutorial_dir, tmp_path / "multi", mesh, 4, extra,
              {"JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)})
        for i in (0, 1)
    ]
    outputs = []
    for job in jobs:
        try:
            job.wait(timeout=600)
        finally:
            job.kill()
        outputs.append(job.stdout.read())
    assert [job.returncode for job in jobs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert "2 process" in outputs[0] and "8 x cpu" in outputs[0]

    expected, _ = read_weights(str(tmp_path / "single" / "model.safetensors"))
    actual, _ = read_weights(str(tmp_path / "multi" / "model.safetensors"))
    assert actual.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=1e-5, err_msg=name)
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("single", "multi")]
    assert abs(metrics[0]["test_auc"] - metrics[1]["test_auc"]) < 1e-4
    assert (tmp_path / "multi" / "checkpoints").is_dir()
