"""The run directory: what a training run leaves behind, written atomically.

RUN_DIR/
  config.json        the DINConfig
  encoders.json      fitted encoders and the feature schema
  model.safetensors  best weights (parameters and BatchNorm statistics), named
                     by the backend that wrote them; metadata["backend"] says which
  history.csv        one row per epoch
  history.png        its picture: losses and validation AUC, the best epoch marked
  metrics.json       final figures (backend, best_epoch, valid/test metrics, speed)
  UNFINISHED         present from the start until metrics.json is written: the
                     run is still training, was interrupted or failed

Every file goes to a temporary name first and is renamed into place, so an
interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import csv
import io
import datetime
import json
import math
import os
import tempfile
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file
from safetensors import safe_open

from core.config import CONTINUED_FROM, DINConfig
from core.errors import RunError
from data.encoders import FeatureEncoders

WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"  # Adam's state at the best epoch: what a continued run starts from
UNFINISHED = "UNFINISHED"


def _atomic(path: str, write) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; run files are for sharing.
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_file(path: str, write) -> None:
    """`write(tmp)` writes the file at a temporary path; it is then renamed to `path`."""
    _atomic(path, write)


def write_text(path: str, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    _atomic(path, write)


def _json_safe(value: Any) -> Any:
    """NaN (e.g. GAUC with no eligible user) becomes null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def write_json(path: str, value: Any) -> None:
    write_text(path, json.dumps(_json_safe(value), indent=2, sort_keys=True) + "\n")


def write_weights(path: str, weights: dict[str, np.ndarray], backend: str) -> None:
    # np.array, not np.ascontiguousarray: the latter turns 0-d arrays into shape [1].
    tensors = {name: np.array(value, order="C") for name, value in weights.items()}
    _atomic(path, lambda tmp: save_file(tensors, tmp, metadata={"backend": backend}))


def read_weights(path: str) -> tuple[dict[str, np.ndarray], str]:
    """(weights, name of the backend that wrote them)."""
    if not os.path.isfile(path):
        raise RunError(f"{path}: no such weights file")
    try:
        with safe_open(path, framework="numpy") as f:
            backend = (f.metadata() or {}).get("backend", "")
        return load_file(path), backend
    except Exception as error:  # safetensors raises its own error types for a truncated or corrupt file
        raise RunError(f"{path}: damaged weights file ({type(error).__name__}: {error})") from None


def write_history(path: str, rows: list[dict[str, float]]) -> None:
    out = io.StringIO()
    # Every column any row has (a run resumed from an older checkpoint gains one), in order of appearance.
    writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(key for row in rows for key in row)) or ["epoch"])
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, out.getvalue())


def read_history(run_dir: str) -> list[dict[str, float]]:
    """history.csv's rows, numbers as floats (an empty cell: NaN)."""
    with open(os.path.join(run_dir, "history.csv"), encoding="utf-8", newline="") as f:
        return [{key: float(value) if value else math.nan for key, value in row.items()} for row in csv.DictReader(f)]


def read_json(path: str) -> dict:
    """A JSON file of a run folder (metrics.json, config.json); RunError naming it when unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise RunError(f"{path}: unreadable or damaged ({error})") from None


def day(seconds: int) -> str:
    """A sample time (Unix seconds) as the log and records show it, in UTC."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def write_setup(run_dir: str, config: DINConfig, encoders: FeatureEncoders, parent: dict | None = None) -> None:
    """UNFINISHED, config.json (with a continued run's record of its parent) and encoders.json."""
    write_text(os.path.join(run_dir, UNFINISHED), "This run has not finished: it is training, was interrupted "
               "or failed. With checkpoints, `python train.py --resume RUN_DIR` continues it.\n")
    record = json.loads(config.to_json()) | ({CONTINUED_FROM: parent} if parent else {})
    write_text(os.path.join(run_dir, "config.json"), json.dumps(record, indent=2) + "\n")
    write_text(os.path.join(run_dir, "encoders.json"), encoders.to_json() + "\n")


def mark_finished(run_dir: str) -> None:
    """Called once metrics.json is written."""
    if os.path.exists(os.path.join(run_dir, UNFINISHED)):
        os.unlink(os.path.join(run_dir, UNFINISHED))


def read_run(run_dir: str) -> tuple[DINConfig, FeatureEncoders, dict[str, np.ndarray], str]:
    """(config, encoders, weights, backend) of a finished run directory."""
    paths = {name: os.path.join(run_dir, name) for name in ("config.json", "encoders.json", WEIGHTS)}
    for path in paths.values():
        if not os.path.isfile(path):
            raise RunError(f"{path}: missing; is {run_dir!r} a run directory written by train.py?")
    if os.path.exists(os.path.join(run_dir, UNFINISHED)) or not os.path.isfile(os.path.join(run_dir, "metrics.json")):
        why = "it holds UNFINISHED" if os.path.exists(os.path.join(run_dir, UNFINISHED)) else "no metrics.json"
        raise RunError(f"{run_dir}: the run did not finish ({why}); `python train.py --resume {run_dir}` continues "
                       "it if it has checkpoints, else train it again")
    with open(paths["config.json"], encoding="utf-8") as f:
        config = DINConfig.from_json(f.read(), paths["config.json"])
    weights, backend = read_weights(paths[WEIGHTS])
    return config, read_encoders(run_dir), weights, backend


def read_encoders(run_dir: str) -> FeatureEncoders:
    """A run directory's encoders.json; RunError naming it when damaged."""
    path = os.path.join(run_dir, "encoders.json")
    try:
        with open(path, encoding="utf-8") as f:
            return FeatureEncoders.from_json(f.read())
    except (ValueError, KeyError, TypeError) as error:
        raise RunError(f"{path}: damaged ({type(error).__name__}: {error})") from None
