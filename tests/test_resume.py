"""Fault test: a checkpointing run killed (SIGKILL) again and again, once in the
middle of writing a checkpoint, its newest checkpoint then damaged, and
resumed each time with no flag but --resume, ends with exactly the weights,
history and metrics of an uninterrupted run. The JAX run is sharded (4 CPU
devices, data=2 x model=2 with split tables): its placement comes back from
config.json too."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import child_xla_flags
from training import checkpoint
from training.run_dir import read_weights

pytestmark = pytest.mark.slow  # training processes killed and resumed
ROOT = pathlib.Path(__file__).resolve().parents[1]
EVERY = 5  # checkpoint every 5 steps; an epoch of the synthetic tutorial data has 17 batches of 128
EPOCHS = 4  # 68 steps in all
ENV = dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS=child_xla_flags(devices=4))
PLACEMENT = {"torch": [], "jax": ["--mesh", "data=2,model=2", "--shard-embeddings"]}


def command(backend, data, out, *extra):
    return [sys.executable, str(ROOT / "train.py"), "--backend", backend, "--data", data, "--out", str(out),
            "--epochs", str(EPOCHS), "--no-progress", *PLACEMENT[backend], *extra]


def resume(run, *extra):
    """Every setting comes from the run's config.json."""
    return [sys.executable, str(ROOT / "train.py"), "--resume", str(run), "--no-progress", *extra]


def writing(run) -> bool:
    folder = run / "checkpoints"
    return folder.is_dir() and any(name.startswith(".tmp-step") for name in os.listdir(folder))


def step(run) -> int:
    path = checkpoint.latest(str(run))
    return int(path.rsplit("-", 1)[1]) if path else 0


def kill_when(argv, run, condition, env=ENV) -> None:
    """Starts argv and SIGKILLs it as soon as condition() holds."""
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    try:
        while not condition():
            assert process.poll() is None, f"run ended before it was killed: {process.stderr.read().decode()[-3000:]}"
            assert time.time() < deadline
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
    finally:
        process.kill()
        process.stderr.close()
    assert not (run / "metrics.json").exists() and (run / "UNFINISHED").exists()


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_killed_again_and_again_then_resumed_matches_uninterrupted_run(backend, tutorial_dir, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(command(backend, tutorial_dir, reference), check=True, env=ENV, capture_output=True)
    rng = np.random.default_rng(0)

    # 1: in the middle of writing a checkpoint, between its write and its rename
    # (the one before it whole): the run holds there (checkpoint.HOLD) until killed.
    held = killed / "checkpoints" / ".tmp-held"
    kill_when(command(backend, tutorial_dir, killed, "--checkpoint-every", str(EVERY)), killed, held.exists,
              env=dict(ENV, **{checkpoint.HOLD: str(2 * EVERY)}))
    assert (killed / "checkpoints" / f".tmp-step-{2 * EVERY:08d}" / "loop.json").exists()  # written, not renamed
    assert step(killed) == EVERY
    # Then at random steps, each after a resume (JAX: one, its launches cost more).
    for _ in range({"torch": 2, "jax": 1}[backend]):
        target = step(killed) + int(rng.integers(EVERY, 3 * EVERY))
        kill_when(resume(killed), killed, lambda: step(killed) >= target)
    stopped = checkpoint.read_loop(checkpoint.latest(str(killed)))
    # The two newest are kept (a third only when killed between writing one and pruning).
    assert stopped.step < EPOCHS * 17 and len(checkpoint.candidates(str(killed))) >= 2

    # The newest checkpoint damaged: resuming falls back to the one before it.
    newest = pathlib.Path(checkpoint.latest(str(killed)))
    for path in sorted((newest / "state").rglob("*")):
        if path.is_file() and path.stat().st_size > 0:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    resumed = subprocess.run(resume(killed), env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr and "falling back to the one before it" in resumed.stderr
    if backend == "jax":
        assert "mesh data=2,model=2, sharded embeddings" in resumed.stderr
    assert not (killed / "UNFINISHED").exists() and not any(
        name.startswith(".tmp") for name in os.listdir(killed / "checkpoints"))

    expected, _ = read_weights(str(reference / "model.safetensors"))
    actual, _ = read_weights(str(killed / "model.safetensors"))
    assert actual.keys() == expected.keys()
    for name in expected:
        assert np.array_equal(actual[name], expected[name]), name  # bit for bit
    # Validation figures per epoch are equal; the epoch's mean training loss is summed
    # per stretch between checkpoints, so it may differ in the last bits.
    history = [np.genfromtxt(run / "history.csv", delimiter=",", names=True) for run in (reference, killed)]
    for column in ("epoch", "valid_auc", "valid_gauc", "valid_logloss"):
        assert np.array_equal(history[0][column], history[1][column], equal_nan=True), column  # GAUC: NaN here
    np.testing.assert_allclose(history[1]["train_loss"], history[0]["train_loss"], rtol=1e-6)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (reference, killed)]
    assert metrics[0]["best_epoch"] == metrics[1]["best_epoch"] == EPOCHS  # the final weights are compared
    assert metrics[0]["test_auc"] == metrics[1]["test_auc"] and metrics[1]["steps"] == metrics[0]["steps"]


def test_ctrl_c_stops_cleanly_at_a_whole_checkpoint(tutorial_dir, tmp_path):
    run = tmp_path / "run"
    argv = [sys.executable, str(ROOT / "train.py"), "--backend", "jax", "--data", tutorial_dir, "--out", str(run),
            "--epochs", "30", "--checkpoint-every", "3", "--no-progress"]  # orbax writes in background threads
    env = dict(ENV, XLA_FLAGS=child_xla_flags())  # one device
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not step(run):
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=300) == 130
    err = process.stderr.read()
    assert "Traceback" not in err and "interrupted: " in err and "--resume" in err
    assert (run / "UNFINISHED").exists() and not any(name.startswith(".tmp") for name in os.listdir(run / "checkpoints"))
    assert checkpoint.read_loop(checkpoint.latest(str(run))).step % 3 == 0
