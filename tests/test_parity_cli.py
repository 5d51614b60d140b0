"""`python -m parity RUN_DIR` on run directories written by each backend (float64:
in child processes, since jax_enable_x64 is process-global)."""

import os
import pathlib
import subprocess
import sys

import pytest

import train

ROOT = pathlib.Path(__file__).resolve().parents[1]


def parity(*args):
    return subprocess.run([sys.executable, "-m", "parity", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ))


@pytest.mark.slow  # python -m parity in a child process
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_parity_command_on_a_run_directory(backend, tutorial_dir, tmp_path):
    run = tmp_path / backend
    assert train.main(["--backend", backend, "--data", tutorial_dir, "--epochs", "2", "--out", str(run), "--no-progress"]) == 0
    result = parity(str(run), "--dtype", "float64", "--batch-size", "500")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"weights from {backend}" in result.stdout
    for output in ("eval logits", "train logits", "eval attention_weights/liked", "train mlp.batchnorm.0.running_var", "test AUC"):
        assert output in result.stdout
    assert "all outputs within tolerance" in result.stdout


def test_parity_command_names_a_missing_run(tmp_path, capsys):
    from parity.__main__ import main  # in this process: float32, as the session already is

    assert main([str(tmp_path / "nothing"), "--dtype", "float32"]) == 2
    assert "config.json: missing" in capsys.readouterr().err
