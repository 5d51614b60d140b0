"""`python -m parity RUN_DIR` on run directories written by each backend."""

import os
import pathlib
import subprocess
import sys

import pytest

import train

pytestmark = pytest.mark.slow  # python -m parity in child processes
ROOT = pathlib.Path(__file__).resolve().parents[1]


def parity(*args):
    return subprocess.run([sys.executable, "-m", "parity", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ))


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_parity_command_on_a_run_directory(backend, tutorial_dir, tmp_path):
    run = tmp_path / backend
    assert train.main(["--backend", backend, "--data", tutorial_dir, "--epochs", "2", "--out", str(run), "--no-progress"]) == 0
    result = parity(str(run), "--dtype", "float64", "--batch-size", "500")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"weights from {backend}" in result.stdout
    for output in ("eval logits", "train logits", "eval attention_weights/group1", "train mlp.batchnorm.0.running_var", "test AUC"):
        assert output in result.stdout
    assert "all outputs within tolerance" in result.stdout


def test_parity_command_names_a_missing_run(tmp_path):
    result = parity(str(tmp_path / "nothing"))
    assert result.returncode == 2
    assert "config.json: missing" in result.stderr
