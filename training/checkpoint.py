"""Resumable training: the latest full training state of a run, written atomically.

RUN_DIR/checkpoints/step-00000120/
  state/             the backend's training state: parameters, BatchNorm
                     statistics, optimiser state, step, RNG (jax: an orbax
                     directory, each process writing its shards; torch: state.pt)
  best.safetensors   the best weights so far (early stopping restores them)
  loop.json          where the loop stands: epoch, batches done in it, global
                     step, the epoch's loss so far, history, best score and epoch

A checkpoint is built under a temporary name and renamed into place, so a run
killed at any moment leaves the previous checkpoint whole; older ones are then
removed. `--resume RUN_DIR` continues from the newest.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil

import numpy as np

from training import run_dir
from training.backend import Backend

FOLDER = "checkpoints"
STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclasses.dataclass
class LoopState:
    """Everything the shared loop needs, besides the backend's state, to continue."""

    backend: str
    epoch: int = 1
    position: int = 0  # batches of `epoch` already trained
    step: int = 0  # optimiser steps so far
    loss_sum: float = 0.0  # sum over this epoch's batches of loss * batch size
    samples: int = 0  # this epoch's samples so far
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = 0
    train_seconds: float = 0.0
    train_samples: int = 0
    first_epoch_seconds: float = 0.0
    data: str | None = None

    def to_json(self) -> str:
        raw = dataclasses.asdict(self)
        raw["best_score"] = None if math.isinf(self.best_score) else self.best_score
        return json.dumps(raw, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "LoopState":
        raw = json.loads(text)
        raw["best_score"] = -math.inf if raw["best_score"] is None else raw["best_score"]
        return cls(**raw)


def save(out_dir: str, backend: Backend, loop: LoopState, best: dict[str, np.ndarray] | None) -> str:
    """Writes checkpoint `step-<loop.step>` and removes older ones; returns its path."""
    folder = os.path.join(out_dir, FOLDER)
    final = os.path.join(folder, f"step-{loop.step:08d}")
    tmp = os.path.join(folder, f".tmp-step-{loop.step:08d}")
    if backend.primary:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    backend.save_state(os.path.join(tmp, "state"))  # every process: its shards (collective for jax)
    if not backend.primary:
        return final
    if best is not None:
        run_dir.write_weights(os.path.join(tmp, "best.safetensors"), best, backend.name)
    run_dir.write_text(os.path.join(tmp, "loop.json"), loop.to_json())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)  # atomic: the checkpoint exists whole or not at all
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if path != final and (STEP_DIR.match(name) or name.startswith(".tmp-")):
            shutil.rmtree(path, ignore_errors=True)
    return final


def latest(out_dir: str) -> str | None:
    """The newest complete checkpoint of a run directory, if any."""
    folder = os.path.join(out_dir, FOLDER)
    if not os.path.isdir(folder):
        return None
    steps = [(int(m.group(1)), name) for name in os.listdir(folder) if (m := STEP_DIR.match(name))]
    return os.path.join(folder, max(steps)[1]) if steps else None


def newest(out_dir: str) -> tuple[str, LoopState]:
    """(path, loop state) of the newest checkpoint; an error if there is none."""
    path = latest(out_dir)
    if path is None:
        raise FileNotFoundError(f"{out_dir}: no checkpoint to resume from (train with --checkpoint-every STEPS)")
    with open(os.path.join(path, "loop.json"), encoding="utf-8") as f:
        return path, LoopState.from_json(f.read())


def restore(out_dir: str, backend: Backend) -> tuple[LoopState, dict[str, np.ndarray] | None]:
    """Loads the newest checkpoint into `backend`; returns the loop state and best weights."""
    path, loop = newest(out_dir)
    if loop.backend != backend.name:
        raise ValueError(f"{path} was written by the {loop.backend} backend, not {backend.name}")
    backend.load_state(os.path.join(path, "state"))
    best_path = os.path.join(path, "best.safetensors")
    best = run_dir.read_weights(best_path)[0] if os.path.exists(best_path) else None
    return loop, best
