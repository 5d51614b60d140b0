"""A run killed mid-epoch (SIGKILL, after a checkpoint) and resumed ends with
exactly the weights, history and metrics of an uninterrupted run."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from training import checkpoint
from training.run_dir import read_weights

ROOT = pathlib.Path(__file__).resolve().parents[1]
EVERY = 5  # checkpoint every 5 steps; an epoch of the synthetic tutorial data has 17 batches of 128


def command(backend, data, out, *extra):
    return [sys.executable, str(ROOT / "train.py"), "--backend", backend, "--data", data, "--out", str(out),
            "--epochs", "4", "--no-progress", *extra]


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_killed_and_resumed_run_matches_uninterrupted_run(backend, tutorial_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(command(backend, tutorial_dir, reference), check=True, env=env, capture_output=True)

    process = subprocess.Popen(
        command(backend, tutorial_dir, killed, "--checkpoint-every", str(EVERY)),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 600
    # Kill as soon as a checkpoint inside epoch 2 exists (step 20 of 17 per epoch).
    while not ((path := checkpoint.latest(str(killed))) and int(path.rsplit("-", 1)[1]) >= 4 * EVERY):
        assert process.poll() is None, f"run ended before a checkpoint: {process.stderr.read().decode()[-3000:]}"
        assert time.time() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (killed / "metrics.json").exists(), "the run finished before it was killed"
    with open(os.path.join(checkpoint.latest(str(killed)), "loop.json")) as f:
        stopped = json.load(f)
    assert stopped["step"] >= 4 * EVERY and stopped["position"] > 0  # inside an epoch

    resumed = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--backend", backend, "--resume", str(killed), "--no-progress",
         "--checkpoint-every", str(EVERY)],
        env=env, capture_output=True, text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr

    expected, _ = read_weights(str(reference / "model.safetensors"))
    actual, _ = read_weights(str(killed / "model.safetensors"))
    assert actual.keys() == expected.keys()
    for name in expected:
        assert np.array_equal(actual[name], expected[name]), name  # bit for bit
    # Validation figures per epoch are equal; the epoch's mean training loss is summed
    # per stretch between checkpoints, so it may differ in the last bits.
    history = [np.genfromtxt(run / "history.csv", delimiter=",", names=True) for run in (reference, killed)]
    for column in ("epoch", "valid_auc", "valid_logloss"):
        assert np.array_equal(history[0][column], history[1][column]), column
    np.testing.assert_allclose(history[1]["train_loss"], history[0]["train_loss"], rtol=1e-6)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (reference, killed)]
    assert metrics[0]["best_epoch"] == metrics[1]["best_epoch"] == 4  # the final weights are compared
    assert metrics[0]["test_auc"] == metrics[1]["test_auc"] and metrics[1]["steps"] == metrics[0]["steps"]


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--backend", "torch", "--resume", str(tmp_path)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 2 and "no checkpoint to resume from" in result.stderr
