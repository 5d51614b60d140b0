"""Resumable training: the latest full training states of a run, written atomically.

RUN_DIR/checkpoints/step-00000120/
  state/             the backend's training state: parameters, BatchNorm
                     statistics, optimiser state, step, RNG (jax: an orbax
                     directory, each process writing its shards; torch: state.pt)
  best.safetensors   the best weights so far (early stopping restores them)
  loop.json          where the loop stands: epoch, batches done in it, global
                     step, the epoch's loss so far, history, best score and
                     epoch, and the run's fingerprint (its settings and a
                     SHA-256 of its data files)

A checkpoint is built under a temporary name and renamed into place, so a run
killed at any moment leaves the previous checkpoints whole; the two newest
are kept. `--resume RUN_DIR` continues from the newest, or from the one
before it (saying so) when the newest is damaged, and refuses a checkpoint
whose fingerprint differs from the run's settings or data.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import time
from typing import Any, Callable

import numpy as np

from core.config import CHANGE_ON_RESUME, DINConfig
from core.errors import ConfigError, RunError
from training import run_dir
from training.backend import Backend

FOLDER = "checkpoints"
STEP_DIR = re.compile(r"^step-(\d+)$")
KEEP = 2  # the newest and one to fall back to
log = logging.getLogger("din")


class Refused(RunError):
    """A whole checkpoint that is not this run's to resume (another backend, other settings or data)."""


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
    data: str | None = None  # the data folder, absolute
    fingerprint: dict[str, Any] | None = None  # {"config": settings, "data": SHA-256 of the data files}
    # The best epoch's weights and Adam state (by the backend's names); a checkpoint keeps
    # them in best.safetensors and best-optimizer.safetensors.
    best_weights: dict[str, np.ndarray] | None = dataclasses.field(default=None, repr=False, compare=False)
    best_optimizer: dict[str, np.ndarray] | None = dataclasses.field(default=None, repr=False, compare=False)

    def to_json(self) -> str:
        raw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("best_weights", "best_optimizer")}
        raw["best_score"] = None if math.isinf(self.best_score) else self.best_score
        return json.dumps(raw, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "LoopState":
        raw = json.loads(text)
        raw["best_score"] = -math.inf if raw["best_score"] is None else raw["best_score"]
        return cls(**raw)


def fingerprint(config: DINConfig, data_sha256: str | None) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: every setting (placement aside) and the data."""
    settings = {name: value for group in json.loads(config.to_json()).values() for name, value in group.items()}
    return {"config": {k: v for k, v in settings.items() if k not in CHANGE_ON_RESUME}, "data": data_sha256}


def settings_as_read(settings: dict[str, Any]) -> dict[str, Any]:
    """A fingerprint's settings as a config.json of that time reads now
    (DINConfig.from_json: a setting added since takes what its absence meant, a
    renamed one its new name), so an older checkpoint of the same run matches."""
    try:
        config = DINConfig.from_json(json.dumps(settings))
    except (ConfigError, TypeError, ValueError):
        return settings  # compared as written: the differences will be named
    return {k: v for k, v in fingerprint(config, None)["config"].items()}


def mismatch(saved: dict[str, Any] | None, current: dict[str, Any]) -> str | None:
    """What differs between a checkpoint's fingerprint and the run's, in words; None if nothing."""
    if saved is None:
        return None
    saved = {**saved, "config": settings_as_read(saved["config"])}
    changed = sorted(k for k in set(saved["config"]) | set(current["config"])
                     if saved["config"].get(k) != current["config"].get(k))
    parts = [f"{k} {saved['config'].get(k)!r} -> {current['config'].get(k)!r}" for k in changed]
    if saved.get("data") and current.get("data") and saved["data"] != current["data"]:
        parts.append("the data files' content (SHA-256)")
    return ", ".join(parts) or None


def save(out_dir: str, backend: Backend, loop: LoopState) -> str:
    """Writes checkpoint `step-<loop.step>` (the loop state, its best weights and
    the backend's state) and removes older ones; returns its path."""
    folder = os.path.join(out_dir, FOLDER)
    final = os.path.join(folder, f"step-{loop.step:08d}")
    tmp = os.path.join(folder, f".tmp-step-{loop.step:08d}")
    if backend.primary:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    try:
        backend.save_state(os.path.join(tmp, "state"))  # every process: its shards (collective for jax)
        if not backend.primary:
            return final
        if loop.best_weights is not None:
            run_dir.write_weights(os.path.join(tmp, "best.safetensors"), loop.best_weights, backend.name)
        if loop.best_optimizer:
            run_dir.write_weights(os.path.join(tmp, "best-optimizer.safetensors"), loop.best_optimizer, backend.name)
        run_dir.write_text(os.path.join(tmp, "loop.json"), loop.to_json())
        shutil.rmtree(final, ignore_errors=True)
        _hold_if_asked(folder, loop.step)
        os.replace(tmp, final)  # atomic: the checkpoint exists whole or not at all
    except BaseException:  # interrupted (Ctrl-C) or failed: no half-written folder stays behind
        if backend.primary:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    keep = set(candidates(out_dir)[:KEEP])
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if path not in keep and (STEP_DIR.match(name) or name.startswith(".tmp-")):
            shutil.rmtree(path, ignore_errors=True)
    return final


HOLD = "DIN_TEST_HOLD_CHECKPOINT"


def _hold_if_asked(folder: str, step: int) -> None:
    """For fault tests: with DIN_TEST_HOLD_CHECKPOINT=STEP the process stops for
    good between writing checkpoint STEP and renaming it into place, after
    marking `.tmp-held`, so that a test's kill surely lands mid-write."""
    if os.environ.get(HOLD) == str(step):
        os.makedirs(os.path.join(folder, ".tmp-held"), exist_ok=True)  # a .tmp- folder: pruned like any leftover
        while True:
            time.sleep(1)


def candidates(out_dir: str) -> list[str]:
    """The run's checkpoints, newest first."""
    folder = os.path.join(out_dir, FOLDER)
    if not os.path.isdir(folder):
        return []
    steps = sorted(((int(m.group(1)), name) for name in os.listdir(folder) if (m := STEP_DIR.match(name))), reverse=True)
    return [os.path.join(folder, name) for _, name in steps]


def latest(out_dir: str) -> str | None:
    """The newest complete checkpoint of a run directory, if any."""
    found = candidates(out_dir)
    return found[0] if found else None


def read_loop(path: str) -> LoopState:
    """A checkpoint's loop.json; RunError naming the file when it is missing or damaged."""
    file = os.path.join(path, "loop.json")
    try:
        with open(file, encoding="utf-8") as f:
            return LoopState.from_json(f.read())
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise RunError(f"{file}: damaged or unreadable ({type(error).__name__}: {error})") from None


def _first_usable(out_dir: str, open_one: Callable[[str], Any], warn: bool) -> Any:
    """open_one(path) of the newest checkpoint it succeeds on; a damaged one
    (RunError) is skipped for the one before it, a refused one stops."""
    found = candidates(out_dir)
    if not found:
        raise RunError(f"{out_dir}: no checkpoint to resume from (train with --checkpoint-every STEPS)")
    problems = []
    for path in found:
        try:
            return open_one(path)
        except Refused:
            raise
        except RunError as error:
            problems.append(str(error))
            if warn:
                log.warning("checkpoint %s is damaged (%s)%s", path, error,
                            "; falling back to the one before it" if path != found[-1] else "")
    raise RunError(f"{out_dir}: every checkpoint is damaged: {'; '.join(problems)}")


def newest(out_dir: str) -> tuple[str, LoopState]:
    """(path, loop state) of the newest checkpoint whose loop.json reads; an error if there is none."""
    return _first_usable(out_dir, lambda path: (path, read_loop(path)), warn=False)


def restore(out_dir: str, backend: Backend, current: dict[str, Any] | None = None) -> LoopState:
    """Loads the newest usable checkpoint into `backend`; returns its loop state (best weights included).

    A damaged checkpoint (unreadable loop.json, state or best weights) is
    skipped for the one before it, with a warning. `current`, the run's
    fingerprint, must match the checkpoint's: else a RunError names what differs.
    """

    def load(path: str) -> LoopState:
        loop = read_loop(path)
        if loop.backend != backend.name:
            raise Refused(f"{path} was written by the {loop.backend} backend, not {backend.name}: "
                          f"resume with --backend {loop.backend}")
        if current is not None and (what := mismatch(loop.fingerprint, current)):
            raise Refused(f"{path} belongs to another run: its settings or data differ ({what}); "
                          "resume with the run's own settings and data, or start a new run")
        best_path = os.path.join(path, "best.safetensors")
        loop.best_weights = run_dir.read_weights(best_path)[0] if os.path.exists(best_path) else None
        best_optimizer = os.path.join(path, "best-optimizer.safetensors")  # absent in an older checkpoint
        loop.best_optimizer = run_dir.read_weights(best_optimizer)[0] if os.path.exists(best_optimizer) else None
        try:
            backend.load_state(os.path.join(path, "state"))
        except Exception as error:  # a damaged file fails in the library reading it, with any error
            first_line = str(error).splitlines()[0] if str(error) else ""
            raise RunError(f"{os.path.join(path, 'state')}: damaged or unreadable ({type(error).__name__}: {first_line})") from None
        return loop

    return _first_usable(out_dir, load, warn=True)
